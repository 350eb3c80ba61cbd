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
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from enforcer.store_url import is_postgres_url


class ConfigError(Exception):
    """The configuration is invalid; the message names the key and the fix."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"us": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 10**6, "mib": 1024**2, "gb": 10**9, "gib": 1024**3}
SSLMODES = ("disable", "require", "verify-ca", "verify-full")


def parse_duration(value: Any, key: str) -> float:
    """Seconds from ``30``, ``"30s"``, ``"15m"``, ``"250ms"``, ``"200us"``; 0 disables a timeout."""
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
class UpstreamRole:
    """The upstream login used for sessions whose identity is in one of ``groups``."""

    groups: tuple[str, ...]
    user: str
    password: CredentialSource


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
    #: Per-identity upstream logins, first match wins; no match -> ``user``/``password``.
    roles: tuple[UpstreamRole, ...] = ()

    def login_for(self, groups: tuple[str, ...]) -> tuple[str, CredentialSource]:
        for role in self.roles:
            if set(role.groups) & set(groups):
                return role.user, role.password
        return self.user, self.password


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
    #: A Unix socket (mode 0600) for `pgwarden mcp`: sessions on it are MCP sessions
    #: (``session.protocol`` = ``mcp``); served by worker 0.
    mcp_socket: Path | None = None
    #: Keep polling this long after a read instead of sleeping (see enforcer/proxy/busypoll.py); 0 = off.
    busy_poll: float = 0.0002


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
    #: Reload when a file under ``paths`` changes (checked this often; 0 disables; SIGHUP always works).
    watch_interval: float = 2.0


@dataclass(frozen=True)
class DecisionLogConfig:
    """Hash-chained JSONL segments of decision records (one chain per gateway process)."""

    dir: Path
    rotate_size: int = 64 * 1024 * 1024
    #: always: fsync every record before the statement is forwarded; interval: at most every
    #: ``fsync_interval`` (and at rotation/close); never: leave it to the OS. A record is always
    #: written (handed to the kernel) before forwarding, so a killed gateway loses none; fsync
    #: matters for power loss.
    fsync: str = "interval"
    fsync_interval: float = 1.0
    #: refuse: a record that cannot be written refuses the statement (fail closed); forward: forward
    #: it anyway and log an error for every such statement.
    on_failure: str = "refuse"
    #: Segments older than this are deleted at rotation (an anchor keeps the chain verifiable).
    retention: float | None = None


@dataclass(frozen=True)
class SessionRecordingConfig:
    #: A SQLite file path or a postgresql:// URL (password from PGPASSWORD/PGPASSFILE, not the URL).
    store: str
    record_rows: bool = False
    max_rows_per_statement: int = 100
    max_bytes_per_session: int = 1024 * 1024


@dataclass(frozen=True)
class AuditConfig:
    decision_log: DecisionLogConfig | None = None
    sessions: SessionRecordingConfig | None = None
    #: Names this gateway's chains (``<instance>-w<worker>``); defaults to the host name.
    instance: str = ""
    #: Keep the full AST in recorded inputs (it can be re-derived from the recorded text).
    record_ast: bool = False

    @property
    def sessions_store(self) -> str | None:
        return self.sessions.store if self.sessions is not None else None


#: The policies shipped with pgwarden (used when the configuration names none).
SHIPPED_POLICIES = Path(__file__).resolve().parent.parent / "policies" / "rego"


@dataclass(frozen=True)
class OIDCIssuerConfig:
    """One trusted OIDC issuer whose ID/access tokens clients may present as passwords."""

    name: str
    issuer: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    #: Other ``iss`` values the same issuer signs with (Google: ``accounts.google.com``);
    #: keys and discovery still come from ``issuer``.
    issuer_aliases: tuple[str, ...] = ()
    #: Explicit JWKS URL; when None it comes from <issuer>/.well-known/openid-configuration.
    jwks_uri: str | None = None
    max_token_lifetime: float = 3600.0
    clock_skew: float = 30.0
    subject_claim: str = "sub"
    #: Claims whose values (string or list of strings) become the identity's groups.
    groups_claims: tuple[str, ...] = ("groups",)
    #: The claim the startup user must equal (after user_map).
    user_claim: str = "sub"
    #: Claim value -> startup user name, for subjects that are not valid user names.
    user_map: dict[str, str] = field(default_factory=dict)
    jwks_refresh_min_interval: float = 30.0
    http_timeout: float = 5.0
    ca_file: Path | None = None


@dataclass(frozen=True)
class IdentityConfig:
    oidc: tuple[OIDCIssuerConfig, ...] = ()
    #: How long a session may outlive its token's expiry (0: closed at the end of the running statement).
    session_expiry_grace: float = 0.0


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "text"


@dataclass(frozen=True)
class ApiConfig:
    """The HTTP server for auditors (session pages and JSON API); plain HTTP, so keep it on loopback."""

    listen_host: str
    listen_port: int
    #: Identities in one of these groups may read recorded sessions.
    auditor_groups: tuple[str, ...] = ("auditors",)


@dataclass(frozen=True)
class MQTTNotifyConfig:
    host: str
    port: int = 1883
    topic_prefix: str = "pgwarden/approvals"
    username: str | None = None
    password: CredentialSource | None = None
    tls: bool = False
    ca_file: Path | None = None


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    format: str = "json"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ApprovalsConfig:
    """Holding ``review`` decisions for a person (without it, reviews are refused)."""

    #: A SQLite file path or a postgresql:// URL (shared by several gateway instances).
    store: str
    #: How long a client waits when the policy names no timeout.
    timeout: float = 300.0
    #: How long a request, and an approval of it, stays valid (the retry window after a timeout).
    validity: float = 3600.0
    #: How often a waiting session checks the store for decisions taken by another process.
    poll_interval: float = 0.25
    #: Base URL of the approvals page, for the NOTICE and notifications (default: from api.listen).
    public_url: str = ""
    mqtt: MQTTNotifyConfig | None = None
    webhooks: tuple[WebhookConfig, ...] = ()


@dataclass(frozen=True)
class MaskingConfig:
    """Enforcing ``mask`` decisions (without it, they are refused)."""

    #: The key of the ``hash`` strategy (at least 16 bytes); never in policy. None: hash masks deny.
    hash_key_file: Path | None = None
    #: How long an upstream catalog snapshot is reused (DDL through the gateway refreshes it at once).
    catalog_ttl: float = 60.0
    #: A masked column in WHERE/JOIN/GROUP BY/ORDER BY: compare masked values, or deny the statement.
    predicates: str = "filter"
    redact_text: str = "****"
    #: Characters ``partial`` keeps (the last N).
    partial_keep: int = 4
    #: Functions whose bodies the rewriter may treat as harmless (schema-qualified), e.g. audited helpers.
    trusted_functions: tuple[str, ...] = ()

    def hash_key(self) -> bytes | None:
        if self.hash_key_file is None:
            return None
        try:
            key = self.hash_key_file.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(
                f"masking.hash_key_file: cannot read {self.hash_key_file}: {exc.strerror}"
            ) from None
        if len(key) < 16:
            raise ConfigError(
                f"masking.hash_key_file: {self.hash_key_file} holds {len(key)} bytes; use at least 16 "
                "(for example `head -c 32 /dev/urandom | base64 > mask.key`)"
            )
        return key


@dataclass(frozen=True)
class Config:
    listener: ListenerConfig
    #: None when clients authenticate with OIDC tokens only.
    gateway_tokens: GatewayTokenConfig | None
    connections: dict[str, UpstreamConnection]
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    policy: PolicyConfig = field(default_factory=lambda: PolicyConfig(paths=(SHIPPED_POLICIES,)))
    audit: AuditConfig = field(default_factory=AuditConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    #: None when the configuration has no ``api`` section (no HTTP server).
    api: ApiConfig | None = None
    #: None when the configuration has no ``approvals`` section (review decisions are refused).
    approvals: ApprovalsConfig | None = None
    #: None when the configuration has no ``masking`` section (mask decisions are refused).
    masking: MaskingConfig | None = None
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
            "mcp_socket",
            "busy_poll",
        },
        key,
    )
    host = _str(raw, "host", key, "127.0.0.1")
    mcp_socket = (
        _path(raw["mcp_socket"], f"{key}.mcp_socket", base, must_exist=False)
        if raw.get("mcp_socket")
        else None
    )
    if mcp_socket is not None and len(str(mcp_socket).encode()) > 100:
        raise ConfigError(
            f"{key}.mcp_socket: {mcp_socket} is too long for a Unix socket path; use a shorter one"
        )
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
        mcp_socket=mcp_socket,
        busy_poll=_busy_poll(raw.get("busy_poll", "200us"), f"{key}.busy_poll"),
    )


def _busy_poll(value: Any, key: str) -> float:
    window = parse_duration(value, key)
    if window > 0.01:
        raise ConfigError(
            f"{key}: {value!r} is longer than 10ms; polling pays off only for the gap between a "
            "statement and its answer (hundreds of microseconds). Use 200us, or 0 to turn it off"
        )
    return window


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
            "roles",
        },
        key,
    )
    if "password" in raw:
        raise ConfigError(
            f"{key}.password: inline passwords are not accepted; use password_env or password_file"
        )
    cred = _credential(raw, key, base)
    roles_raw = raw.get("roles") or []
    if not isinstance(roles_raw, list):
        raise ConfigError(f"{key}.roles: expected a list of {{groups, user, password_env|password_file}}")
    roles = []
    for i, r in enumerate(roles_raw):
        rkey = f"{key}.roles[{i}]"
        r = _mapping(r, rkey)
        if "password" in r:
            raise ConfigError(
                f"{rkey}.password: inline passwords are not accepted; use password_env or password_file"
            )
        _reject_unknown(r, {"groups", "user", "password_env", "password_file"}, rkey)
        groups = r.get("groups")
        if not isinstance(groups, list) or not groups or not all(isinstance(g, str) and g for g in groups):
            raise ConfigError(f"{rkey}.groups: expected a non-empty list of group names")
        roles.append(UpstreamRole(tuple(groups), _str(r, "user", rkey), _credential(r, rkey, base)))
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
        roles=tuple(roles),
    )


def _credential(raw: dict[str, Any], key: str, base: Path) -> CredentialSource:
    if "password_env" in raw and "password_file" in raw:
        raise ConfigError(f"{key}: set only one of password_env and password_file")
    return CredentialSource(
        env=_str(raw, "password_env", key) if "password_env" in raw else None,
        file=_path(raw["password_file"], f"{key}.password_file", base) if "password_file" in raw else None,
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
        top,
        {
            "listener",
            "gateway_tokens",
            "connections",
            "logging",
            "policy",
            "audit",
            "identity",
            "api",
            "approvals",
            "masking",
        },
        "configuration",
    )
    listener = _listener(_mapping(top.get("listener"), "listener"), base)

    tokens = _gateway_tokens(top.get("gateway_tokens"), base)

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
    identity = _identity(_mapping(top.get("identity"), "identity"), base)
    if tokens is None and not identity.oidc:
        raise ConfigError(
            "gateway_tokens: required unless identity.oidc names an issuer; clients need some token to "
            "present (`pgwarden token keygen <file>` writes a signing key for gateway tokens)"
        )
    for issuer in identity.oidc:
        if tokens is not None and issuer.issuer == tokens.issuer:
            raise ConfigError(
                f"identity.oidc: issuer {issuer.issuer!r} ({issuer.name}) equals gateway_tokens.issuer; "
                "give gateway tokens an issuer of their own"
            )
    api = _api(top.get("api"))
    return Config(
        listener=listener,
        gateway_tokens=tokens,
        connections=connections,
        logging=LoggingConfig(level=level, format=fmt),
        policy=_policy(_mapping(top.get("policy"), "policy"), base),
        audit=_audit(_mapping(top.get("audit"), "audit"), base),
        identity=identity,
        api=api,
        approvals=_approvals(top.get("approvals"), base, api),
        masking=_masking(top.get("masking"), base),
        source=source,
    )


def _api(raw_section: Any) -> ApiConfig | None:
    key = "api"
    if raw_section is None:
        return None
    raw = _mapping(raw_section, key)
    _reject_unknown(raw, {"listen", "auditor_groups"}, key)
    listen = _str(raw, "listen", key)
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\s\[\]]+):(\d{1,5})", listen)
    port = int(m.group(2) or m.group(4)) if m else 0
    if m is None or not 1 <= port <= 65535:
        raise ConfigError(
            f"{key}.listen: expected host:port such as 127.0.0.1:8080 (or [::1]:8080), got {listen!r}"
        )
    groups = raw.get("auditor_groups", ["auditors"])
    if not isinstance(groups, list) or not groups or not all(isinstance(g, str) and g for g in groups):
        raise ConfigError(
            f"{key}.auditor_groups: expected a non-empty list of group names, such as [auditors], "
            f"got {groups!r}"
        )
    return ApiConfig(listen_host=m.group(1) or m.group(3), listen_port=port, auditor_groups=tuple(groups))


def _masking(raw_section: Any, base: Path) -> MaskingConfig | None:
    key = "masking"
    if raw_section is None:
        return None
    raw = _mapping(raw_section, key)
    _reject_unknown(
        raw,
        {
            "hash_key_file",
            "hash_key",
            "catalog_ttl",
            "predicates",
            "redact_text",
            "partial_keep",
            "trusted_functions",
        },
        key,
    )
    if "hash_key" in raw:
        raise ConfigError(
            f"{key}.hash_key: an inline key is not accepted; put it in a file and set {key}.hash_key_file"
        )
    predicates = _str(raw, "predicates", key, "filter")
    if predicates not in ("filter", "deny"):
        raise ConfigError(f"{key}.predicates: expected filter or deny, got {predicates!r}")
    trusted = raw.get("trusted_functions") or []
    if not isinstance(trusted, list) or not all(isinstance(f, str) and "." in f for f in trusted):
        raise ConfigError(f"{key}.trusted_functions: expected a list of schema-qualified function names")
    cfg = MaskingConfig(
        hash_key_file=_path(raw["hash_key_file"], f"{key}.hash_key_file", base)
        if raw.get("hash_key_file")
        else None,
        catalog_ttl=parse_duration(raw.get("catalog_ttl", "60s"), f"{key}.catalog_ttl"),
        predicates=predicates,
        redact_text=_str(raw, "redact_text", key, "****"),
        partial_keep=_int(raw, "partial_keep", key, 4, 0, 64),
        trusted_functions=tuple(f.lower() for f in trusted),
    )
    cfg.hash_key()  # readable and long enough, or a ConfigError naming the file
    return cfg


def _store_url(value: Any, key: str, base: Path) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: missing; give a SQLite file path or a postgresql:// URL")
    if is_postgres_url(value):
        if "@" in value and ":" in value.split("://", 1)[1].split("@", 1)[0]:
            raise ConfigError(
                f"{key}: the URL carries a password; put it in PGPASSWORD or a PGPASSFILE instead"
            )
        return value
    return str(_path(value.removeprefix("sqlite:"), key, base, must_exist=False))


def _approvals(raw_section: Any, base: Path, api: ApiConfig | None) -> ApprovalsConfig | None:
    key = "approvals"
    if raw_section is None:
        return None
    raw = _mapping(raw_section, key)
    _reject_unknown(raw, {"store", "timeout", "validity", "poll_interval", "public_url", "notify"}, key)
    timeout = parse_duration(raw.get("timeout", "5m"), f"{key}.timeout")
    validity = parse_duration(raw.get("validity", "1h"), f"{key}.validity")
    if timeout <= 0 or validity < timeout:
        raise ConfigError(f"{key}: timeout must be > 0 and validity at least the timeout")
    public_url = _str(raw, "public_url", key) if raw.get("public_url") is not None else ""
    if not public_url and api is not None:
        host = f"[{api.listen_host}]" if ":" in api.listen_host else api.listen_host
        public_url = f"http://{host}:{api.listen_port}"
    notify = _mapping(raw.get("notify"), f"{key}.notify")
    _reject_unknown(notify, {"mqtt", "webhooks"}, f"{key}.notify")
    mqtt = None
    if notify.get("mqtt") is not None:
        mk = f"{key}.notify.mqtt"
        m = _mapping(notify["mqtt"], mk)
        _reject_unknown(
            m,
            {"host", "port", "topic_prefix", "username", "password_env", "password_file", "tls", "ca_file"},
            mk,
        )
        password = None
        if m.get("password_env") or m.get("password_file"):
            password = _credential(m, mk, base)
        ca = m.get("ca_file")
        mqtt = MQTTNotifyConfig(
            host=_str(m, "host", mk),
            port=_int(m, "port", mk, 1883, 1, 65535),
            topic_prefix=_str(m, "topic_prefix", mk, "pgwarden/approvals").rstrip("/"),
            username=m.get("username"),
            password=password,
            tls=_bool(m, "tls", mk, False),
            ca_file=_path(ca, f"{mk}.ca_file", base) if ca else None,
        )
    hooks = []
    raw_hooks = notify.get("webhooks") or []
    if not isinstance(raw_hooks, list):
        raise ConfigError(f"{key}.notify.webhooks: expected a list of {{url, format, headers}}")
    for i, h in enumerate(raw_hooks):
        hk = f"{key}.notify.webhooks[{i}]"
        hm = _mapping(h, hk)
        _reject_unknown(hm, {"url", "format", "headers"}, hk)
        url = _str(hm, "url", hk)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{hk}.url: expected an http(s) URL, got {url!r}")
        fmt = _str(hm, "format", hk, "json")
        if fmt not in ("json", "slack"):
            raise ConfigError(f"{hk}.format: {fmt!r} is not one of json, slack")
        headers = _mapping(hm.get("headers"), f"{hk}.headers")
        hooks.append(WebhookConfig(url, fmt, tuple((str(k), str(v)) for k, v in headers.items())))
    return ApprovalsConfig(
        store=_store_url(raw.get("store"), f"{key}.store", base),
        timeout=timeout,
        validity=validity,
        poll_interval=parse_duration(raw.get("poll_interval", "250ms"), f"{key}.poll_interval"),
        public_url=public_url,
        mqtt=mqtt,
        webhooks=tuple(hooks),
    )


def _gateway_tokens(raw_section: Any, base: Path) -> GatewayTokenConfig | None:
    if raw_section is None:
        return None
    gt = _mapping(raw_section, "gateway_tokens")
    _reject_unknown(gt, {"signing_key_file", "issuer", "audience", "max_ttl", "clock_skew"}, "gateway_tokens")
    if "signing_key_file" not in gt:
        raise ConfigError(
            "gateway_tokens.signing_key_file: required; `pgwarden token keygen <file>` writes an Ed25519 key"
        )
    return GatewayTokenConfig(
        signing_key_file=_path(gt["signing_key_file"], "gateway_tokens.signing_key_file", base),
        issuer=_str(gt, "issuer", "gateway_tokens", "pgwarden"),
        audience=_str(gt, "audience", "gateway_tokens", "pgwarden"),
        max_ttl=parse_duration(gt.get("max_ttl", "1h"), "gateway_tokens.max_ttl"),
        clock_skew=parse_duration(gt.get("clock_skew", "30s"), "gateway_tokens.clock_skew"),
    )


def _policy(raw: dict[str, Any], base: Path) -> PolicyConfig:
    key = "policy"
    _reject_unknown(
        raw, {"engine", "paths", "opa", "decision_cache_ttl", "decision_cache_key", "watch_interval"}, key
    )
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
        watch_interval=parse_duration(raw.get("watch_interval", "2s"), f"{key}.watch_interval"),
    )


def _audit(raw: dict[str, Any], base: Path) -> AuditConfig:
    _reject_unknown(raw, {"decision_log", "sessions", "instance", "record_ast"}, "audit")
    instance = _str(raw, "instance", "audit", socket.gethostname() or "pgwarden")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", instance):
        raise ConfigError(
            f"audit.instance: {instance!r} cannot name a decision log stream; use letters, digits, '.', '_' "
            "and '-' (at most 64)"
        )
    return AuditConfig(
        decision_log=_decision_log(raw.get("decision_log"), base),
        sessions=_sessions(raw.get("sessions"), base),
        instance=instance,
        record_ast=_bool(raw, "record_ast", "audit", False),
    )


def _decision_log(value: Any, base: Path) -> DecisionLogConfig | None:
    key = "audit.decision_log"
    if value is None:
        return None
    raw = {"dir": value} if isinstance(value, str) else _mapping(value, key)
    _reject_unknown(raw, {"dir", "rotate_size", "fsync", "fsync_interval", "on_failure", "retention"}, key)
    if not raw.get("dir"):
        raise ConfigError(f"{key}.dir: missing; name the directory that holds the decision log segments")
    directory = _path(raw["dir"], f"{key}.dir", base, must_exist=False)
    if directory.suffix == ".jsonl":
        raise ConfigError(
            f"{key}: {directory} names a file; the decision log is a directory of hash-chained segments "
            "now, so name a directory (for example ./data/decisions)"
        )
    fsync = _str(raw, "fsync", key, "interval")
    if fsync not in ("always", "interval", "never"):
        raise ConfigError(f"{key}.fsync: {fsync!r} is not one of always, interval, never")
    on_failure = _str(raw, "on_failure", key, "refuse")
    if on_failure not in ("refuse", "forward"):
        raise ConfigError(f"{key}.on_failure: {on_failure!r} is not one of refuse, forward")
    rotate = parse_size(raw.get("rotate_size", 64 * 1024 * 1024), f"{key}.rotate_size")
    if rotate < 4096:
        raise ConfigError(f"{key}.rotate_size: {rotate} bytes is too small; use at least 4KiB")
    retention = raw.get("retention")
    return DecisionLogConfig(
        dir=directory,
        rotate_size=rotate,
        fsync=fsync,
        fsync_interval=parse_duration(raw.get("fsync_interval", "1s"), f"{key}.fsync_interval"),
        on_failure=on_failure,
        retention=parse_duration(retention, f"{key}.retention") if retention is not None else None,
    )


def _sessions(value: Any, base: Path) -> SessionRecordingConfig | None:
    key = "audit.sessions"
    if value is None:
        return None
    raw = {"store": value} if isinstance(value, str) else _mapping(value, key)
    _reject_unknown(raw, {"store", "record_rows", "max_rows_per_statement", "max_bytes_per_session"}, key)
    store = _store_url(raw.get("store"), f"{key}.store", base)
    return SessionRecordingConfig(
        store=store,
        record_rows=_bool(raw, "record_rows", key, False),
        max_rows_per_statement=_int(raw, "max_rows_per_statement", key, 100, 0, 1_000_000),
        max_bytes_per_session=parse_size(
            raw.get("max_bytes_per_session", 1024 * 1024), f"{key}.max_bytes_per_session"
        ),
    )


_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


def _identity(raw: dict[str, Any], base: Path) -> IdentityConfig:
    _reject_unknown(raw, {"oidc", "session_expiry_grace"}, "identity")
    issuers_raw = raw.get("oidc") or []
    if not isinstance(issuers_raw, list):
        raise ConfigError("identity.oidc: expected a list of issuers")
    issuers = []
    names = set()
    for i, r in enumerate(issuers_raw):
        key = f"identity.oidc[{i}]"
        r = _mapping(r, key)
        _reject_unknown(
            r,
            {
                "name",
                "issuer",
                "issuer_aliases",
                "audiences",
                "audience",
                "algorithms",
                "jwks_uri",
                "max_token_lifetime",
                "clock_skew",
                "subject_claim",
                "groups_claims",
                "user_claim",
                "user_map",
                "jwks_refresh_min_interval",
                "http_timeout",
                "ca_file",
            },
            key,
        )
        name = _str(r, "name", key)
        if name in names:
            raise ConfigError(f"{key}.name: {name!r} is used twice; issuer names must be unique")
        names.add(name)
        issuer = _str(r, "issuer", key)
        if not issuer.startswith(("https://", "http://")):
            raise ConfigError(f"{key}.issuer: expected the issuer URL (https://...), got {issuer!r}")
        aliases = r.get("issuer_aliases") or []
        if not isinstance(aliases, list) or not all(
            isinstance(a, str) and a and a != issuer for a in aliases
        ):
            raise ConfigError(
                f"{key}.issuer_aliases: expected a list of other iss values of this issuer, such as "
                "[accounts.google.com]"
            )
        auds = r.get("audiences", [r["audience"]] if "audience" in r else None)
        if not isinstance(auds, list) or not auds or not all(isinstance(a, str) and a for a in auds):
            raise ConfigError(
                f"{key}.audiences: required; the audience(s) your IdP puts in tokens for pgwarden"
            )
        algs = r.get("algorithms", ["RS256", "ES256", "EdDSA"])
        if not isinstance(algs, list) or not algs or any(a not in _ALGORITHMS for a in algs):
            raise ConfigError(
                f"{key}.algorithms: expected a list from {', '.join(_ALGORITHMS)} "
                f"(never none or HMAC for public-key issuers), got {algs!r}"
            )
        groups_claims = r.get("groups_claims", ["groups"])
        if not isinstance(groups_claims, list) or not all(isinstance(g, str) for g in groups_claims):
            raise ConfigError(f"{key}.groups_claims: expected a list of claim names")
        user_map = _mapping(r.get("user_map"), f"{key}.user_map")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in user_map.items()):
            raise ConfigError(f"{key}.user_map: expected claim value -> user name strings")
        jwks = r.get("jwks_uri")
        if jwks is not None and (not isinstance(jwks, str) or not jwks.startswith(("https://", "http://"))):
            raise ConfigError(f"{key}.jwks_uri: expected a URL, got {jwks!r}")
        issuers.append(
            OIDCIssuerConfig(
                name=name,
                issuer=issuer,
                issuer_aliases=tuple(aliases),
                audiences=tuple(auds),
                algorithms=tuple(algs),
                jwks_uri=jwks,
                max_token_lifetime=parse_duration(
                    r.get("max_token_lifetime", "1h"), f"{key}.max_token_lifetime"
                ),
                clock_skew=parse_duration(r.get("clock_skew", "30s"), f"{key}.clock_skew"),
                subject_claim=_str(r, "subject_claim", key, "sub"),
                groups_claims=tuple(groups_claims),
                user_claim=_str(r, "user_claim", key, "sub"),
                user_map=dict(user_map),
                jwks_refresh_min_interval=parse_duration(
                    r.get("jwks_refresh_min_interval", "30s"), f"{key}.jwks_refresh_min_interval"
                ),
                http_timeout=parse_duration(r.get("http_timeout", "5s"), f"{key}.http_timeout"),
                ca_file=_path(r["ca_file"], f"{key}.ca_file", base) if r.get("ca_file") else None,
            )
        )
    return IdentityConfig(
        oidc=tuple(issuers),
        session_expiry_grace=parse_duration(
            raw.get("session_expiry_grace", 0), "identity.session_expiry_grace"
        ),
    )
