"""What the client raises. Every class derives from ClientError, so a caller that only wants
"did it work" catches one type; the subclasses say why it did not."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict


class ErrorEntry(TypedDict):
    """One item of a CF error body: `{"errors": [{code, title, detail}]}`."""

    code: int
    title: str
    detail: str


class ClientError(Exception):
    """Base of everything the Overcast client raises."""


class ApiError(ClientError):
    """The API answered with an error status. `errors` is CF's error list, never empty."""

    def __init__(self, status: int, errors: Sequence[ErrorEntry]) -> None:
        self.status = status
        self.errors: list[ErrorEntry] = list(errors) or [unknown_error(status)]
        super().__init__(str(self))

    @property
    def first(self) -> ErrorEntry:
        return self.errors[0]

    @property
    def code(self) -> int:
        return self.first["code"]

    @property
    def title(self) -> str:
        return self.first["title"]

    @property
    def detail(self) -> str:
        return self.first["detail"]

    def has_title(self, title: str) -> bool:
        return any(entry["title"] == title for entry in self.errors)

    def __str__(self) -> str:
        details = "; ".join(entry["detail"] for entry in self.errors)
        return f"{details} ({self.title}, HTTP {self.status})"


class OAuthError(ApiError):
    """The token endpoint refused: OAuth2's `{error, error_description}` body."""

    def __init__(self, status: int, error: str, error_description: str) -> None:
        self.error = error
        self.error_description = error_description
        super().__init__(status, [{"code": 0, "title": error, "detail": error_description}])

    def __str__(self) -> str:
        return f"{self.error_description} ({self.error}, HTTP {self.status})"


class ApiUnreachable(ClientError):
    """No HTTP answer at all: connection refused, DNS failure, TLS failure, timeout."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach API at {url}: {reason}")


class InvalidApiUrl(ClientError, ValueError):
    """The API URL given to the client cannot be an HTTP(S) endpoint."""


class UnexpectedResponse(ClientError):
    """A success status whose body or headers break the CF contract the client relies on."""


class JobFailed(ClientError):
    """A job the client waited for ended FAILED; the message carries the job's own errors."""

    def __init__(self, job_guid: str, operation: str, errors: Sequence[ErrorEntry]) -> None:
        self.job_guid = job_guid
        self.operation = operation
        self.errors = list(errors)
        details = "; ".join(entry["detail"] for entry in self.errors) or "no error detail given"
        super().__init__(f"{operation or 'job'} failed: {details}")


class JobTimedOut(ClientError):
    """A job did not finish within the time the caller was willing to wait."""

    def __init__(self, job_guid: str, state: str, timeout: float) -> None:
        self.job_guid = job_guid
        self.state = state
        self.timeout = timeout
        super().__init__(
            f"job {job_guid} is still {state} after {timeout:g}s; it keeps running on the server"
        )


def unknown_error(status: int, reason: str = "") -> ErrorEntry:
    detail = f"HTTP {status} {reason}".rstrip()
    return {"code": 10001, "title": "UnknownError", "detail": detail}


def error_entries(body: Any, status: int, reason: str) -> list[ErrorEntry]:
    """CF error entries from a parsed body; anything else becomes one UnknownError entry."""
    raw = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        return [unknown_error(status, reason)]
    entries: list[ErrorEntry] = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        code = item.get("code")
        entries.append(
            {
                "code": code if isinstance(code, int) else 0,
                "title": str(item.get("title") or "UnknownError"),
                "detail": str(item.get("detail") or f"HTTP {status} {reason}".rstrip()),
            }
        )
    return entries or [unknown_error(status, reason)]


def oauth_error(body: Any, status: int, reason: str) -> OAuthError:
    """An OAuthError from a token endpoint body, tolerating non-OAuth bodies."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        description = body.get("error_description")
        return OAuthError(
            status, body["error"], description if isinstance(description, str) else body["error"]
        )
    entry = error_entries(body, status, reason)[0]
    return OAuthError(status, entry["title"], entry["detail"])
