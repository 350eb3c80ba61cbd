"""The approval store's transitions: one winner for every race, single use, expiry, restart."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from enforcer.approvals.store import ApprovalRequest, ApprovalStore, ApprovalStoreError, binding_of


def request(
    rid: str, *, state: str = "pending", expires_in: float = 600, instance: str = "gw-w0"
) -> ApprovalRequest:
    now = time.time()
    return ApprovalRequest(
        id=rid,
        state=state,
        binding=binding_of("bot", "demo", "DELETE FROM t WHERE id = 1", None),
        subject="bot",
        issuer="pgwarden",
        groups=["agents"],
        connection="demo",
        session_id="s1",
        instance=instance,
        protocol="simple",
        sql="DELETE FROM t WHERE id = 1",
        params=None,
        reasons=["writes need review"],
        approvers=["dba"],
        created_at=now,
        wait_until=now + 60,
        expires_at=now + expires_in,
    )


@pytest.fixture
def store(tmp_path: Path) -> ApprovalStore:
    return ApprovalStore(str(tmp_path / "approvals.sqlite"))


def test_binding_covers_identity_connection_text_and_parameters() -> None:
    base = binding_of("bot", "demo", "UPDATE t SET v = $1", ["1"])
    assert base == binding_of("bot", "demo", "UPDATE t SET v = $1", ["1"])
    assert (
        len(
            {
                base,
                binding_of("other", "demo", "UPDATE t SET v = $1", ["1"]),
                binding_of("bot", "prod", "UPDATE t SET v = $1", ["1"]),
                binding_of("bot", "demo", "UPDATE t SET v = $1 ", ["1"]),
                binding_of("bot", "demo", "UPDATE t SET v = $1", ["2"]),
                binding_of("bot", "demo", "UPDATE t SET v = $1", [None]),
                binding_of("bot", "demo", "UPDATE t SET v = $1", None),
            }
        )
        == 7
    )


def test_concurrent_decisions_have_one_winner(store: ApprovalStore, tmp_path: Path) -> None:
    store.create(request("apr_1"))
    # Two processes (two store connections) race to decide.
    other = ApprovalStore(str(tmp_path / "approvals.sqlite"))
    results: list[object] = []
    barrier = threading.Barrier(2)

    def decide(s: ApprovalStore, to: str) -> None:
        barrier.wait()
        results.append(s.transition("apr_1", ["pending"], to, decided_by=to))

    threads = [
        threading.Thread(target=decide, args=(store, "approved")),
        threading.Thread(target=decide, args=(other, "rejected")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    final = store.get("apr_1")
    assert final is not None and final.state in ("approved", "rejected") and final.decided_by == final.state


def test_an_approval_is_consumed_once(store: ApprovalStore) -> None:
    store.create(request("apr_2", state="approved"))
    binding = request("x").binding
    got = [store.consume_approved(binding, time.time()) for _ in range(3)]
    assert [g.id if g else None for g in got] == ["apr_2", None, None]
    assert store.get("apr_2").state == "executed"  # type: ignore[union-attr]


def test_expired_approvals_are_not_consumed_and_expire(store: ApprovalStore) -> None:
    store.create(request("apr_3", state="approved", expires_in=-1))
    store.create(request("apr_4", state="timed_out", expires_in=-1))
    store.create(request("apr_5", state="pending"))
    assert store.consume_approved(request("x").binding, time.time()) is None
    assert sorted(r.id for r in store.expire(time.time())) == ["apr_3", "apr_4"]
    assert store.state_of(["apr_3", "apr_4", "apr_5"]) == {
        "apr_3": "expired",
        "apr_4": "expired",
        "apr_5": "pending",
    }


def test_restart_abandons_only_this_instances_waiting_requests(store: ApprovalStore) -> None:
    store.create(request("apr_6", instance="gw-w0"))
    store.create(request("apr_7", instance="gw-w1"))
    store.create(request("apr_8", instance="gw-w0", state="approved"))
    assert [r.id for r in store.abandon_instance("gw-w0")] == ["apr_6"]
    assert store.state_of(["apr_6", "apr_7", "apr_8"]) == {
        "apr_6": "abandoned",
        "apr_7": "pending",
        "apr_8": "approved",
    }


def test_round_trip_and_listing(store: ApprovalStore) -> None:
    req = request("apr_9")
    req.params = ["1", None, "\\x00ff"]
    store.create(req)
    got = store.get("apr_9")
    assert got is not None and got.params == ["1", None, "\\x00ff"] and got.approvers == ["dba"]
    assert "binding" not in got.to_document()
    assert [r.id for r in store.list_requests(["pending"])] == ["apr_9"]
    assert store.get("nope") is None


def test_unusable_store_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(ApprovalStoreError, match="cannot open the approval store"):
        ApprovalStore(str(tmp_path / "dir.sqlite"))
