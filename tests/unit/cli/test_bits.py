"""overcast.client.bits: walking an app directory (default ignores, `.cfignore`, links),
hashing it for resource matching, and zipping what is left to upload (checked with the
server's own zip reader)."""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from pathlib import Path

import pytest

from overcast.client.bits import (
    AppFile,
    BitsError,
    IgnoreRules,
    collect,
    split_matched,
    write_zip,
)
from overcast.client.resources import MatchedResource
from overcast.staging.archives.zips import check_zip


def sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def write(root: Path, path: str, text: str = "x", *, mode: int | None = None) -> Path:
    full = root / path
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text(text)
    if mode is not None:
        full.chmod(mode)
    return full


def paths(root: Path) -> list[str]:
    return [file.path for file in collect(root)]


def by_path(files: list[AppFile]) -> dict[str, AppFile]:
    return {file.path: file for file in files}


# --- walking and hashing ---------------------------------------------------------------------


def test_files_are_listed_in_path_order_with_sha1_size_and_mode(tmp_path: Path) -> None:
    write(tmp_path, "app.py", "print('hi')\n")
    write(tmp_path, "bin/run", "#!/bin/sh\n", mode=0o750)
    write(tmp_path, "lib/a/b.txt", "")
    write(tmp_path, "private.txt", "secret", mode=0o600)
    files = collect(tmp_path)
    assert [file.path for file in files] == ["app.py", "bin/run", "lib/a/b.txt", "private.txt"]
    found = by_path(files)
    assert found["app.py"] == AppFile("app.py", 12, sha1(b"print('hi')\n"), "644")
    # Only the executable bit counts, as on the server.
    assert found["bin/run"].mode == "755"
    assert found["private.txt"].mode == "644"
    assert found["lib/a/b.txt"].size == 0
    assert found["lib/a/b.txt"].sha1 == sha1(b"")
    assert found["app.py"].resource() == {
        "path": "app.py",
        "size_in_bytes": 12,
        "checksum": {"value": sha1(b"print('hi')\n")},
        "mode": "644",
    }


def test_default_ignores_anywhere_in_the_tree(tmp_path: Path) -> None:
    write(tmp_path, "app.py")
    write(tmp_path, ".git/config")
    write(tmp_path, "vendor/lib/.git", "gitdir: elsewhere")  # a submodule's .git file
    write(tmp_path, "__pycache__/app.cpython-311.pyc")
    write(tmp_path, "pkg/__pycache__/mod.pyc")
    write(tmp_path, "node_modules/left-pad/index.js")
    write(tmp_path, "web/node_modules/x.js")
    write(tmp_path, ".venv/bin/python")
    write(tmp_path, ".cfignore", "")
    write(tmp_path, "sub/.cfignore", "")  # only the root's is special
    write(tmp_path, ".gitignore", "*.pyc\n")  # not read, and uploaded
    assert paths(tmp_path) == [".gitignore", "app.py", "sub/.cfignore"]


def test_cfignore_patterns(tmp_path: Path) -> None:
    write(
        tmp_path,
        ".cfignore",
        "\n".join(
            [
                "# a comment, and a blank line",
                "",
                "*.log",
                "!keep.log",
                "/build",
                "tmp/",
                "docs/**/*.draft",
                "cache/**",
                "**/secrets",
                "data?.csv",
                "notes/*.md",
                "\\#literal",
                "trailing   ",
            ]
        ),
    )
    for path in [
        "app.py",
        "app.log",
        "deep/er/app.log",
        "keep.log",
        "deep/keep.log",
        "build/out.bin",
        "src/build/kept.txt",  # `/build` only at the root
        "tmp/x",
        "src/tmp/y",  # `tmp/` at any depth
        "tmp.txt",  # `tmp/` matches directories only
        "docs/a.draft",
        "docs/guide/b/c.draft",
        "docs/guide/c.md",
        "cache/anything/at/all",
        "cache.txt",
        "one/two/secrets/key",
        "secrets",
        "data1.csv",
        "data12.csv",
        "notes/a.md",
        "notes/sub/b.md",
        "#literal",
        "trailing",
    ]:
        write(tmp_path, path)
    assert paths(tmp_path) == [
        "app.py",
        "cache.txt",
        "data12.csv",
        "deep/keep.log",
        "docs/guide/c.md",
        "keep.log",
        "notes/sub/b.md",
        "src/build/kept.txt",
        "tmp.txt",
    ]


def test_nothing_inside_an_ignored_directory_comes_back(tmp_path: Path) -> None:
    write(tmp_path, ".cfignore", "logs/\n!logs/keep.txt\n")
    write(tmp_path, "logs/keep.txt")
    write(tmp_path, "app.py")
    assert paths(tmp_path) == ["app.py"]


def test_a_cfignore_negation_brings_a_default_back(tmp_path: Path) -> None:
    write(tmp_path, ".cfignore", "!node_modules/\nnode_modules/.cache/\n")
    write(tmp_path, "node_modules/dep/index.js")
    write(tmp_path, "node_modules/.cache/junk")
    write(tmp_path, "index.js")
    assert paths(tmp_path) == ["index.js", "node_modules/dep/index.js"]


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "ignored"),
    [
        ("*.py", "a.py", False, True),
        ("*.py", "a/b/c.py", False, True),
        ("*.py", "a.pyc", False, False),
        ("a*", "dir/abc", False, True),
        ("*", "anything", True, True),
        ("?.txt", "a.txt", False, True),
        ("?.txt", "ab.txt", False, False),
        ("[abc].txt", "b.txt", False, True),
        ("[!abc].txt", "b.txt", False, False),
        ("[!abc].txt", "d.txt", False, True),
        ("[a-c]x", "bx", False, True),
        ("/root.txt", "root.txt", False, True),
        ("/root.txt", "sub/root.txt", False, False),
        ("a/b", "a/b", False, True),
        ("a/b", "x/a/b", False, False),  # an inner slash anchors too
        ("**/b", "a/x/b", False, True),
        ("**/b", "b", False, True),
        ("a/**/b", "a/b", False, True),
        ("a/**/b", "a/1/2/b", False, True),
        ("a/**", "a/1/2", False, True),
        ("a/**", "a", True, False),
        ("a**b", "a/b", False, False),  # `**` not between slashes is a plain `*`
        ("a**b", "axxb", False, True),
        ("dir/", "dir", False, False),
        ("dir/", "dir", True, True),
        ("\\!bang", "!bang", False, True),
        ("*.[", "x.[", False, True),  # an unclosed class is a literal `[`
    ],
)
def test_ignore_rule(pattern: str, path: str, is_dir: bool, ignored: bool) -> None:
    assert IgnoreRules([pattern]).ignored(path, is_dir=is_dir) is ignored


def test_the_last_matching_pattern_wins() -> None:
    rules = IgnoreRules(["*.txt", "!important.txt", "important.txt"])
    assert rules.ignored("important.txt", is_dir=False)
    rules = IgnoreRules(["*.txt", "!important.txt"])
    assert not rules.ignored("important.txt", is_dir=False)


def test_a_root_that_is_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(BitsError, match="is not a directory"):
        collect(tmp_path / "missing")
    write(tmp_path, "file.txt")
    with pytest.raises(BitsError, match="is not a directory"):
        collect(tmp_path / "file.txt")


def test_special_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "app.py")
    os.mkfifo(tmp_path / "pipe")
    assert paths(tmp_path) == ["app.py"]


# --- symbolic links ----------------------------------------------------------------------------


def test_links_inside_the_tree_are_kept_as_links(tmp_path: Path) -> None:
    write(tmp_path, "lib/real.py", "code")
    write(tmp_path, "bin/tool", "#!/bin/sh\n", mode=0o755)
    (tmp_path / "alias.py").symlink_to("lib/real.py")
    (tmp_path / "lib/up").symlink_to("../bin/tool")
    (tmp_path / "libdir").symlink_to("lib", target_is_directory=True)  # not followed
    (tmp_path / "abs").symlink_to(tmp_path / "lib" / "real.py")  # made relative
    (tmp_path / "dangling").symlink_to("not/there")
    found = by_path(collect(tmp_path))
    assert sorted(found) == [
        "abs",
        "alias.py",
        "bin/tool",
        "dangling",
        "lib/real.py",
        "lib/up",
        "libdir",
    ]
    assert found["alias.py"].link_target == "lib/real.py"
    assert found["alias.py"].is_link
    assert found["alias.py"].size == len("lib/real.py")
    assert found["alias.py"].sha1 == sha1(b"lib/real.py")
    assert found["lib/up"].link_target == "../bin/tool"
    assert found["libdir"].link_target == "lib"
    assert found["abs"].link_target == "lib/real.py"
    assert found["dangling"].link_target == "not/there"
    assert not found["lib/real.py"].is_link


@pytest.mark.parametrize("target", ["../outside.txt", "lib/../../outside.txt"])
def test_a_relative_link_leading_out_is_refused(tmp_path: Path, target: str) -> None:
    app = tmp_path / "app"
    write(app, "lib/x.py")
    write(tmp_path, "outside.txt")
    (app / "escape").symlink_to(target)
    with pytest.raises(BitsError, match=r"escape is a symbolic link to .*outside the app"):
        collect(app)


def test_an_absolute_link_leading_out_is_refused(tmp_path: Path) -> None:
    app = tmp_path / "app"
    write(app, "app.py")
    (app / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(BitsError, match="passwd is a symbolic link to /etc/passwd, outside"):
        collect(app)


def test_a_chain_of_links_leading_out_is_refused(tmp_path: Path) -> None:
    app = tmp_path / "app"
    write(app, "app.py")
    write(tmp_path, "secret.txt")
    (app / "sub").mkdir()
    # `sub/x` -> `..` is the root; `y` -> `sub/x/../secret.txt` climbs out through it.
    (app / "sub" / "x").symlink_to("..", target_is_directory=True)
    (app / "y").symlink_to("sub/x/../secret.txt")  # "sub/secret.txt", read lexically
    with pytest.raises(BitsError, match=r"y is a symbolic link .* leads outside the app"):
        collect(app)


def test_an_ignored_link_is_not_checked(tmp_path: Path) -> None:
    """A `.venv` that links to a virtualenv elsewhere is left out, not refused."""
    outside = tmp_path / "venvs" / "app"
    outside.mkdir(parents=True)
    app = tmp_path / "app"
    write(app, "app.py")
    (app / ".venv").symlink_to(outside, target_is_directory=True)
    assert paths(app) == ["app.py"]


# --- matching and zipping ----------------------------------------------------------------------


def matched_entry(data: bytes, path: str = "ignored") -> MatchedResource:
    return {"path": path, "size_in_bytes": len(data), "checksum": {"value": sha1(data).upper()}}


def test_split_matched_by_content(tmp_path: Path) -> None:
    write(tmp_path, "a.txt", "same")
    write(tmp_path, "copy/a.txt", "same")
    write(tmp_path, "b.txt", "new")
    (tmp_path / "link").symlink_to("same")  # its target text is "same", but it is a link
    files = collect(tmp_path)
    unchanged, upload = split_matched(files, [matched_entry(b"same")])
    assert [file.path for file in unchanged] == ["a.txt", "copy/a.txt"]
    assert [file.path for file in upload] == ["b.txt", "link"]
    assert split_matched(files, []) == ([], files)


def test_the_zip_holds_only_what_is_not_matched(tmp_path: Path) -> None:
    app = tmp_path / "app"
    write(app, "app.py", "print(1)\n")
    write(app, "bin/start", "#!/bin/sh\nexec python app.py\n", mode=0o755)
    write(app, "static/big.css", "body{}" * 1000)
    (app / "current").symlink_to("static/big.css")
    files = collect(app)
    destination = tmp_path / "app.zip"
    written = write_zip(app, files, destination, matched=[matched_entry(b"body{}" * 1000)])
    assert [file.path for file in written] == ["app.py", "bin/start", "current"]

    with zipfile.ZipFile(destination) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        assert sorted(infos) == ["app.py", "bin/start", "current"]
        assert stat.S_IMODE(infos["bin/start"].external_attr >> 16) == 0o755
        assert stat.S_ISREG(infos["bin/start"].external_attr >> 16)
        assert stat.S_IMODE(infos["app.py"].external_attr >> 16) == 0o644
        assert stat.S_ISLNK(infos["current"].external_attr >> 16)
        assert archive.read("current") == b"static/big.css"
        assert archive.read("app.py") == b"print(1)\n"

    # The server's own reader accepts it, and hashes every entry as the client did.
    checked = {entry.path: entry for entry in check_zip(destination)}
    for file in written:
        assert checked[file.path].sha1 == file.sha1
        assert checked[file.path].size == file.size
    assert checked["bin/start"].mode == 0o755
    assert checked["current"].kind == "symlink"


def test_an_empty_zip_when_everything_is_matched(tmp_path: Path) -> None:
    write(tmp_path / "app", "app.py", "x")
    files = collect(tmp_path / "app")
    destination = tmp_path / "empty.zip"
    assert write_zip(tmp_path / "app", files, destination, matched=[matched_entry(b"x")]) == []
    with zipfile.ZipFile(destination) as archive:
        assert archive.infolist() == []
    assert check_zip(destination) == []


def test_a_file_gone_before_it_is_zipped(tmp_path: Path) -> None:
    write(tmp_path / "app", "app.py", "x")
    files = collect(tmp_path / "app")
    (tmp_path / "app" / "app.py").unlink()
    with pytest.raises(BitsError, match=r"cannot read .*app\.py"):
        write_zip(tmp_path / "app", files, tmp_path / "out.zip")
