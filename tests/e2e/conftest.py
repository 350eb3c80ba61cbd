"""The browser and the gateway process the page tests share.

A real `pgwarden run` with an ``api`` section (no upstream is needed to browse the pages),
and headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from enforcer.localpg import free_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")


def gateway_config(port: int, **sections: Any) -> dict[str, Any]:
    """A configuration whose API listens on ``port``; the upstream is never contacted."""
    return {
        "listener": {"host": "127.0.0.1", "port": 0, "insecure_loopback_dev": True},
        "gateway_tokens": {"signing_key_file": "token.key"},
        "connections": {"demo": {"database": "demo", "user": "app", "password_file": "pw", "port": 1}},
        "policy": {"paths": [str(REPO / "testdata" / "policies" / "allow_all")]},
        "api": {"listen": f"127.0.0.1:{port}", "auditor_groups": ["auditors"]},
        "logging": {"format": "json"},
        **sections,
    }


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # nothing to await across processes: poll the port
    raise RuntimeError(f"the API did not listen on {port}:\n{log.read_text()}")


@contextlib.contextmanager
def running_gateway(directory: Path, config: dict[str, Any]) -> Iterator[str]:
    """Run `pgwarden run` with ``config`` (written into ``directory``); yields the API's base URL.

    On exit the gateway gets SIGTERM and must stop cleanly, API included, without a traceback."""
    port = int(config["api"]["listen"].rsplit(":", 1)[1])
    (directory / "gw.yaml").write_text(yaml.safe_dump(config))
    log = directory / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "enforcer.cli", "run", "--config", str(directory / "gw.yaml")],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        _wait_listening(port, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    # Package scope, not session: Playwright's sync API keeps an event loop running on the main
    # thread while it lives, which would break asyncio.run() in every test collected after e2e.
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@contextlib.contextmanager
def browser_page(browser: Any, base_url: str) -> Iterator[Any]:
    """A fresh context (no cookies) and page; ``page.problems`` collects console errors and page errors."""
    context = browser.new_context(base_url=base_url)
    pg = context.new_page()
    pg.set_default_timeout(5000)
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda exc: problems.append(str(exc)))
    pg.problems = problems
    try:
        yield pg
    finally:
        context.close()


__all__ = ["CHROMIUM", "REPO", "browser_page", "free_port", "gateway_config", "running_gateway"]
