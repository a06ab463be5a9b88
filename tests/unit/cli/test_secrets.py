"""Which environment values the CLI hides: decided by name, plus URLs with a password."""

from __future__ import annotations

import pytest

from overcast.cli.secrets import (
    HIDDEN,
    count_hidden,
    has_embedded_password,
    is_secret_name,
    mask_tree,
    mask_value,
)


@pytest.mark.parametrize(
    "name",
    [
        "PASSWORD",
        "DB_PASSWORD",
        "db_passwd",
        "SECRET",
        "SECRET_KEY_BASE",
        "client_secret",
        "GITHUB_TOKEN",
        "accessToken",
        "API_KEY",
        "apiKey",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "PRIVATE_KEY",
        "KEY",
        "credentials",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "AUTH",
        "BASIC_AUTH",
        "authorization",
        "SENTRY_DSN",
        "DATABASE_URL",
        "databaseUrl",
        "PGPASSWORD",
        "SMTP_PASS",
        "JWT_SIGNING_KEY",
        "SESSION_COOKIE",
        "OAuth2Token",
    ],
)
def test_secret_looking_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "FOO",
        "PORT",
        "LOG_LEVEL",
        "MONKEY",
        "KEYBOARD_LAYOUT",
        "AUTHOR_NAME",
        "VCAP_APPLICATION",
        "application_name",
        "REDIS_HOST",
        "PASSENGER_COUNT",
    ],
)
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


def test_urls_with_a_password_are_hidden_whatever_the_name() -> None:
    assert has_embedded_password("postgres://app:s3cret@db:5432/app")
    assert not has_embedded_password("https://example.org/path")
    assert not has_embedded_password("redis://host:6379")
    assert mask_value("REDIS_URL", "redis://u:pw@host:6379") == HIDDEN


def test_mask_value_hides_by_name_unless_revealed() -> None:
    assert mask_value("DB_PASSWORD", "hunter22") == HIDDEN
    assert mask_value("PORT_COUNT", 3) == 3
    assert mask_value("DB_PASSWORD", "hunter22", reveal=True) == "hunter22"


def test_mask_tree_hides_nested_members_and_whole_credential_objects() -> None:
    services = {
        "postgres": [
            {"name": "db", "credentials": {"uri": "postgres://a:b@h/d", "port": 5432}},
            {"name": "cache", "tags": ["redis"], "token": "t0k"},
        ]
    }
    masked = mask_tree(services)
    assert masked == {
        "postgres": [
            {"name": "db", "credentials": HIDDEN},
            {"name": "cache", "tags": ["redis"], "token": HIDDEN},
        ]
    }
    assert count_hidden(services, masked) == 2
    assert mask_tree(services, reveal=True) == services
