"""Which buildpack stages an app: the built-in ones in their order, detection by position, and
requested buildpacks skipping detection (the last one's release wins)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from overcast.staging.runner import (
    NO_APP_DETECTED,
    STEP_PATH,
    Buildpack,
    StagingError,
    builtin_buildpacks,
    stage,
)


def test_builtin_buildpacks_in_detection_order() -> None:
    buildpacks = builtin_buildpacks()
    assert [(b.name, b.position) for b in buildpacks] == [
        ("python", 1),
        ("nodejs", 2),
        ("static", 3),
        ("procfile", 4),
    ]
    for buildpack in buildpacks:
        assert buildpack.version == "1.0.0"
        for script in ("detect", "compile", "release"):
            path = buildpack.path / "bin" / script
            assert path.is_file(), path
            assert path.read_text().startswith("#!"), path


def _detected(app: Path) -> str | None:
    """The first built-in buildpack whose bin/detect accepts `app`, as the runner asks."""
    for buildpack in builtin_buildpacks():
        result = subprocess.run(
            [str(buildpack.path / "bin" / "detect"), str(app)],
            env={"PATH": STEP_PATH},
            capture_output=True,
            text=True,
        )
        if result.returncode == 0:
            assert result.stdout.startswith(f"{buildpack.name} ")
            return buildpack.name
    return None


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"requirements.txt": ""}, "python"),
        ({"pyproject.toml": "[project]\nname='x'\n"}, "python"),
        ({"Procfile": "worker: python3 worker.py\n"}, "python"),
        ({"Procfile": "web: gunicorn app:app\n"}, "python"),
        ({"requirements.txt": "", "package.json": "{}"}, "python"),
        ({"package.json": "{}", "index.html": ""}, "nodejs"),
        ({"package.json": "{}", "Procfile": "web: node x.js\n"}, "nodejs"),
        ({"index.html": "<p>hi</p>"}, "static"),
        ({"Staticfile": "", "Procfile": "web: ./serve\n"}, "static"),
        ({"Procfile": "web: ./run.sh\n"}, "procfile"),
        ({"Procfile": "# python comment: python\nweb: ./run\n"}, "procfile"),
        ({"README.md": "python"}, None),
    ],
)
def test_builtin_detection(tmp_path: Path, files: dict[str, str], expected: str | None) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    assert _detected(tmp_path) == expected


def _buildpack(root: Path, name: str, position: int, *, detects: bool, web: str) -> Buildpack:
    """A bash buildpack that records its steps in the app's steps.log."""
    path = root / name
    (path / "bin").mkdir(parents=True)
    scripts = {
        "detect": f"echo '{name} detect' >> \"$1/steps.log\"; echo {name} 9.9; "
        + ("exit 0" if detects else "exit 1"),
        "compile": f"echo '{name} compile' >> \"$1/steps.log\"; echo compiling {name}",
        "release": f"echo '{name} release' >> \"$1/steps.log\"; "
        f"printf -- '---\\ndefault_process_types:\\n  web: {web}\\n'",
    }
    for script, body in scripts.items():
        (path / "bin" / script).write_text(f"#!/bin/bash\nset -e\n{body}\n")
        # no chmod: the runner makes its private copies executable
    return Buildpack(name=name, path=path, position=position)


@pytest.fixture
def fakes(tmp_path: Path) -> list[Buildpack]:
    root = tmp_path / "buildpacks"
    return [
        _buildpack(root, "third", 3, detects=True, web="third-web"),
        _buildpack(root, "first", 1, detects=False, web="first-web"),
        _buildpack(root, "second", 2, detects=True, web="second-web"),
    ]


async def _stage(tmp_path: Path, buildpacks: list[Buildpack], requested: list[str]) -> list[str]:
    source = tmp_path / "source"
    source.mkdir(exist_ok=True)
    (source / "app.txt").write_text("hello\n")
    lines: list[str] = []

    async def output(line: str, stream: str) -> None:
        lines.append(line)

    result = await stage(
        source,
        buildpacks=buildpacks,
        requested=requested,
        cache_dir=tmp_path / "cache",
        env={},
        output=output,
        work_dir=tmp_path / "work",
    )
    steps = (tmp_path / "work" / "app" / "steps.log").read_text().splitlines()
    assert result.process_types["web"] == f"{result.detected_buildpack}-web"
    return steps


async def test_detection_runs_in_position_order_and_stops_at_the_first(
    tmp_path: Path, fakes: list[Buildpack]
) -> None:
    steps = await _stage(tmp_path, fakes, [])
    assert steps == ["first detect", "second detect", "second compile", "second release"]


async def test_requested_buildpacks_skip_detection_and_the_last_one_releases(
    tmp_path: Path, fakes: list[Buildpack]
) -> None:
    steps = await _stage(tmp_path, fakes, ["third", "first"])
    assert steps == ["third compile", "first compile", "first release"]


async def test_no_buildpack_detects(tmp_path: Path) -> None:
    nothing = [_buildpack(tmp_path / "bp", "never", 1, detects=False, web="x")]
    with pytest.raises(StagingError) as caught:
        await _stage(tmp_path, nothing, [])
    assert caught.value.summary == NO_APP_DETECTED
    assert caught.value.reason == "NoAppDetectedError"


async def test_an_unknown_requested_buildpack(tmp_path: Path, fakes: list[Buildpack]) -> None:
    with pytest.raises(StagingError, match=r"'ruby' is not installed .*first, second, third"):
        await _stage(tmp_path, fakes, ["ruby"])
