"""The one-line messages a user sees when a command fails."""

from __future__ import annotations

from overcast.client import ApiError, OAuthError

LOGIN_HINT = "overcast login -a URL -u USER"


class CliError(Exception):
    """A failure the user can act on; printed as one line on stderr, exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def not_logged_in(login_hint: str = LOGIN_HINT) -> CliError:
    return CliError(f"Not logged in. Run: {login_hint}")


def api_error_message(error: ApiError, login_hint: str = LOGIN_HINT) -> str:
    """The CF `detail`, except for authentication failures, which say what to do next."""
    if isinstance(error, OAuthError):
        # Login handles its own OAuth errors: one reaching here failed to refresh a session.
        return f"Your session has expired ({error.error_description}). Run: {login_hint}"
    if error.status == 401:
        if error.has_title("CF-NotAuthenticated"):
            return f"Not logged in. Run: {login_hint}"
        return f"Your session has expired or is no longer valid. Run: {login_hint}"
    return "; ".join(entry["detail"] for entry in error.errors)
