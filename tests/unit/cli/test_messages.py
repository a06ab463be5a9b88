"""What the user reads when something fails, and what audit event summaries reveal."""

from __future__ import annotations

from overcast.cli.errors import api_error_message
from overcast.cli.operator_commands import describe_event
from overcast.client import ApiError, OAuthError

HINT = "overcast login -a http://api -u admin"


def _error(status: int, title: str, detail: str) -> ApiError:
    return ApiError(status, [{"code": 1, "title": title, "detail": detail}])


def test_not_authenticated_says_how_to_log_in() -> None:
    message = api_error_message(_error(401, "CF-NotAuthenticated", "Authentication error"), HINT)
    assert message == f"Not logged in. Run: {HINT}"


def test_an_invalid_token_that_could_not_be_refreshed_asks_for_a_new_login() -> None:
    message = api_error_message(_error(401, "CF-InvalidAuthToken", "Invalid Auth Token"), HINT)
    assert "session has expired" in message
    assert message.endswith(HINT)
    refresh_failed = OAuthError(401, "invalid_token", "Invalid refresh token")
    assert api_error_message(refresh_failed, HINT) == (
        f"Your session has expired (Invalid refresh token). Run: {HINT}"
    )


def test_other_errors_show_the_cf_detail() -> None:
    forbidden = _error(
        403, "CF-NotAuthorized", "You are not authorized to perform the requested action"
    )
    assert api_error_message(forbidden) == "You are not authorized to perform the requested action"


def test_event_summary_shows_variable_names_never_values() -> None:
    data = {
        "request": {"environment_variables": {"DB_PASSWORD": "[PRIVATE DATA HIDDEN]", "FOO": "bar"}}
    }
    assert describe_event(data) == "environment_variables: DB_PASSWORD, FOO"


def test_event_summary_hides_secret_named_values_and_skips_guids() -> None:
    data = {
        "process_guid": "p1",
        "process_type": "web",
        "request": {
            "instances": 3,
            "memory_in_mb": 512,
            "password": "hunter22",
            "buildpacks": None,
        },
    }
    summary = describe_event(data)
    assert summary == "process_type: web; instances: 3; memory_in_mb: 512; password: [hidden]"
