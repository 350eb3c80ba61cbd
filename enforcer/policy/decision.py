"""The decision document: what a policy returns, validated strictly.

Owns: parsing the engine's raw result into a :class:`Decision`; combining the
decisions of a multi-statement message. Anything that is not a well-formed
decision becomes a deny (fail closed).
Never: knows about sockets, the wire protocol or a particular engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ACTIONS = ("allow", "mask", "review", "deny")
STRATEGIES = ("redact", "partial", "email", "hash", "null")
_PRECEDENCE = {a: i for i, a in enumerate(ACTIONS)}


@dataclass(frozen=True)
class Mask:
    column: str
    label: str
    strategy: str

    def to_document(self) -> dict[str, str]:
        return {"column": self.column, "label": self.label, "strategy": self.strategy}


@dataclass(frozen=True)
class Review:
    approvers: tuple[str, ...]
    timeout_seconds: float
    reason: str = ""

    def to_document(self) -> dict[str, Any]:
        return {
            "approvers": list(self.approvers),
            "timeout_seconds": self.timeout_seconds,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Decision:
    action: str
    reasons: tuple[str, ...]
    masks: tuple[Mask, ...] = ()
    review: Review | None = None
    #: Set when the engine failed or answered nonsense: the deny is the gateway's, not the policy's.
    failure: str | None = None

    @property
    def allowed(self) -> bool:
        return self.action == "allow"

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "action": self.action,
            "reasons": list(self.reasons),
            "masks": [m.to_document() for m in self.masks],
            "review": self.review.to_document() if self.review else None,
        }
        if self.failure:
            doc["failure"] = self.failure
        return doc


def fail_closed(why: str) -> Decision:
    return Decision(
        "deny", (f"pgwarden could not obtain a valid decision ({why}); denied (fail closed)",), failure=why
    )


def parse_decision(raw: Any) -> Decision:
    """Validate the engine's result; a malformed or undefined decision is a deny."""
    if raw is None:
        return fail_closed("the policy's decision is undefined")
    if not isinstance(raw, dict):
        return fail_closed(f"the policy's decision is a {type(raw).__name__}, not an object")
    action = raw.get("action")
    if action not in ACTIONS:
        return fail_closed(f"unknown action {action!r}")
    reasons = raw.get("reasons", [])
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        return fail_closed("'reasons' must be a list of strings")
    masks_raw = raw.get("masks") or []
    if not isinstance(masks_raw, list):
        return fail_closed("'masks' must be a list")
    masks = []
    for m in masks_raw:
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("column"), str)
            or m.get("strategy") not in STRATEGIES
            or not isinstance(m.get("label", ""), str)
        ):
            return fail_closed(f"malformed mask {m!r}")
        masks.append(Mask(m["column"], m.get("label", ""), m["strategy"]))
    if action == "mask" and not masks:
        return fail_closed("action 'mask' without any mask")
    review = None
    review_raw = raw.get("review")
    if action == "review" or review_raw is not None:
        if not isinstance(review_raw, dict):
            return fail_closed("action 'review' without a review object")
        approvers = review_raw.get("approvers", [])
        timeout = review_raw.get("timeout_seconds", 300)
        if (
            not isinstance(approvers, list)
            or not all(isinstance(a, str) for a in approvers)
            or isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or timeout <= 0
        ):
            return fail_closed("malformed review object")
        review = Review(tuple(approvers), float(timeout), str(review_raw.get("reason", "")))
    if action == "deny" and not reasons:
        reasons = ["denied by policy"]
    return Decision(action, tuple(reasons), tuple(masks), review)


def combine(decisions: Iterable[Decision]) -> Decision:
    """One decision for a whole message: deny > review > mask > allow; reasons and masks accumulate."""
    ds = list(decisions)
    if not ds:
        return Decision("allow", ("empty statement",))
    worst = max(ds, key=lambda d: _PRECEDENCE[d.action])
    same = [d for d in ds if d.action == worst.action]
    reasons: list[str] = []
    masks: list[Mask] = []
    for d in same:
        reasons.extend(r for r in d.reasons if r not in reasons)
    for d in ds:
        masks.extend(m for m in d.masks if m not in masks)
    reviews = [d.review for d in ds if d.review is not None]
    failure = next((d.failure for d in ds if d.failure), None)
    return Decision(worst.action, tuple(reasons), tuple(masks), reviews[0] if reviews else None, failure)
