"""Tiny wheels built by hand, and a package index of them served on 127.0.0.1: what the
environment tests install with real uv, without reaching any other index."""

from __future__ import annotations

import base64
import hashlib
import html
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def make_wheel(folder: Path, name: str, version: str, *, requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel of package `name` whose module prints and holds its version,
    with a console script of the same name."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}"
    info = f"{dist}.dist-info"
    entries = {
        f"{module}/__init__.py": f"__version__ = {version!r}\n\n\ndef main():\n"
        f"    print({name!r}, __version__)\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: xpkit-tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[console_scripts]\n{name} = {module}:main\n",
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(path, "w") as archive:
        for arcname, text in entries.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{arcname},sha256={digest.decode()},{len(data)}")
            archive.writestr(arcname, data)
        record.append(f"{info}/RECORD,,")
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def write_simple_index(wheels: Path, root: Path) -> None:
    """A PEP 503 index of the wheels in `wheels` under `root`/simple."""
    by_project: dict[str, list[Path]] = {}
    for wheel in sorted(wheels.glob("*.whl")):
        by_project.setdefault(wheel.name.split("-")[0].replace("_", "-").lower(), []).append(wheel)
    (root / "files").mkdir(parents=True, exist_ok=True)
    for project, files in by_project.items():
        page = root / "simple" / project
        page.mkdir(parents=True, exist_ok=True)
        links = []
        for wheel in files:
            (root / "files" / wheel.name).write_bytes(wheel.read_bytes())
            links.append(f'<a href="../../files/{html.escape(wheel.name)}">{wheel.name}</a><br>')
        (page / "index.html").write_text("<html><body>" + "".join(links) + "</body></html>\n")
    names = "".join(f'<a href="{p}/">{p}</a><br>' for p in by_project)
    (root / "simple" / "index.html").write_text(f"<html><body>{names}</body></html>\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def served_index(wheels: Path, root: Path, *, delay: float = 0.0) -> Iterator[str]:
    """The wheels as an index served by a real HTTP server on 127.0.0.1 (a subprocess,
    stopped by PID at the end); each wheel download first waits the seconds that
    `root`/delay says (`delay`; rewrite the file to change it): a slow mirror, so that a
    build lasts long enough to be killed. Yields the index URL."""
    write_simple_index(wheels, root)
    (root / "delay").write_text(str(delay))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, str(root), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/simple"
    finally:
        server.kill()
        server.wait()


@contextmanager
def silent_index() -> Iterator[str]:
    """An index URL whose server takes the connection and never answers (a mirror that
    hangs): connections wait in the listen backlog forever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/simple"
    finally:
        listener.close()


def _serve(root: str, port: int) -> None:
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/files/"):
                time.sleep(float(Path(root, "delay").read_text()))
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Handler, directory=root)
    ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
