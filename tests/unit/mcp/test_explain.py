"""The MCP explain tool's policy engine is reloaded when the policy files change, and keeps working."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from enforcer.config import PolicyConfig
from enforcer.identity import Identity
from enforcer.mcp.explain import PolicyExplainer

ALLOW_ALL = Path(__file__).resolve().parents[3] / "testdata" / "policies" / "allow_all"
AGENT = Identity("ci-bot", "pgwarden", ("agents",), "gateway-token", time.time() + 600)


async def actions(explainer: PolicyExplainer, sql: str = "SELECT 1") -> list[tuple[str, tuple[str, ...]]]:
    found = await explainer.explain(
        sql, AGENT, connection="demo", database="demo", application_name="t", parameters={}
    )
    return [(e.decision.action, tuple(e.decision.reasons)) for e in found]


async def test_a_changed_policy_is_used_for_the_next_explanation(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(ALLOW_ALL, policies)
    explainer = PolicyExplainer(PolicyConfig(paths=(policies,)))
    assert await actions(explainer) == [("allow", ("allow-all test policy",))]
    rego = policies / "allow.rego"
    rego.write_text(rego.read_text().replace('"allow"', '"deny"').replace("allow-all", "deny-all"))
    os.utime(rego, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))  # a new stamp whatever the clock
    assert await actions(explainer) == [("deny", ("deny-all test policy",))]
    assert await actions(explainer) == [("deny", ("deny-all test policy",))]
