"""Elapsed time that a clock stepping back cannot stretch or freeze. No I/O, no locks.

NTP corrections and restored VMs move ``time.time()`` backwards. Measured on such a clock, a key
set fetched before an hour's backward step stays "fresh" for an hour more, and a rate limit
forbids any fetch for an hour. Every TTL, interval and staleness bound is therefore measured on a
``SteadyClock``: it reads like the clock it wraps until that clock steps back, and from then on
as if the clock had been steady from the moment it stepped (a backward step counts as no time
passed; a forward step counts in full, so nothing is trusted longer than it should be).

Instants that name wall-clock time (a token's ``exp``, ``nbf``, ``iat``) are still compared with
the wrapped clock itself.
"""

from __future__ import annotations

from collections.abc import Callable


class SteadyClock:
    __slots__ = ("_clock", "_last")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        reading = clock()
        # (the wrapped clock's last reading, the steady time at that reading), swapped whole.
        self._last = (reading, reading)

    def __call__(self) -> float:
        reading = self._clock()
        last_reading, last_steady = self._last
        steady = last_steady + (reading - last_reading) if reading > last_reading else last_steady
        # Without a lock, a thread may store an older pair over a newer one. The pair stays
        # consistent, so the next reading merely looks like a tiny backward step: time is never
        # counted twice, and the clock never freezes.
        self._last = (reading, steady)
        return steady
