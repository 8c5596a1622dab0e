"""The checks every constructor of the package makes of its options, once.

A wrong option is a ValueError that names it, raised when the object is made, never at the
first request.
"""

from __future__ import annotations

import math
from typing import TypeGuard
from urllib.parse import urlsplit

__all__ = ["http_url", "is_http_url", "is_number", "require", "text"]


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def is_number(value: object) -> TypeGuard[float]:
    """An int or a float, finite; not a bool, which Python counts as an int."""
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


def text(option: str, value: object) -> str:
    require(isinstance(value, str) and value != "", f"{option} must be a non-empty string")
    assert isinstance(value, str)
    return value


def is_http_url(url: object) -> bool:
    parts = urlsplit(url) if isinstance(url, str) else None
    return parts is not None and parts.scheme in ("http", "https") and bool(parts.netloc)


def http_url(option: str, url: str) -> str:
    require(is_http_url(url), f"{option} must be an absolute http(s) URL")
    return url
