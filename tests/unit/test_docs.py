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
