"""The controller as `overcast health` reaches it: its API, as an OAuth client
(client_credentials), through the synchronous client library run in a worker thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from overcast.client import ApiError, OvercastClient

T = TypeVar("T")


class ApiControllerPort:
    def __init__(self, api_url: str, client_id: str, client_secret: str) -> None:
        self._client = OvercastClient(api_url)
        self._client_id = client_id
        self._client_secret = client_secret
        self._logged_in = False
        # One call at a time: the client's session (and its token) is not shared across threads.
        self._lock = threading.Lock()

    def _call(self, call: Callable[[OvercastClient], T]) -> T:
        with self._lock:
            if not self._logged_in:
                self._login()
            try:
                return call(self._client)
            except ApiError as error:
                if error.status != 401:
                    raise
                # Expired (client tokens have no refresh token): log in again, once.
                self._login()
                return call(self._client)

    def _login(self) -> None:
        self._client.login_client(self._client_id, self._client_secret)
        self._logged_in = True

    async def desired(self) -> dict[str, Any]:
        return await asyncio.to_thread(self._call, lambda client: client.health_desired())

    async def act(self, request: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self._call, lambda client: client.health_act(request))

    def close(self) -> None:
        self._client.close()
