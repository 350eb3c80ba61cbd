"""The rewriter on SQL text alone: output shapes, name resolution, writes, COPY, and every refusal."""

from __future__ import annotations

from typing import Any

import pytest
from pglast import ast, parse_sql

from enforcer.masking import Catalog, MaskingError, MaskPlan, rewrite
from enforcer.masking.rewrite import _walk

from .catalog_fixture import CATALOG, DEMO_MASKS, DENY_PLAN, KEY, PLAN

MASKED_TABLES = {
    ("public", "customers"),
    ("public", "orders"),
    ("public", "customers_archive"),
    ("public", "people"),
}
MASKED_COLUMNS = {(s, t): {c for (s2, t2, c) in DEMO_MASKS if (s2, t2) == (s, t)} for s, t in MASKED_TABLES}
MASKED_COLUMNS[("public", "customers_archive")] = MASKED_COLUMNS[("public", "customers")]
MASKED_COLUMNS[("public", "people")] = {"email", "domain"}


def reads_of(sql: str) -> list[tuple[str, str, bool]]:
    """Every relation read by ``sql``: (schema, name, read through a masking sub-select).

    Unqualified names that some WITH in the statement defines are taken to be CTE references.
    """
    out = []
    for raw in parse_sql(sql):
        ctes = {n.ctename for n in _walk(raw.stmt) if isinstance(n, ast.CommonTableExpr)}
        for node in _walk(raw.stmt):
            if not isinstance(node, ast.SelectStmt) or not node.fromClause:
                continue
            for item in node.fromClause:
                rv = item.relation if isinstance(item, ast.RangeTableSample) else item
                if not isinstance(rv, ast.RangeVar) or (rv.schemaname is None and rv.relname in ctes):
                    continue
                key = (rv.schemaname or "public", rv.relname)
                out.append((*key, _masks_all(node, MASKED_COLUMNS.get(key, set()))))
    return out


def _masks_all(select: ast.SelectStmt, columns: set[str]) -> bool:
    """The select list projects each of ``columns`` as an expression (never the bare column)."""
    if len(select.fromClause or ()) != 1 or select.whereClause is not None:
        return False
    seen = set()
    for target in select.targetList or ():
        assert isinstance(target, ast.ResTarget)
        if isinstance(target.val, ast.ColumnRef):
            names = [f.sval for f in target.val.fields if isinstance(f, ast.String)]
            if not names or names[-1] in columns or isinstance(target.val.fields[-1], ast.A_Star):
                return False
        elif target.name in columns:
            assert isinstance(target.val, ast.TypeCast)
            seen.add(target.name)
    return seen == columns


def assert_no_raw_reads(sql: str) -> None:
    for schema, name, masked in reads_of(sql):
        if (schema, name) in MASKED_TABLES:
            assert masked, f"{schema}.{name} read without masking in: {sql}"


def rw(sql: str, plan: MaskPlan = PLAN, catalog: Catalog = CATALOG, **kw: Any) -> str:
    out = rewrite(sql, plan, catalog, **kw)
    parse_sql(out.sql)  # always valid SQL
    assert_no_raw_reads(out.sql)
    return out.sql


# --------------------------------------------------------------------------- shapes


def test_unmasked_statement_is_returned_verbatim() -> None:
    sql = "select  sku, price from products where id = $1 -- note"
    out = rewrite(sql, PLAN, CATALOG)
    assert out.sql == sql
    assert not out.changed and out.masked == () and not out.scrub_errors


def test_table_becomes_a_masking_subselect_with_the_same_name() -> None:
    out = rewrite("SELECT email, id FROM customers WHERE id = $1", PLAN, CATALOG)
    assert out.changed
    assert out.sql.startswith("SELECT email, id FROM (SELECT id, CAST(")
    assert out.sql.endswith("FROM public.customers) AS customers WHERE id = $1")
    assert_no_raw_reads(out.sql)
    assert {m.qualified: m.strategy for m in out.masked} == {
        "public.customers.full_name": "partial",
        "public.customers.email": "email",
        "public.customers.phone": "partial",
        "public.customers.ssn": "redact",
        "public.customers.birth_date": "null",
    }
    assert out.masked_document()[0] == {
        "column": "public.customers.birth_date",
        "strategy": "null",
        "label": "pii.birth_date",
    }


def test_every_column_kept_in_order_and_masked_ones_cast_to_their_type() -> None:
    sql = rw("SELECT * FROM customers")
    sub = parse_sql(sql)[0].stmt.fromClause[0].subquery
    names = [t.name or t.val.fields[-1].sval for t in sub.targetList]
    assert names == ["id", "full_name", "email", "phone", "ssn", "birth_date", "created_at"]
    assert "CAST(NULL AS pg_catalog.date) AS birth_date" in sql
    assert ", created_at FROM public.customers" in sql


def test_aliases_column_aliases_and_only_are_kept() -> None:
    sql = rw("SELECT c.e FROM ONLY customers AS c (i, n, e)")
    assert sql.endswith("FROM ONLY public.customers) AS c (i, n, e)")


def test_mask_sql_is_pg_catalog_qualified() -> None:
    sql = rw("SELECT email, card_last4 FROM customers, orders")
    for fn in (
        "textcat",
        "strpos",
        "reverse",
        "split_part",
        "encode",
        "sha256",
        "byteacat",
        "decode",
        "convert_to",
    ):
        assert f"pg_catalog.{fn}(" in sql
    assert " || " not in sql
    assert "OPERATOR(pg_catalog.>)" in sql


def test_hash_carries_the_key_blocks_not_the_key() -> None:
    sql = rw("SELECT card_last4 FROM orders")
    assert KEY.inner_block.hex() in sql and KEY.outer_block.hex() in sql
    assert KEY.secret.hex() not in sql and KEY.secret.decode() not in sql


def test_schema_qualified_column_reference_loses_its_schema() -> None:
    sql = rw("SELECT public.customers.email, demo.public.customers.ssn FROM public.customers")
    assert sql.startswith("SELECT customers.email, customers.ssn FROM (SELECT")


def test_schema_qualified_star() -> None:
    sql = rw("SELECT public.customers.* FROM public.customers")
    assert sql.startswith("SELECT customers.* FROM (SELECT")


def test_qualified_reference_captured_by_another_item_is_refused() -> None:
    sql = "SELECT (SELECT public.customers.email FROM other.customers) FROM public.customers"
    with pytest.raises(MaskingError, match="captured"):
        rewrite(sql, PLAN, CATALOG)


def test_parameters_survive() -> None:
    sql = rw("SELECT email FROM customers WHERE id = $1 AND ssn <> $2 LIMIT $3")
    assert "$1" in sql and "$2" in sql and "$3" in sql


def test_multi_statement_keeps_unchanged_statements_verbatim() -> None:
    out = rewrite("SELECT 1 AS one ;  SELECT ssn FROM customers; select  2", PLAN, CATALOG)
    parts = out.sql.split("; ")
    assert parts[0] == "SELECT 1 AS one" and parts[-1] == "select  2"
    assert out.statements == 3
    assert_no_raw_reads(out.sql)


# --------------------------------------------------------------------------- resolution


def test_search_path_decides_which_customers() -> None:
    assert rewrite("SELECT * FROM customers", PLAN, CATALOG, search_path=["other", "public"]).changed is False
    assert rewrite("SELECT * FROM customers", PLAN, CATALOG, search_path=["public", "other"]).changed
    assert not rewrite(
        "SELECT * FROM customers", PLAN, CATALOG, search_path=["$user", "public"], user="other"
    ).changed
    assert rewrite(
        "SELECT * FROM customers", PLAN, CATALOG, search_path=["$user", "public"], user="app"
    ).changed
    with pytest.raises(MaskingError):  # not on the path at all
        rewrite("SELECT * FROM customers", PLAN, CATALOG, search_path=["nowhere"])


def test_pg_catalog_comes_first_unless_listed() -> None:
    cat = Catalog(
        relations=CATALOG.relations,
        system_relations=frozenset({("pg_catalog", "customers")}),
        search_path=("public",),
    )
    assert not rewrite("SELECT * FROM customers", PLAN, cat).changed
    assert rewrite("SELECT * FROM customers", PLAN, cat, search_path=["public", "pg_catalog"]).changed


def test_cte_shadows_the_table() -> None:
    out = rewrite("WITH customers AS (SELECT 1 AS email) SELECT email FROM customers", PLAN, CATALOG)
    assert not out.changed


def test_non_recursive_cte_body_reads_the_table_it_shadows() -> None:
    sql = rw("WITH customers AS (SELECT * FROM customers) SELECT email FROM customers")
    assert "FROM public.customers) AS customers) SELECT email FROM customers" in sql


def test_recursive_cte_sees_itself() -> None:
    out = rewrite(
        "WITH RECURSIVE customers(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM customers WHERE n < 3) "
        "SELECT * FROM customers",
        PLAN,
        CATALOG,
    )
    assert not out.changed


def test_later_cte_is_not_visible_to_an_earlier_one() -> None:
    with pytest.raises(MaskingError) as err:
        rewrite("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", PLAN, CATALOG)
    assert err.value.stale_catalog


def test_cte_in_outer_query_visible_in_subquery() -> None:
    out = rewrite("WITH customers AS (SELECT 1 AS x) SELECT (SELECT x FROM customers)", PLAN, CATALOG)
    assert not out.changed


def test_unknown_relation_is_refused_as_stale() -> None:
    with pytest.raises(MaskingError) as err:
        rewrite("SELECT * FROM brand_new_table", PLAN, CATALOG)
    assert err.value.stale_catalog and "brand_new_table" in err.value.reason
    assert err.value.sqlstate == "42501"


# --------------------------------------------------------------------------- derived reads


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT upper(email), email || '', email::int FROM customers",
        "SELECT string_agg(email, ','), json_agg(c), array_agg(ssn) FROM customers c",
        "SELECT u FROM customers u",
        "SELECT row_to_json(u), to_jsonb(customers) FROM customers u, customers",
        "SELECT email FROM customers UNION SELECT ssn FROM customers "
        "INTERSECT SELECT phone FROM public.customers",
        "SELECT * FROM (SELECT email FROM customers) s",
        "SELECT (SELECT ssn FROM customers LIMIT 1), EXISTS (SELECT 1 FROM orders WHERE card_last4 = '1')",
        "SELECT * FROM customers c, LATERAL (SELECT c.ssn) l",
        "SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id",
        "SELECT * FROM customers TABLESAMPLE SYSTEM (50) REPEATABLE (1)",
        "SELECT email FROM customers c WHERE id = 1 FOR UPDATE OF c",
        "VALUES ((SELECT ssn FROM customers LIMIT 1))",
        "SELECT * FROM customers_archive",
        "SELECT domain FROM people",
        "SELECT count(*) FILTER (WHERE ssn LIKE '1%') OVER (PARTITION BY email ORDER BY phone) "
        "FROM customers",
        "SELECT * FROM generate_series(1, 2) g, LATERAL (SELECT email FROM customers WHERE id = g) x",
        "SELECT c.* FROM customers c NATURAL JOIN orders",
        "SELECT j.email FROM (customers JOIN orders USING (id)) AS j",
        "SELECT 1 FROM customers WHERE email IN (SELECT email FROM customers_archive)",
        "SELECT email INTO TEMP t FROM customers",
    ],
)
def test_derived_reads_see_only_masked_values(sql: str) -> None:
    rw(sql)


def test_tablesample_moves_inside() -> None:
    sql = rw("SELECT * FROM customers TABLESAMPLE SYSTEM (50)")
    assert "FROM public.customers TABLESAMPLE system(50)) AS customers" in sql


# --------------------------------------------------------------------------- views


def test_view_over_masked_table_is_expanded() -> None:
    out = rewrite("SELECT email FROM customer_contacts WHERE id = 1", PLAN, CATALOG)
    assert "public.customer_contacts" not in out.sql
    assert "AS customer_contacts (id, full_name, email) WHERE id = 1" in out.sql
    assert_no_raw_reads(out.sql)


def test_view_over_view_is_expanded_all_the_way() -> None:
    sql = rw("SELECT * FROM contact_emails")
    assert "customer_contacts" in sql and "FROM public.customers) AS customers" in sql


def test_view_alias_and_column_aliases() -> None:
    sql = rw("SELECT x.e FROM customer_contacts AS x (i, n, e)")
    assert sql.endswith("AS x (i, n, e)")


def test_security_barrier_view_keeps_a_fence() -> None:
    sql = rw("SELECT * FROM barrier_contacts WHERE email = 'x'")
    assert "OFFSET 0) AS barrier_contacts" in sql


def test_view_not_reading_masked_columns_is_left_alone() -> None:
    assert not rewrite("SELECT * FROM skus", PLAN, CATALOG).changed


def test_labelled_view_columns_are_masked_on_top_of_expansion() -> None:
    ssn = DEMO_MASKS[("public", "customers", "ssn")]
    plan = MaskPlan({**DEMO_MASKS, ("public", "customer_contacts", "id"): ssn}, hmac_key=KEY)
    out = rewrite("SELECT id, email FROM customer_contacts", plan, CATALOG)
    assert "public.customer_contacts.id" in {m.qualified for m in out.masked}
    inner = "FROM public.customers) AS customers) AS customer_contacts (id, full_name, email))"
    assert f"{inner} AS customer_contacts" in out.sql
    assert "CAST(NULL AS integer) AS id" in out.sql  # redact makes no sense for an integer


def test_labelled_view_reading_nothing_masked_is_wrapped_not_expanded() -> None:
    plan = MaskPlan(
        {**DEMO_MASKS, ("public", "skus", "sku"): DEMO_MASKS[("public", "customers", "ssn")]}, hmac_key=KEY
    )
    out = rewrite("SELECT sku FROM skus", plan, CATALOG)
    assert "public.skus.sku" in {m.qualified for m in out.masked}
    assert out.sql.endswith("AS sku FROM public.skus) AS skus")


def test_view_calling_an_untrusted_function_is_refused() -> None:
    with pytest.raises(MaskingError, match="get_ssn"):
        rewrite("SELECT * FROM ssn_view", PLAN, CATALOG)
    plan = MaskPlan(DEMO_MASKS, hmac_key=KEY, trusted_functions=["public.get_ssn"])
    assert not rewrite("SELECT * FROM ssn_view", plan, CATALOG).changed


def test_matview_of_masked_data_without_labels_is_refused() -> None:
    with pytest.raises(MaskingError, match="email_mv"):
        rewrite("SELECT * FROM email_mv", PLAN, CATALOG)
    labelled = {**DEMO_MASKS, ("public", "email_mv", "email"): DEMO_MASKS[("public", "customers", "email")]}
    sql = rewrite("SELECT * FROM email_mv", MaskPlan(labelled, hmac_key=KEY), CATALOG).sql
    assert "FROM public.email_mv) AS email_mv" in sql


# --------------------------------------------------------------------------- writes


def test_returning_star_is_expanded_and_masked() -> None:
    out = rewrite("UPDATE customers SET phone = '1' WHERE id = 1 RETURNING *", PLAN, CATALOG)
    assert out.scrub_errors
    assert "RETURNING customers.id, CAST(" in out.sql
    assert out.sql.endswith("AS birth_date, customers.created_at")


def test_returning_keeps_output_names() -> None:
    sql = rw("DELETE FROM customers WHERE id = 1 RETURNING email::text, upper(ssn), ssn AS s, phone")
    tail = sql.split("RETURNING", 1)[1]
    assert (
        tail.count(" AS email") == 1 and "AS upper" in tail and "AS s" in tail and tail.endswith("AS phone")
    )


def test_returning_whole_row_is_a_masked_row_of_the_table_type() -> None:
    sql = rw("DELETE FROM customers c WHERE id = 1 RETURNING c, row_to_json(c), (c).ssn, c.ssn")
    assert sql.count("AS public.customers)") == 3
    assert "c.ssn IS NULL" in sql and ", c.ssn" not in sql


def test_returning_sub_select_referencing_the_target_is_masked() -> None:
    sql = rw("UPDATE customers c SET phone = '1' RETURNING (SELECT c.ssn), (SELECT max(ssn) FROM customers)")
    assert "(SELECT CAST(CASE WHEN c.ssn IS NULL" in sql


def test_returning_old_and_new() -> None:
    sql = rw("UPDATE customers SET phone = '1' RETURNING old.ssn, new.*")
    assert "old.ssn IS NULL" in sql and "new.email IS NULL" in sql


def test_where_of_a_write_filters_on_masked_values() -> None:
    sql = rw("UPDATE customers SET phone = '1' WHERE ssn = '123-45-6789'")
    assert "WHERE CAST(CASE WHEN customers.ssn IS NULL" in sql


def test_set_keeps_real_values_only_into_a_column_masked_as_strictly() -> None:
    sql = rw(
        "UPDATE customers SET email = lower(email), full_name = ssn, created_at = birth_date::timestamptz"
    )
    assert "email = lower(email)" in sql
    assert "full_name = CAST(CASE WHEN customers.ssn IS NULL" in sql
    assert "created_at = CAST(CAST(NULL AS pg_catalog.date) AS timestamptz)" in sql


def test_set_of_a_row() -> None:
    sql = rw("UPDATE customers SET (phone, ssn) = (SELECT ssn, phone)")
    # phone (partial) may not receive the real ssn (redact); the row is judged by its laxest column
    assert "(SELECT CAST(CASE WHEN customers.ssn IS NULL" in sql and "AS ssn, phone)" in sql


def test_insert_select_stores_masked_values() -> None:
    out = rewrite("INSERT INTO audit_notes (note) SELECT ssn FROM customers RETURNING *", PLAN, CATALOG)
    assert not out.scrub_errors  # audit_notes has no masked columns
    assert_no_raw_reads(out.sql)
    assert out.sql.endswith("RETURNING *")


def test_insert_on_conflict() -> None:
    sql = rw(
        "INSERT INTO customers AS c (id, full_name, email) VALUES (1, 'x', 'y') ON CONFLICT (id) DO UPDATE "
        "SET phone = c.ssn, full_name = excluded.full_name WHERE c.email = 'a' RETURNING c.ssn"
    )
    assert "phone = CAST(CASE WHEN c.ssn IS NULL" in sql
    assert "full_name = excluded.full_name" in sql
    assert "WHERE CAST(CASE WHEN c.email IS NULL" in sql


def test_delete_using_masked_table() -> None:
    sql = rw(
        "DELETE FROM orders USING customers c WHERE c.id = orders.customer_id AND c.ssn = '1' RETURNING c.*"
    )
    assert sql.endswith("RETURNING c.*")


def test_merge_source_masked_and_target_filtered() -> None:
    sql = rw(
        "MERGE INTO customers c USING customers_archive a ON c.email = a.email "
        "WHEN MATCHED AND c.ssn = '1' THEN UPDATE SET full_name = c.ssn "
        "WHEN NOT MATCHED THEN INSERT (full_name, email) VALUES (a.full_name, a.email)"
    )
    assert "ON CAST(CASE WHEN c.email IS NULL" in sql
    assert "full_name = CAST(CASE WHEN c.ssn IS NULL" in sql


def test_writable_cte() -> None:
    sql = rw("WITH d AS (DELETE FROM customers WHERE id = 1 RETURNING *) SELECT ssn FROM d")
    assert "RETURNING customers.id, CAST(" in sql


def test_write_through_a_masked_view_is_refused() -> None:
    with pytest.raises(MaskingError, match="customer_contacts"):
        rewrite("UPDATE customer_contacts SET email = 'x'", PLAN, CATALOG)


def test_returning_star_over_using_join_is_refused() -> None:
    with pytest.raises(MaskingError, match="USING"):
        rewrite(
            "UPDATE customers SET phone = '1' FROM orders JOIN products USING (id) RETURNING *", PLAN, CATALOG
        )


# --------------------------------------------------------------------------- COPY


def test_copy_table_to_becomes_copy_query() -> None:
    out = rewrite("COPY customers TO STDOUT WITH (FORMAT csv, HEADER)", PLAN, CATALOG)
    assert out.sql.startswith("COPY (SELECT id, CAST(")
    assert out.sql.endswith("FROM ONLY public.customers) TO STDOUT WITH (FORMAT csv, HEADER)")


def test_copy_with_column_list() -> None:
    sql = rewrite("COPY orders (card_last4, id) TO STDOUT (FORMAT binary)", PLAN, CATALOG).sql
    assert sql.startswith("COPY (SELECT CAST(") and ") AS card_last4, id FROM ONLY public.orders)" in sql


def test_copy_query_and_copy_from() -> None:
    assert rewrite("COPY (SELECT ssn FROM customers) TO STDOUT", PLAN, CATALOG).changed
    assert not rewrite("COPY customers FROM STDIN", PLAN, CATALOG).changed
    assert not rewrite("COPY products TO STDOUT", PLAN, CATALOG).changed


# --------------------------------------------------------------------------- other statements


def test_prepare_declare_explain() -> None:
    assert "PREPARE p AS SELECT email FROM (SELECT" in rw(
        "PREPARE p AS SELECT email FROM customers WHERE id = $1"
    )
    assert "DECLARE c CURSOR FOR SELECT" in rw("DECLARE c CURSOR FOR SELECT ssn FROM customers")
    assert rw("EXPLAIN SELECT email FROM customers").startswith("EXPLAIN SELECT email FROM (SELECT")


def test_explain_of_hashed_column_is_refused() -> None:
    with pytest.raises(MaskingError, match="hash"):
        rewrite("EXPLAIN SELECT card_last4 FROM orders", PLAN, CATALOG)


def test_create_table_as_stores_masked_values_but_matview_is_refused() -> None:
    assert rewrite("CREATE TABLE t AS SELECT email FROM customers", PLAN, CATALOG).changed
    with pytest.raises(MaskingError, match="MATERIALIZED"):
        rewrite("CREATE MATERIALIZED VIEW m AS SELECT email FROM customers", PLAN, CATALOG)


def test_definitions_and_utilities_pass() -> None:
    for sql in (
        "CREATE VIEW v AS SELECT * FROM customers",
        "BEGIN",
        "SET application_name = 'x'",
        "LOCK customers",
        "TRUNCATE customers",
        "VACUUM ANALYZE customers",
        "EXECUTE p(1)",
        "FETCH 10 FROM c",
        "NOTIFY ch, 'x'",
    ):
        assert not rewrite(sql, PLAN, CATALOG).changed, sql


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("DO $$ BEGIN PERFORM 1; END $$", "DO"),
        ("CALL p()", "CALL"),
        ("SELECT get_ssn(1)", "get_ssn"),
        ("SELECT public.get_ssn(1)", "get_ssn"),
        ("SELECT email FROM customers WHERE slugify(email) = 'x'", "slugify"),
        ("SELECT 1 FROM customers WHERE email === 'x'", "==="),
        ("SELECT ssn::mytype FROM customers", "mytype"),
        ("SELECT query_to_xml('select * from customers', true, true, '')", "query_to_xml"),
        ("SELECT * FROM dblink('x', 'select 1') AS t(a int)", "dblink"),
        ("SELECT current_query()", "current_query"),
        ("SELECT pg_catalog.pg_read_file('log')", "pg_read_file"),
        ("SELECT * FROM pg_stats", "pg_stats"),
        ("SELECT query FROM pg_catalog.pg_stat_activity", "pg_stat_activity"),
        ("ALTER TABLE customers ALTER COLUMN ssn TYPE int USING ssn::int", "customers"),
        ("CREATE INDEX ON customers (email)", "customers"),
        ("CREATE RULE r AS ON INSERT TO audit_notes DO ALSO SELECT * FROM customers", "customers"),
        ("SELECT * FROM customer_contacts TABLESAMPLE SYSTEM (1)", "TABLESAMPLE"),
    ],
)
def test_refusals(sql: str, why: str) -> None:
    with pytest.raises(MaskingError) as err:
        rewrite(sql, PLAN, CATALOG)
    assert why in err.value.reason
    assert "123" not in err.value.reason


def test_trusted_function_is_allowed() -> None:
    plan = MaskPlan(DEMO_MASKS, hmac_key=KEY, trusted_functions=["public.slugify"])
    assert rewrite("SELECT slugify(email) FROM customers", plan, CATALOG).changed


def test_unparseable_sql_is_refused() -> None:
    with pytest.raises(MaskingError, match="parse"):
        rewrite("SELEC 1", PLAN, CATALOG)


# --------------------------------------------------------------------------- predicates: deny


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id FROM customers WHERE email = 'a'",
        "SELECT id FROM customers c JOIN orders o ON o.card_last4 = c.phone",
        "SELECT count(*) FROM customers GROUP BY ssn",
        "SELECT id FROM customers ORDER BY phone",
        "SELECT ssn FROM customers ORDER BY 1",
        "SELECT upper(ssn) AS s FROM customers ORDER BY s",
        "SELECT DISTINCT ON (email) id FROM customers",
        "SELECT id FROM (SELECT id, upper(email) AS e FROM customers) s WHERE e = 'A'",
        "WITH x AS (SELECT email AS e FROM customers) SELECT 1 FROM x WHERE e LIKE 'a%'",
        "SELECT id FROM customers c WHERE c::text LIKE '%ada%'",
        "SELECT 1 FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE ssn LIKE '1%')",
        "SELECT id FROM customers WHERE (SELECT max(ssn) FROM customers) > '1'",
        "SELECT string_agg(id::text, ',' ORDER BY ssn) FROM customers",
        "SELECT row_number() OVER (ORDER BY email) FROM customers",
        "SELECT 1 FROM customer_contacts WHERE email = 'x'",
        "UPDATE customers SET phone = '1' WHERE ssn = '1'",
        "SELECT 1 FROM customers JOIN customers_archive USING (email)",
    ],
)
def test_deny_mode_refuses_predicates_on_masked_values(sql: str) -> None:
    with pytest.raises(MaskingError, match="policy does not allow"):
        rewrite(sql, DENY_PLAN, CATALOG)
    rw(sql)  # the default filters on masked values instead


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT email, ssn FROM customers WHERE id = 1 ORDER BY created_at",
        "SELECT c.email FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.id ORDER BY c.id",
        "SELECT upper(email) AS e FROM customers ORDER BY id",
        "SELECT * FROM (SELECT id, email FROM customers) s WHERE id > 1",
        "SELECT id::text AS email FROM customers ORDER BY email",
    ],
)
def test_deny_mode_allows_masked_outputs(sql: str) -> None:
    rewrite(sql, DENY_PLAN, CATALOG)
