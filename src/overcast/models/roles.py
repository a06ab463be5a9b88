"""CF roles and what each may do. Pure: callers pass the roles a user holds."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class RoleType(StrEnum):
    ORGANIZATION_USER = "organization_user"
    ORGANIZATION_AUDITOR = "organization_auditor"
    ORGANIZATION_MANAGER = "organization_manager"
    ORGANIZATION_BILLING_MANAGER = "organization_billing_manager"
    SPACE_AUDITOR = "space_auditor"
    SPACE_DEVELOPER = "space_developer"
    SPACE_MANAGER = "space_manager"
    SPACE_SUPPORTER = "space_supporter"

    @property
    def is_org_role(self) -> bool:
        return self.value.startswith("organization_")


@dataclass(frozen=True)
class Grant:
    """One role a user holds, reduced to what permission checks need."""

    type: RoleType
    org_guid: str | None = None
    space_guid: str | None = None
    # The org a space role lives in, so org-level visibility follows from space roles.
    space_org_guid: str | None = None


@dataclass(frozen=True)
class Permissions:
    """What one caller may see and do, computed once per request from their grants."""

    admin: bool = False
    grants: tuple[Grant, ...] = ()
    _org_roles: dict[str, frozenset[RoleType]] = field(default_factory=dict, compare=False)
    _space_roles: dict[str, frozenset[RoleType]] = field(default_factory=dict, compare=False)
    _space_orgs: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, grants: Iterable[Grant], *, admin: bool = False) -> Permissions:
        org_roles: dict[str, set[RoleType]] = {}
        space_roles: dict[str, set[RoleType]] = {}
        space_orgs: dict[str, str] = {}
        grant_list = tuple(grants)
        for grant in grant_list:
            if grant.type.is_org_role and grant.org_guid:
                org_roles.setdefault(grant.org_guid, set()).add(grant.type)
            elif grant.space_guid:
                space_roles.setdefault(grant.space_guid, set()).add(grant.type)
                if grant.space_org_guid:
                    space_orgs[grant.space_guid] = grant.space_org_guid
        return cls(
            admin=admin,
            grants=grant_list,
            _org_roles={k: frozenset(v) for k, v in org_roles.items()},
            _space_roles={k: frozenset(v) for k, v in space_roles.items()},
            _space_orgs=space_orgs,
        )

    # --- visibility -------------------------------------------------------------------------

    def visible_org_guids(self) -> frozenset[str] | None:
        """Orgs the caller can see; None means all (admin)."""
        if self.admin:
            return None
        return frozenset(self._org_roles) | frozenset(self._space_orgs.values())

    def managed_org_guids(self) -> frozenset[str]:
        return frozenset(
            org for org, roles in self._org_roles.items() if RoleType.ORGANIZATION_MANAGER in roles
        )

    def visible_space_guids(self) -> frozenset[str] | None:
        """Spaces the caller can see through a space role; org managers see more through
        `visible_space_org_guids`. None means all (admin)."""
        if self.admin:
            return None
        return frozenset(self._space_roles)

    def visible_space_org_guids(self) -> frozenset[str]:
        """Orgs in which the caller sees every space (org managers)."""
        return self.managed_org_guids()

    def can_see_org(self, org_guid: str) -> bool:
        visible = self.visible_org_guids()
        return visible is None or org_guid in visible

    def can_see_space(self, space_guid: str, org_guid: str) -> bool:
        if self.admin:
            return True
        return space_guid in self._space_roles or org_guid in self.managed_org_guids()

    # --- actions ----------------------------------------------------------------------------

    def org_roles(self, org_guid: str) -> frozenset[RoleType]:
        return self._org_roles.get(org_guid, frozenset())

    def space_roles(self, space_guid: str) -> frozenset[RoleType]:
        return self._space_roles.get(space_guid, frozenset())

    def can_manage_org(self, org_guid: str) -> bool:
        return self.admin or RoleType.ORGANIZATION_MANAGER in self.org_roles(org_guid)

    def can_manage_space(self, space_guid: str, org_guid: str) -> bool:
        return self.can_manage_org(org_guid) or RoleType.SPACE_MANAGER in self.space_roles(
            space_guid
        )

    def can_develop_in_space(self, space_guid: str) -> bool:
        """Create, change, start and stop apps; read their environment."""
        return self.admin or RoleType.SPACE_DEVELOPER in self.space_roles(space_guid)

    def can_see_space_secrets(self, space_guid: str) -> bool:
        return self.can_develop_in_space(space_guid)
