"""Droplets built by tests, before staging exists (and to test cells without it).

The droplet format (what staging will produce, and what `POST /v3/droplets/:g/upload` takes):
a gzipped tarball holding
  app/                 the staged application; the instance's working directory and HOME
  staging_info.yml     YAML: detected_buildpack, start_command, process_types {type: command}
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

# A dependency-free HTTP app: answers on $PORT (bound to CF_INSTANCE_IP, loopback in tests)
# with its index and guid, logs each request to stdout, and exits when asked to at /exit.
HELLO_APP = textwrap.dedent(
    """\
    import base64, hashlib, http.server, json, os, struct, sys

    WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path == "/exit":
                os._exit(3)
            if self.headers.get("Upgrade", "").lower() == "websocket":
                return self.echo_websocket()
            body = json.dumps({
                "index": os.environ.get("CF_INSTANCE_INDEX"),
                "guid": os.environ.get("CF_INSTANCE_GUID"),
                "env": {k: os.environ.get(k) for k in ("GREETING",)},
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def echo_websocket(self):
            self.close_connection = True  # the socket is the tunnel's, not the next request's
            key = self.headers["Sec-WebSocket-Key"]
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            while True:
                head = self.rfile.read(2)
                if len(head) < 2:
                    return
                opcode, length = head[0] & 0x0F, head[1] & 0x7F
                if length == 126:
                    length = struct.unpack("!H", self.rfile.read(2))[0]
                elif length == 127:
                    length = struct.unpack("!Q", self.rfile.read(8))[0]
                mask = self.rfile.read(4) if head[1] & 0x80 else b"\\0\\0\\0\\0"
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
                if opcode == 8:
                    self.wfile.write(b"\\x88\\x00")
                    self.wfile.flush()
                    return
                reply = 0x8A if opcode == 9 else 0x80 | opcode
                if len(data) < 126:
                    frame = bytes([reply, len(data)])
                elif len(data) < 65536:
                    frame = bytes([reply, 126]) + struct.pack("!H", len(data))
                else:
                    frame = bytes([reply, 127]) + struct.pack("!Q", len(data))
                self.wfile.write(frame + data)
                self.wfile.flush()

        def log_message(self, fmt, *args):
            print("request " + (fmt % args), flush=True)

    host = os.environ.get("CF_INSTANCE_IP", "127.0.0.1")
    print("hello app listening on port " + os.environ["PORT"], flush=True)
    http.server.ThreadingHTTPServer((host, int(os.environ["PORT"])), Handler).serve_forever()
    """
)

HELLO_COMMAND = "python3 app.py"


@dataclass(frozen=True)
class BuiltDroplet:
    path: Path
    sha256: str
    process_types: dict[str, str]


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    archive.addfile(info, io.BytesIO(data))


def _add_dir(archive: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 0
    archive.addfile(info)


def build_droplet(
    destination: Path,
    *,
    files: Mapping[str, str | bytes] | None = None,
    process_types: Mapping[str, str] | None = None,
    detected_buildpack: str = "test",
) -> BuiltDroplet:
    """Write a droplet tarball to `destination` (the hello app when no files are given)."""
    files = dict(files) if files is not None else {"app.py": HELLO_APP}
    types = dict(process_types) if process_types is not None else {"web": HELLO_COMMAND}
    info = {
        "detected_buildpack": detected_buildpack,
        "start_command": types.get("web", ""),
        "process_types": types,
    }
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(destination, "w:gz") as archive:
        _add_dir(archive, "app")
        for name, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            mode = 0o755 if name.endswith(".sh") else 0o644
            _add_bytes(archive, f"app/{name}", data, mode)
        _add_bytes(archive, "staging_info.yml", yaml.safe_dump(info).encode())
    digest = hashlib.sha256(destination.read_bytes()).hexdigest()
    return BuiltDroplet(path=destination, sha256=digest, process_types=types)


def main(arguments: list[str]) -> int:
    """`python -m overcast.testing.droplets OUT.tgz`: write the hello app's droplet (a
    ready-made droplet for trying cells before staging exists)."""
    if len(arguments) != 1:
        print("usage: python -m overcast.testing.droplets OUT.tgz")
        return 2
    built = build_droplet(Path(arguments[0]))
    print(f"{built.path} (sha256 {built.sha256})")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
