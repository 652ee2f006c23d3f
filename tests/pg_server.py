"""A throwaway PostgreSQL server for the tests: its own data directory under the system temp
dir, loopback only (127.0.0.1, a free port, no Unix socket), trust authentication, no fsync.

Binaries: the newest /usr/lib/postgresql/*/bin (Debian's layout), else `initdb` on PATH.
PostgreSQL refuses to run as root, so as root every server command runs as the `postgres`
system user (`runuser -u postgres --`) in a directory that user owns. Each `PgServer` has its
own directory and port, so pytest-xdist workers each start their own.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

REQUIRE_ENV = "INFERTUNE_REQUIRE_POSTGRES"
SUPERUSER = "postgres"


def postgres_required() -> bool:
    """Whether the PostgreSQL tests must run (CI sets INFERTUNE_REQUIRE_POSTGRES=1) instead of
    being skipped where there is no server to start."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path))


def find_bin_dir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None."""
    found = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if Path(d, "initdb").is_file()]
    if found:
        return Path(max(found, key=_version_key))
    initdb = shutil.which("initdb")
    return Path(os.path.realpath(initdb)).parent if initdb else None


def unavailable_reason() -> str | None:
    """Why no server can be started here, or None."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg (psycopg[binary]) is not installed"
    bin_dir = find_bin_dir()
    if bin_dir is None:
        return "no PostgreSQL server binaries (initdb) under /usr/lib/postgresql/*/bin or on PATH"
    for tool in ("pg_ctl", "postgres"):
        if not (bin_dir / tool).is_file():
            return f"{bin_dir} has initdb but no {tool}"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing (PostgreSQL refuses to run as root)"
        try:
            import pwd

            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return f"running as root and there is no {SUPERUSER!r} system user to run the server"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgServer:
    """One server: `start()`, then `url(dbname)` / `create_database()`, then `stop()`."""

    def __init__(self) -> None:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise RuntimeError(unavailable_reason() or "no PostgreSQL binaries")
        self.bin_dir = bin_dir
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="infertune-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.running = False
        if self.as_root:
            import pwd

            user = pwd.getpwnam(SUPERUSER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            os.chmod(self.root, 0o700)

    def _run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        done = subprocess.run(command, cwd=str(self.root), capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "LC_ALL": "C", "PGTZ": "UTC"})
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{log}")
        return done

    def start(self, attempts: int = 3) -> PgServer:
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync",
                  "--locale=C")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# infertune tests: loopback only, no Unix socket, no durability\n"
                       "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                       "max_connections = 200\n")
        for attempt in range(attempts):
            # Another process may take the port between free_port() and the bind: try another.
            self.port = free_port()
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                          "-o", f"-p {self.port}", "start")
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                continue
            self.running = True
            return self
        raise AssertionError("unreachable")

    def url(self, dbname: str = "postgres") -> str:
        """A plain postgresql:// URL (what a user passes to --db / --storage)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            if self.running:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
                self.running = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
