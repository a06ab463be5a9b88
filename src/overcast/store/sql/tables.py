"""SQL schema (SQLAlchemy Core). Alembic migrations under migrations/ create it; this module is
what queries are written against and what autogenerate compares with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC (SQLite has no time zones), always read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        parsed: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _id() -> Column[int]:
    return Column("id", Integer, primary_key=True, autoincrement=True)


def _guid() -> Column[str]:
    return Column("guid", String(36), nullable=False, unique=True)


def _timestamps() -> list[Column[Any]]:
    return [
        Column("created_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
    ]


def _metadata_columns() -> list[Column[Any]]:
    return [
        Column("labels", JSON, nullable=False, default=dict),
        Column("annotations", JSON, nullable=False, default=dict),
    ]


organizations = Table(
    "organizations",
    metadata,
    _id(),
    _guid(),
    Column("name", String(255), nullable=False),
    Column("name_lower", String(255), nullable=False, unique=True),
    Column("suspended", Boolean, nullable=False, default=False),
    *_metadata_columns(),
    *_timestamps(),
)

spaces = Table(
    "spaces",
    metadata,
    _id(),
    _guid(),
    Column("name", String(255), nullable=False),
    Column("name_lower", String(255), nullable=False),
    Column(
        "org_guid",
        String(36),
        ForeignKey("organizations.guid", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    ),
    *_metadata_columns(),
    *_timestamps(),
    UniqueConstraint("org_guid", "name_lower", name="uq_spaces_org_name"),
)

apps = Table(
    "apps",
    metadata,
    _id(),
    _guid(),
    Column("name", String(255), nullable=False),
    Column("name_lower", String(255), nullable=False),
    Column(
        "space_guid",
        String(36),
        ForeignKey("spaces.guid", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    ),
    Column("state", String(16), nullable=False),
    Column("lifecycle_type", String(32), nullable=False),
    Column("buildpacks", JSON, nullable=False),
    Column("stack", String(255), nullable=False),
    Column("environment_variables", JSON, nullable=False),
    Column("current_droplet_guid", String(36), nullable=True),
    *_metadata_columns(),
    *_timestamps(),
    UniqueConstraint("space_guid", "name_lower", name="uq_apps_space_name"),
)

processes = Table(
    "processes",
    metadata,
    _id(),
    _guid(),
    Column(
        "app_guid",
        String(36),
        ForeignKey("apps.guid", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("type", String(255), nullable=False),
    Column("version", String(36), nullable=False),
    Column("command", Text, nullable=True),
    Column("instances", Integer, nullable=False),
    Column("memory_in_mb", Integer, nullable=False),
    Column("disk_in_mb", Integer, nullable=False),
    Column("log_rate_limit", Integer, nullable=False),
    Column("health_check_type", String(16), nullable=False),
    Column("health_check_endpoint", String(255), nullable=True),
    Column("health_check_timeout", Integer, nullable=True),
    Column("health_check_invocation_timeout", Integer, nullable=True),
    Column("health_check_interval", Integer, nullable=True),
    Column("placement_error", Text, nullable=True),
    *_metadata_columns(),
    *_timestamps(),
    UniqueConstraint("app_guid", "type", name="uq_processes_app_type"),
)

droplets = Table(
    "droplets",
    metadata,
    _id(),
    _guid(),
    Column(
        "app_guid",
        String(36),
        ForeignKey("apps.guid", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("state", String(32), nullable=False, index=True),
    Column("error", Text, nullable=True),
    Column("lifecycle_type", String(32), nullable=False),
    Column("lifecycle_buildpacks", JSON, nullable=False),
    Column("stack", String(255), nullable=True),
    Column("execution_metadata", Text, nullable=False),
    Column("process_types", JSON, nullable=False),
    Column("checksum", String(64), nullable=True),
    Column("size_in_bytes", BigInteger, nullable=True),
    Column("buildpacks", JSON, nullable=False),
    Column("package_guid", String(36), nullable=True),
    *_metadata_columns(),
    *_timestamps(),
)

packages = Table(
    "packages",
    metadata,
    _id(),
    _guid(),
    Column(
        "app_guid",
        String(36),
        ForeignKey("apps.guid", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("type", String(16), nullable=False),
    Column("state", String(32), nullable=False, index=True),
    Column("error", Text, nullable=True),
    Column("checksum", String(64), nullable=True),
    Column("size_in_bytes", BigInteger, nullable=True),
    Column("file_count", Integer, nullable=True),
    *_metadata_columns(),
    *_timestamps(),
)

builds = Table(
    "builds",
    metadata,
    _id(),
    _guid(),
    Column(
        "app_guid",
        String(36),
        ForeignKey("apps.guid", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("package_guid", String(36), nullable=False, index=True),
    Column("state", String(32), nullable=False, index=True),
    Column("error", Text, nullable=True),
    Column("lifecycle_type", String(32), nullable=False),
    Column("lifecycle_buildpacks", JSON, nullable=False),
    Column("stack", String(255), nullable=True),
    Column("staging_memory_in_mb", Integer, nullable=False),
    Column("staging_disk_in_mb", Integer, nullable=False),
    Column("droplet_guid", String(36), nullable=True),
    Column("created_by", JSON, nullable=False),
    Column("cell_id", String(255), nullable=True),
    *_metadata_columns(),
    *_timestamps(),
)

users = Table(
    "users",
    metadata,
    _id(),
    _guid(),
    Column("username", String(255), nullable=False),
    Column("username_lower", String(255), nullable=False),
    Column("origin", String(64), nullable=False),
    Column("password_hash", String(255), nullable=True),
    Column("admin", Boolean, nullable=False, default=False),
    *_metadata_columns(),
    *_timestamps(),
    UniqueConstraint("origin", "username_lower", name="uq_users_origin_username"),
)

roles = Table(
    "roles",
    metadata,
    _id(),
    _guid(),
    Column("type", String(64), nullable=False),
    Column(
        "user_guid",
        String(36),
        ForeignKey("users.guid", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column(
        "org_guid",
        String(36),
        ForeignKey("organizations.guid", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    Column(
        "space_guid",
        String(36),
        ForeignKey("spaces.guid", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    # org_guid or space_guid: NULLs are distinct in unique constraints, this column is not.
    Column("scope_guid", String(36), nullable=False),
    *_timestamps(),
    UniqueConstraint("type", "user_guid", "scope_guid", name="uq_roles_type_user_scope"),
)

domains = Table(
    "domains",
    metadata,
    _id(),
    _guid(),
    Column("name", String(253), nullable=False),
    Column("name_lower", String(253), nullable=False, unique=True),
    Column("internal", Boolean, nullable=False, default=False),
    Column(
        "org_guid",
        String(36),
        ForeignKey("organizations.guid", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    *_metadata_columns(),
    *_timestamps(),
)

routes = Table(
    "routes",
    metadata,
    _id(),
    _guid(),
    # Lower-case; "" for a route on the domain itself, "*" for a wildcard.
    Column("host", String(63), nullable=False),
    Column("path", String(128), nullable=False),
    # The path as the router compares it (lower-case): what uniqueness is judged on.
    Column("path_lower", String(128), nullable=False),
    Column("port", Integer, nullable=True),
    Column("protocol", String(16), nullable=False),
    # A domain's routes go with it (CF deletes them); a space's routes go with the space.
    Column(
        "domain_guid",
        String(36),
        ForeignKey("domains.guid", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column(
        "space_guid",
        String(36),
        ForeignKey("spaces.guid", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("load_balancing", String(32), nullable=True),
    *_metadata_columns(),
    *_timestamps(),
    UniqueConstraint("domain_guid", "host", "path_lower", name="uq_routes_domain_host_path"),
)

route_destinations = Table(
    "route_destinations",
    metadata,
    _id(),
    _guid(),
    Column(
        "route_guid",
        String(36),
        ForeignKey("routes.guid", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    # An app's destinations go with the app.
    Column(
        "app_guid",
        String(36),
        ForeignKey("apps.guid", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("process_type", String(255), nullable=False),
    Column("port", Integer, nullable=False),
    Column("protocol", String(16), nullable=False),
    Column("weight", Integer, nullable=True),
    *_timestamps(),
    UniqueConstraint(
        "route_guid", "app_guid", "process_type", "port", name="uq_route_destinations_target"
    ),
)

audit_events = Table(
    "audit_events",
    metadata,
    _id(),
    _guid(),
    Column("type", String(128), nullable=False, index=True),
    Column("actor_guid", String(64), nullable=False),
    Column("actor_type", String(32), nullable=False),
    Column("actor_name", String(255), nullable=False),
    # No foreign keys: events outlive what they describe.
    Column("target_guid", String(64), nullable=False, index=True),
    Column("target_type", String(64), nullable=False),
    Column("target_name", String(255), nullable=False),
    Column("data", JSON, nullable=False),
    Column("space_guid", String(36), nullable=True, index=True),
    Column("org_guid", String(36), nullable=True, index=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    _id(),
    _guid(),
    Column("operation", String(128), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("target_type", String(64), nullable=False),
    Column("target_guid", String(64), nullable=False),
    Column("target_key", String(160), nullable=False),
    Column("state", String(16), nullable=False),
    Column("stages", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("dedupe_key", String(255), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("context_id", String(64), nullable=True),
    Column("creator_guid", String(64), nullable=True),
    Column("creator_name", String(255), nullable=True),
    Column("errors", JSON, nullable=False),
    Column("warnings", JSON, nullable=False),
    Column("result", JSON, nullable=False),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", UTCDateTime(), nullable=True),
    Column("run_after", UTCDateTime(), nullable=True),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("version", Integer, nullable=False),
    *_timestamps(),
    Index("ix_jobs_state_queue", "state", "queue"),
    Index("ix_jobs_target_state", "target_key", "state"),
)

job_queues = Table(
    "job_queues",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("concurrency", Integer, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", String(255), primary_key=True),
    Column("secret_hash", String(255), nullable=True),
    Column("authorized_grant_types", JSON, nullable=False),
    Column("authorities", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("secret", String(255), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)
