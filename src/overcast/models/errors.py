"""The one error hierarchy. The API maps each class to a CF-shaped HTTP error in one place
(overcast.api.errors); nothing below the API knows about HTTP."""

from __future__ import annotations


class OvercastError(Exception):
    """Base of every error a user can cause or see. `detail` must never hold a secret."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(OvercastError):
    """The object does not exist, or the caller may not know that it does."""

    @classmethod
    def of(cls, kind: str) -> NotFound:
        return cls(f"{kind} not found")


class UnknownEndpoint(OvercastError):
    """No such route in the API."""


class Uniqueness(OvercastError):
    """A name or key is already taken."""


class Unprocessable(OvercastError):
    """Well-formed input that breaks a rule of the domain."""


class RouteHostTaken(Unprocessable):
    """A route with the same host, domain and path already exists (CF's RouteHostTaken)."""


class IllegalTransition(Unprocessable):
    """A lifecycle was asked to move along an edge its transition table does not have."""


class AssociationNotEmpty(Unprocessable):
    """Deleting something that still holds children the caller asked to keep."""


class MessageParseError(OvercastError):
    """The body is not valid JSON (or not the format the endpoint takes)."""


class InvalidRequest(OvercastError):
    """The request as a whole is wrong (e.g. a required header or form field is missing)."""


class BadQueryParameter(OvercastError):
    """An unknown query parameter or a value out of range."""


class NotAuthenticated(OvercastError):
    """No credentials at all."""


class InvalidAuthToken(OvercastError):
    """A token that is malformed, badly signed, expired or revoked."""


class NotAuthorized(OvercastError):
    """The caller can see the object but lacks the role for this action."""


class RequestTooLarge(OvercastError):
    """The body exceeds the configured limit."""


class ServiceUnavailable(OvercastError):
    """A component the request needs is not reachable right now."""


class OAuthError(OvercastError):
    """Errors of the token endpoint, which speaks OAuth2's shape instead of CF's."""

    def __init__(self, error: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.error = error
        self.status = status
