"""pytest plugin (entry point ``pytest11``): the ``local_realm`` fixture.

A test can pass constructor arguments with ``@pytest.mark.local_realm(algorithm="ES256")``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._realm import LocalRealm


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "local_realm(**kwargs): LocalRealm constructor arguments for the local_realm fixture",
    )


@pytest.fixture
def local_realm(request: pytest.FixtureRequest) -> Iterator[LocalRealm]:
    """A started LocalRealm, stopped (threads joined) after the test."""
    marker = request.node.get_closest_marker("local_realm")
    if marker is not None and marker.args:
        raise TypeError("pytest.mark.local_realm takes keyword arguments only")
    options = dict(marker.kwargs) if marker is not None else {}
    with LocalRealm(**options) as realm:
        yield realm
