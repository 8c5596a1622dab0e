"""RFC 6750's b64token: the characters a bearer token may hold (section 2.1).

A token with any other character would not survive an Authorization header, so the client
refuses to take one from the token endpoint, and the validator treats only a b64token without
dots as an opaque token to introspect.
"""

from __future__ import annotations

import re
from typing import Final

_B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def is_b64token(text: str) -> bool:
    return _B64TOKEN.fullmatch(text) is not None
