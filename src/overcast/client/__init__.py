"""A typed, synchronous client for the Overcast API (Cloud Foundry v3 shape).

It imports nothing else from Overcast, so tests, the health service and benchmarks can use it
against any Overcast (or, for the CF subset, any Cloud Foundry) endpoint."""

from overcast.client.bits import BitsError
from overcast.client.client import OvercastClient
from overcast.client.errors import (
    ApiError,
    ApiUnreachable,
    ClientError,
    ErrorEntry,
    InvalidApiUrl,
    JobFailed,
    JobTimedOut,
    OAuthError,
    UnexpectedResponse,
)
from overcast.client.session import ApiSession, TokenListener, Tokens, normalize_api_url

__all__ = [
    "ApiError",
    "ApiSession",
    "ApiUnreachable",
    "BitsError",
    "ClientError",
    "ErrorEntry",
    "InvalidApiUrl",
    "JobFailed",
    "JobTimedOut",
    "OAuthError",
    "OvercastClient",
    "TokenListener",
    "Tokens",
    "UnexpectedResponse",
    "normalize_api_url",
]
