"""Role names: the cf CLI's (OrgManager, SpaceDeveloper, ...) and the API's role types
(organization_manager, space_developer, ...) are both accepted, in any case."""

from __future__ import annotations

import re

from overcast.cli.errors import CliError

# API role type -> the name the cf CLI uses for it.
ORG_ROLES = {
    "organization_manager": "OrgManager",
    "organization_auditor": "OrgAuditor",
    "organization_billing_manager": "BillingManager",
    "organization_user": "OrgUser",
}
SPACE_ROLES = {
    "space_manager": "SpaceManager",
    "space_developer": "SpaceDeveloper",
    "space_auditor": "SpaceAuditor",
    "space_supporter": "SpaceSupporter",
}
# Spellings seen in the wild that the squashed forms below do not already cover.
_ALIASES = {"orgbillingmanager": "organization_billing_manager"}


def _squash(name: str) -> str:
    """OrgManager, org-manager, organization_manager -> orgmanager."""
    squashed = re.sub(r"[^a-z]", "", name.lower())
    return (
        "org" + squashed[len("organization") :] if squashed.startswith("organization") else squashed
    )


def _lookup(name: str, roles: dict[str, str]) -> str | None:
    squashed = _squash(name)
    alias = _ALIASES.get(squashed)
    if alias in roles:
        return alias
    for role_type, cli_name in roles.items():
        if squashed in (_squash(role_type), _squash(cli_name)):
            return role_type
    return None


def _resolve(name: str, roles: dict[str, str], scope: str) -> str:
    role_type = _lookup(name, roles)
    if role_type is None:
        valid = ", ".join(roles.values())
        raise CliError(f"Unknown {scope} role '{name}'. Valid {scope} roles: {valid}")
    return role_type


def org_role_type(name: str) -> str:
    """`OrgManager` / `organization_manager` -> `organization_manager`."""
    return _resolve(name, ORG_ROLES, "org")


def space_role_type(name: str) -> str:
    """`SpaceDeveloper` / `space_developer` -> `space_developer`."""
    return _resolve(name, SPACE_ROLES, "space")


def cli_role_name(role_type: str) -> str:
    """`space_developer` -> `SpaceDeveloper` (unknown types are shown as they are)."""
    return ORG_ROLES.get(role_type) or SPACE_ROLES.get(role_type) or role_type
