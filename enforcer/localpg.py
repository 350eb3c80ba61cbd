"""A local Postgres cluster run with the machine's initdb/pg_ctl.

Owns: creating, starting and stopping a cluster in a directory, for the demo and
for integration tests (a real Postgres, never a mock). When run as root the
server runs as the ``postgres`` system user, because Postgres refuses root.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class LocalPostgresError(Exception):
    pass


def find_pg_bin() -> Path:
    """The directory holding initdb/pg_ctl/postgres (PATH first, then Debian's layout)."""
    env = os.environ.get("PGWARDEN_PG_BIN")
    if env:
        return Path(env)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    for c in candidates:
        if (Path(c) / "initdb").exists():
            return Path(c)
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise LocalPostgresError(
        "no Postgres server binaries found (initdb/pg_ctl); install them, e.g. `apt-get install postgresql`, "
        "or set PGWARDEN_PG_BIN to their directory"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalPostgres:
    """One cluster: ``datadir`` under ``root``, listening on 127.0.0.1:``port`` and a socket in ``root``."""

    root: Path
    port: int
    superuser_password: str = ""

    @property
    def datadir(self) -> Path:
        return self.root / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    def _run_as(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        return ["runuser", "-u", "postgres", "--"]

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _cmd(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self._run_as(), *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
        )
        if check and proc.returncode != 0:
            raise LocalPostgresError(
                f"{Path(args[0]).name} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc

    @property
    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        """initdb with SCRAM-SHA-256 required for every connection, TCP and socket."""
        bindir = find_pg_bin()
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        for p in (self.root, self.socket_dir):
            self._chown(p)
        if not self.superuser_password:
            self.superuser_password = secrets.token_urlsafe(18)
        pwfile = self.root / "superuser.pw"
        pwfile.write_text(self.superuser_password)
        os.chmod(pwfile, 0o600)
        self._chown(pwfile)
        self._cmd(
            str(bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.write(
                "\n# pgwarden local cluster\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\nshared_buffers = 64MB\n"
                "password_encryption = 'scram-sha-256'\n"
            )

    def enable_ssl(self, cert: Path, key: Path) -> None:
        """Serve TLS with this certificate (copied into the data directory, as Postgres wants it)."""
        for src, name in ((cert, "server.crt"), (key, "server.key")):
            dst = self.datadir / name
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o600)
            self._chown(dst)
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")

    def prepend_hba(self, *lines: str) -> None:
        """Put pg_hba.conf rules before initdb's (first match wins)."""
        hba = self.datadir / "pg_hba.conf"
        hba.write_text("\n".join(lines) + "\n" + hba.read_text())

    def start(self) -> None:
        bindir = find_pg_bin()
        self.logfile.touch()
        self._chown(self.logfile)
        self._cmd(
            str(bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        bindir = find_pg_bin()
        self._cmd(str(bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop", check=False)

    def is_running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def psql(
        self, sql: str, *, database: str = "postgres", user: str = "postgres", password: str | None = None
    ) -> str:
        """Run SQL through psql over TCP (ON_ERROR_STOP); returns stdout."""
        pw = self.superuser_password if password is None else password
        proc = subprocess.run(
            [
                "psql",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-At",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                user,
                "-d",
                database,
                "-f",
                "-",
            ],
            input=sql,
            capture_output=True,
            text=True,
            env={**os.environ, "PGPASSWORD": pw},
        )
        if proc.returncode != 0:
            raise LocalPostgresError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise LocalPostgresError(
            f"Postgres did not accept connections on port {self.port}; see {self.logfile}"
        )
