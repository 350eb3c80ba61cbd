"""Refusals and failures: every way a client can be refused has a SQLSTATE and a clear message."""

from __future__ import annotations

import signal
import socket
import ssl
import threading
import time

import psycopg
import pytest

from enforcer.localpg import free_port
from enforcer.wire import (
    CancelRequest,
    ErrorResponse,
    FunctionCall,
    NegotiateProtocolVersion,
    Query,
    ReadyForQuery,
    StartupMessage,
)
from tests.integration.wireclient import SSL_REQUEST, WireClient

pytestmark = pytest.mark.integration


def sqlstate_of(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None)


def test_wrong_token_is_28P01(gateway) -> None:
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(gateway.dsn(password="not-a-token"))
    assert "not a token" in str(info.value)
    forged = gateway.token("ci-bot")[:-4] + "AAAA"
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(gateway.dsn(password=forged))
    assert "signature" in str(info.value)
    c = WireClient(gateway.port)
    err = c.login("ci-bot", "garbage")[0]
    assert isinstance(err, ErrorResponse) and err.sqlstate == "28P01" and err.severity == "FATAL"


def test_expired_and_foreign_tokens(gateway) -> None:
    import jwt

    expired = gateway.tokens.issue("ci-bot", [], 1)
    time.sleep(0)  # the token is only expired after exp + clock skew; forge one instead
    claims = jwt.decode(expired, options={"verify_signature": False})
    claims.update(exp=int(time.time()) - 600, iat=int(time.time()) - 900, nbf=int(time.time()) - 900)
    stale = jwt.encode(claims, gateway.tokens._private, algorithm="EdDSA")
    c = WireClient(gateway.port)
    err = c.login("ci-bot", stale)[0]
    assert err.sqlstate == "28P01" and "expired" in err.message
    hmac_token = jwt.encode({**claims, "exp": int(time.time()) + 60}, "s" * 32, algorithm="HS256")
    c = WireClient(gateway.port)
    err = c.login("ci-bot", hmac_token)[0]
    assert err.sqlstate == "28P01" and "algorithm" in err.message


def test_subject_mismatch_is_28000(gateway) -> None:
    c = WireClient(gateway.port)
    err = c.login("someone-else", gateway.token("ci-bot"))[0]
    assert err.sqlstate == "28000" and "user='ci-bot'" in err.message


def test_unknown_connection_is_3D000(gateway) -> None:
    c = WireClient(gateway.port)
    err = c.login("ci-bot", gateway.token(), database="prod")[0]
    assert err.sqlstate == "3D000" and "demo" in err.message


def test_replication_and_options_refused(gateway) -> None:
    c = WireClient(gateway.port)
    err = c.login("ci-bot", gateway.token(), replication="database")[0]
    assert err.sqlstate == "28000" and "replication" in err.message
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(gateway.dsn(options="-c search_path=evil"))
    assert "options" in str(info.value)


def test_tls_required_refuses_plaintext(gateway_factory) -> None:
    gw = gateway_factory(listener={"insecure_loopback_dev": False})
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(gw.dsn(sslmode="disable"))
    assert "TLS is required" in str(info.value)
    with psycopg.connect(gw.dsn(sslmode="require")) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (False,)
        assert conn.pgconn.ssl_in_use


def test_plaintext_after_ssl_request_is_refused(gateway) -> None:
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    sock.sendall(SSL_REQUEST + StartupMessage(params=(("user", "x"),)).encode())
    data = sock.recv(1024)
    # Either the refusal arrives at once, or 'S' was sent before the injected bytes landed
    # and the TLS handshake then fails on them; plaintext is never processed.
    assert data.startswith(b"E") or data == b"S"
    if data.startswith(b"E"):
        assert b"unencrypted data after SSL request" in data


def test_gssenc_request_answered_with_N_then_startup_works(gateway) -> None:
    c = WireClient(gateway.port)
    c.send(b"\x00\x00\x00\x08\x04\xd2\x16\x30")
    assert c.sock.recv(1) == b"N"
    msgs = c.login("ci-bot", gateway.token())
    assert isinstance(msgs[-1], ReadyForQuery)


def test_direct_tls_with_alpn(gateway) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["postgresql"])
    c = WireClient(gateway.port)
    c.sock = ctx.wrap_socket(c.sock)
    assert c.sock.selected_alpn_protocol() == "postgresql"
    assert isinstance(c.login("ci-bot", gateway.token())[-1], ReadyForQuery)
    # Direct TLS without ALPN is refused, as PostgreSQL 17 does.
    ctx2 = ssl.create_default_context()
    ctx2.check_hostname = False
    ctx2.verify_mode = ssl.CERT_NONE
    c2 = WireClient(gateway.port)
    c2.sock = ctx2.wrap_socket(c2.sock)
    err = c2.expect_error()
    assert err.sqlstate == "08P01" and "ALPN" in err.message


def test_negotiate_protocol_version(gateway) -> None:
    c = WireClient(gateway.port)
    c.start_tls()
    c.send(
        StartupMessage(
            protocol=(3 << 16) | 2, params=(("user", "ci-bot"), ("database", "demo"), ("_pq_.fancy", "1"))
        ).encode()
    )
    msg = c.recv_message()
    assert isinstance(msg, NegotiateProtocolVersion)
    assert msg.newest_minor == 0 and msg.unsupported_options == ("_pq_.fancy",)


def test_function_call_refused_session_survives(gateway) -> None:
    c = WireClient(gateway.port)
    c.login("ci-bot", gateway.token())
    c.send(FunctionCall(oid=1598, arg_formats=(), args=(), result_format=0).encode())  # random()
    err = c.expect_error()
    assert err.sqlstate == "0A000" and "function call" in err.message
    assert isinstance(c.recv_message(), ReadyForQuery)
    c.send(Query("SELECT 'still here'").encode())
    msgs = c.until(ReadyForQuery)
    assert any(getattr(m, "values", None) == (b"still here",) for m in msgs)


def test_unknown_message_type_is_protocol_violation(gateway) -> None:
    c = WireClient(gateway.port)
    c.login("ci-bot", gateway.token())
    c.send(b"z\x00\x00\x00\x04")
    err = c.expect_error()
    assert err.sqlstate == "08P01" and err.severity == "FATAL" and "'z'" in err.message
    # The gateway keeps serving others.
    with psycopg.connect(gateway.dsn()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_oversized_message_refused(gateway_factory) -> None:
    gw = gateway_factory(listener={"max_message_size": "64KiB"})
    with psycopg.connect(gw.dsn()) as conn:
        assert conn.execute("SELECT length(%s)", ("x" * 60000,)).fetchone() == (60000,)
    with psycopg.connect(gw.dsn()) as conn, pytest.raises(psycopg.OperationalError) as info:
        conn.execute("SELECT length(%s)", ("x" * 70000,))
    assert "max_message_size" in str(info.value)
    c = WireClient(gw.port)
    c.login("ci-bot", gw.token())
    c.send(b"Q\x7f\xff\xff\xff")  # announces 2 GiB; refused before buffering
    err = c.expect_error()
    assert err.sqlstate == "08P01"
    with psycopg.connect(gw.dsn()) as conn:
        assert conn.execute("SELECT 'ok'").fetchone() == ("ok",)


def test_upstream_down_at_connect_is_08001(gateway_factory) -> None:
    gw = gateway_factory(
        connections={
            "down": {
                "host": "127.0.0.1",
                "port": free_port(),
                "database": "x",
                "user": "x",
                "password_env": "UNUSED",
                "connect_timeout": "2s",
            },
        }
    )
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(gw.dsn(dbname="down"))
    assert "unavailable" in str(info.value)
    c = WireClient(gw.port)
    err = c.login("ci-bot", gw.token(), database="down")[-1]
    assert isinstance(err, ErrorResponse) and err.sqlstate == "08001"


def test_upstream_wrong_credential_never_leaks(gateway_factory, tmp_path, upstream) -> None:
    bad = tmp_path / "bad.pw"
    bad.write_text("definitely-wrong-secret-xyz")
    gw = gateway_factory(
        connections={
            "badcred": upstream.connection(password_file=str(bad)),
        }
    )
    c = WireClient(gw.port)
    err = c.login("ci-bot", gw.token(), database="badcred")[-1]
    assert isinstance(err, ErrorResponse) and err.sqlstate == "08001"
    assert "credentials" in err.message and "secret" not in err.message and "app" not in err.message
    with psycopg.connect(gw.dsn()) as conn:
        conn.execute("SELECT 1")
    logs = gw.logs()
    assert "definitely-wrong-secret-xyz" not in logs
    assert upstream.app_password not in logs


def test_upstream_killed_mid_query(gateway, upstream) -> None:
    with psycopg.connect(gateway.dsn()) as victim, psycopg.connect(gateway.dsn()) as bystander:
        victim.execute("SET application_name = 'victim'")
        victim.commit()

        def kill() -> None:
            time.sleep(0.5)
            upstream.pg.psql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name='victim'"
            )

        t = threading.Thread(target=kill)
        t.start()
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT pg_sleep(20)")
        t.join()
        assert victim.closed or victim.broken
        assert bystander.execute("SELECT 'unaffected'").fetchone() == ("unaffected",)
    with psycopg.connect(gateway.dsn()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_cancel_with_unknown_key_is_dropped(gateway) -> None:
    with psycopg.connect(gateway.dsn()) as conn:
        sock = socket.create_connection(("127.0.0.1", gateway.port))
        sock.sendall(CancelRequest(process_id=conn.info.backend_pid, secret_key=b"\x00\x00\x00\x00").encode())
        assert sock.recv(10) == b""  # closed without an answer, as Postgres does
        started = time.monotonic()
        assert conn.execute("SELECT pg_sleep(0.3), 'not cancelled'").fetchone()[1] == "not cancelled"
        assert time.monotonic() - started >= 0.3


def test_max_clients(gateway_factory) -> None:
    gw = gateway_factory(listener={"max_clients": 2})
    a = psycopg.connect(gw.dsn())
    b = psycopg.connect(gw.dsn())
    try:
        with pytest.raises(psycopg.OperationalError) as info:
            psycopg.connect(gw.dsn())
        assert "too many clients" in str(info.value)
    finally:
        a.close()
        b.close()
    time.sleep(0.2)
    with psycopg.connect(gw.dsn()) as conn:
        conn.execute("SELECT 1")


def test_startup_timeout_closes_slow_clients(gateway_factory) -> None:
    gw = gateway_factory(listener={"startup_timeout": "1s"})
    sock = socket.create_connection(("127.0.0.1", gw.port))
    sock.sendall(b"\x00\x00")  # half a length word, then nothing (slowloris)
    sock.settimeout(10)
    t0 = time.monotonic()
    data = sock.recv(1024)
    assert time.monotonic() - t0 < 8
    assert data == b"" or b"startup timed out" in data


def test_idle_timeout(gateway_factory) -> None:
    gw = gateway_factory(listener={"idle_timeout": "1s"})
    c = WireClient(gw.port)
    c.login("ci-bot", gw.token())
    c.send(Query("SELECT pg_sleep(1.5)").encode())  # busy time is not idle time
    c.until(ReadyForQuery)
    err = c.expect_error()
    assert err.sqlstate == "57P05" and err.severity == "FATAL"


def test_graceful_shutdown(gateway_factory) -> None:
    gw = gateway_factory(listener={"shutdown_grace": "3s"})
    conn = psycopg.connect(gw.dsn(), autocommit=True)
    result: dict[str, object] = {}

    def long_query() -> None:
        try:
            result["value"] = conn.execute("SELECT pg_sleep(1), 'finished'").fetchone()
        except Exception as exc:
            result["error"] = exc

    t = threading.Thread(target=long_query)
    t.start()
    time.sleep(0.3)
    gw.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(gw.dsn(), connect_timeout=2)
    t.join()
    assert result.get("value") == ("", "finished")
    # The idle session is ended at the deadline with 57P01.
    with pytest.raises(psycopg.OperationalError) as info:
        time.sleep(3.5)
        conn.execute("SELECT 1")
    assert "administrator command" in str(info.value) or conn.broken
    assert gw.proc.wait(10) == 0


def test_json_logs_one_line_per_event(gateway) -> None:
    import json

    with psycopg.connect(gateway.dsn(application_name="log-test")) as conn:
        conn.execute("SELECT 1")
    time.sleep(0.2)
    events = [json.loads(line) for line in gateway.logs().splitlines() if line.startswith("{")]
    kinds = {e["event"] for e in events}
    assert {"listening", "auth_ok", "session_started", "session_ended"} <= kinds
    started = [
        e for e in events if e["event"] == "session_started" and e.get("application_name") == "log-test"
    ]
    assert started and started[0]["user"] == "ci-bot" and started[0]["connection"] == "demo"


def test_client_encoding_is_pinned_to_utf8(gateway) -> None:
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(gateway.dsn(client_encoding="LATIN1"))
    assert "client_encoding" in str(info.value) and "UTF8" in str(info.value)
    # SQL_ASCII means "no conversion": accepted and pinned to UTF8 upstream.
    with psycopg.connect(gateway.dsn(client_encoding="SQL_ASCII")) as conn:
        assert conn.execute("SHOW client_encoding").fetchone() == ("UTF8",)
