"""The ``requests`` adapter: ``session.auth = BearerAuth(credentials)``.

Needs the ``requests`` extra (``pip install "keycloak-m2m[requests]"``); the rest of the package
never imports this module.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.auth import AuthBase

from ._client import ClientCredentials

__all__ = ["BearerAuth"]


class BearerAuth(AuthBase):
    """Attach the token of ``credentials``; on a 401, renew it once and send the request again.

    A request whose body is a stream (a file, a generator) cannot be sent twice: its 401 is
    returned as is.
    """

    def __init__(self, credentials: ClientCredentials) -> None:
        self._credentials = credentials

    def __repr__(self) -> str:
        return f"BearerAuth({self._credentials!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self._credentials.get_token()
        request.headers["Authorization"] = f"Bearer {token}"
        # PreparedRequest.hooks rather than register_hook(), which the stubs leave untyped.
        request.hooks["response"].append(self._retry_once_on_401)
        return request

    def _retry_once_on_401(self, response: requests.Response, **send_options: Any) -> Any:
        sent = response.request
        body: object = sent.body
        if response.status_code != 401 or not (body is None or isinstance(body, (bytes, str))):
            return response
        rejected = str(sent.headers.get("Authorization", "")).removeprefix("Bearer ")
        retry = sent.copy()
        retry.headers["Authorization"] = f"Bearer {self._credentials.renew_token(rejected)}"
        # Read and free the refused answer (it stays in history) before sending again.
        _ = response.content
        response.close()
        # The adapter sends without running hooks again, so a second 401 is final.
        answer = response.connection.send(retry, **send_options)
        answer.history.append(response)
        answer.request = retry
        return answer
