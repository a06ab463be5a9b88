"""The pure rules of routes and domains: host, path and domain name validation, CF's url."""

from __future__ import annotations

import pytest

from overcast.controller.domains import api_host, check_domain_name
from overcast.controller.routes import (
    RESERVED_HOSTS,
    check_host,
    check_load_balancing,
    check_path,
    route_url,
)
from overcast.models.errors import Unprocessable
from overcast.models.resources import LoadBalancing


@pytest.mark.parametrize("host, expected", [("Shop", "shop"), ("", ""), ("*", "*"), ("a-1", "a-1")])
def test_valid_hosts(host: str, expected: str) -> None:
    assert check_host(host) == expected


@pytest.mark.parametrize("host", ["a_b", "-a", "a-", "a.b", "*.a", "a" * 64, "é", " a", "a\n"])
def test_invalid_hosts(host: str) -> None:
    with pytest.raises(Unprocessable):
        check_host(host)


@pytest.mark.parametrize("path", ["", "/a", "/A/b-c_d.e~f", "/a/", "/%20x", "/" + "a" * 127])
def test_valid_paths(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize(
    "path", ["a", "/", "/a?b", "/a#b", "/a/../b", "/..", "/a b", "/a\n", "/" + "a" * 128]
)
def test_invalid_paths(path: str) -> None:
    with pytest.raises(Unprocessable):
        check_path(path)


def test_domain_names() -> None:
    assert check_domain_name("Apps.Example.COM") == "apps.example.com"
    assert check_domain_name("a.b") == "a.b"
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(longest) == 253 and check_domain_name(longest) == longest
    for bad in (
        "",
        "com",
        "a..b",
        "-a.b",
        "a-.b",
        "a_b.c",
        "a.b.",
        "a.b\n",
        f"{'a' * 64}.b",
        longest + "c",
    ):
        with pytest.raises(Unprocessable):
            check_domain_name(bad)


def test_urls_and_hosts() -> None:
    assert route_url("shop", "apps.example.com", "") == "shop.apps.example.com"
    assert route_url("", "apps.example.com", "/docs") == "apps.example.com/docs"
    assert route_url("*", "apps.example.com", "/a") == "*.apps.example.com/a"
    assert api_host("https://API.Example.com:8443/") == "api.example.com"
    assert api_host("") is None
    assert {"api", "uaa", "login"} == RESERVED_HOSTS


def test_load_balancing() -> None:
    assert check_load_balancing("least-connection") is LoadBalancing.LEAST_CONNECTION
    with pytest.raises(Unprocessable, match="round-robin"):
        check_load_balancing("random")
