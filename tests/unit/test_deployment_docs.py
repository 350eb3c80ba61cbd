"""The examples of docs/deployment.md and docs/policy-workflow.md, and the policy CI workflow.

Every ```sh / ```sql block of the two pages carries one of three markers on the line before it:

- ``<!-- tested: run -->``: run here, in order, by bash with ``-euo pipefail``, in a sandbox
  that links the repository's directories (policies, deploy, opa, testdata, .venv), with
  ``PGWARDEN_SECRETS`` pointing into the sandbox and a real decision log in ``decisions/``
  (written by the gateway's PolicyGate). It must exit 0.
- ``<!-- tested: arguments (not run here: WHY) -->``: every ``pgwarden`` command in it (also
  inside ``$(...)`` and after ``docker compose exec SERVICE``) is parsed by the real command line
  parser, without running; every ``make`` target must exist.
- ``<!-- not tested: WHY -->``: nothing in it can run here (SQL through a running stack, conftest).

The GitHub Actions workflow for policy repositories gets the arguments check on its ``run:`` steps.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from enforcer.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "deployment.md", ROOT / "docs" / "policy-workflow.md")
WORKFLOW = ROOT / "policies" / "ci" / "github-actions-policy.yml"
EXAMPLE_LANGS = {"sh", "bash", "shell", "console", "sql"}
_MARKER = re.compile(r"^<!--\s*(tested: run|tested: arguments \(not run here: .+\)|not tested: .+?)\s*-->$")
_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
CLI = typer.main.get_command(app)
TOP_LEVEL = set(getattr(CLI, "commands", {}))


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    marker: str
    body: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m or not m.group(2):
            i += 1
            continue
        indent, lang = m.group(1), m.group(2)
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        body = "\n".join(
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : j]
        )
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = lines[k].strip() if k >= 0 and lines[k].strip().startswith("<!--") else ""
        out.append(Block(path.name, i + 1, lang, marker, body))
        i = j + 1
    return out


EXAMPLES = [b for doc in DOCS for b in blocks(doc) if b.lang in EXAMPLE_LANGS]


def parse_pgwarden(args: list[str]) -> str:
    """Parse ``pgwarden ARGS`` as the real CLI would, without running it; returns the command path."""
    ctx = CLI.make_context("pgwarden", list(args))
    command: Any = CLI
    while hasattr(command, "resolve_command"):
        rest = [*(getattr(ctx, "_protected_args", None) or []), *ctx.args]
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return str(ctx.command_path)


def commands(text: str) -> list[list[str]]:
    """The simple commands of a shell text (line continuations joined, ``$(...)`` looked into)."""
    out: list[list[str]] = []
    for line in text.replace("\\\n", " ").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for token in lexer:
            if token and set(token) <= set("|&;<>()"):
                if current:
                    out.append(current)
                current = []
                continue
            for inner in re.findall(r"\$\(([^()]*)\)", token):
                out.extend(commands(inner))
            current.append(token)
        if current:
            out.append(current)
    return out


def pgwarden_invocations(text: str) -> list[list[str]]:
    """The arguments of every ``pgwarden`` invocation (a token ``pgwarden`` followed by a command)."""
    found = []
    for cmd in commands(text):
        for i, token in enumerate(cmd):
            if Path(token).name == "pgwarden" and i + 1 < len(cmd) and cmd[i + 1] in TOP_LEVEL:
                found.append(cmd[i + 1 :])
    return found


# ---------------------------------------------------------------------- the harness itself


def test_the_argument_check_is_not_vacuous() -> None:
    assert parse_pgwarden(["policy", "replay", "--policies", "p", "--dir", "d"]) == "pgwarden policy replay"
    for bad in (["policy", "replay", "--bogus"], ["policy", "nope"], ["policy", "replay"]):
        with pytest.raises(Exception, match=r"No such|Missing"):
            parse_pgwarden(bad)
    text = 'TOKEN="$(docker compose exec pgwarden pgwarden token issue -c c.yaml --subject x)"\nmake venv'
    assert pgwarden_invocations(text) == [["token", "issue", "-c", "c.yaml", "--subject", "x"]]


# ---------------------------------------------------------------------- the documentation


def test_every_example_says_how_it_is_tested() -> None:
    assert EXAMPLES, "no examples found"
    unmarked = [str(b) for b in EXAMPLES if not _MARKER.match(b.marker)]
    assert unmarked == [], (
        f"examples without a <!-- tested: ... --> / <!-- not tested: ... --> marker: {unmarked}"
    )
    for doc in DOCS:
        assert any(b.doc == doc.name and b.marker == "<!-- tested: run -->" for b in EXAMPLES), doc.name
    assert all(b.lang != "sql" or b.marker.startswith("<!-- not tested:") for b in EXAMPLES)


@pytest.mark.parametrize("block", [b for b in EXAMPLES if b.lang != "sql"], ids=str)
def test_every_pgwarden_command_parses(block: Block) -> None:
    if block.marker.startswith("<!-- not tested:"):
        assert not pgwarden_invocations(block.body), f"{block}: a pgwarden command must be tested"
        return
    invocations = pgwarden_invocations(block.body)
    for args in invocations:
        parse_pgwarden(args)
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for cmd in commands(block.body):
        if cmd[0] == "make":
            assert set(cmd[1:]) <= targets, f"{block}: {cmd}"
    if block.marker.startswith("<!-- tested: arguments"):
        assert invocations or any(c[0] == "docker" for c in commands(block.body)), block


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory like a checkout, with a real decision log in decisions/."""
    from enforcer.audit.decision_log import DecisionLog
    from enforcer.config import SHIPPED_POLICIES
    from enforcer.identity import Identity
    from enforcer.policy.engine import EmbeddedEngine
    from enforcer.proxy.gate import SessionContext
    from enforcer.proxy.policy_gate import PolicyGate
    from enforcer.wire import Query

    root = tmp_path_factory.mktemp("checkout")
    for name in ("policies", "deploy", "opa", "testdata", ".venv", "Makefile", "compose.yaml"):
        (root / name).symlink_to(ROOT / name)
    engine = EmbeddedEngine([SHIPPED_POLICIES])
    gate = PolicyGate(engine, DecisionLog(root / "decisions", stream="gw-1-w0"))
    identity = Identity("ci-bot", "pgwarden", ("agents",), "gateway-token", time.time() + 600)
    ctx = SessionContext("s1", identity, "demo", "demo", "127.0.0.1:5000", True)
    for sql in (
        "SELECT name FROM products",
        "UPDATE orders SET quantity = 2 WHERE id = 1",
        "DELETE FROM orders",
    ):
        gate.decide(ctx, Query(sql))
    gate.decision_log.close()
    return root


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_run_examples(doc: Path, sandbox: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PGWARDEN_CONFIG"}
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PGWARDEN_SECRETS"] = str(sandbox / "secrets")
    for block in [b for b in EXAMPLES if b.doc == doc.name and b.marker == "<!-- tested: run -->"]:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.body],
            cwd=sandbox,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, f"{block} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    if doc.name == "deployment.md":
        assert (sandbox / "secrets" / "token_signing_key").is_file()
    else:
        assert '"replayed": 3' in (sandbox / "replay.json").read_text()


def test_the_docs_link_the_workflow_and_each_other() -> None:
    workflow_doc = (ROOT / "docs" / "policy-workflow.md").read_text()
    assert "../policies/ci/github-actions-policy.yml" in workflow_doc
    assert (
        "deployment.md" in workflow_doc
        and "policy-workflow.md" in (ROOT / "docs" / "deployment.md").read_text()
    )


# ---------------------------------------------------------------------- the policy CI workflow


def test_policy_repository_workflow() -> None:
    wf = yaml.safe_load(WORKFLOW.read_text())
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"pull_request", "push"}
    assert wf["permissions"] == {"contents": "read"}
    assert set(wf["jobs"]) == {"opa", "conftest", "pgwarden", "what-if"}
    runs: dict[str, str] = {}
    for name, job in wf["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                assert re.search(r"@v\d+$", step["uses"]), (
                    f"{name}: {step['uses']} is not pinned to a major version"
                )
            runs[name] = runs.get(name, "") + "\n" + step.get("run", "")
    assert "opa test policies/rego" in runs["opa"] and "opa test policies/conftest" in runs["opa"]
    assert "conftest test --policy policies/conftest deploy/*.yaml" in runs["conftest"]
    assert "--namespace policy_data policies/rego/pgwarden/data.json" in runs["conftest"]
    assert "sha256sum --check" in runs["conftest"]
    invoked = [
        parse_pgwarden(args) for job in ("pgwarden", "what-if") for args in pgwarden_invocations(runs[job])
    ]
    assert invoked == [
        "pgwarden policy test",
        "pgwarden policy test",
        "pgwarden policy check-config",
        "pgwarden policy replay",
        "pgwarden policy replay",
    ]
    # The OPA that CI tests with is the one compose runs.
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert compose["services"]["opa"]["image"] == f"openpolicyagent/opa:{wf['env']['OPA_VERSION']}"
