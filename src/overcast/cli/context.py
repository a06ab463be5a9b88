"""What every command shares: settings (loaded once), the config file, an authenticated
client that persists refreshed tokens, the target checks, and the error guard that turns any
failure into one line on stderr and exit status 1."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from typing import NoReturn, ParamSpec

import typer

from overcast.cli.config import CliConfig, ConfigStore, Named
from overcast.cli.errors import LOGIN_HINT, CliError, api_error_message, not_logged_in
from overcast.client import (
    ApiError,
    ClientError,
    OvercastClient,
    Tokens,
    normalize_api_url,
)
from overcast.core.settings import CliSettings, load_settings

P = ParamSpec("P")
EXIT_FAILURE = 1


class CliContext:
    def __init__(self, settings: CliSettings, store: ConfigStore | None = None) -> None:
        self.settings = settings
        self.store = store or ConfigStore(settings.home)
        self._config: CliConfig | None = None

    @property
    def config(self) -> CliConfig:
        if self._config is None:
            self._config = self.store.load()
        return self._config

    def save(self) -> None:
        self.store.save(self.config)

    def login_hint(self) -> str:
        url = self.config.api_url or "URL"
        user = self.config.username or "USER"
        return f"overcast login -a {url} -u {user}"

    # -- sessions ------------------------------------------------------------------------

    def api_url_for_login(self, given: str | None) -> str:
        """-a, else the saved target, else OVERCAST_API_URL."""
        url = given or self.config.api_url or self.settings.api_url
        if not url:
            raise CliError(f"No API URL given. Run: {LOGIN_HINT}")
        return normalize_api_url(url)

    def start_session(self, api_url: str, username: str, tokens: Tokens) -> None:
        config = self.config
        config.end_session()
        config.api_url, config.username = api_url, username
        self._remember(tokens)

    def _remember(self, tokens: Tokens) -> None:
        self.config.access_token = tokens.access_token
        self.config.refresh_token = tokens.refresh_token
        self.save()

    def require_login(self) -> tuple[str, Tokens]:
        """The API URL and tokens of the saved session."""
        config = self.config
        if config.api_url is None or config.access_token is None:
            raise not_logged_in(self.login_hint() if config.api_url else LOGIN_HINT)
        return config.api_url, Tokens(config.access_token, config.refresh_token)

    def client(self) -> OvercastClient:
        """A client for the saved session; tokens it refreshes are saved at once."""
        api_url, tokens = self.require_login()
        return OvercastClient(api_url, tokens=tokens, token_listener=self._remember)

    # -- targets -------------------------------------------------------------------------

    def require_org(self) -> Named:
        self.require_login()  # "not logged in" explains more than "no org targeted"
        if self.config.org is None:
            raise CliError("No org targeted. Run: overcast target -o ORG")
        return self.config.org

    def require_space(self) -> Named:
        self.require_org()
        if self.config.space is None:
            raise CliError("No space targeted. Run: overcast target -s SPACE")
        return self.config.space


@functools.cache
def current() -> CliContext:
    """The context of this process; settings are read here, once, and nowhere else."""
    try:
        settings = load_settings(CliSettings)
    except Exception as error:  # a bad OVERCAST_* value or config file: say which, no trace
        raise CliError(f"Invalid settings: {error}") from None
    return CliContext(settings)


def fail(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    raise typer.Exit(EXIT_FAILURE)


def _login_hint() -> str:
    try:
        return current().login_hint()
    except CliError:
        return LOGIN_HINT


def guarded(command: Callable[P, None]) -> Callable[P, None]:
    """Every failure a user can cause becomes one line on stderr and exit status 1."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except CliError as error:
            fail(error.message)
        except ApiError as error:
            fail(api_error_message(error, _login_hint()))
        except ClientError as error:
            fail(str(error))

    return run


def add_commands(app: typer.Typer, panel: str, commands: Mapping[str, Callable[..., None]]) -> None:
    for name, command in commands.items():
        app.command(name, rich_help_panel=panel)(guarded(command))
