"""Real Redis and PostgreSQL servers of the fault tests' own, to stop, start and cut off.

The shared servers (``RATEBOT_TEST_*``) stay up for the other tests: these are started on a free
port in a temporary directory, and ``bench/faults.py`` uses them the same way.

* :class:`RedisServer` — ``redis-server --save "" --appendonly no``: ``stop(keep=True)`` saves
  its data first (a restart of a Redis with persistence), ``stop(keep=False)`` loses it (a
  restart without persistence); ``cut_off()`` / ``reconnect()`` stop and continue the process
  (SIGSTOP / SIGCONT): connections hang, as behind a broken network.
* :class:`PostgresCluster` — ``initdb`` in a temporary directory (as the ``postgres`` user when
  run as root: initdb refuses root), ``pg_ctl`` to start, stop (``fast``: clients are cut off)
  and restart it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

START_TIMEOUT = 20.0  # seconds for a server to accept connections


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(ready: object, what: str, timeout: float = START_TIMEOUT) -> float:
    """Call ``ready()`` until it is true; the seconds it took."""
    start = time.monotonic()
    while not ready():  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"{what} not ready within {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - start


class RedisServer:
    """One ``redis-server`` on 127.0.0.1 and a free port, its files in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it (loading the data a ``stop(keep=True)`` saved); seconds until it answers."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.workdir),
                "--save", "",
                "--appendonly", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        return _wait(self.answers, "redis-server")

    def answers(self) -> bool:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.2)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, keep: bool) -> None:
        """Shut it down: saving its data for the next start (``keep``), or losing it."""
        assert self.proc is not None
        self.reconnect()
        client = redis.Redis(port=self.port, socket_timeout=5)
        try:
            client.shutdown(save=keep, nosave=not keep)
        except redis.ConnectionError:
            pass  # the server closes the connection as it goes
        finally:
            client.close()
        self.proc.wait(timeout=10)
        if not keep:
            (self.workdir / "dump.rdb").unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL: gone at once, its data with it (no persistence)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        (self.workdir / "dump.rdb").unlink(missing_ok=True)

    def cut_off(self) -> None:
        """Stop the process: connections are accepted by the kernel and never answered."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def reconnect(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.running:
            self.reconnect()
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout=10)


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    return shutil.which(name) or name


class PostgresCluster:
    """A PostgreSQL cluster of its own: ``initdb`` in ``workdir``, on 127.0.0.1 and a free port,
    trust authentication for the ``postgres`` user, one database ``ratebot``."""

    def __init__(self) -> None:
        # Right under /tmp, not in pytest's tmp_path: the postgres user must reach it, and
        # pytest's directories are root's alone.
        self.workdir = Path(tempfile.mkdtemp(prefix="ratebot-faults-pg-"))
        self.data = self.workdir / "pgdata"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/ratebot"
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0  # initdb and postgres refuse to run as root

    def _run(self, *command: str) -> None:
        argv = list(command)
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")

    def create(self) -> None:
        """initdb, start, create the database."""
        if self._as_postgres:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run(
            _pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        self.start()
        import sqlalchemy as sa

        admin = sa.create_engine(
            self.admin_url.replace("postgresql://", "postgresql+psycopg://"),
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as connection:
            connection.execute(sa.text("CREATE DATABASE ratebot"))
        admin.dispose()

    def start(self) -> float:
        """Start the cluster; seconds until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.data}"
            " -c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        started = time.monotonic()
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.data / "server.log"),
            "-o", options, "-w", "-t", "30", "start",
        )  # fmt: skip
        return time.monotonic() - started + _wait(self.answers, "postgres")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: every client is cut off, the cluster shuts down cleanly; ``immediate``: as
        a crash (recovery on the next start)."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                pass
        except OSError:
            return False
        done = subprocess.run(
            [_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            capture_output=True,
            timeout=10,
        )
        return done.returncode == 0

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists() and self.answers()

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
        shutil.rmtree(self.workdir, ignore_errors=True)
