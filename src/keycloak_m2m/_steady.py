"""Elapsed time that a clock stepping back cannot stretch or freeze. No I/O, no locks.

NTP corrections and restored VMs move ``time.time()`` backwards. Measured on such a clock, a key
set fetched before an hour's backward step stays "fresh" for an hour more, and a rate limit
forbids any fetch for an hour. Every TTL, interval and staleness bound is therefore measured on
a steady clock (``steady_clock``). Instants that name wall-clock time (a token's ``exp``,
``nbf``, ``iat``) are still compared with the wall clock itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def steady_clock(clock: Callable[[], float]) -> Callable[[], float]:
    """A clock that measures time elapsed on ``clock`` and never goes back.

    For the system's clocks that is ``time.monotonic``: it never steps, it measures the real time
    elapsed across a step of ``time.time``, and on the cache-hit path it costs one C call. Any
    other clock (a test's fake one, an application's own) is wrapped in a ``SteadyClock``.
    """
    if clock is time.time or clock is time.monotonic:
        return time.monotonic
    return SteadyClock(clock)


class SteadyClock:
    """Reads like the clock it wraps until that clock steps back, then as if the clock had been
    steady from the moment it stepped: a backward step counts as no time passed, a forward step
    in full (so nothing is trusted longer than it should be). The time between the last reading
    before a step and the first after it is unknown, and counts as none."""

    __slots__ = ("_clock", "_last", "_offset")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last = clock()
        self._offset = 0.0  # grows by each backward step: steady time = reading + offset

    def __call__(self) -> float:
        reading = self._clock()
        last = self._last
        if reading < last:
            # Without a lock, two threads may both see one step and add it twice: the steady
            # clock then runs ahead, so TTLs end early, never late.
            self._offset += last - reading
        self._last = reading
        return reading + self._offset
