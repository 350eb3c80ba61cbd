"""Documentation that points at code must keep pointing at something real."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_threat_model_names_existing_tests() -> None:
    text = (REPO / "docs" / "threat-model.md").read_text()
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", text))
    assert len(named) >= 15
    sources = "\n".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py"))
    missing = sorted(n for n in named if f"def {n}(" not in sources)
    assert not missing, f"docs/threat-model.md names tests that do not exist: {missing}"


def test_readme_and_docs_links_resolve() -> None:
    for doc in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def _sh_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:sh|bash|shell|console)\n(.*?)```", text, flags=re.S)


def test_every_pgwarden_command_in_the_docs_parses() -> None:
    """Every `pgwarden ...` in a shell block of README.md or docs/ is accepted by the real CLI
    parser (commands, options and required arguments), so examples cannot drift from the code.
    docs/deployment.md and docs/policy-workflow.md also run theirs (tests/unit/test_deployment_docs.py)."""
    from tests.unit.test_deployment_docs import parse_pgwarden, pgwarden_invocations

    checked, failures = 0, []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in _sh_blocks(doc.read_text()):
            for args in pgwarden_invocations(block):
                checked += 1
                try:
                    parse_pgwarden(args)
                except Exception as exc:
                    failures.append(f"{doc.name}: pgwarden {' '.join(args)}: {exc}")
    assert checked >= 25
    assert not failures, "\n".join(failures)
