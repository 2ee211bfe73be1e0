"""Replays the Space's Dockerfile without Docker: its install and start as uid 1000 with its own HOME.

This machine has no Docker engine, so the image is never built here; but what matters for a Space is that the
Dockerfile's steps install and start the app as the unprivileged user a Space uses, with nothing from the
developer's own environment. This reads the Dockerfile and carries out its instructions on this machine: COPY
(the build context minus .dockerignore, owned by the user), ENV, WORKDIR, RUN (as uid 1000, with only the
image's environment), then CMD, and checks that the app answers on 0.0.0.0 at the EXPOSEd port.

The image's paths are rebased under a scratch root (``/home/user`` -> ``<root>/home/user``) and the base image's
Python is this machine's ``python3.11``. Two things are the machine's, not the image's: the root-only
``useradd`` (uid 1000 is created here only if missing) and the package-registry configuration: the image's
``PIP_EXTRA_INDEX_URL`` (PyTorch's CPU index, for ``torch==2.13.0+cpu``) is unreachable here, so the user gets
this machine's pip settings instead (its wheel directory and indexes, which hold the same locked wheels). Must
run as root, to switch to uid 1000.

Usage: python scripts/replay_space.py [--root DIR] [--keep]   (prints each step; exit 0 when the app answered)
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UID = 1000
IMAGE_PYTHON = "/usr/local/bin/python3.11"  # python:3.11-slim's interpreter
NOT_REPLAYED_ENV = {"PIP_EXTRA_INDEX_URL"}  # the registry configuration is this machine's (see the docstring)
REGISTRY_SETTINGS = ("index-url", "extra-index-url", "find-links", "constraint", "cert")
START_TIMEOUT_S = 300


def machine_registry_env() -> dict[str, str]:
    """This machine's pip registry settings (as the user running the replay sees them) as PIP_* variables, which
    override the pip configuration uid 1000 would otherwise read."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    env = {}
    for line in listed.splitlines():  # e.g. global.find-links='/opt/wheels'
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in REGISTRY_SETTINGS:
            env["PIP_" + name.upper().replace("-", "_")] = value.strip("'\"")
    return env


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    return out


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore excludes a path of the build context (the patterns this repository uses)."""
    name = relative.rsplit("/", 1)[-1]
    return any(
        fnmatch.fnmatch(relative, p.rstrip("/")) or (p.startswith("**/") and fnmatch.fnmatch(name, p[3:].rstrip("/")))
        for p in patterns
    )


class Replay:
    """The state an image build carries from one instruction to the next."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env: dict[str, str] = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            **machine_registry_env(),
        }
        self.workdir = root
        self.user: int | None = None
        self.port = 0
        self.python = shutil.which("python3.11", path="/usr/bin:/usr/local/bin") or "/usr/bin/python3.11"
        self.dockerignore = [
            p.strip() for p in (REPO / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")
        ]

    def rebase(self, value: str) -> str:
        """An image path on this machine."""
        return value.replace(IMAGE_PYTHON, self.python).replace("/home/user", str(self.root / "home/user"))

    def as_user(self, argv: list[str]) -> list[str]:
        if self.user is None:
            raise SystemExit(f"a RUN or CMD as root is not replayed: {argv}")
        return ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--clear-groups", *argv]

    def chown(self, path: Path) -> None:
        for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
            os.lchown(item, UID, UID)

    def do_from(self, args: str) -> None:
        if not args.startswith("python:3.11") or not Path(self.python).exists():
            raise SystemExit(f"base image {args} needs this machine's python3.11")

    def do_run(self, args: str) -> None:
        if self.user is None and args.startswith("useradd") and f"--uid {UID}" in args:
            # the image's user: this machine's uid 1000 if it exists, and a HOME of its own under the root
            if subprocess.run(["getent", "passwd", str(UID)], capture_output=True).returncode != 0:
                subprocess.run(["useradd", "--no-create-home", "--uid", str(UID), "user"], check=True)
            home = self.root / "home/user"
            home.mkdir(parents=True)
            self.chown(home)
            return
        start = time.perf_counter()
        subprocess.run(self.as_user(["bash", "-c", args]), cwd=self.workdir, env=self.env, check=True)
        print(f"[replay]   {time.perf_counter() - start:.0f} s", flush=True)

    def do_user(self, args: str) -> None:
        if args not in {str(UID), "user"}:
            raise SystemExit(f"USER {args}: the replay runs as uid {UID}")
        self.user = UID

    def do_env(self, args: str) -> None:
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            if key not in NOT_REPLAYED_ENV:
                self.env[key] = self.rebase(value)

    def do_workdir(self, args: str) -> None:
        self.workdir = Path(self.rebase(args))
        subprocess.run(self.as_user(["mkdir", "-p", str(self.workdir)]), check=True)

    def do_copy(self, args: str) -> None:
        words = [w for w in shlex.split(args) if not w.startswith("--chown=")]
        *sources, dest = words
        target = self.workdir / dest
        for source in sources:
            src = REPO / source
            if src.is_dir():  # as in Docker, a directory's contents go into the destination
                destination = target
                shutil.copytree(
                    src,
                    destination,
                    dirs_exist_ok=True,
                    symlinks=True,
                    ignore=lambda d, names: [
                        n for n in names if ignored(str((Path(d) / n).relative_to(REPO)), self.dockerignore)
                    ],
                )
                self.chown(destination)
            else:
                destination = target / src.name if dest.endswith("/") else target
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, destination)
                os.lchown(destination, UID, UID)
                os.lchown(destination.parent, UID, UID)

    def do_expose(self, args: str) -> None:
        self.port = int(args.split("/")[0])

    def start(self, args: str) -> subprocess.Popen[bytes]:
        argv = [self.rebase(a) for a in json.loads(args)]
        with open(self.root / "app.log", "wb") as log:  # the child keeps its own descriptor
            return subprocess.Popen(
                self.as_user(argv), cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )


def listens_on_all_interfaces(port: int) -> bool:
    """Whether a socket listens on 0.0.0.0:port (from /proc/net/tcp: local address, state 0A = LISTEN)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(r.split()[1] == f"00000000:{port:04X}" and r.split()[3] == "0A" for r in rows)


def wait_for_app(proc: subprocess.Popen[bytes], port: int, log: Path) -> str:
    """What the first page answered, once the app listens on all interfaces; raises with the app's log if it
    exits or never answers."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if listens_on_all_interfaces(port):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode()
                    if response.status == 200 and "gradio" in page.lower():
                        return f"HTTP 200, a Gradio page of {len(page):,} bytes"
            except OSError:
                pass
        time.sleep(1)
    raise SystemExit(f"the app did not answer on 0.0.0.0:{port} within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def replay(root: Path) -> tuple[int, str]:
    """Build and start the image's equivalent under ``root``; returns the port and what the first page was."""
    state = Replay(root)
    for keyword, args in instructions(REPO / "Dockerfile"):
        if keyword == "CMD":
            if listens_on_all_interfaces(state.port):
                raise SystemExit(f"port {state.port} is already taken on this machine; stop what listens there")
            print(f"[replay] CMD {args} (as uid {state.user})", flush=True)
            proc = state.start(args)
            try:
                answer = wait_for_app(proc, state.port, root / "app.log")
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            return state.port, answer
        print(f"[replay] {keyword} {args}", flush=True)
        getattr(state, f"do_{keyword.lower()}")(args)
    raise SystemExit("the Dockerfile has no CMD")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="scratch root (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch root (venv, model cache) afterwards")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the replay switches to uid 1000")
    root = args.root or Path(tempfile.mkdtemp(prefix="space-replay-"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # uid 1000 must reach its HOME inside
    start = time.perf_counter()
    try:
        port, answer = replay(root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"[replay] the app answered on 0.0.0.0:{port} as uid {UID} ({answer}) "
        f"after {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
