"""Signed blob URLs with the cluster's keys (see blob_urls.py for the scheme): one place that
loads the keys from the store, signs, and checks, for droplets and packages alike."""

from __future__ import annotations

import time

from overcast.controller.blob_urls import UrlSigner, derive_key
from overcast.core.clock import Clock
from overcast.models.errors import NotAuthorized, ServiceUnavailable
from overcast.store.base import Store

# A URL signed with a key this controller has not loaded yet (a new key of the cluster) makes
# it reload the keys, at most this often.
KEYS_REFRESH_SECONDS = 30.0


class SignedUrls:
    def __init__(self, store: Store, clock: Clock, ttl_seconds: int) -> None:
        self.store = store
        self.clock = clock
        self.ttl_seconds = ttl_seconds
        # The API's external URL, the base of every signed URL; set once it is listening.
        self.api_url = ""
        self._signer: UrlSigner | None = None
        self._loaded_at = 0.0

    async def _load(self, *, refresh: bool = False) -> UrlSigner:
        if self._signer is None or refresh:
            async with self.store.read() as tx:
                keys = await tx.keys.all()
            if not keys:
                raise ServiceUnavailable("The controller has no signing keys yet")
            self._signer = UrlSigner([derive_key(key.secret) for key in keys])
            self._loaded_at = time.monotonic()
        return self._signer

    async def url(self, path: str, method: str = "GET", ttl_seconds: int | None = None) -> str:
        """An absolute URL for `method` on `path` that needs no token, valid for `ttl_seconds`
        (default: the configured TTL) on any controller of the cluster."""
        if not self.api_url:
            raise ServiceUnavailable("The API URL is not known yet")
        ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
        expires = int(self.clock.now().timestamp()) + ttl
        signer = await self._load()
        return signer.signed_url(self.api_url, method, path, expires)

    async def check(
        self, method: str, path: str, expires: str | None, signature: str | None
    ) -> None:
        """NotAuthorized (403) unless the URL is well formed, unexpired and signed by a key of
        the cluster."""
        now = self.clock.now().timestamp()
        signer = await self._load()
        valid = signer.verify(method, path, expires, signature, now)
        if not valid and time.monotonic() - self._loaded_at > KEYS_REFRESH_SECONDS:
            signer = await self._load(refresh=True)
            valid = signer.verify(method, path, expires, signature, now)
        if not valid:
            raise NotAuthorized("Invalid or expired signature")
