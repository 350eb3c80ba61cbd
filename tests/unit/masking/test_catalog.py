"""Catalog snapshots: building from rows, search paths, protection, and the cache's TTL/invalidation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from enforcer.masking import Catalog, CatalogCache, CatalogUnavailable, ColumnMask, MaskPlan, Protection
from enforcer.masking import catalog as catalog_module
from enforcer.masking.catalog import build_catalog, parse_search_path

from .catalog_fixture import (
    CATALOG,
    CONTACTS,
    CUSTOMERS,
    CUSTOMERS_CHILD,
    EMAIL_MV,
    GENERATED,
    NESTED_VIEW,
    PLAN,
    SKUS,
)


@pytest.mark.parametrize(
    ("setting", "parsed"),
    [
        ('"$user", public', ("$user", "public")),
        ("public", ("public",)),
        ("", ()),
        ('MySchema, "MySchema", "a,b" ,  c', ("myschema", "MySchema", "a,b", "c")),
        ('"with ""quote"""', ('with "quote"',)),
    ],
)
def test_parse_search_path(setting: str, parsed: tuple[str, ...]) -> None:
    assert parse_search_path(setting) == parsed


def test_build_catalog_from_rows() -> None:
    cat = build_catalog(
        rel_rows=[
            (10, "public", "t", "r", None, None),
            (11, "public", "v", "v", ["security_barrier=true"], " SELECT t.a FROM public.t;"),
            (12, "public", "c", "r", [], None),
        ],
        col_rows=[
            (10, 2, "b", 25, -1, "text", 25, "S", "pg_catalog", "s"),
            (10, 1, "a", 16384, -1, "public.dom", 25, "S", "public", ""),
            (11, 1, "a", 25, -1, "text", 25, "S", "pg_catalog", ""),
        ],
        dep_rows=[(11, 10, 1)],
        fn_dep_rows=[(11, "public", "f")],
        gen_rows=[(10, 2, 1)],
        inh_rows=[(12, 10)],
        sys_rows=[("pg_catalog", "pg_class")],
        fn_rows=[("public", "f")],
        op_rows=[("public", "===")],
        cast_rows=[("dom",)],
        user="app",
        database="demo",
        search_path='"$user", public',
        server_version_num=150018,
    )
    t = cat.relation("public", "t")
    assert t is not None and [c.name for c in t.columns] == ["a", "b"]
    assert t.column("a") is not None and t.column("a").type_schema == "public"  # type: ignore[union-attr]
    assert t.column("b").generated and t.generated_from == ((2, (1,)),)  # type: ignore[union-attr]
    v = cat.by_oid(11)
    assert v is not None and v.kind == "view" and v.security_barrier and v.depends_on == ((10, 1),)
    assert v.untrusted_calls == ("public.f",)
    assert cat.relation("public", "c").parents == (10,)  # type: ignore[union-attr]
    assert cat.is_system("pg_catalog", "pg_class") and not cat.is_system("public", "t")
    assert cat.function_untrusted(None, "f") and cat.function_untrusted("public", "f")
    assert not cat.function_untrusted("pg_catalog", "f")
    assert cat.operator_untrusted(None, "===")
    assert cat.untrusted_cast_types == {"dom"}
    assert cat.search_path == ("$user", "public") and cat.current_user == "app"
    assert "public" in cat.schemas and "pg_catalog" in cat.schemas


def test_protection_inheritance_generated_and_views() -> None:
    p = Protection(PLAN, CATALOG)
    assert set(p.column_masks(CUSTOMERS)) == {"full_name", "email", "phone", "ssn", "birth_date"}
    assert p.column_masks(CUSTOMERS_CHILD) == p.column_masks(CUSTOMERS)
    gen = p.column_masks(GENERATED)
    assert gen["domain"].strategy == "email" and "derived" not in gen["email"].label
    assert p.reads_masked(CONTACTS) and p.reads_masked(NESTED_VIEW) and p.reads_masked(EMAIL_MV)
    assert not p.reads_masked(SKUS) and not p.reads_masked(CUSTOMERS)
    assert p.column_mask_at(CUSTOMERS, 3) is not None and p.column_mask_at(CUSTOMERS, 1) is None


def test_stricter_label_wins() -> None:
    plan = MaskPlan.from_masks(
        [
            _Mask("public.customers.email", "a", "email"),
            _Mask("public.customers.email", "b", "redact"),
            _Mask("public.customers.email", "c", "partial"),
        ]
    )
    assert plan.columns[("public", "customers", "email")] == ColumnMask("redact", "b")
    p = Protection(
        MaskPlan(
            {
                ("public", "customers", "ssn"): ColumnMask("partial"),
                ("public", "customers_archive", "ssn"): ColumnMask("null"),
            }
        ),
        CATALOG,
    )
    assert p.column_masks(CUSTOMERS_CHILD)["ssn"].strategy == "null"


class _Mask:
    def __init__(self, column: str, label: str, strategy: str) -> None:
        self.column, self.label, self.strategy = column, label, strategy


def test_from_masks_rejects_bad_column_names() -> None:
    from enforcer.masking import MaskingError

    with pytest.raises(MaskingError):
        MaskPlan.from_masks([_Mask("customers.email", "x", "redact")])


# --------------------------------------------------------------------------- the cache


class FakeConn:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class Harness:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 0.0
        self.loads = 0
        self.connects = 0
        self.fail = False
        self.gate: asyncio.Event | None = None
        self.hook: Any = None
        monkeypatch.setattr(catalog_module, "load_catalog", self.load)
        self.cache = CatalogCache(self.connect, ttl=10, clock=lambda: self.now)

    async def connect(self, name: str) -> Any:
        self.connects += 1
        return FakeConn()

    async def load(self, conn: Any, *, now: float | None = None) -> Catalog:
        self.loads += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.hook is not None:
            self.hook()
        if self.fail:
            raise OSError("upstream down")
        return Catalog(relations=(), database=f"load{self.loads}")


async def test_cache_reuses_until_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    first = await h.cache.get("demo")
    assert await h.cache.get("demo") is first and h.loads == 1
    assert h.cache.cached("demo") is first and h.cache.cached("other") is None
    h.now = 10.5
    assert h.cache.cached("demo") is None
    second = await h.cache.get("demo")
    assert second is not first and h.loads == 2 and h.connects == 1  # the control connection is kept


async def test_invalidate_forces_a_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    await h.cache.get("demo")
    await h.cache.get("other")
    h.cache.invalidate("demo")
    await h.cache.get("demo")
    await h.cache.get("other")
    assert h.loads == 3
    h.cache.invalidate()
    await h.cache.get("other")
    assert h.loads == 4
    assert set(h.cache.names) == {"demo", "other"}


async def test_concurrent_gets_share_one_load(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    h.gate = asyncio.Event()
    tasks = [asyncio.create_task(h.cache.get("demo")) for _ in range(5)]
    await asyncio.sleep(0)
    h.gate.set()
    results = await asyncio.gather(*tasks)
    assert h.loads == 1 and all(r is results[0] for r in results)


async def test_invalidation_during_a_load_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    h.hook = lambda: h.cache.invalidate("demo")  # DDL lands while the snapshot is read
    await h.cache.get("demo")
    h.hook = None
    await h.cache.get("demo")
    assert h.loads == 2


async def test_failed_load_is_unavailable_and_drops_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    h.fail = True
    with pytest.raises(CatalogUnavailable, match="demo"):
        await h.cache.get("demo")
    h.fail = False
    await h.cache.get("demo")
    assert h.connects == 2
    await h.cache.close()


def test_negative_ttl_is_refused() -> None:
    async def connect(name: str) -> Any:
        raise AssertionError

    with pytest.raises(ValueError):
        CatalogCache(connect, ttl=-1)
