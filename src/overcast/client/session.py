"""HTTP plumbing: discovery, the UAA token protocol, bearer auth with refresh-and-retry-once,
CF error parsing and pagination. Resource methods live in `overcast.client.client`."""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from overcast.client.errors import (
    ApiError,
    ApiUnreachable,
    InvalidApiUrl,
    UnexpectedResponse,
    error_entries,
    oauth_error,
)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
USER_AGENT = "overcast-client"
# The cf CLI's public OAuth client: id "cf", empty secret (what UAA and Overcast expect).
CF_CLIENT_BASIC = "Basic " + base64.b64encode(b"cf:").decode()
INVALID_AUTH_TOKEN = "CF-InvalidAuthToken"

Params = Mapping[str, str | int | list[str]]
# A stream's server says something at least this often (Overcast's log streams every 15 s).
STREAM_READ_TIMEOUT = 60.0


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str | None = None

    def __repr__(self) -> str:
        # Tokens are credentials: keep them out of logs and tracebacks.
        return (
            f"Tokens(access_token=<{len(self.access_token)} chars>, "
            f"refresh_token={'<set>' if self.refresh_token else None})"
        )


TokenListener = Callable[[Tokens], None]


def normalize_api_url(url: str) -> str:
    """`api.example.org` -> `https://api.example.org` (as the cf CLI assumes); no trailing
    slash. InvalidApiUrl when it cannot be an HTTP(S) endpoint."""
    url = url.strip()
    if "://" not in url:
        url = f"https://{url}"
    url = url.rstrip("/")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise InvalidApiUrl(f"'{url}' is not a valid API URL: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidApiUrl(f"'{url}' is not a valid API URL: use http://HOST[:PORT] or https://")
    return url


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The `data` of each Server-Sent Event in a stream of lines: `data:` fields are joined
    with newlines, a blank line ends an event, comments (`:`) and other fields are skipped."""
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _query(params: Params | None) -> dict[str, str | int] | None:
    """CF filters are plural and comma-separated: lists are joined, empty lists dropped."""
    if params is None:
        return None
    query: dict[str, str | int] = {}
    for name, value in params.items():
        if isinstance(value, list):
            if value:
                query[name] = ",".join(value)
        else:
            query[name] = value
    return query


class ApiSession:
    """One API endpoint and the caller's tokens. Not thread-safe; cheap to create."""

    def __init__(
        self,
        api_url: str,
        *,
        tokens: Tokens | None = None,
        token_listener: TokenListener | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = normalize_api_url(api_url)
        self._origin = httpx.URL(self.api_url)
        self._tokens = tokens
        self._token_listener = token_listener
        self._token_url: str | None = None
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
        )

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    @property
    def tokens(self) -> Tokens | None:
        return self._tokens

    # -- URLs ----------------------------------------------------------------------------

    def url_for(self, path_or_url: str) -> str:
        """An API path (`/v3/apps`, under any path prefix of the API URL) or an href from a
        response (absolute, or relative to the API) -> absolute URL."""
        if path_or_url.startswith("/"):
            return self.api_url + path_or_url
        return urljoin(self.api_url + "/", path_or_url)

    def _is_api_origin(self, url: str) -> bool:
        target = httpx.URL(url)
        return (target.scheme, target.host, target.port) == (
            self._origin.scheme,
            self._origin.host,
            self._origin.port,
        )

    # -- discovery and tokens -----------------------------------------------------------

    def root(self) -> dict[str, Any]:
        """`GET /`: the links to the v3 API and the token server (no auth needed)."""
        not_an_api = f"{self.api_url} does not look like an Overcast or Cloud Foundry API"
        try:
            body = self.request_json("GET", "/", authenticated=False)
        except (ApiError, UnexpectedResponse) as error:
            raise UnexpectedResponse(f"{not_an_api}: {error}") from None
        if not isinstance(body, dict) or not isinstance(body.get("links"), dict):
            raise UnexpectedResponse(f"{not_an_api}: GET / has no 'links'")
        return body

    @property
    def token_url(self) -> str:
        """CF clients take `links.login.href` (else `uaa`, else `self`) + `/oauth/token`."""
        if self._token_url is None:
            links = self.root()["links"]
            for name in ("login", "uaa", "self"):
                link = links.get(name)
                if isinstance(link, dict) and isinstance(link.get("href"), str):
                    self._token_url = link["href"].rstrip("/") + "/oauth/token"
                    break
            else:
                raise UnexpectedResponse(f"{self.api_url}/ names no token server")
        return self._token_url

    def login_password(self, username: str, password: str) -> Tokens:
        """The password grant; the new tokens are kept and announced to the listener."""
        return self._grant(
            {"grant_type": "password", "username": username, "password": password, "scope": ""}
        )

    def login_client(self, client_id: str, client_secret: str) -> Tokens:
        """The client_credentials grant (automation: an OAuth client, no user). There is no
        refresh token: the client logs in again when its token expires."""
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        return self._grant({"grant_type": "client_credentials"}, authorization=f"Basic {basic}")

    def refresh(self) -> Tokens:
        """The refresh_token grant. Refresh tokens do not rotate: a missing one is kept."""
        if self._tokens is None or not self._tokens.refresh_token:
            raise ApiError(
                401,
                [
                    {
                        "code": 1000,
                        "title": INVALID_AUTH_TOKEN,
                        "detail": "No refresh token: log in again",
                    }
                ],
            )
        return self._grant(
            {
                "grant_type": "refresh_token",
                "refresh_token": self._tokens.refresh_token,
                "scope": "",
            }
        )

    def _grant(self, form: dict[str, str], *, authorization: str = CF_CLIENT_BASIC) -> Tokens:
        response = self._send(
            "POST", self.token_url, data=form, headers={"Authorization": authorization}
        )
        body = _json_or_none(response)
        if response.status_code != 200:
            raise oauth_error(body, response.status_code, response.reason_phrase)
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise UnexpectedResponse("the token endpoint answered without an access_token")
        previous_refresh = self._tokens.refresh_token if self._tokens else None
        refresh_token = body.get("refresh_token")
        self._tokens = Tokens(
            access_token=body["access_token"],
            refresh_token=refresh_token if isinstance(refresh_token, str) else previous_refresh,
        )
        if self._token_listener is not None:
            self._token_listener(self._tokens)
        return self._tokens

    # -- requests ------------------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-Request-Id": uuid.uuid4().hex, **kwargs.pop("headers", {})}
        try:
            return self._http.request(method, url, headers=headers, **kwargs)
        except httpx.TimeoutException as error:
            raise ApiUnreachable(self.api_url, f"no answer in time ({error})") from None
        except httpx.TransportError as error:
            raise ApiUnreachable(self.api_url, str(error) or type(error).__name__) from None

    def _authorized_send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers: dict[str, str] = dict(kwargs.pop("headers", None) or {})
        if self._tokens is not None:
            if not self._is_api_origin(url):
                raise UnexpectedResponse(
                    f"refusing to send credentials to {url}: it is not the API at {self.api_url}"
                )
            headers["Authorization"] = f"bearer {self._tokens.access_token}"
        return self._send(method, url, headers=headers, **kwargs)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        files: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        authenticated: bool = True,
    ) -> httpx.Response:
        """One API call. An expired token is refreshed and the call retried once; any error
        status raises ApiError. `files` sends a multipart body (file objects are streamed);
        `content` a raw one (with its Content-Type in `headers`)."""
        url = self.url_for(path)
        send = self._authorized_send if authenticated else self._send
        kwargs: dict[str, Any] = {"params": _query(params)}
        if json is not None:
            kwargs["json"] = json
        if files is not None:
            kwargs["files"] = dict(files)
        if content is not None:
            kwargs["content"] = content
        if headers is not None:
            kwargs["headers"] = dict(headers)
        response = send(method, url, **kwargs)
        if authenticated and self._should_refresh(response):
            self.refresh()
            response = send(method, url, **kwargs)
        if response.is_error:
            body = _json_or_none(response)
            raise ApiError(
                response.status_code,
                error_entries(body, response.status_code, response.reason_phrase),
            )
        return response

    @contextlib.contextmanager
    def stream(
        self,
        path: str,
        *,
        params: Params | None = None,
        accept: str = "text/event-stream",
        read_timeout: float | None = STREAM_READ_TIMEOUT,
    ) -> Iterator[httpx.Response]:
        """A GET whose body is read as it arrives (`response.iter_lines()`), closed when the
        block ends. As with request(): an expired token is refreshed and the call retried once,
        an error status raises ApiError. A connection lost while reading raises httpx errors
        from the iteration; `ApiSession.stream_lines` turns them into ApiUnreachable."""
        url = self.url_for(path)
        response = self._open_stream(url, params, accept, read_timeout)
        try:
            if response.status_code == 401 and self._tokens is not None:
                response.read()
                if self._should_refresh(response):
                    response.close()
                    self.refresh()
                    response = self._open_stream(url, params, accept, read_timeout)
            if response.is_error:
                response.read()
                raise ApiError(
                    response.status_code,
                    error_entries(
                        _json_or_none(response), response.status_code, response.reason_phrase
                    ),
                )
            yield response
        finally:
            response.close()

    def stream_lines(
        self, path: str, *, params: Params | None = None, accept: str = "text/event-stream"
    ) -> Iterator[str]:
        """The lines of a streamed GET as they arrive; the stream closes when the iterator is
        closed or exhausted."""
        with self.stream(path, params=params, accept=accept) as response:
            try:
                yield from response.iter_lines()
            except httpx.TimeoutException as error:
                raise ApiUnreachable(self.api_url, f"the stream went quiet ({error})") from None
            except httpx.TransportError as error:
                raise ApiUnreachable(self.api_url, str(error) or type(error).__name__) from None

    def _open_stream(
        self, url: str, params: Params | None, accept: str, read_timeout: float | None
    ) -> httpx.Response:
        headers = {"X-Request-Id": uuid.uuid4().hex, "Accept": accept}
        if self._tokens is not None:
            if not self._is_api_origin(url):
                raise UnexpectedResponse(
                    f"refusing to send credentials to {url}: it is not the API at {self.api_url}"
                )
            headers["Authorization"] = f"bearer {self._tokens.access_token}"
        base = self._http.timeout
        timeout = httpx.Timeout(
            connect=base.connect, read=read_timeout, write=base.write, pool=base.pool
        )
        request = self._http.build_request(
            "GET", url, params=_query(params), headers=headers, timeout=timeout
        )
        try:
            return self._http.send(request, stream=True)
        except httpx.TimeoutException as error:
            raise ApiUnreachable(self.api_url, f"no answer in time ({error})") from None
        except httpx.TransportError as error:
            raise ApiUnreachable(self.api_url, str(error) or type(error).__name__) from None

    def _should_refresh(self, response: httpx.Response) -> bool:
        # Only an invalid/expired token is worth a refresh; CF-NotAuthenticated means the
        # request carried no credentials at all, and a new token would not change that.
        if response.status_code != 401 or self._tokens is None:
            return False
        if not self._tokens.refresh_token:
            return False
        entries = error_entries(_json_or_none(response), 401, response.reason_phrase)
        return any(entry["title"] == INVALID_AUTH_TOKEN for entry in entries)

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        authenticated: bool = True,
    ) -> Any:
        response = self.request(method, path, params=params, json=json, authenticated=authenticated)
        body = _json_or_none(response)
        if body is None:
            raise UnexpectedResponse(
                f"{method} {path} answered {response.status_code} without a JSON body"
            )
        return body

    def accepted_job_guid(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """A call answered 202 + `Location: .../v3/jobs/<guid>` (deletes, apply_manifest):
        the job guid."""
        response = self.request(method, path, content=content, headers=headers)
        location = response.headers.get("location", "")
        guid = httpx.URL(location).path.rstrip("/").rsplit("/", 1)[-1] if location else ""
        if response.status_code != 202 or "/jobs/" not in location or not guid:
            raise UnexpectedResponse(
                f"{method} {path} answered {response.status_code} without a job Location"
            )
        return guid

    def paginate(
        self, path: str, params: Params | None = None, *, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every resource of a CF list, following `pagination.next.href` (absolute URLs),
        stopping after `limit` resources when given."""
        url: str | None = path
        query = params
        seen: set[str] = set()
        yielded = 0
        while url is not None:
            page = self.request_json("GET", url, params=query)
            for resource in page.get("resources") or []:
                yield resource
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
            url = self._next_page(page, seen)
            query = None  # the next href already carries the filters

    def _next_page(self, page: dict[str, Any], seen: set[str]) -> str | None:
        link = (page.get("pagination") or {}).get("next")
        href = link.get("href") if isinstance(link, dict) else None
        if not isinstance(href, str) or not href:
            return None
        absolute = self.url_for(href)
        if absolute in seen:
            raise UnexpectedResponse(f"pagination loops back to {absolute}")
        seen.add(absolute)
        return absolute
