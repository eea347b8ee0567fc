"""Real PostgreSQL, Redis and Celery worker processes for the scale-out tests.

Each server runs in the foreground in its own process group on 127.0.0.1 and a free port, in
a private temporary directory, so a test can kill the whole group (postgres backends, celery
pool children) in a ``finally`` block and leave nothing behind.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
POSTGRES_YAML = REPO / "dagster_home" / "dagster.postgres.yaml"
PG_USER = "dagster"
PG_PASSWORD = "scale-out-test"  # a password, so the TCP login path (scram) is the one tested


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing(what: str, hint: str) -> None:
    """Skip loudly, or fail under CI, where the server's binaries are not installed.

    CI installs them (see ``.ci/run``), so a missing binary there is a broken setup, not a
    reason to pass quietly.
    """
    message = f"SCALE-OUT TEST NOT RUN: {what} is not installed ({hint})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 20.0) -> None:
    """Signal a process group, then SIGKILL it if it is still there after ``wait`` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
    # the leader may be gone while children (pool workers, backends) linger in the group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def wait_until(ready, what: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    """Poll ``ready()`` until true; fail with the server's log if it died or timed out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail(log)}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s:\n{tail(log)}")


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


@dataclass(frozen=True)
class Postgres:
    """A running cluster: what ``dagster.postgres.yaml`` reads from the environment."""

    host: str
    port: int
    user: str
    password: str

    def env(self, db: str) -> dict[str, str]:
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port),
                "DAGSTER_PG_USER": self.user, "DAGSTER_PG_PASSWORD": self.password,
                "DAGSTER_PG_DB": db}

    def connect(self, db: str = "postgres"):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user,
                                password=self.password, dbname=db)

    def create_database(self, db: str) -> None:
        con = self.connect()
        try:
            con.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with con.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{db}"')
        finally:
            con.close()

    def query(self, db: str, sql: str) -> list[tuple]:
        con = self.connect(db)
        try:
            with con.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            con.close()


def _pg_bin(name: str) -> str | None:
    """Debian puts the server binaries in /usr/lib/postgresql/<major>/bin, off PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return found[-1] if found else shutil.which(name)


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A private PostgreSQL cluster on 127.0.0.1, owned by this context.

    PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres``
    system user the Debian package creates (its files in a fresh directory under /tmp that
    only that user can read); otherwise it runs as the current user.
    """
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    if not (initdb and postgres):
        missing("PostgreSQL", "apt-get install -y postgresql")
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            missing("the 'postgres' system user", "apt-get install -y postgresql creates it")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="instruct-assets-pg-"))
    proc = None
    try:
        pwfile = root / "pw"
        pwfile.write_text(PG_PASSWORD + "\n")
        if as_user:
            for p in (root, pwfile):
                os.chown(p, owner.pw_uid, owner.pw_gid)
        data, log = root / "data", root / "postgres.log"
        subprocess.run(
            [*as_user, initdb, "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}",
             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
             "--locale=C", "--no-sync"],
            check=True, capture_output=True, text=True, timeout=120)
        port = free_port()
        with open(log, "wb") as out:
            # fsync off: a throwaway cluster; durability is not what the test checks
            proc = subprocess.Popen(
                [*as_user, postgres, "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                 "-k", str(root), "-c", "fsync=off", "-c", "max_connections=200"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        server = Postgres("127.0.0.1", port, PG_USER, PG_PASSWORD)
        wait_until(lambda: server.connect().close() is None, "postgres", proc, log)
        yield server
    finally:
        if proc is not None:
            stop_group(proc, signal.SIGINT)  # SIGINT = postgres' "fast" shutdown
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def redis_server(root: Path) -> Iterator[str]:
    """A Redis server on 127.0.0.1 without persistence; yields its ``redis://`` URL."""
    binary = shutil.which("redis-server")
    if not binary:
        missing("redis-server", "apt-get install -y redis-server")
    import redis

    port = free_port()
    log = root / "redis.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", str(root)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        wait_until(client.ping, "redis-server", proc, log)
        client.close()
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop_group(proc)


def write_home(home: Path, config: Path = POSTGRES_YAML) -> Path:
    """A DAGSTER_HOME whose dagster.yaml is ``config``, as a user would set one up."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(config.read_text(encoding="utf-8"), encoding="utf-8")
    return home
