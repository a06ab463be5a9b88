"""Signed blob URLs: how a cell downloads a droplet without a bearer token.

`{api}/v3/x/blobs/droplets/<guid>?expires=<unix seconds>&signature=<hex>`, where the signature
is HMAC-SHA256 over `METHOD\\nPATH\\nEXPIRES` with a key derived from a controller signing key
(the keys stored in the database, so every controller of a cluster signs and verifies alike).
Verification tries every known key (the newest signs), compares in constant time, and refuses
an expired URL.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from urllib.parse import urlencode

_PURPOSE = b"overcast/blob-url/v1"
_EXPIRES = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")


def derive_key(secret: str) -> bytes:
    """A key for blob URLs only, derived from a signing key's secret (never the secret itself,
    which also signs access tokens)."""
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def droplet_blob_path(droplet_guid: str) -> str:
    return f"/v3/x/blobs/droplets/{droplet_guid}"


def _message(method: str, path: str, expires: int) -> bytes:
    return f"{method.upper()}\n{path}\n{expires}".encode()


def signature(key: bytes, method: str, path: str, expires: int) -> str:
    return hmac.new(key, _message(method, path, expires), hashlib.sha256).hexdigest()


class UrlSigner:
    """Signs with the first key, verifies with any."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a URL signer needs at least one key")
        self.keys = tuple(keys)

    def sign(self, method: str, path: str, expires: int) -> str:
        return signature(self.keys[0], method, path, expires)

    def signed_url(self, api_url: str, method: str, path: str, expires: int) -> str:
        query = urlencode({"expires": expires, "signature": self.sign(method, path, expires)})
        return f"{api_url.rstrip('/')}{path}?{query}"

    def verify(
        self, method: str, path: str, expires: str | None, given: str | None, now: float
    ) -> bool:
        """True only for a well-formed, unexpired URL signed by one of the keys."""
        if expires is None or given is None:
            return False
        if not _EXPIRES.match(expires) or not _SIGNATURE.match(given):
            return False
        expires_at = int(expires)
        if expires_at < now:
            return False
        matched = False
        for key in self.keys:
            # Every key is tried (no early exit), so timing says nothing about which matched.
            matched |= hmac.compare_digest(signature(key, method, path, expires_at), given)
        return matched
