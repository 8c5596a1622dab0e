"""The ``requests`` adapter: ``session.auth = BearerAuth(credentials)``.

Needs the ``requests`` extra (``pip install "keycloak-m2m[requests]"``); the rest of the package
never imports this module.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.auth import AuthBase

from ._client import ClientCredentials
from ._client_dpop import asks_for_nonce

__all__ = ["BearerAuth"]


class BearerAuth(AuthBase):
    """Attach the token of ``credentials``; on a 401, renew it once and send the request again.

    A request whose body is a stream (a file, a generator) cannot be sent twice: its 401 is
    returned as is. With ``ClientCredentials(..., dpop_key=...)`` it sends ``Authorization:
    DPoP`` and a fresh proof per request, and answers a ``use_dpop_nonce`` once, as the httpx
    side does.
    """

    def __init__(self, credentials: ClientCredentials) -> None:
        self._credentials = credentials

    def __repr__(self) -> str:
        return f"BearerAuth({self._credentials!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        self._authorize(request, self._credentials.get_token())
        # PreparedRequest.hooks rather than register_hook(), which the stubs leave untyped.
        request.hooks["response"].append(self._retry_once_on_401)
        return request

    def _authorize(
        self, request: requests.PreparedRequest, token: str, nonce: str | None = None
    ) -> None:
        credentials = self._credentials
        if credentials.dpop_jkt is None:
            request.headers["Authorization"] = f"Bearer {token}"
            return
        method, url = str(request.method), str(request.url)
        request.headers["DPoP"] = credentials.dpop_proof(
            method, url, access_token=token, nonce=nonce
        )
        request.headers["Authorization"] = f"DPoP {token}"

    def _retry_once_on_401(self, response: requests.Response, **send_options: Any) -> Any:
        sent = response.request
        body: object = sent.body
        if response.status_code != 401 or not (body is None or isinstance(body, (bytes, str))):
            return response
        _, _, rejected = str(sent.headers.get("Authorization", "")).partition(" ")
        retry = sent.copy()
        nonce = response.headers.get("DPoP-Nonce")
        if self._credentials.dpop_jkt is not None and nonce and asks_for_nonce(response):
            # The server wants its nonce in the proof: the token itself was not refused.
            self._authorize(retry, rejected, nonce)
        else:
            self._authorize(retry, self._credentials.renew_token(rejected))
        # Read and free the refused answer (it stays in history) before sending again.
        _ = response.content
        response.close()
        # The adapter sends without running hooks again, so a second 401 is final.
        answer = response.connection.send(retry, **send_options)
        answer.history.append(response)
        answer.request = retry
        return answer
