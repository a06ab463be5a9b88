"""An instance's environment, as Cloud Foundry gives it (DESIGN.md section 8).

Built from nothing: the cell's own environment may hold secrets and is never inherited."""

from __future__ import annotations

from overcast.bus.messages import InstanceSpec

BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Where CF tells apps to listen; they may bind CF_INSTANCE_IP instead.
VCAP_APP_HOST = "0.0.0.0"


def build_environment(
    spec: InstanceSpec, *, host: str, port: int, home: str, tmpdir: str
) -> dict[str, str]:
    """Defaults, then the spec's environment, then the per-instance variables again: an app
    variable may change PATH or LANG but never the port or identity the cell probes and
    routes to."""
    environment = {
        "PATH": BASE_PATH,
        "HOME": home,
        "TMPDIR": tmpdir,
        "LANG": "C.UTF-8",
        "MEMORY_LIMIT": f"{spec.memory_mb}m",
    }
    environment.update(spec.environment)
    environment.update(instance_variables(spec, host=host, port=port))
    return environment


def instance_variables(spec: InstanceSpec, *, host: str, port: int) -> dict[str, str]:
    return {
        "PORT": str(port),
        "CF_INSTANCE_INDEX": str(spec.index),
        "CF_INSTANCE_GUID": spec.instance_guid,
        "CF_INSTANCE_IP": host,
        "CF_INSTANCE_INTERNAL_IP": host,
        "CF_INSTANCE_PORT": str(port),
        "CF_INSTANCE_ADDR": f"{host}:{port}",
        "INSTANCE_INDEX": str(spec.index),
        "INSTANCE_GUID": spec.instance_guid,
        "VCAP_APP_PORT": str(port),
        "VCAP_APP_HOST": VCAP_APP_HOST,
    }
