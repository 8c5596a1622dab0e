# The native payload reader (native/src/lib.rs), in builds that have it.
from collections.abc import Callable, Mapping
from typing import Any

from ._claims import PrincipalParts

class PayloadReader:
    def __init__(
        self, read_only: Callable[[dict[str, frozenset[str]]], Mapping[str, frozenset[str]]]
    ) -> None: ...
    def read(self, segment: bytes) -> tuple[dict[str, Any], PrincipalParts] | None: ...
