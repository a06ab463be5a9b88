"""Signed blob URLs: HMAC over method, path and expiry, any known key verifies, constant-time
comparison, expired or tampered URLs refused."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

import pytest

from overcast.controller.blob_urls import (
    UrlSigner,
    derive_key,
    droplet_blob_path,
    signature,
)

NOW = 1_800_000_000
PATH = droplet_blob_path("d-1")


@pytest.fixture
def signer() -> UrlSigner:
    return UrlSigner([derive_key("current-secret"), derive_key("older-secret")])


def test_signature_is_hmac_sha256_over_method_path_and_expiry() -> None:
    key = derive_key("secret")
    expected = hmac.new(key, f"GET\n{PATH}\n{NOW}".encode(), hashlib.sha256).hexdigest()
    assert signature(key, "get", PATH, NOW) == expected
    assert len(expected) == 64


def test_the_derived_key_is_not_the_token_secret() -> None:
    assert derive_key("secret") != b"secret"
    assert derive_key("secret") == derive_key("secret")
    assert derive_key("secret") != derive_key("secret2")


def test_signed_url_round_trip(signer: UrlSigner) -> None:
    url = signer.signed_url("https://api.example.org/", "GET", PATH, NOW + 60)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "api.example.org", PATH)
    query = parse_qs(parts.query)
    expires, given = query["expires"][0], query["signature"][0]
    assert expires == str(NOW + 60)
    assert signer.verify("GET", PATH, expires, given, NOW)
    assert signer.verify("GET", PATH, expires, given, NOW + 60)  # valid up to its second


def test_any_known_key_verifies_the_first_signs() -> None:
    old = UrlSigner([derive_key("older-secret")])
    rotated = UrlSigner([derive_key("new-secret"), derive_key("older-secret")])
    signed_by_old = old.sign("GET", PATH, NOW + 10)
    assert rotated.verify("GET", PATH, str(NOW + 10), signed_by_old, NOW)
    signed_by_new = rotated.sign("GET", PATH, NOW + 10)
    assert not old.verify("GET", PATH, str(NOW + 10), signed_by_new, NOW)
    assert signed_by_new == UrlSigner([derive_key("new-secret")]).sign("GET", PATH, NOW + 10)


def test_refusals(signer: UrlSigner) -> None:
    expires = str(NOW + 60)
    good = signer.sign("GET", PATH, NOW + 60)
    assert signer.verify("GET", PATH, expires, good, NOW)
    refused = [
        ("GET", PATH, str(NOW + 60), good, NOW + 61),  # expired
        ("GET", PATH, str(NOW + 61), good, NOW),  # expiry changed
        ("DELETE", PATH, expires, good, NOW),  # method changed
        ("GET", droplet_blob_path("d-2"), expires, good, NOW),  # path changed
        ("GET", PATH + "/", expires, good, NOW),
        ("GET", PATH, expires, good.upper(), NOW),  # not the canonical hex
        ("GET", PATH, expires, good[:-1], NOW),
        ("GET", PATH, expires, good + "0", NOW),
        ("GET", PATH, expires, "z" * 64, NOW),
        ("GET", PATH, expires, None, NOW),
        ("GET", PATH, None, good, NOW),
        ("GET", PATH, "", good, NOW),
        ("GET", PATH, "-5", good, NOW),
        ("GET", PATH, "1e10", good, NOW),
        ("GET", PATH, " " + expires, good, NOW),
        ("GET", PATH, "9" * 13, good, NOW),
    ]
    for method, path, given_expires, given, now in refused:
        assert not signer.verify(method, path, given_expires, given, now), (
            method,
            path,
            given_expires,
            given,
        )
    other = UrlSigner([derive_key("someone-else")])
    assert not other.verify("GET", PATH, expires, good, NOW)


def test_a_signer_needs_a_key() -> None:
    with pytest.raises(ValueError):
        UrlSigner([])
