"""compose.yaml, its Dockerfile and the files they mount, checked without a Docker engine.

What a `docker compose up` would trip over is checked here: the services and their images
(official, pinned by tag), every bind mount and secret file (secrets made by the real
deploy/init-secrets.sh), healthchecks and start order, the gateway's configuration (loaded by
`enforcer.config` with every container path mapped to the file the compose file mounts there), the
OPA configuration, the mosquitto configuration and password bootstrap (run on a real broker when
one is installed), the Postgres init script (run on a real Postgres, integration), and the
conftest rules on the gateway's configuration. `docker compose config` runs too when the docker
CLI has the compose plugin.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import struct
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from enforcer.config import Config, parse_config
from enforcer.policy.config_check import SHIPPED_CONFIG_RULES, check_configs
from enforcer.proxy.tls import upstream_context

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
_INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR} / ${VAR:-default} interpolation (the only forms compose.yaml uses)."""
    return _INTERPOLATION.sub(lambda m: env.get(m.group(1)) or m.group(2) or "", value)


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The secrets, written by deploy/init-secrets.sh as documented (into a temporary directory)."""
    directory = tmp_path_factory.mktemp("secrets")
    env = {**os.environ, "PGWARDEN": str(ROOT / ".venv" / "bin" / "pgwarden")}
    if not Path(env["PGWARDEN"]).exists():
        env["PGWARDEN"] = shutil.which("pgwarden") or "pgwarden"
    proc = subprocess.run(
        [str(ROOT / "deploy" / "init-secrets.sh"), str(directory)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return directory


def secret_files(secrets_dir: Path) -> dict[str, Path]:
    env = {"PGWARDEN_SECRETS": str(secrets_dir)}
    return {name: Path(interpolate(s["file"], env)) for name, s in COMPOSE["secrets"].items()}


def mounts(service: str, secrets_dir: Path, volumes_dir: Path) -> dict[str, Path]:
    """Container path -> host path, for every bind mount, named volume and secret of a service."""
    out: dict[str, Path] = {}
    for spec in SERVICES[service].get("volumes", []):
        source, target = spec.split(":")[:2]
        if source.startswith((".", "/")):
            out[target] = (ROOT / source).resolve()
        else:
            out[target] = volumes_dir / source
    files = secret_files(secrets_dir)
    for name in SERVICES[service].get("secrets", []):
        out[f"/run/secrets/{name}"] = files[name]
    return out


def to_host(value: Any, table: dict[str, Path]) -> Any:
    """``value`` with every container path under a mount replaced by the host path mounted there."""
    if isinstance(value, dict):
        return {k: to_host(v, table) for k, v in value.items()}
    if isinstance(value, list):
        return [to_host(v, table) for v in value]
    if isinstance(value, str):
        for target in sorted(table, key=len, reverse=True):
            if value == target or value.startswith(target + "/"):
                return str(table[target]) + value[len(target) :]
    return value


def gateway_config(secrets_dir: Path, volumes_dir: Path) -> Config:
    target = next(
        spec.split(":")[1]
        for spec in SERVICES["pgwarden"]["volumes"]
        if spec.split(":")[1] == "/etc/pgwarden/pgwarden.yaml"
    )
    table = mounts("pgwarden", secrets_dir, volumes_dir)
    raw = yaml.safe_load(table[target].read_text())
    return parse_config(to_host(raw, table), base=table[target].parent, source=table[target])


def command_flag(command: list[str], flag: str) -> str:
    return next(arg.split("=", 1)[1] for arg in command if arg.startswith(flag + "="))


# ---------------------------------------------------------------------- services and images


def test_services_images_and_start_order() -> None:
    assert set(SERVICES) == {"postgres", "opa", "mosquitto", "pgwarden"}
    images = {name: s["image"] for name, s in SERVICES.items()}
    assert images["postgres"].startswith("postgres:")
    assert images["opa"].startswith("openpolicyagent/opa:")
    assert images["mosquitto"].startswith("eclipse-mosquitto:")
    for name, image in images.items():
        tag = image.rpartition(":")[2]
        assert ":" in image and re.match(r"^\d+\.\d+", tag), f"{name}: {image} is not pinned to a version tag"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert images["pgwarden"] == f"pgwarden:{version}" and SERVICES["pgwarden"]["build"] == "."
    assert SERVICES["pgwarden"]["depends_on"] == {
        s: {"condition": "service_healthy"} for s in ("postgres", "opa", "mosquitto")
    }
    for name, service in SERVICES.items():
        test = service["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
        assert service["restart"] == "unless-stopped", name


def test_dockerfile_builds_the_package_and_runs_as_non_root() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    assert "RUN pip install . && rm -rf /src" in lines
    user = next(line.split()[1] for line in lines if line.startswith("USER "))
    assert user.split(":")[0] not in ("0", "root")
    assert lines[-1] == 'CMD ["pgwarden", "run", "--config", "/etc/pgwarden/pgwarden.yaml"]'
    for line in lines:
        if line.startswith("COPY "):
            for source in [a for a in line.split()[1:-1] if not a.startswith("--")]:
                assert (ROOT / source).exists(), source
    # What the image copies is exactly what the build context lets through.
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore and "!deploy/docker-entrypoint.sh" in ignore and "!enforcer/" in ignore


def test_every_mount_and_secret_exists(secrets_dir: Path, tmp_path: Path) -> None:
    declared_volumes = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        for spec in service.get("volumes", []):
            parts = spec.split(":")
            source = parts[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
                assert parts[-1] == "ro", f"{name}: bind mount {spec} should be read-only"
            else:
                assert source in declared_volumes, f"{name}: volume {source} is not declared"
        for secret in service.get("secrets", []):
            assert secret in COMPOSE["secrets"], f"{name}: secret {secret} is not declared"
    files = secret_files(secrets_dir)
    for name, path in files.items():
        assert path.is_file() and path.stat().st_size > 0, f"secret {name}: {path} was not written"
        assert path.stat().st_mode & 0o044, f"secret {name} must be readable by the containers' users"
    assert (secrets_dir.stat().st_mode & 0o777) == 0o700
    # Without PGWARDEN_SECRETS the files are looked for where Git ignores them.
    default = [interpolate(s["file"], {}) for s in COMPOSE["secrets"].values()]
    assert all(p.startswith("./deploy/secrets/") for p in default)
    assert (ROOT / "deploy" / "secrets" / ".gitignore").read_text().splitlines()[1:] == ["*", "!.gitignore"]


def test_init_secrets_keeps_what_exists(secrets_dir: Path) -> None:
    before = {p: p.read_bytes() for p in secrets_dir.rglob("*") if p.is_file()}
    env = {**os.environ, "PGWARDEN": str(ROOT / ".venv" / "bin" / "pgwarden")}
    subprocess.run([str(ROOT / "deploy" / "init-secrets.sh"), str(secrets_dir)], env=env, check=True)
    assert {p: p.read_bytes() for p in secrets_dir.rglob("*") if p.is_file()} == before


# ---------------------------------------------------------------------- the gateway's configuration


def test_gateway_configuration_loads_with_what_compose_mounts(secrets_dir: Path, tmp_path: Path) -> None:
    cfg = gateway_config(secrets_dir, tmp_path)
    assert cfg.policy.engine == "opa" and cfg.policy.opa is not None
    opa_port = command_flag(SERVICES["opa"]["command"], "--addr").rpartition(":")[2]
    assert cfg.policy.opa.url == f"http://opa:{opa_port}"
    assert [p.resolve() for p in cfg.policy.paths] == [(ROOT / "policies" / "rego").resolve()]
    demo = cfg.connections["demo"]
    assert (demo.host, demo.sslmode) == ("postgres", "verify-full")
    assert demo.sslrootcert == secret_files(secrets_dir)["postgres_tls_cert"]
    assert demo.password.read() == secret_files(secrets_dir)["demo_gateway_password"].read_text()
    assert cfg.gateway_tokens is not None and cfg.listener.tls is not None
    assert cfg.audit.decision_log is not None and cfg.audit.decision_log.on_failure == "refuse"
    assert cfg.audit.decision_log.dir == tmp_path / "pgwarden-data" / "decisions"
    assert cfg.approvals is not None and cfg.approvals.mqtt is not None
    mosquitto_port = re.search(r"^listener (\d+)", (ROOT / "deploy" / "mosquitto.conf").read_text(), re.M)
    assert mosquitto_port is not None
    assert (cfg.approvals.mqtt.host, cfg.approvals.mqtt.port) == ("mosquitto", int(mosquitto_port.group(1)))
    assert cfg.approvals.mqtt.password is not None
    for store in (cfg.approvals.store, cfg.audit.sessions_store):
        assert store is not None and store.startswith("postgresql://pgwarden_state@postgres:5432/")
        assert "sslmode=verify-full" in store
    env = SERVICES["pgwarden"]["environment"]
    assert env["PGPASSWORD_FILE"] == "/run/secrets/pgwarden_state_password"
    assert cfg.listener.port == 6432 and "6432:6432" in SERVICES["pgwarden"]["ports"]
    assert (
        cfg.api is not None
        and f"127.0.0.1:{cfg.api.listen_port}:{cfg.api.listen_port}" in (SERVICES["pgwarden"]["ports"])
    )


def test_gateway_configuration_passes_the_conftest_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    report = check_configs(
        [Path("deploy/pgwarden.compose.yaml")],
        SHIPPED_CONFIG_RULES,
        data=[ROOT / "policies" / "rego"],
        conftest="",
    )
    assert report.failures == [] and report.warnings == []


# ---------------------------------------------------------------------- OPA


def test_opa_serves_the_tested_policies_with_its_configuration() -> None:
    opa = SERVICES["opa"]
    command = opa["command"]
    assert command[:2] == ["run", "--server"]
    table = {spec.split(":")[1]: spec.split(":")[0] for spec in opa["volumes"]}
    assert table["/policies"] == "./policies/rego" and "/policies" in command
    assert table["/system"] == "./opa/system" and "/system" in command
    assert table[command_flag(command, "--config-file")] == "./opa/config.yaml"
    assert command_flag(command, "--ignore") == "*_test.rego"
    # The directory OPA serves is the one the policy tests run on.
    makefile = (ROOT / "Makefile").read_text()
    assert "pgwarden policy test policies/rego" in makefile
    assert table["/policies"].removeprefix("./") == "policies/rego"


@pytest.mark.parametrize("name", ["config.yaml", "config.bundle.example.yaml"])
def test_opa_configurations_name_the_decision_log_plugin(name: str) -> None:
    cfg = yaml.safe_load((ROOT / "opa" / name).read_text())
    logs = cfg["decision_logs"]
    assert logs.get("console") is True or logs.get("service") in cfg.get("services", {})
    assert logs["mask_decision"] == "/system/log/mask"
    for bundle in cfg.get("bundles", {}).values():
        assert bundle["service"] in cfg["services"]
        assert bundle["signing"]["keyid"] in cfg["keys"]


def test_the_mask_policy_is_tested() -> None:
    from enforcer.policy.rego_tests import run_policy_tests

    assert run_policy_tests([ROOT / "opa" / "system"]) == 0


# ---------------------------------------------------------------------- mosquitto


def test_mosquitto_configuration() -> None:
    conf = (ROOT / "deploy" / "mosquitto.conf").read_text()
    settings = dict(
        line.split(None, 1) for line in conf.splitlines() if line.strip() and not line.startswith("#")
    )
    assert settings["allow_anonymous"] == "false"
    data = next(spec.split(":")[1] for spec in SERVICES["mosquitto"]["volumes"] if "mosquitto-data" in spec)
    assert settings["password_file"].startswith(data + "/")
    assert "mosquitto_passwd -U " + settings["password_file"] in " ".join(SERVICES["mosquitto"]["command"])


@pytest.fixture
def broker(secrets_dir: Path, tmp_path: Path) -> Iterator[int]:
    """Mosquitto started with deploy/mosquitto.conf after the compose command's password bootstrap.

    Container paths are mapped to a temporary directory, the listener to a free loopback port,
    and the chown to the image's mosquitto user is left out (the broker runs as the test's user).
    """
    if not shutil.which("mosquitto") and not Path("/usr/sbin/mosquitto").exists():
        pytest.fail("mosquitto is not installed (.ci/run installs Debian's mosquitto package)")
    from enforcer.localpg import free_port

    port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    script = SERVICES["mosquitto"]["command"][2].replace("$$", "$")
    script = script.split("&& exec mosquitto")[0]
    script = re.sub(r"chown \S+ \S+ &&", "", script)
    script = script.replace("/mosquitto/data", str(data)).replace("/run/secrets", str(secrets_dir))
    subprocess.run(["sh", "-c", script], check=True)
    conf = (ROOT / "deploy" / "mosquitto.conf").read_text()
    conf = conf.replace("/mosquitto/data", str(data)).replace("listener 1883", f"listener {port} 127.0.0.1")
    if os.geteuid() == 0:
        conf += "user root\n"  # as root, mosquitto would switch to its own user, who cannot read tmp_path
    (tmp_path / "mosquitto.conf").write_text(conf)
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(tmp_path / "mosquitto.conf")], stderr=subprocess.PIPE)
    try:
        from enforcer.localpg import LocalPostgres

        LocalPostgres(tmp_path, port).wait_ready(timeout=10)  # waits for the TCP port
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_broker_admits_the_gateway_with_its_secret_only(broker: int, secrets_dir: Path) -> None:
    import aiomqtt

    password = (secrets_dir / "mqtt_password").read_text()

    async def connect(**kw: Any) -> None:
        async with aiomqtt.Client("127.0.0.1", broker, **kw) as client:
            await client.publish("pgwarden/approvals/requested", b"{}", qos=1)

    asyncio.run(connect(username="pgwarden", password=password))
    for kw in ({"username": "pgwarden", "password": "wrong"}, {}):
        with pytest.raises(aiomqtt.MqttError, match="Not authorized"):
            asyncio.run(connect(**kw))


# ---------------------------------------------------------------------- Postgres


@pytest.mark.integration
def test_postgres_init_script_creates_the_logins(secrets_dir: Path, workdir: Path) -> None:
    """deploy/postgres-init.sh on a real Postgres serving the init-secrets.sh certificate.

    The certificate is checked the way the stores check it (libpq, verify-full for host "postgres")
    and the way the gateway checks its upstream (its own TLS context for connection "demo").
    """
    import psycopg

    from enforcer.localpg import LocalPostgres, free_port

    pg = LocalPostgres(workdir / "compose-init-pg", free_port())  # workdir: readable by Postgres's user
    pg.init()  # a cluster that cannot be created is a failure here, never a skip
    pg.enable_ssl(secrets_dir / "postgres_tls" / "server.crt", secrets_dir / "postgres_tls" / "server.key")
    pg.start()
    try:
        pg.psql("CREATE DATABASE demo")
        schema = next(s.split(":")[0] for s in SERVICES["postgres"]["volumes"] if "10-demo-schema" in s)
        pg.psql((ROOT / schema).read_text(), database="demo")
        script = (ROOT / "deploy" / "postgres-init.sh").read_text().replace("/run/secrets", str(secrets_dir))
        env = {
            **os.environ,
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": "demo",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(pg.port),
            "PGPASSWORD": pg.superuser_password,
        }
        proc = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr

        def connect(user: str, dbname: str, secret: str) -> psycopg.Connection[Any]:
            return psycopg.connect(
                host="postgres",
                hostaddr="127.0.0.1",
                port=pg.port,
                user=user,
                dbname=dbname,
                password=(secrets_dir / secret).read_text(),
                sslmode="verify-full",
                sslrootcert=str(secrets_dir / "postgres_tls" / "server.crt"),
            )

        with connect("demo_gateway", "demo", "demo_gateway_password") as conn:
            assert conn.execute("SELECT count(*) >= 0 FROM customers").fetchone() == (True,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE TABLE scratch (x int)")
        with connect("pgwarden_state", "pgwarden_state", "pgwarden_state_password") as conn:
            conn.execute("CREATE SCHEMA pgwarden")
        # The gateway's own upstream TLS context for connection "demo" accepts the server too.
        demo = gateway_config(secrets_dir, workdir).connections["demo"]
        context = upstream_context(demo)
        assert context is not None and context.check_hostname
        with socket.create_connection(("127.0.0.1", pg.port), timeout=5) as raw:
            raw.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
            assert raw.recv(1) == b"S"
            with context.wrap_socket(raw, server_hostname=demo.host) as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        pg.stop()


# ---------------------------------------------------------------------- docker compose itself


def test_docker_compose_accepts_the_file(secrets_dir: Path) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker CLI has no compose plugin (`docker compose` is unavailable)")
    proc = subprocess.run(
        [docker, "compose", "-f", str(ROOT / "compose.yaml"), "config", "-q"],
        env={**os.environ, "PGWARDEN_SECRETS": str(secrets_dir)},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
