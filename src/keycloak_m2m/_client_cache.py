"""The token a ClientCredentials holds: when it may be handed out, and what callers that queued
behind a token request get from it. No I/O, no locks: the client's drivers hold those."""

from __future__ import annotations

from collections.abc import Callable

from ._token_answer import Issued, TokenRequestError


class TokenCache:
    """The cached token and the count of token requests made; no I/O, no locks."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._issued: Issued | None = None
        self._last_failure: TokenRequestError | None = None
        self.fetches = 0

    def usable(self, rejected: str | None) -> str | None:
        issued = self._issued
        if issued is None or issued.access_token == rejected or self._clock() >= issued.renew_at:
            return None
        return issued.access_token

    def after_waiting(self, rejected: str | None, seen_fetches: int) -> str | None:
        """What a caller that waited for the lock gets from the request made meanwhile, if any.

        A failure is shared too: a hundred callers queued behind an unreachable realm must not
        each go through the whole retry schedule in turn.
        """
        token = self.usable(rejected)
        failure = self._last_failure
        if token is None and self.fetches != seen_fetches and failure is not None:
            raise TokenRequestError(
                str(failure),
                status_code=failure.status_code,
                error=failure.error,
                error_description=failure.error_description,
            ) from failure
        return token

    def record(self, issued: Issued) -> str:
        self._issued = issued
        self._last_failure = None
        self.fetches += 1
        return issued.access_token

    def record_failure(self, failure: TokenRequestError) -> None:
        # The cached token, if any, stays: it may still be good until it expires.
        self._last_failure = failure
        self.fetches += 1
