"""CF application manifests: parsing, every kind of problem (with its exact line), variables,
push flag overrides and rendering."""

from __future__ import annotations

from textwrap import dedent, indent
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overcast.models.errors import Unprocessable
from overcast.models.manifest import (
    MAX_DEPTH,
    MAX_MANIFEST_BYTES,
    AppManifest,
    Manifest,
    ManifestError,
    ManifestMetadata,
    ManifestProblem,
    ProcessManifest,
    RouteEntry,
    ServiceEntry,
    apply_flag_overrides,
    format_log_rate,
    format_memory,
    log_rate_in_bytes,
    memory_in_mb,
    parse_manifest,
    parse_var_flag,
    parse_vars_file,
    render_manifest,
)
from overcast.models.resources import HealthCheckType

Problem = tuple[int | None, str, str]


def problems_of(text: str, **kwargs: Any) -> list[Problem]:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, **kwargs)
    return [(p.line, p.path, p.message) for p in caught.value.problems]


def one_problem(text: str, **kwargs: Any) -> Problem:
    problems = problems_of(text, **kwargs)
    assert len(problems) == 1, problems
    return problems[0]


def app_text(body: str) -> str:
    """A one-app manifest; the body's first line is line 3."""
    return "applications:\n- name: app\n" + indent(dedent(body), "  ")


# --- parsing ------------------------------------------------------------------------------------

FULL = dedent(
    """\
    ---
    version: 1
    applications:
    - name: shop
      path: ./build
      instances: 2
      memory: 512M
      disk_quota: 2GB
      log-rate-limit-per-second: 16K
      buildpacks:
      - python_buildpack
      - nodejs_buildpack
      stack: cflinuxfs4
      command: python app.py
      health-check-type: http
      health-check-http-endpoint: /health
      health-check-invocation-timeout: 5
      timeout: 90
      env:
        GREETING: hello
        DEBUG: true
        RATIO: 1.50
        WORKERS: 4
        EMPTY: ""
      routes:
      - route: shop.example.com/api
        protocol: http2
        options:
          loadbalancing: least-connection
      - route: shop-tcp.example.com:1024
        protocol: tcp
      random-route: false
      default-route: true
      services:
      - shop-db
      - name: shop-cache
        binding_name: cache
        parameters:
          size: 3
          tags: [fast, small]
      metadata:
        labels:
          tier: frontend
          obsolete: null
        annotations:
          contact: team@example.com
      processes:
      - type: web
        instances: 3
      - type: worker
        command: python worker.py
        memory: 1g
        disk-quota: 512MB
        health-check-type: process
        timeout: 30
        log-rate-limit-per-second: -1
    """
)


def test_a_manifest_with_every_key() -> None:
    manifest = parse_manifest(FULL)

    assert manifest.version == 1
    assert manifest.applications == (
        AppManifest(
            name="shop",
            path="./build",
            instances=2,
            memory_in_mb=512,
            disk_in_mb=2048,
            log_rate_limit_in_bytes_per_second=16 * 1024,
            buildpacks=("python_buildpack", "nodejs_buildpack"),
            stack="cflinuxfs4",
            command="python app.py",
            health_check_type=HealthCheckType.HTTP,
            health_check_http_endpoint="/health",
            health_check_invocation_timeout=5,
            timeout=90,
            env={
                "GREETING": "hello",
                "DEBUG": "true",
                "RATIO": "1.5",
                "WORKERS": "4",
                "EMPTY": "",
            },
            routes=(
                RouteEntry("shop.example.com/api", "http2", "least-connection"),
                RouteEntry("shop-tcp.example.com:1024", "tcp"),
            ),
            random_route=False,
            default_route=True,
            services=(
                ServiceEntry("shop-db"),
                ServiceEntry(
                    "shop-cache",
                    parameters={"size": 3, "tags": ["fast", "small"]},
                    binding_name="cache",
                ),
            ),
            metadata=ManifestMetadata(
                labels={"tier": "frontend", "obsolete": None},
                annotations={"contact": "team@example.com"},
            ),
            processes=(
                ProcessManifest(type="web", instances=3),
                ProcessManifest(
                    type="worker",
                    command="python worker.py",
                    memory_in_mb=1024,
                    disk_in_mb=512,
                    health_check_type=HealthCheckType.PROCESS,
                    timeout=30,
                    log_rate_limit_in_bytes_per_second=-1,
                ),
            ),
        ),
    )


def test_lines_are_kept() -> None:
    app = parse_manifest(FULL).applications[0]

    assert app.line == 4
    assert [route.line for route in app.routes or ()] == [26, 30]
    assert [service.line for service in app.services or ()] == [35, 36]
    assert [process.line for process in app.processes or ()] == [48, 50]


def test_several_apps() -> None:
    manifest = parse_manifest(
        dedent(
            """\
            applications:
            - name: api
              memory: 1G
            - name: worker
              no-route: true
            """
        )
    )

    assert [(app.name, app.line) for app in manifest.applications] == [("api", 2), ("worker", 4)]
    assert manifest.applications[0].memory_in_mb == 1024
    assert manifest.applications[1].no_route is True
    assert manifest.applications[1].memory_in_mb is None


def test_keys_not_given_are_none_and_null_means_not_given() -> None:
    app = parse_manifest("applications:\n- name: app\n  instances:\n  env:\n").applications[0]

    assert app == AppManifest(name="app")
    assert app.instances is None
    assert app.env is None


def test_env_values_become_text_as_cf_makes_them() -> None:
    app = parse_manifest(
        app_text(
            """\
            env:
              A: yes
              B: 0x10
              C: 2.50
              D: 2024-01-31
              "ON": off
            """
        )
    ).applications[0]

    assert app.env == {"A": "true", "B": "16", "C": "2.5", "D": "2024-01-31", "ON": "false"}


def test_string_fields_take_numbers_as_written() -> None:
    app = parse_manifest("applications:\n- name: 0123\n  stack: 22\n").applications[0]

    assert (app.name, app.stack) == ("0123", "22")


def test_numeric_strings_count_as_whole_numbers() -> None:
    # CF's server reads "2" as 2; --var values are strings, so this is what makes them usable.
    assert parse_manifest(app_text('instances: "2"\n')).applications[0].instances == 2


def test_deprecated_forms() -> None:
    app = parse_manifest(
        app_text("buildpack: go_buildpack\ndisk-quota: 1G\nhealth-check-type: none\n")
    ).applications[0]

    assert app.buildpacks == ("go_buildpack",)
    assert app.disk_in_mb == 1024
    assert app.health_check_type == HealthCheckType.PROCESS


def test_an_anchor_without_alias_is_harmless() -> None:
    assert parse_manifest(app_text("memory: &mem 1G\n")).applications[0].memory_in_mb == 1024


# --- the web process ----------------------------------------------------------------------------


def test_the_web_process_takes_the_app_level_settings() -> None:
    app = parse_manifest(
        app_text("instances: 2\nmemory: 256M\ncommand: run\nhealth-check-type: port\n")
    ).applications[0]

    assert app.web_process() == ProcessManifest(
        type="web",
        instances=2,
        memory_in_mb=256,
        command="run",
        health_check_type=HealthCheckType.PORT,
    )


def test_a_web_entry_in_processes_overrides_field_by_field() -> None:
    app = parse_manifest(
        app_text(
            """\
            instances: 2
            memory: 256M
            disk_quota: 1G
            command: app-level
            processes:
            - type: worker
              instances: 9
            - type: web
              instances: 4
              command: web-level
              timeout: 10
            """
        )
    ).applications[0]

    web = app.web_process()
    assert web == ProcessManifest(
        type="web",
        instances=4,
        memory_in_mb=256,
        disk_in_mb=1024,
        command="web-level",
        timeout=10,
    )
    assert web.line == 10
    assert app.process("worker") == ProcessManifest(type="worker", instances=9)
    assert app.process("clock") is None


# --- problems -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "memroy: 1G\n",
            (3, "applications[0].memroy", 'unknown key "memroy"; did you mean "memory"?'),
        ),
        (
            "no_route: true\n",
            (3, "applications[0].no_route", 'unknown key "no_route"; did you mean "no-route"?'),
        ),
        ("colour: blue\n", (3, "applications[0].colour", 'unknown key "colour"')),
        (
            "processes:\n- type: web\n  comand: run\n",
            (
                5,
                "applications[0].processes[0].comand",
                'unknown key "comand"; did you mean "command"?',
            ),
        ),
        (
            "routes:\n- route: a.example.com\n  protcol: tcp\n",
            (
                5,
                "applications[0].routes[0].protcol",
                'unknown key "protcol"; did you mean "protocol"?',
            ),
        ),
        (
            "metadata:\n  label: {a: b}\n",
            (4, "applications[0].metadata.label", 'unknown key "label"; did you mean "labels"?'),
        ),
    ],
)
def test_unknown_keys_are_named_with_a_suggestion(body: str, expected: Problem) -> None:
    assert one_problem(app_text(body)) == expected


def test_an_unknown_top_level_key_and_no_applications() -> None:
    assert problems_of("aplications: []\n") == [
        (1, "aplications", 'unknown key "aplications"; did you mean "applications"?'),
        (1, "applications", "applications is required"),
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            'instances: "two"\n',
            (3, "applications[0].instances", 'instances must be a whole number, not "two"'),
        ),
        (
            "instances: 1.5\n",
            (3, "applications[0].instances", "instances must be a whole number, not 1.5"),
        ),
        (
            "instances: true\n",
            (3, "applications[0].instances", "instances must be a whole number, not true"),
        ),
        (
            "instances: -1\n",
            (3, "applications[0].instances", "instances must be at least 0, not -1"),
        ),
        ("timeout: 0\n", (3, "applications[0].timeout", "timeout must be at least 1, not 0")),
        ("stack: [a, b]\n", (3, "applications[0].stack", "stack must be a string, not a list")),
        (
            "command: {a: b}\n",
            (3, "applications[0].command", "command must be a string, not a mapping"),
        ),
        (
            "buildpacks: go\n",
            (3, "applications[0].buildpacks", 'buildpacks must be a list, not "go"'),
        ),
        (
            "buildpacks: [go, [x]]\n",
            (3, "applications[0].buildpacks[1]", "must be a string, not a list"),
        ),
        (
            "no-route: maybe\n",
            (3, "applications[0].no-route", 'no-route must be true or false, not "maybe"'),
        ),
        ("env: [A]\n", (3, "applications[0].env", "env must be a mapping, not a list")),
        (
            "routes: {route: a.b}\n",
            (3, "applications[0].routes", "routes must be a list, not a mapping"),
        ),
        (
            "routes: [a.b]\n",
            (3, "applications[0].routes[0]", 'a route must be a mapping, not "a.b"'),
        ),
        (
            "routes:\n- route: a.b\n  protocol: http3\n",
            (
                5,
                "applications[0].routes[0].protocol",
                'protocol must be one of http1, http2, tcp, not "http3"',
            ),
        ),
        (
            "routes:\n- route: a.b\n  options: {loadbalancing: random}\n",
            (
                5,
                "applications[0].routes[0].options.loadbalancing",
                'loadbalancing must be one of round-robin, least-connection, not "random"',
            ),
        ),
        (
            "routes:\n- route: a b\n",
            (4, "applications[0].routes[0].route", 'route must not contain spaces: "a b"'),
        ),
        ("routes:\n- protocol: tcp\n", (4, "applications[0].routes[0].route", "route is required")),
        (
            "health-check-type: tcp\n",
            (
                3,
                "applications[0].health-check-type",
                'health-check-type must be one of port, process, http, not "tcp"',
            ),
        ),
        (
            "health-check-http-endpoint: health\n",
            (
                3,
                "applications[0].health-check-http-endpoint",
                "health-check-http-endpoint must start with /",
            ),
        ),
        (
            "log-rate-limit-per-second: 5\n",
            (
                3,
                "applications[0].log-rate-limit-per-second",
                'invalid log-rate-limit-per-second "5"; '
                "use a number with a unit like 1K or 16M, or -1 for unlimited",
            ),
        ),
        (
            "env:\n  A: [1]\n",
            (4, "applications[0].env.A", "env A must be a string, number or boolean, not a list"),
        ),
        ("env:\n  A:\n", (4, "applications[0].env.A", 'env A has no value; quote "" for empty')),
        (
            "env:\n  VCAP_X: a\n",
            (4, "applications[0].env.VCAP_X", "Environment variable names cannot start with VCAP_"),
        ),
        (
            "services: [{binding_name: b}]\n",
            (3, "applications[0].services[0].name", "name is required"),
        ),
        (
            "services: [[db]]\n",
            (
                3,
                "applications[0].services[0]",
                "a service (a name or a mapping) must be a mapping, not a list",
            ),
        ),
        (
            "services: [{name: db, parameters: [1]}]\n",
            (
                3,
                "applications[0].services[0].parameters",
                "parameters must be a mapping, not a list",
            ),
        ),
        (
            "metadata:\n  labels:\n    tier: 1\n",
            (
                5,
                "applications[0].metadata.labels.tier",
                "must be a string or null, not 1 (quote it)",
            ),
        ),
        (
            "metadata:\n  labels:\n    -bad: x\n",
            (
                5,
                "applications[0].metadata.labels.-bad",
                "Metadata label key '-bad' must be 1-63 alphanumeric characters, '-', '_' or '.', "
                "starting and ending with an alphanumeric",
            ),
        ),
        (
            "processes: {type: web}\n",
            (3, "applications[0].processes", "processes must be a list, not a mapping"),
        ),
        (
            "processes:\n- instances: 2\n",
            (4, "applications[0].processes[0].type", "type is required"),
        ),
        (
            "processes:\n- type: ' '\n",
            (4, "applications[0].processes[0].type", "type must not be blank"),
        ),
    ],
)
def test_wrong_types_and_values(body: str, expected: Problem) -> None:
    assert one_problem(app_text(body)) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("12Q", 'invalid memory "12Q"; use a number with a unit like 256M or 1G'),
        ("1.5G", 'invalid memory "1.5G"; use a number with a unit like 256M or 1G'),
        ("G", 'invalid memory "G"; use a number with a unit like 256M or 1G'),
        ("-1M", 'invalid memory "-1M"; use a number with a unit like 256M or 1G'),
        ("1 G", 'invalid memory "1 G"; use a number with a unit like 256M or 1G'),
        ("0M", "memory must be at least 1M, not 0M"),
        ("256", "memory must be a number with a unit like 256M or 1G, not 256"),
        ('"256"', "memory must be a number with a unit like 256M or 1G, not 256"),
        ("[1G]", "memory must be a number with a unit, not a list"),
    ],
)
def test_invalid_memory(value: str, message: str) -> None:
    assert one_problem(app_text(f"memory: {value}\n")) == (3, "applications[0].memory", message)


def test_invalid_disk_quota_names_its_key() -> None:
    assert one_problem(app_text("disk_quota: 1024\n")) == (
        3,
        "applications[0].disk_quota",
        "disk_quota must be a number with a unit like 256M or 1G, not 1024",
    )


def test_both_disk_quota_spellings() -> None:
    assert one_problem(app_text("disk_quota: 1G\ndisk-quota: 2G\n")) == (
        4,
        "applications[0].disk-quota",
        "give disk_quota or disk-quota, not both",
    )


def test_both_buildpack_forms() -> None:
    assert one_problem(app_text("buildpacks: [a]\nbuildpack: b\n")) == (
        4,
        "applications[0].buildpack",
        "give buildpacks or buildpack (deprecated), not both",
    )


def test_duplicate_app_names_name_both_lines() -> None:
    text = "applications:\n- name: web\n- name: worker\n- name: web\n"

    assert one_problem(text) == (
        4,
        "applications[2].name",
        'duplicate application name "web" (lines 2 and 4)',
    )


def test_duplicate_process_types_name_both_lines() -> None:
    body = "processes:\n- type: web\n- type: worker\n- type: web\n  instances: 2\n"

    assert one_problem(app_text(body)) == (
        6,
        "applications[0].processes[2].type",
        'duplicate process type "web" (lines 4 and 6)',
    )


def test_a_key_given_twice() -> None:
    assert one_problem(app_text("memory: 1G\nmemory: 2G\n")) == (
        4,
        "applications[0].memory",
        'key "memory" is given twice (lines 3 and 4)',
    )


def test_a_missing_name() -> None:
    text = "applications:\n- name: a\n- memory: 1G\n  instances: 2\n"

    assert one_problem(text) == (3, "applications[1].name", "name is required")


def test_a_blank_or_bad_name() -> None:
    assert one_problem("applications:\n- name: ''\n") == (
        2,
        "applications[0].name",
        "name must not be blank",
    )
    assert one_problem('applications:\n- name: "a\\tb"\n') == (
        2,
        "applications[0].name",
        "Application name must not contain control characters",
    )


def test_routes_with_no_route() -> None:
    body = "routes:\n- route: a.example.com\nno-route: true\n"

    assert one_problem(app_text(body)) == (
        5,
        "applications[0].no-route",
        "routes and no-route: true cannot be used together",
    )
    # no-route: false says nothing against routes.
    assert parse_manifest(app_text("routes: [{route: a.b}]\nno-route: false\n"))


def test_an_http_endpoint_with_another_health_check_type() -> None:
    body = "health-check-type: port\nhealth-check-http-endpoint: /health\n"

    assert one_problem(app_text(body)) == (
        4,
        "applications[0].health-check-http-endpoint",
        "health-check-http-endpoint only applies to health-check-type http, not port",
    )


def test_an_http_endpoint_in_a_process_with_another_type() -> None:
    body = (
        "processes:\n- type: web\n  health-check-type: process\n  health-check-http-endpoint: /\n"
    )

    assert one_problem(app_text(body)) == (
        6,
        "applications[0].processes[0].health-check-http-endpoint",
        "health-check-http-endpoint only applies to health-check-type http, not process",
    )


def test_an_http_endpoint_without_a_type_is_allowed() -> None:
    app = parse_manifest(app_text("health-check-http-endpoint: /ready\n")).applications[0]

    assert app.health_check_http_endpoint == "/ready"
    assert app.health_check_type is None


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            "docker",
            "docker images are not supported by Overcast; push source with buildpacks",
        ),
        ("sidecars", "sidecars are not supported by Overcast"),
        ("lifecycle", "lifecycle is not supported by Overcast: apps always stage with buildpacks"),
        (
            "readiness-health-check-type",
            "readiness health checks are not supported by Overcast",
        ),
        (
            "host",
            "host was removed from CF manifests (cf CLI v7); list routes under routes",
        ),
    ],
)
def test_cf_keys_overcast_does_not_support(key: str, message: str) -> None:
    assert one_problem(app_text(f"{key}: x\n")) == (3, f"applications[0].{key}", message)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (1, "", "the manifest is empty; it needs an applications list")),
        ("---\n", (1, "", "the manifest is empty; it needs an applications list")),
        (
            "- name: a\n",
            (1, "", "a manifest must be a mapping with an applications list, not a list"),
        ),
        ("version: 1\n", (1, "applications", "applications is required")),
        (
            "applications:\n  name: a\n",
            (2, "applications", "applications must be a list, not a mapping"),
        ),
        (
            "applications: []\n",
            (1, "applications", "applications must list at least one application"),
        ),
        (
            "applications:\n- web\n",
            (2, "applications[0]", 'an application must be a mapping (name, memory...), not "web"'),
        ),
        (
            "version: 2\napplications: [{name: a}]\n",
            (1, "version", "only manifest version 1 is supported, not 2"),
        ),
        (
            "inherit: base.yml\napplications: [{name: a}]\n",
            (1, "inherit", "inherit was removed from CF manifests (cf CLI v7)"),
        ),
        (
            "applications:\n- name: a\n  instances: " + "9" * 5000 + "\n",
            (3, "applications[0].instances", 'unreadable number "' + "9" * 57 + '..."'),
        ),
        (
            "applications:\n- name: a\n  [x]: 1\n",
            (3, "applications[0]", "a key must be a string, not a list or mapping"),
        ),
    ],
)
def test_manifest_shape_problems(text: str, expected: Problem) -> None:
    assert one_problem(text) == expected


def test_every_problem_is_reported_at_once() -> None:
    text = dedent(
        """\
        applications:
        - name: web
          memroy: 1G
          instances: two
          memory: 12Q
        - memory: 1G
        - name: web
          processes:
          - type: web
          - type: web
        """
    )

    assert problems_of(text) == [
        (3, "applications[0].memroy", 'unknown key "memroy"; did you mean "memory"?'),
        (4, "applications[0].instances", 'instances must be a whole number, not "two"'),
        (
            5,
            "applications[0].memory",
            'invalid memory "12Q"; use a number with a unit like 256M or 1G',
        ),
        (6, "applications[1].name", "name is required"),
        (7, "applications[2].name", 'duplicate application name "web" (lines 2 and 7)'),
        (10, "applications[2].processes[1].type", 'duplicate process type "web" (lines 9 and 10)'),
    ]


def test_the_error_reads_well() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(app_text("memory: 12Q\ncolour: red\n"), source="ci/manifest.yml")

    assert str(caught.value) == (
        'ci/manifest.yml line 3, applications[0].memory: invalid memory "12Q"; '
        "use a number with a unit like 256M or 1G\n"
        'ci/manifest.yml line 4, applications[0].colour: unknown key "colour"'
    )
    assert isinstance(caught.value, ValueError)
    # An Unprocessable too: the API answers it with CF's 422.
    assert isinstance(caught.value, Unprocessable)
    assert caught.value.detail == str(caught.value)


def test_problem_descriptions_without_line_or_source() -> None:
    assert ManifestProblem(None, "flags", "bad").describe(None) == "flags: bad"
    assert ManifestProblem(2, "", "bad").describe("m.yml") == "m.yml line 2: bad"
    assert ManifestProblem(None, "", "bad").describe(None) == "bad"


# --- hostile or broken YAML ---------------------------------------------------------------------


def test_malformed_yaml_gives_its_line() -> None:
    text = "applications:\n- name: a\n  memory: 1G\n    instances: 2\n"

    line, path, message = one_problem(text)
    assert (line, path) == (4, "")
    assert message.startswith("invalid YAML: mapping values are not allowed here")


def test_an_unclosed_flow_list() -> None:
    line, _, message = one_problem("applications: [\n  {name: a}\n")

    assert line == 3
    assert message.startswith("invalid YAML: ")


def test_unprintable_characters() -> None:
    line, _, message = one_problem("applications:\n- name: a\x07\n")

    assert line == 2
    assert message.startswith("invalid YAML: special characters are not allowed")


def test_several_documents() -> None:
    line, _, message = one_problem("applications: [{name: a}]\n---\napplications: [{name: b}]\n")

    assert line == 2
    assert "expected a single document" in message


def test_aliases_are_refused() -> None:
    text = "applications:\n- name: a\n  env: &env {A: b}\n- name: b\n  env: *env\n"

    assert one_problem(text) == (
        5,
        "",
        "aliases (*name) are not allowed in a manifest; write the value out",
    )


def test_an_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 20)]
    line, _, message = one_problem("\n".join(lines) + "\n")

    assert line == 2
    assert message.startswith("aliases")


def test_oversized_text_is_refused_before_parsing() -> None:
    text = "applications: [{name: a}]\n#" + "x" * MAX_MANIFEST_BYTES

    assert one_problem(text) == (None, "", "too large: the limit is 1 MiB")


def test_multibyte_text_is_measured_in_bytes() -> None:
    text = "applications: [{name: a}]\n#" + "é" * (MAX_MANIFEST_BYTES // 2)

    assert one_problem(text) == (None, "", "too large: the limit is 1 MiB")


def test_deep_nesting_is_refused() -> None:
    text = "applications: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"

    line, path, message = one_problem(text)
    assert (line, path) == (1, "")
    assert message == f"nested deeper than {MAX_DEPTH} levels"


def test_custom_tags_are_not_constructed() -> None:
    app = parse_manifest(app_text("command: !!python/object:os.system echo\n")).applications[0]

    assert app.command == "echo"


# --- variables ----------------------------------------------------------------------------------


def test_a_whole_value_variable_keeps_its_type() -> None:
    text = app_text("instances: ((count))\nroutes: ((routes))\nenv:\n  DEBUG: ((debug))\n")
    variables = {"count": 3, "routes": [{"route": "a.example.com"}], "debug": True}

    app = parse_manifest(text, variables=variables).applications[0]

    assert app.instances == 3
    assert app.routes == (RouteEntry("a.example.com"),)
    assert app.routes[0].line == 4
    assert app.env == {"DEBUG": "true"}


def test_a_variable_inside_a_string_is_replaced_by_its_text() -> None:
    text = "applications:\n- name: ((app))-((env))\n  memory: ((mem))M\n  command: run ((n)) ((x\n"

    app = parse_manifest(text, variables={"app": "shop", "env": "prod", "mem": 512, "n": 1.5})
    first = app.applications[0]

    assert (first.name, first.memory_in_mb, first.command) == ("shop-prod", 512, "run 1.5 ((x")


def test_var_flag_strings_work_for_numbers() -> None:
    text = app_text("instances: ((n))\n")

    assert parse_manifest(text, variables={"n": "4"}).applications[0].instances == 4


def test_keys_are_not_interpolated() -> None:
    text = app_text("services:\n- name: db\n  parameters: {((k)): ((v))}\n")

    app = parse_manifest(text, variables={"k": "key", "v": "value"}).applications[0]

    assert app.services == (ServiceEntry("db", parameters={"((k))": "value"}),)


def test_missing_variables_are_all_named_with_their_first_line() -> None:
    text = dedent(
        """\
        applications:
        - name: ((name))
          memory: ((memory))
          env:
            A: ((name))
            B: x-((suffix))
        """
    )

    assert problems_of(text, variables={"memory": "1G"}) == [
        (
            2,
            "applications[0].name",
            "variable ((name)) has no value; give it with --var or a vars file",
        ),
        (
            6,
            "applications[0].env.B",
            "variable ((suffix)) has no value; give it with --var or a vars file",
        ),
    ]


def test_a_list_cannot_go_inside_a_string() -> None:
    assert one_problem(app_text("command: run ((args))\n"), variables={"args": [1, 2]}) == (
        3,
        "applications[0].command",
        "variable ((args)) holds a list, which cannot be put inside a string; "
        "use it as the whole value",
    )


def test_a_variable_value_is_checked_like_any_other() -> None:
    assert one_problem(app_text("memory: ((mem))\n"), variables={"mem": 1024}) == (
        3,
        "applications[0].memory",
        "memory must be a number with a unit like 256M or 1G, not 1024",
    )


def test_vars_files() -> None:
    text = "count: 3\nname: shop\nroutes:\n- route: a.b\nnothing:\nwhen: 2024-01-31\n"

    assert parse_vars_file(text) == {
        "count": 3,
        "name": "shop",
        "routes": [{"route": "a.b"}],
        "nothing": None,
        "when": "2024-01-31",
    }
    assert parse_vars_file("") == {}
    assert parse_vars_file("# nothing\n") == {}
    # Not interpolated: a vars file's ((text)) is just text.
    assert parse_vars_file("a: ((b))\n") == {"a": "((b))"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", (1, "", "a vars file must be a mapping of names to values, not a list")),
        (
            "just text\n",
            (1, "", 'a vars file must be a mapping of names to values, not "just text"'),
        ),
        (
            "a: &x 1\nb: *x\n",
            (2, "", "aliases (*name) are not allowed in a manifest; write the value out"),
        ),
    ],
)
def test_bad_vars_files(text: str, expected: Problem) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_vars_file(text, source="vars.yml")

    assert [(p.line, p.path, p.message) for p in caught.value.problems] == [expected]
    assert str(caught.value).startswith("vars.yml line")


def test_var_flags() -> None:
    assert parse_var_flag("name=value") == ("name", "value")
    assert parse_var_flag("url=http://x/?a=b") == ("url", "http://x/?a=b")
    assert parse_var_flag("empty=") == ("empty", "")
    for bad in ("novalue", "=value"):
        with pytest.raises(ManifestError) as caught:
            parse_var_flag(bad)
        assert caught.value.problems[0].path == "flags"
        assert str(caught.value) == f'flags: --var "{bad}" must be name=value'


# --- push flags ---------------------------------------------------------------------------------

TWO_APPS = parse_manifest("applications:\n- name: api\n  instances: 2\n- name: worker\n")


def flag_error(manifest: Manifest | None, **flags: Any) -> str:
    with pytest.raises(ManifestError) as caught:
        apply_flag_overrides(manifest, **flags)
    assert {problem.path for problem in caught.value.problems} == {"flags"}
    return str(caught.value)


def test_flags_without_a_manifest_make_the_app() -> None:
    manifest = apply_flag_overrides(None, app_name="shop", memory_mb=512, buildpacks=["go"])

    assert manifest == Manifest(
        applications=(AppManifest(name="shop", memory_in_mb=512, buildpacks=("go",)),)
    )
    assert flag_error(None, instances=2) == "flags: name the app to push, or give a manifest"


def test_flags_apply_to_a_one_app_manifest_and_the_name_renames_it() -> None:
    manifest = parse_manifest(app_text("instances: 2\nstack: old\n"))

    changed = apply_flag_overrides(manifest, app_name="renamed", instances=5, stack="new")

    assert changed.applications == (AppManifest(name="renamed", instances=5, stack="new"),)
    assert apply_flag_overrides(manifest) == manifest


def test_several_apps_without_flags_are_pushed_whole() -> None:
    assert apply_flag_overrides(TWO_APPS) == TWO_APPS


def test_an_app_name_picks_one_of_several_apps() -> None:
    assert apply_flag_overrides(TWO_APPS, app_name="worker").applications == (
        AppManifest(name="worker"),
    )
    assert apply_flag_overrides(TWO_APPS, app_name="api", instances=7).applications == (
        AppManifest(name="api", instances=7),
    )


def test_flags_with_several_apps_need_an_app_name() -> None:
    assert flag_error(TWO_APPS, memory_mb=256) == (
        "flags: flags cannot be applied when pushing several apps from a manifest; name one app"
    )
    assert flag_error(TWO_APPS, no_route=True).startswith("flags: flags cannot be applied")


def test_an_app_name_not_in_a_several_app_manifest() -> None:
    assert flag_error(TWO_APPS, app_name="web") == (
        'flags: app "web" is not in the manifest (it has api, worker)'
    )


def test_no_route_clears_routes() -> None:
    manifest = parse_manifest(app_text("routes: [{route: a.b}]\nrandom-route: true\n"))

    app = apply_flag_overrides(manifest, no_route=True).applications[0]

    assert (app.routes, app.no_route, app.random_route) == (None, True, None)


def test_random_route_undoes_no_route() -> None:
    manifest = parse_manifest(app_text("no-route: true\n"))

    app = apply_flag_overrides(manifest, random_route=True).applications[0]

    assert (app.no_route, app.random_route) == (None, True)


def test_flags_beat_a_web_entry_in_processes() -> None:
    body = "instances: 1\nprocesses:\n- type: web\n  instances: 3\n- type: worker\n  instances: 2\n"
    manifest = parse_manifest(app_text(body))

    app = apply_flag_overrides(manifest, instances=6, command="serve").applications[0]

    assert app.web_process().instances == 6
    assert app.web_process().command == "serve"
    assert app.process("worker") == ProcessManifest(type="worker", instances=2)


def test_a_health_check_type_flag_drops_the_http_endpoint() -> None:
    manifest = parse_manifest(app_text("health-check-type: http\nhealth-check-http-endpoint: /h\n"))

    app = apply_flag_overrides(manifest, health_check_type="port").applications[0]
    kept = apply_flag_overrides(manifest, health_check_type="http").applications[0]

    assert (app.health_check_type, app.health_check_http_endpoint) == (HealthCheckType.PORT, None)
    assert kept.health_check_http_endpoint == "/h"
    # A flag result renders into a manifest that parses back.
    assert parse_manifest(render_manifest(Manifest(applications=(app,)))).applications == (app,)


def test_bad_flag_values_are_all_reported() -> None:
    message = flag_error(
        None,
        app_name=" ",
        instances=-1,
        memory_mb=0,
        disk_mb=0,
        health_check_type="tcp",
        no_route=True,
        random_route=True,
    )

    assert message.splitlines() == [
        "flags: --instances must be at least 0, not -1",
        "flags: --memory must be at least 1, not 0",
        "flags: --disk must be at least 1, not 0",
        'flags: --health-check-type must be one of port, process, http, not "tcp"',
        "flags: --no-route and --random-route cannot be used together",
        "flags: the app name must not be blank",
    ]


# --- sizes --------------------------------------------------------------------------------------


def test_memory_helpers() -> None:
    assert memory_in_mb("256M") == 256
    assert memory_in_mb("256mb") == 256
    assert memory_in_mb("2G") == 2048
    assert memory_in_mb(" 1gb ") == 1024
    assert memory_in_mb("1T") == 1024 * 1024
    assert memory_in_mb("1tb") == 1024 * 1024
    assert format_memory(256) == "256M"
    assert format_memory(1024) == "1G"
    assert format_memory(1536) == "1536M"
    with pytest.raises(ValueError, match="disk must be a number with a unit"):
        memory_in_mb("10", what="disk")


def test_log_rate_helpers() -> None:
    assert log_rate_in_bytes("-1") == -1
    assert log_rate_in_bytes("0B") == 0
    assert log_rate_in_bytes("1K") == 1024
    assert log_rate_in_bytes("1kb") == 1024
    assert log_rate_in_bytes("16M") == 16 * 1024 * 1024
    assert format_log_rate(-1) == -1
    assert format_log_rate(0) == "0B"
    assert format_log_rate(1536) == "1536B"
    assert format_log_rate(16 * 1024 * 1024) == "16M"
    app = parse_manifest(app_text("log-rate-limit-per-second: -1\n")).applications[0]
    assert app.log_rate_limit_in_bytes_per_second == -1


# --- rendering ----------------------------------------------------------------------------------


def test_render_in_cf_shape() -> None:
    manifest = Manifest(
        applications=(
            AppManifest(
                name="shop",
                processes=(ProcessManifest(type="worker", memory_in_mb=2048),),
                env={"DEBUG": "true"},
                memory_in_mb=1024,
                disk_in_mb=1536,
                instances=2,
                routes=(RouteEntry("shop.example.com", loadbalancing="round-robin"),),
                services=(ServiceEntry("db"), ServiceEntry("cache", binding_name="c")),
                health_check_type=HealthCheckType.HTTP,
            ),
        )
    )

    assert render_manifest(manifest) == dedent(
        """\
        ---
        applications:
        - name: shop
          instances: 2
          memory: 1G
          disk_quota: 1536M
          health-check-type: http
          env:
            DEBUG: 'true'
          routes:
          - route: shop.example.com
            options:
              loadbalancing: round-robin
          services:
          - db
          - name: cache
            binding_name: c
          processes:
          - type: worker
            memory: 2G
        """
    )


def test_the_full_manifest_renders_and_parses_back() -> None:
    manifest = parse_manifest(FULL)

    assert parse_manifest(render_manifest(manifest)) == manifest


# Text of any kind but the ((variable)) parentheses, which a re-parse would interpolate.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="()"), max_size=20)
NAME = TEXT.filter(lambda text: bool(text.strip()) and all(ord(ch) >= 32 for ch in text))
ROUTE = st.from_regex(r"[a-z0-9][a-z0-9.:/-]{0,20}", fullmatch=True)
ENV_NAME = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: not name.startswith("VCAP_") and name != "PORT"
)
LABEL_KEY = st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,8}[a-z0-9])?", fullmatch=True)
LABEL_VALUE = st.none() | st.just("") | LABEL_KEY
SIZE = st.none() | st.integers(min_value=1, max_value=4 * 1024 * 1024)
LOG_RATE = st.none() | st.just(-1) | st.integers(min_value=0, max_value=2**40)
POSITIVE = st.none() | st.integers(min_value=1, max_value=3600)
JSON_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
HEALTH_CHECK = st.tuples(st.none() | st.sampled_from(HealthCheckType), st.none()) | st.tuples(
    st.none() | st.just(HealthCheckType.HTTP), st.from_regex(r"/[a-z/]{0,10}", fullmatch=True)
)


def _process_settings(draw: st.DrawFn) -> dict[str, Any]:
    check_type, endpoint = draw(HEALTH_CHECK)
    return {
        "instances": draw(st.none() | st.integers(min_value=0, max_value=100)),
        "memory_in_mb": draw(SIZE),
        "disk_in_mb": draw(SIZE),
        "log_rate_limit_in_bytes_per_second": draw(LOG_RATE),
        "command": draw(st.none() | TEXT),
        "health_check_type": check_type,
        "health_check_http_endpoint": endpoint,
        "health_check_invocation_timeout": draw(POSITIVE),
        "timeout": draw(POSITIVE),
    }


@st.composite
def processes(draw: st.DrawFn) -> ProcessManifest:
    return ProcessManifest(type=draw(NAME), **_process_settings(draw))


@st.composite
def apps(draw: st.DrawFn, name: str) -> AppManifest:
    no_route = draw(st.none() | st.booleans())
    routes = st.builds(
        RouteEntry,
        ROUTE,
        st.none() | st.sampled_from(["http1", "http2", "tcp"]),
        st.none() | st.sampled_from(["round-robin", "least-connection"]),
    )
    services = st.builds(
        ServiceEntry,
        NAME,
        st.none() | st.dictionaries(TEXT, JSON_VALUE, max_size=3),
        st.none() | TEXT,
    )
    metadata = st.builds(
        ManifestMetadata,
        st.none() | st.dictionaries(LABEL_KEY, LABEL_VALUE, max_size=3),
        st.none() | st.dictionaries(LABEL_KEY, st.none() | TEXT, max_size=3),
    )
    return AppManifest(
        name=name,
        path=draw(st.none() | TEXT),
        buildpacks=draw(st.none() | st.lists(TEXT, max_size=3).map(tuple)),
        stack=draw(st.none() | TEXT),
        env=draw(st.none() | st.dictionaries(ENV_NAME, TEXT, max_size=4)),
        routes=None if no_route else draw(st.none() | st.lists(routes, max_size=3).map(tuple)),
        no_route=no_route,
        random_route=draw(st.none() | st.booleans()),
        default_route=draw(st.none() | st.booleans()),
        services=draw(st.none() | st.lists(services, max_size=3).map(tuple)),
        metadata=draw(st.none() | metadata),
        processes=draw(
            st.none()
            | st.lists(processes(), max_size=3, unique_by=lambda process: process.type).map(tuple)
        ),
        **_process_settings(draw),
    )


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    names = draw(st.lists(NAME, min_size=1, max_size=3, unique=True))
    return Manifest(applications=tuple(draw(apps(name)) for name in names))


@settings(deadline=None)
@given(manifests())
def test_render_then_parse_gives_the_manifest_back(manifest: Manifest) -> None:
    assert parse_manifest(render_manifest(manifest)) == manifest
