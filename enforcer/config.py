"""The gateway configuration: one YAML file, typed and validated at start.

Owns: the schema of the configuration, parsing of durations and sizes, and
error messages that name the offending key and the fix.
Never: reads secrets into places they could be printed (credentials stay in
:class:`CredentialSource` until the upstream connection asks for them).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    """The configuration is invalid; the message names the key and the fix."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 10**6, "mib": 1024**2, "gb": 10**9, "gib": 1024**3}
SSLMODES = ("disable", "require", "verify-ca", "verify-full")


def parse_duration(value: Any, key: str) -> float:
    """Seconds from ``30``, ``"30s"``, ``"15m"``, ``"250ms"``; 0 disables a timeout."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration such as 30s or 15m, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError(f"{key}: a duration cannot be negative, got {value!r}")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    raise ConfigError(f"{key}: expected a duration such as 30s, 15m or 250ms, got {value!r}")


def parse_size(value: Any, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            n = int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]
            if n > 0:
                return n
    raise ConfigError(f"{key}: expected a positive size such as 1048576 or 64MiB, got {value!r}")


@dataclass(frozen=True)
class CredentialSource:
    """Where an upstream password comes from: an environment variable or a file."""

    env: str | None = None
    file: Path | None = None

    def read(self) -> str | None:
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(
                    f"upstream password: environment variable {self.env} is not set; "
                    "export it or use password_file"
                )
            return value
        if self.file is not None:
            try:
                return self.file.read_text().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(
                    f"upstream password: cannot read password_file {self.file}: {exc.strerror}"
                ) from None
        return None

    def __repr__(self) -> str:  # never the secret, only where it lives
        return f"CredentialSource(env={self.env!r}, file={self.file!r})"


@dataclass(frozen=True)
class UpstreamConnection:
    """One named upstream database; clients select it with the startup ``database``."""

    name: str
    host: str
    port: int
    database: str
    user: str
    password: CredentialSource
    sslmode: str = "disable"
    sslrootcert: Path | None = None
    connect_timeout: float = 5.0


@dataclass(frozen=True)
class TLSConfig:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ListenerConfig:
    host: str = "127.0.0.1"
    port: int = 6432
    tls: TLSConfig | None = None
    insecure_loopback_dev: bool = False
    max_clients: int = 200
    max_message_size: int = 64 * 1024 * 1024
    startup_timeout: float = 10.0
    idle_timeout: float = 0.0
    idle_in_transaction_timeout: float = 0.0
    shutdown_grace: float = 30.0
    allow_replication: bool = False
    allow_options: bool = False


@dataclass(frozen=True)
class GatewayTokenConfig:
    """Gateway-minted tokens: Ed25519-signed JWTs."""

    signing_key_file: Path
    issuer: str = "pgwarden"
    audience: str = "pgwarden"
    max_ttl: float = 3600.0
    clock_skew: float = 30.0


@dataclass(frozen=True)
class OPAConfig:
    url: str
    unix_socket: str | None = None
    timeout: float = 0.5


@dataclass(frozen=True)
class PolicyConfig:
    """Which engine decides, on which policies."""

    engine: str = "embedded"
    paths: tuple[Path, ...] = ()
    opa: OPAConfig | None = None
    decision_cache_ttl: float = 60.0
    decision_cache_key: str = "auto"


@dataclass(frozen=True)
class AuditConfig:
    decision_log: Path | None = None
    #: Keep the full AST in recorded inputs (it can be re-derived from the recorded text).
    record_ast: bool = False


#: The policies shipped with pgwarden (used when the configuration names none).
SHIPPED_POLICIES = Path(__file__).resolve().parent.parent / "policies" / "rego"


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "text"


@dataclass(frozen=True)
class Config:
    listener: ListenerConfig
    gateway_tokens: GatewayTokenConfig
    connections: dict[str, UpstreamConnection]
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    policy: PolicyConfig = field(default_factory=lambda: PolicyConfig(paths=(SHIPPED_POLICIES,)))
    audit: AuditConfig = field(default_factory=AuditConfig)
    source: Path | None = None


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
    return value


def _reject_unknown(section: dict[str, Any], allowed: set[str], key: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ConfigError(
            f"{key}: unknown key(s) {', '.join(unknown)}; allowed keys are {', '.join(sorted(allowed))}"
        )


def _str(section: dict[str, Any], name: str, key: str, default: str | None = None) -> str:
    value = section.get(name, default)
    if value is None:
        raise ConfigError(f"{key}.{name}: required; set it to a string")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}.{name}: expected a non-empty string, got {value!r}")
    return value


def _bool(section: dict[str, Any], name: str, key: str, default: bool) -> bool:
    value = section.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{key}.{name}: expected true or false, got {value!r}")
    return value


def _int(section: dict[str, Any], name: str, key: str, default: int, lo: int, hi: int) -> int:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{key}.{name}: expected an integer between {lo} and {hi}, got {value!r}")
    return value


def _path(value: Any, key: str, base: Path, must_exist: bool = True) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a file path, got {value!r}")
    p = Path(os.path.expandvars(value)).expanduser()
    if not p.is_absolute():
        p = base / p
    if must_exist and not p.exists():
        raise ConfigError(f"{key}: file {p} does not exist; create it or fix the path")
    return p


def _listener(raw: dict[str, Any], base: Path) -> ListenerConfig:
    key = "listener"
    _reject_unknown(
        raw,
        {
            "host",
            "port",
            "tls",
            "insecure_loopback_dev",
            "max_clients",
            "max_message_size",
            "startup_timeout",
            "idle_timeout",
            "idle_in_transaction_timeout",
            "shutdown_grace",
            "allow_replication",
            "allow_options",
        },
        key,
    )
    host = _str(raw, "host", key, "127.0.0.1")
    tls = None
    if raw.get("tls") is not None:
        t = _mapping(raw["tls"], f"{key}.tls")
        _reject_unknown(t, {"cert", "key"}, f"{key}.tls")
        if "cert" not in t or "key" not in t:
            raise ConfigError(
                f"{key}.tls: needs both cert and key; `pgwarden cert dev` writes a self-signed pair"
            )
        tls = TLSConfig(
            cert=_path(t["cert"], f"{key}.tls.cert", base), key=_path(t["key"], f"{key}.tls.key", base)
        )
    insecure = _bool(raw, "insecure_loopback_dev", key, False)
    if insecure:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise ConfigError(
                f"{key}.insecure_loopback_dev: only allowed when {key}.host is a loopback address "
                f"(127.0.0.1, ::1), not {host!r}; configure {key}.tls instead"
            )
    if tls is None and not insecure:
        raise ConfigError(
            f"{key}.tls: required, because clients send their token as a password; run "
            "`pgwarden cert dev` for a development certificate, or set "
            f"{key}.insecure_loopback_dev: true on a loopback-only development listener"
        )
    return ListenerConfig(
        host=host,
        port=_int(raw, "port", key, 6432, 0, 65535),
        tls=tls,
        insecure_loopback_dev=insecure,
        max_clients=_int(raw, "max_clients", key, 200, 1, 1_000_000),
        max_message_size=parse_size(raw.get("max_message_size", 64 * 1024 * 1024), f"{key}.max_message_size"),
        startup_timeout=parse_duration(raw.get("startup_timeout", 10), f"{key}.startup_timeout"),
        idle_timeout=parse_duration(raw.get("idle_timeout", 0), f"{key}.idle_timeout"),
        idle_in_transaction_timeout=parse_duration(
            raw.get("idle_in_transaction_timeout", 0), f"{key}.idle_in_transaction_timeout"
        ),
        shutdown_grace=parse_duration(raw.get("shutdown_grace", 30), f"{key}.shutdown_grace"),
        allow_replication=_bool(raw, "allow_replication", key, False),
        allow_options=_bool(raw, "allow_options", key, False),
    )


def _connection(name: str, raw: dict[str, Any], base: Path) -> UpstreamConnection:
    key = f"connections.{name}"
    if "password" in raw:
        raise ConfigError(
            f"{key}.password: inline passwords are not accepted; use password_env or password_file"
        )
    _reject_unknown(
        raw,
        {
            "host",
            "port",
            "database",
            "user",
            "password_env",
            "password_file",
            "sslmode",
            "sslrootcert",
            "connect_timeout",
        },
        key,
    )
    if "password" in raw:
        raise ConfigError(
            f"{key}.password: inline passwords are not accepted; use password_env or password_file"
        )
    if "password_env" in raw and "password_file" in raw:
        raise ConfigError(f"{key}: set only one of password_env and password_file")
    cred = CredentialSource(
        env=_str(raw, "password_env", key) if "password_env" in raw else None,
        file=_path(raw["password_file"], f"{key}.password_file", base) if "password_file" in raw else None,
    )
    sslmode = raw.get("sslmode", "disable")
    if sslmode not in SSLMODES:
        raise ConfigError(f"{key}.sslmode: expected one of {', '.join(SSLMODES)}, got {sslmode!r}")
    rootcert = None
    if raw.get("sslrootcert") is not None:
        rootcert = _path(raw["sslrootcert"], f"{key}.sslrootcert", base)
    return UpstreamConnection(
        name=name,
        host=_str(raw, "host", key, "127.0.0.1"),
        port=_int(raw, "port", key, 5432, 1, 65535),
        database=_str(raw, "database", key),
        user=_str(raw, "user", key),
        password=cred,
        sslmode=sslmode,
        sslrootcert=rootcert,
        connect_timeout=parse_duration(raw.get("connect_timeout", 5), f"{key}.connect_timeout"),
    )


def load_config(path: Path | str) -> Config:
    """Read and validate the YAML file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {p}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_config(raw, base=p.resolve().parent, source=p)


def parse_config(raw: Any, base: Path, source: Path | None = None) -> Config:
    top = _mapping(raw, "configuration")
    _reject_unknown(
        top, {"listener", "gateway_tokens", "connections", "logging", "policy", "audit"}, "configuration"
    )
    listener = _listener(_mapping(top.get("listener"), "listener"), base)

    gt = _mapping(top.get("gateway_tokens"), "gateway_tokens")
    _reject_unknown(gt, {"signing_key_file", "issuer", "audience", "max_ttl", "clock_skew"}, "gateway_tokens")
    if "signing_key_file" not in gt:
        raise ConfigError(
            "gateway_tokens.signing_key_file: required; `pgwarden token keygen <file>` writes an Ed25519 key"
        )
    tokens = GatewayTokenConfig(
        signing_key_file=_path(gt["signing_key_file"], "gateway_tokens.signing_key_file", base),
        issuer=_str(gt, "issuer", "gateway_tokens", "pgwarden"),
        audience=_str(gt, "audience", "gateway_tokens", "pgwarden"),
        max_ttl=parse_duration(gt.get("max_ttl", "1h"), "gateway_tokens.max_ttl"),
        clock_skew=parse_duration(gt.get("clock_skew", "30s"), "gateway_tokens.clock_skew"),
    )

    conns_raw = _mapping(top.get("connections"), "connections")
    if not conns_raw:
        raise ConfigError("connections: at least one upstream connection is required")
    connections = {}
    for name, body in conns_raw.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,63}", name):
            raise ConfigError(f"connections: invalid connection name {name!r}; use letters, digits, _ . -")
        connections[name] = _connection(name, _mapping(body, f"connections.{name}"), base)

    lg = _mapping(top.get("logging"), "logging")
    _reject_unknown(lg, {"level", "format"}, "logging")
    level = _str(lg, "level", "logging", "info").lower()
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"logging.level: expected debug, info, warning or error, got {level!r}")
    fmt = _str(lg, "format", "logging", "text")
    if fmt not in ("text", "json"):
        raise ConfigError(f"logging.format: expected text or json, got {fmt!r}")
    return Config(
        listener=listener,
        gateway_tokens=tokens,
        connections=connections,
        logging=LoggingConfig(level=level, format=fmt),
        policy=_policy(_mapping(top.get("policy"), "policy"), base),
        audit=_audit(_mapping(top.get("audit"), "audit"), base),
        source=source,
    )


def _policy(raw: dict[str, Any], base: Path) -> PolicyConfig:
    key = "policy"
    _reject_unknown(raw, {"engine", "paths", "opa", "decision_cache_ttl", "decision_cache_key"}, key)
    cache_key = raw.get("decision_cache_key", "auto")
    if cache_key not in ("auto", "exact", "facts"):
        raise ConfigError(f"{key}.decision_cache_key: expected auto, exact or facts, got {cache_key!r}")
    engine = raw.get("engine", "embedded")
    if engine not in ("embedded", "opa"):
        raise ConfigError(f"{key}.engine: expected embedded or opa, got {engine!r}")
    paths_raw = raw.get("paths", [str(SHIPPED_POLICIES)])
    if not isinstance(paths_raw, list) or not paths_raw:
        raise ConfigError(f"{key}.paths: expected a list of policy directories, got {paths_raw!r}")
    paths = tuple(_path(p, f"{key}.paths", base) for p in paths_raw)
    opa = None
    if engine == "opa":
        o = _mapping(raw.get("opa"), f"{key}.opa")
        _reject_unknown(o, {"url", "unix_socket", "timeout"}, f"{key}.opa")
        url = _str(o, "url", f"{key}.opa", "http://127.0.0.1:8181")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{key}.opa.url: expected an http:// or https:// URL, got {url!r}")
        sock = o.get("unix_socket")
        if sock is not None and not isinstance(sock, str):
            raise ConfigError(f"{key}.opa.unix_socket: expected a socket path, got {sock!r}")
        timeout = parse_duration(o.get("timeout", "500ms"), f"{key}.opa.timeout")
        if timeout <= 0:
            raise ConfigError(f"{key}.opa.timeout: must be positive (a decision must not wait forever)")
        opa = OPAConfig(url=url, unix_socket=sock, timeout=timeout)
    elif raw.get("opa") is not None:
        raise ConfigError(f"{key}.opa: only used with {key}.engine: opa")
    return PolicyConfig(
        engine=engine,
        paths=paths,
        opa=opa,
        decision_cache_ttl=parse_duration(raw.get("decision_cache_ttl", "60s"), f"{key}.decision_cache_ttl"),
        decision_cache_key=cache_key,
    )


def _audit(raw: dict[str, Any], base: Path) -> AuditConfig:
    _reject_unknown(raw, {"decision_log", "record_ast"}, "audit")
    log = raw.get("decision_log")
    return AuditConfig(
        decision_log=_path(log, "audit.decision_log", base, must_exist=False) if log else None,
        record_ast=_bool(raw, "record_ast", "audit", False),
    )
