"""Typed settings, one object per component, loaded once per process.

Precedence: explicit overrides (command-line flags) > environment `OVERCAST_*` (nested with
`__`, e.g. `OVERCAST_API__PORT=9000`) > a YAML config file (`--config` or `OVERCAST_CONFIG`) >
defaults. This is the only module that reads the process environment.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from overcast.models.errors import Unprocessable

DEFAULT_API_PORT = 9022
DEFAULT_ROUTER_PORT = 8080
DEFAULT_APPS_DOMAIN = "apps.localhost"

_config_file: ContextVar[Path | None] = ContextVar("overcast_config_file", default=None)


def default_data_dir() -> Path:
    return Path.home() / ".overcast" / "data"


def default_cli_home() -> Path:
    return Path.home() / ".overcast"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSettings(_Section):
    # Empty: a SQLite file in the data dir. Otherwise a SQLAlchemy URL
    # (`sqlite:///path`, `postgresql://user:pw@host/db`).
    url: SecretStr = SecretStr("")
    pool_size: int = Field(default=5, ge=1, le=100)
    echo: bool = False


class BusSettings(_Section):
    kind: Literal["memory", "nats"] = "memory"
    url: SecretStr = SecretStr("nats://127.0.0.1:4222")
    request_timeout_seconds: float = Field(default=5.0, gt=0)
    # How long nats-py keeps trying to reconnect (-1 forever: data plane first).
    max_reconnect_attempts: int = -1
    reconnect_wait_seconds: float = Field(default=0.5, gt=0)


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_API_PORT, ge=0, le=65535)
    # The URL clients use; links are built from it. Empty: taken from each request's Host.
    external_url: str = ""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)


class AuthSettings(_Section):
    admin_username: str = "admin"
    # Empty: generated on first start and written to <data-dir>/admin-password (0600).
    admin_password: SecretStr = SecretStr("")
    access_token_ttl_seconds: int = Field(default=1200, ge=1)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=1)
    issuer: str = ""


class JobSettings(_Section):
    lease_seconds: float = Field(default=30.0, gt=0)
    poll_interval_seconds: float = Field(default=0.5, gt=0)
    workers: int = Field(default=4, ge=1, le=256)
    # Concurrency limit of each named queue at first start; operators change them at run time.
    queues: dict[str, int] = Field(
        default_factory=lambda: {
            "default": 4,
            "deletes": 2,
            "staging": 2,
            "placement": 4,
            "manifests": 2,
        }
    )
    retry_delay_seconds: float = Field(default=2.0, ge=0)


class LogSettings(_Section):
    """The controller's recent-log buffer (every controller keeps the full picture)."""

    # Recent lines kept per app, and how many apps are kept (least recently logging first out).
    lines_per_app: int = Field(default=1000, ge=1, le=100_000)
    max_apps: int = Field(default=10_000, ge=1)
    # Lines a live reader may fall behind before it loses lines (it is told how many).
    listener_queue_lines: int = Field(default=1000, ge=2)
    # A `: keepalive` comment on idle log streams (SSE), so proxies keep them open.
    keepalive_seconds: float = Field(default=15.0, gt=0)


class BlobstoreSettings(_Section):
    """Where droplets and packages are kept (a directory every controller of a cluster
    shares), and the limits of what is uploaded."""

    # Empty: <data_dir>/blobs.
    dir: Path | None = None
    max_droplet_bytes: int = Field(default=2 * 1024**3, ge=1024)
    # How long a signed droplet download URL handed to a cell stays valid.
    signed_url_ttl_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    # Packages (app source): the uploaded zip, each file in it, all files of one package
    # (uploaded and matched), and the number of files of one package.
    max_package_bytes: int = Field(default=1024**3, ge=1024)
    max_package_file_bytes: int = Field(default=1024**3, ge=1)
    max_package_expanded_bytes: int = Field(default=2 * 1024**3, ge=1024)
    max_package_files: int = Field(default=100_000, ge=1)
    # Entries of one POST /v3/resource_matches or of an upload's `resources`.
    max_resource_matches: int = Field(default=10_000, ge=1)
    # Files of the file store no package refers to are deleted once this much time has passed
    # since they were last stored or reported held (an upload in flight, or a client told by
    # resource_matches that it may leave a file out, has that long to use them) ...
    file_grace_seconds: float = Field(default=3600.0, ge=60)
    # ... by a sweep run this often (0: only after deletes of apps, spaces and orgs).
    sweep_interval_seconds: float = Field(default=3600.0, ge=0)


class StagingSettings(_Section):
    """Builds: the limits a staging runs under, unless a build asks for other memory/disk."""

    # The whole staging (download, every buildpack step, upload); CF's default is 15 minutes.
    timeout_seconds: float = Field(default=900.0, gt=0)
    memory_mb: int = Field(default=1024, ge=64)
    disk_mb: int = Field(default=4096, ge=64)
    # The most a build may ask for.
    max_memory_mb: int = Field(default=8192, ge=64)
    max_disk_mb: int = Field(default=16384, ge=64)
    # How often the staging job looks at a build its cell is staging (a watchdog: the cell's
    # upload itself ends the build at once).
    poll_interval_seconds: float = Field(default=2.0, gt=0)


class CellSection(_Section):
    """A cell agent: what it advertises and how it runs instances."""

    # Empty: generated once and kept in <work_dir>/cell-id.
    id: str = ""
    zone: str = "z1"
    tags: list[str] = Field(default_factory=list)
    stacks: list[str] = Field(default_factory=lambda: ["overcast-linux"])
    # The address instances are reachable at (CF_INSTANCE_IP) and probed on.
    host: str = "127.0.0.1"
    # 0: the machine's total memory / the free space of work_dir.
    memory_mb: int = Field(default=0, ge=0)
    disk_mb: int = Field(default=0, ge=0)
    containers: int = Field(default=256, ge=1)
    runtime: Literal["process"] = "process"
    # Empty: <data_dir>/cell (or cell-<id> when several cells share a data dir).
    work_dir: Path | None = None
    # A cell is lost after three missed heartbeats: 2 s finds a dead cell in about 6 s.
    heartbeat_interval_seconds: float = Field(default=2.0, gt=0)
    # SIGTERM, then SIGKILL after this many seconds.
    stop_grace_seconds: float = Field(default=10.0, ge=0)
    # Host ports handed to instances (PORT / CF_INSTANCE_PORT with the process runtime).
    port_range_start: int = Field(default=61000, ge=1024, le=65535)
    port_range_end: int = Field(default=61999, ge=1024, le=65535)
    # When the cell process exits: stop its instances (micro cloud), or leave them running to
    # be re-adopted by the next cell process (a standalone cell: upgrades lose nothing).
    stop_instances_on_exit: bool = False
    # Directories whose buildpacks apps may name by absolute path (operator-installed ones);
    # empty: buildpacks by path are refused.
    buildpack_paths: list[Path] = Field(default_factory=list)
    # Per-app buildpack caches kept on this cell (least recently used go first).
    app_cache_entries: int = Field(default=64, ge=0)

    @model_validator(mode="after")
    def _ports_in_order(self) -> CellSection:
        if self.port_range_end < self.port_range_start:
            raise ValueError("port_range_end must not be below port_range_start")
        return self


class RouterSection(_Section):
    """A router: the route table fed by the cells' registrations, and the HTTP data plane."""

    # Empty: generated at every start (routers keep no state of their own).
    id: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_ROUTER_PORT, ge=0, le=65535)
    # /health and /metrics (Prometheus), apart from the apps' traffic.
    status_host: str = "127.0.0.1"
    status_port: int = Field(default=8082, ge=0, le=65535)
    # How often cells re-register (announced on router.start), and when an endpoint that
    # stopped re-registering is forgotten.
    register_interval_seconds: float = Field(default=5.0, gt=0)
    prune_threshold_seconds: float = Field(default=30.0, gt=0)
    # A cell the health service judged lost has its endpoints withdrawn; its registrations of
    # the same instances are refused this long (news, such as a restarted instance, passes).
    lost_cell_hold_seconds: float = Field(default=60.0, gt=0)
    # A new router answers 503 "not ready" until a full round of registrations was heard.
    # Empty: one register interval.
    ready_after_seconds: float | None = Field(default=None, ge=0)
    max_connections_per_endpoint: int = Field(default=256, ge=1)
    # An endpoint whose connection failed gets no requests for this long (others remain).
    ineligible_seconds: float = Field(default=30.0, ge=0)
    backend_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    backend_response_timeout_seconds: float = Field(default=60.0, gt=0)
    # Where to append the access log; empty: <data_dir>/router/access.log.
    access_log: Path | None = None
    # Every request also as an `RTR` log line of its app (as CF does); it costs the data plane
    # about a sixth of its throughput (bench/router.py).
    app_access_logs: bool = True

    @model_validator(mode="after")
    def _threshold_beyond_interval(self) -> RouterSection:
        if self.prune_threshold_seconds <= self.register_interval_seconds:
            raise ValueError("prune_threshold_seconds must exceed register_interval_seconds")
        return self


class HealthSection(_Section):
    """The health service: converges actual state (the cells') to desired (the controller's)."""

    # How often desired state is fetched in bulk; older than two of these, nothing is stopped.
    desired_refresh_seconds: float = Field(default=5.0, gt=0)
    # At most one convergence run this often (events in between join the next run) ...
    converge_interval_seconds: float = Field(default=0.1, ge=0)
    # ... and at least one this often, events or not (due restarts, silent cells).
    sweep_seconds: float = Field(default=1.0, gt=0)
    # An action asked of the controller and not seen done is not asked again before this.
    inflight_seconds: float = Field(default=30.0, gt=0)
    # No action before this long after start (and a heartbeat round heard).
    warm_up_seconds: float = Field(default=2.0, ge=0)
    # `overcast health`: the controller's API and the OAuth client it acts as (an admin one).
    api_url: str = ""
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    # /health and /metrics (Prometheus) of `overcast health`.
    status_host: str = "127.0.0.1"
    status_port: int = Field(default=8083, ge=0, le=65535)


class ComponentSettings(BaseSettings):
    """What every Overcast process shares."""

    model_config = SettingsConfigDict(
        env_prefix="OVERCAST_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    # Set by a process to itself; names it in leases, logs and agent advertisements.
    instance_name: str = ""

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFileSource(settings_cls))


class ControllerSettings(ComponentSettings):
    store: StoreSettings = StoreSettings()
    bus: BusSettings = BusSettings()
    api: ApiSettings = ApiSettings()
    auth: AuthSettings = AuthSettings()
    jobs: JobSettings = JobSettings()
    logs: LogSettings = LogSettings()
    blobstore: BlobstoreSettings = BlobstoreSettings()
    staging: StagingSettings = StagingSettings()
    apps_domain: str = DEFAULT_APPS_DOMAIN

    def database_url(self) -> str:
        configured = self.store.url.get_secret_value()
        return configured or f"sqlite:///{self.data_dir / 'overcast.db'}"

    def blobstore_dir(self) -> Path:
        configured = self.blobstore.dir
        return configured.expanduser() if configured else self.data_dir / "blobs"


class CellSettings(ComponentSettings):
    """`overcast cell`: one cell agent."""

    bus: BusSettings = BusSettings()
    cell: CellSection = CellSection()


# The micro cloud's sections differ from the standalone ones in a few defaults. They are
# subclasses, not default instances: a section read from OVERCAST_CELL__* (or a file) is built
# from its class, so a default instance's values would be lost as soon as one key is set.


class MicroCellSection(CellSection):
    stop_instances_on_exit: bool = True


class MicroRouterSection(RouterSection):
    # Its port is `router_port`; status on any free port.
    status_port: int = Field(default=0, ge=0, le=65535)


class MicroHealthSection(HealthSection):
    status_port: int = Field(default=0, ge=0, le=65535)


class MicroCloudSettings(ControllerSettings):
    """`overcast up`: every component in one process."""

    router_port: int = Field(default=DEFAULT_ROUTER_PORT, ge=0, le=65535)
    cell: MicroCellSection = MicroCellSection()
    router: MicroRouterSection = MicroRouterSection()
    health: MicroHealthSection = MicroHealthSection()


class RouterSettings(ComponentSettings):
    """`overcast router`: one router on the shared bus."""

    bus: BusSettings = BusSettings()
    router: RouterSection = RouterSection()


class HealthSettings(ComponentSettings):
    """`overcast health`: the health service on the shared bus, acting through the API."""

    bus: BusSettings = BusSettings()
    health: HealthSection = HealthSection()


class CliSettings(ComponentSettings):
    """The `overcast` client: where it keeps its target and tokens."""

    home: Path = Field(default_factory=default_cli_home)
    # Used by `overcast login` when no -a is given.
    api_url: str = ""

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()


class _YamlFileSource(PydanticBaseSettingsSource):
    """Values from the YAML config file named for this load (or by OVERCAST_CONFIG)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole mapping

    def __call__(self) -> dict[str, Any]:
        path = _config_file.get()
        if path is None:
            return {}
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise Unprocessable(f"Cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise Unprocessable(f"Config file {path} is not valid YAML: {exc}") from exc
        if loaded is None:
            return {}
        if not isinstance(loaded, dict):
            raise Unprocessable(f"Config file {path} must hold a mapping at the top")
        return loaded


SettingsT = TypeVar("SettingsT", bound=ComponentSettings)


def load_settings(
    cls: type[SettingsT], *, config_file: Path | None = None, **overrides: Any
) -> SettingsT:
    """Load a component's settings once; call this only from a composition root."""
    path = config_file
    if path is None and os.environ.get("OVERCAST_CONFIG"):
        path = Path(os.environ["OVERCAST_CONFIG"]).expanduser()
    token = _config_file.set(path)
    try:
        given = {key: value for key, value in overrides.items() if value is not None}
        return cls(**given)
    finally:
        _config_file.reset(token)


def stdout_is_terminal() -> bool:
    """Logging picks console output on a terminal and JSON elsewhere."""
    return os.isatty(1)
