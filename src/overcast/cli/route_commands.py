"""routes, map-route, unmap-route, delete-route, domains, create-domain."""

from __future__ import annotations

from typing import Annotated

import typer

from overcast.cli import render
from overcast.cli.app_commands import AppName, find_app
from overcast.cli.context import add_commands, current
from overcast.cli.errors import CliError
from overcast.cli.org_commands import find_org
from overcast.cli.prompts import confirm_deletion
from overcast.client import OvercastClient
from overcast.client.resources import Domain, Route

DELETE_TIMEOUT_SECONDS = 120.0
WEB = "web"

DomainName = Annotated[str, typer.Argument(help="Domain of the route, e.g. apps.example.com.")]
Hostname = Annotated[
    str,
    typer.Option("-n", "--hostname", help="Host of the route (without one: the domain itself)."),
]
PathOption = Annotated[str, typer.Option("--path", help="Path of the route, e.g. /api.")]
Force = Annotated[bool, typer.Option("-f", "--force", help="Do not ask for confirmation.")]


def route_text(host: str, domain: str, path: str) -> str:
    """How a route is written: host.domain/path (domain/path without a host)."""
    return f"{host}.{domain}{path}" if host else f"{domain}{path}"


def normalize_path(path: str) -> str:
    """`api` and `/api` name the same path (as in cf); empty means none."""
    return path if not path or path.startswith("/") else f"/{path}"


def find_domain(client: OvercastClient, name: str) -> Domain:
    found = client.domain_by_name(name)
    if found is None:
        raise CliError(f"Domain '{name}' not found")
    return found


def _domain_guid(route: Route) -> str:
    data = route["relationships"]["domain"]["data"]
    return data["guid"] if data else ""


def _find_route(client: OvercastClient, domain: Domain, host: str, path: str) -> Route:
    found = client.find_route(domain["guid"], host, path)
    if found is None:
        raise CliError(f"Route {route_text(host, domain['name'], path)} does not exist")
    return found


def routes() -> None:
    """List the routes of the targeted space and the apps they send traffic to."""
    ctx = current()
    space = ctx.require_space()
    with ctx.client() as client:
        found = client.list_routes(space_guids=[space.guid])
        domain_guids = sorted({_domain_guid(route) for route in found})
        domains = {
            domain["guid"]: domain["name"]
            for domain in (client.list_domains(guids=domain_guids) if found else [])
        }
        apps = {app["guid"]: app["name"] for app in client.list_apps(space_guid=space.guid)}
    if not found:
        render.line(f"No routes in space {space.name}.")
        return

    def row(route: Route) -> tuple[str, str, str, str, str, str]:
        domain_guid = _domain_guid(route)
        mapped = sorted(
            {apps.get(d["app"]["guid"], d["app"]["guid"]) for d in route["destinations"]}
        )
        return (
            route["host"],
            domains.get(domain_guid, domain_guid),
            "" if route["port"] is None else str(route["port"]),
            route["path"],
            route["protocol"],
            ", ".join(mapped),
        )

    render.table(("host", "domain", "port", "path", "protocol", "apps"), map(row, found))


def map_route(
    app: AppName, domain: DomainName, hostname: Hostname = "", path: PathOption = ""
) -> None:
    """Send a route's traffic to an app's web process (the route is created when missing)."""
    ctx = current()
    space = ctx.require_space()
    path = normalize_path(path)
    with ctx.client() as client:
        found_app = find_app(ctx, client, app)
        found_domain = find_domain(client, domain)
        text = route_text(hostname.lower(), found_domain["name"], path)
        route = client.find_route(found_domain["guid"], hostname, path)
        if route is None:
            route = client.create_route(space.guid, found_domain["guid"], host=hostname, path=path)
            render.line(f"Created route {text}.")
        already = any(
            d["app"]["guid"] == found_app["guid"] and d["app"]["process"]["type"] == WEB
            for d in route["destinations"]
        )
        if not already:
            client.add_route_destinations(route["guid"], [found_app["guid"]], process_type=WEB)
    if already:
        render.line(f"Route {text} is already mapped to app {app}.")
    else:
        render.line(f"Mapped route {text} to app {app}.")


def unmap_route(
    app: AppName, domain: DomainName, hostname: Hostname = "", path: PathOption = ""
) -> None:
    """Stop sending a route's traffic to an app (the route itself stays)."""
    ctx = current()
    path = normalize_path(path)
    with ctx.client() as client:
        found_app = find_app(ctx, client, app)
        found_domain = find_domain(client, domain)
        route = _find_route(client, found_domain, hostname, path)
        text = route_text(route["host"], found_domain["name"], route["path"])
        mapped = [d for d in route["destinations"] if d["app"]["guid"] == found_app["guid"]]
        for destination in mapped:
            client.remove_route_destination(route["guid"], destination["guid"])
    if mapped:
        render.line(f"Unmapped route {text} from app {app}.")
    else:
        render.line(f"Route {text} is not mapped to app {app}.")


def delete_route(
    domain: DomainName, hostname: Hostname = "", path: PathOption = "", force: Force = False
) -> None:
    """Delete a route (every app mapped to it stops receiving its traffic); waits for it."""
    ctx = current()
    path = normalize_path(path)
    with ctx.client() as client:
        found_domain = find_domain(client, domain)
        route = _find_route(client, found_domain, hostname, path)
        text = route_text(route["host"], found_domain["name"], route["path"])
        if not confirm_deletion(f"route {text}", force=force):
            render.line("Nothing deleted.")
            return
        client.wait_for_job(client.delete_route(route["guid"]), timeout=DELETE_TIMEOUT_SECONDS)
    render.line(f"Deleted route {text}.")


def domains() -> None:
    """List the domains apps can have routes in: shared ones, and your orgs' private ones."""
    with current().client() as client:
        found = client.list_domains()
        owned = any(_owner_guid(domain) for domain in found)
        orgs = {org["guid"]: org["name"] for org in client.list_orgs()} if owned else {}
    if not found:
        render.line("No domains.")
        return
    rows = []
    for domain in found:
        owner = _owner_guid(domain)
        rows.append(
            (
                domain["name"],
                "private" if owner else "shared",
                "yes" if domain["internal"] else "no",
                orgs.get(owner, owner) if owner else "",
            )
        )
    render.table(("name", "availability", "internal", "org"), rows)


def _owner_guid(domain: Domain) -> str:
    relationship = domain["relationships"].get("organization")
    data = relationship.get("data") if isinstance(relationship, dict) else None
    return str(data["guid"]) if isinstance(data, dict) else ""


def create_domain(
    name: Annotated[str, typer.Argument(help="Domain name, e.g. apps.example.com.")],
    org: Annotated[
        str | None,
        typer.Option(
            "-o", "--org", help="Make it a private domain of this org (without: a shared one)."
        ),
    ] = None,
) -> None:
    """Create a shared domain (admins) or a private domain of an org (its managers)."""
    with current().client() as client:
        owner = find_org(client, org) if org is not None else None
        created = client.create_domain(name, org_guid=owner["guid"] if owner else None)
    if owner is not None:
        render.line(f"Created private domain {created['name']} for org {owner['name']}.")
    else:
        render.line(f"Created shared domain {created['name']}.")


def register(app: typer.Typer) -> None:
    add_commands(
        app,
        "Routes and domains",
        {
            "routes": routes,
            "map-route": map_route,
            "unmap-route": unmap_route,
            "delete-route": delete_route,
            "domains": domains,
            "create-domain": create_domain,
        },
    )
