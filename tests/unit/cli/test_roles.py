"""Role names: cf CLI style and API style, any case."""

from __future__ import annotations

import pytest

from overcast.cli.errors import CliError
from overcast.cli.roles import cli_role_name, org_role_type, space_role_type


@pytest.mark.parametrize(
    ("name", "role_type"),
    [
        ("OrgManager", "organization_manager"),
        ("orgmanager", "organization_manager"),
        ("organization_manager", "organization_manager"),
        ("ORGANIZATION-MANAGER", "organization_manager"),
        ("OrgAuditor", "organization_auditor"),
        ("BillingManager", "organization_billing_manager"),
        ("OrgBillingManager", "organization_billing_manager"),
        ("organization_billing_manager", "organization_billing_manager"),
        ("OrgUser", "organization_user"),
        ("organization_user", "organization_user"),
    ],
)
def test_org_roles(name: str, role_type: str) -> None:
    assert org_role_type(name) == role_type


@pytest.mark.parametrize(
    ("name", "role_type"),
    [
        ("SpaceDeveloper", "space_developer"),
        ("space_developer", "space_developer"),
        ("spacedeveloper", "space_developer"),
        ("SpaceManager", "space_manager"),
        ("SpaceAuditor", "space_auditor"),
        ("SpaceSupporter", "space_supporter"),
        ("space_supporter", "space_supporter"),
    ],
)
def test_space_roles(name: str, role_type: str) -> None:
    assert space_role_type(name) == role_type


def test_a_space_role_is_not_an_org_role_and_the_error_lists_the_valid_ones() -> None:
    with pytest.raises(CliError, match="Valid org roles: OrgManager, OrgAuditor"):
        org_role_type("SpaceDeveloper")
    with pytest.raises(CliError, match="Unknown space role 'OrgManager'"):
        space_role_type("OrgManager")
    with pytest.raises(CliError):
        space_role_type("Developer")


def test_cli_names_for_display() -> None:
    assert cli_role_name("space_developer") == "SpaceDeveloper"
    assert cli_role_name("organization_billing_manager") == "BillingManager"
    assert cli_role_name("something_new") == "something_new"
