"""A hand-built catalog shaped like testdata/demo_schema.sql, plus a few relations for edge cases."""

from __future__ import annotations

from enforcer.masking import Catalog, Column, ColumnMask, HmacKey, MaskPlan, Relation

INT4, INT8, TEXT, DATE, TSTZ, NUMERIC, VARCHAR, BPCHAR, UUID, JSONB = (
    23,
    20,
    25,
    1082,
    1184,
    1700,
    1043,
    1042,
    2950,
    3802,
)

KEY = HmacKey(b"unit-test-key-0123456789abcdef!!")


def col(
    name: str, attnum: int, oid: int, type_sql: str, category: str, typmod: int = -1, **kw: object
) -> Column:
    return Column(name, attnum, oid, typmod, type_sql, oid, category, **kw)  # type: ignore[arg-type]


def _id(attnum: int = 1) -> Column:
    return col("id", attnum, INT4, "integer", "N")


CUSTOMERS = Relation(
    1001,
    "public",
    "customers",
    "table",
    (
        _id(),
        col("full_name", 2, TEXT, "text", "S"),
        col("email", 3, TEXT, "text", "S"),
        col("phone", 4, TEXT, "text", "S"),
        col("ssn", 5, TEXT, "text", "S"),
        col("birth_date", 6, DATE, "date", "D"),
        col("created_at", 7, TSTZ, "timestamp with time zone", "D"),
    ),
)
PRODUCTS = Relation(
    1002,
    "public",
    "products",
    "table",
    (
        _id(),
        col("sku", 2, TEXT, "text", "S"),
        col("name", 3, TEXT, "text", "S"),
        col("price", 4, NUMERIC, "numeric(10,2)", "N", 655366),
    ),
)
ORDERS = Relation(
    1003,
    "public",
    "orders",
    "table",
    (
        _id(),
        col("customer_id", 2, INT4, "integer", "N"),
        col("product_id", 3, INT4, "integer", "N"),
        col("quantity", 4, INT4, "integer", "N"),
        col("card_last4", 5, TEXT, "text", "S"),
        col("ordered_at", 6, TSTZ, "timestamp with time zone", "D"),
    ),
)
AUDIT_NOTES = Relation(
    1004,
    "public",
    "audit_notes",
    "table",
    (col("id", 1, INT8, "bigint", "N"), col("note", 2, TEXT, "text", "S")),
)
CONTACTS = Relation(
    1005,
    "public",
    "customer_contacts",
    "view",
    (_id(), col("full_name", 2, TEXT, "text", "S"), col("email", 3, TEXT, "text", "S")),
    definition=(
        " SELECT customers.id,\n    customers.full_name,\n    customers.email\n   FROM public.customers;"
    ),
    depends_on=((1001, 1), (1001, 2), (1001, 3)),
)
SKUS = Relation(
    1006,
    "public",
    "skus",
    "view",
    (col("sku", 1, TEXT, "text", "S"),),
    definition=" SELECT products.sku\n   FROM public.products;",
    depends_on=((1002, 2),),
)
BARRIER = Relation(
    1007,
    "public",
    "barrier_contacts",
    "view",
    (_id(), col("email", 2, TEXT, "text", "S")),
    definition=" SELECT c.id,\n    c.email\n   FROM public.customers c\n  WHERE (c.id > 0);",
    security_barrier=True,
    depends_on=((1001, 1), (1001, 3)),
)
FN_VIEW = Relation(
    1008,
    "public",
    "ssn_view",
    "view",
    (col("s", 1, TEXT, "text", "S"),),
    definition=" SELECT public.get_ssn(1) AS s;",
    untrusted_calls=("public.get_ssn",),
)
EMAIL_MV = Relation(
    1009,
    "public",
    "email_mv",
    "matview",
    (col("email", 1, TEXT, "text", "S"),),
    definition=" SELECT customers.email\n   FROM public.customers;",
    depends_on=((1001, 3),),
)
CUSTOMERS_CHILD = Relation(
    1010,
    "public",
    "customers_archive",
    "table",
    CUSTOMERS.columns,
    parents=(1001,),
)
GENERATED = Relation(
    1011,
    "public",
    "people",
    "table",
    (
        _id(),
        col("email", 2, TEXT, "text", "S"),
        col("domain", 3, TEXT, "text", "S", generated=True),
    ),
    generated_from=((3, (2,)),),
)
OTHER_CUSTOMERS = Relation(1012, "other", "customers", "table", (_id(), col("email", 2, TEXT, "text", "S")))
NESTED_VIEW = Relation(
    1013,
    "public",
    "contact_emails",
    "view",
    (col("email", 1, TEXT, "text", "S"),),
    definition=" SELECT customer_contacts.email\n   FROM public.customer_contacts;",
    depends_on=((1005, 3),),
)
TYPED = Relation(
    1014,
    "public",
    "typed",
    "table",
    (
        col("code", 1, BPCHAR, "character(4)", "S", 8),
        col("nick", 2, VARCHAR, "character varying(6)", "S", 10),
        col("token", 3, UUID, "uuid", "U"),
        col("doc", 4, JSONB, "jsonb", "U"),
        col("n", 5, INT8, "bigint", "N"),
    ),
)

CATALOG = Catalog(
    relations=(
        CUSTOMERS,
        PRODUCTS,
        ORDERS,
        AUDIT_NOTES,
        CONTACTS,
        SKUS,
        BARRIER,
        FN_VIEW,
        EMAIL_MV,
        CUSTOMERS_CHILD,
        GENERATED,
        OTHER_CUSTOMERS,
        NESTED_VIEW,
        TYPED,
    ),
    system_relations=frozenset(
        {
            ("pg_catalog", "pg_class"),
            ("pg_catalog", "pg_stats"),
            ("pg_catalog", "pg_stat_activity"),
            ("information_schema", "tables"),
        }
    ),
    untrusted_functions=frozenset({("public", "get_ssn"), ("public", "slugify")}),
    untrusted_operators=frozenset({("public", "===")}),
    untrusted_cast_types=frozenset({"mytype"}),
    search_path=("$user", "public"),
    current_user="app",
    database="demo",
    server_version_num=150018,
)

DEMO_MASKS = {
    ("public", "customers", "full_name"): ColumnMask("partial", "pii.name"),
    ("public", "customers", "email"): ColumnMask("email", "pii.email"),
    ("public", "customers", "phone"): ColumnMask("partial", "pii.phone"),
    ("public", "customers", "ssn"): ColumnMask("redact", "pii.national_id"),
    ("public", "customers", "birth_date"): ColumnMask("null", "pii.birth_date"),
    ("public", "orders", "card_last4"): ColumnMask("hash", "pci.card_fragment"),
    ("public", "people", "email"): ColumnMask("email", "pii.email"),
    ("public", "typed", "code"): ColumnMask("partial", "t"),
    ("public", "typed", "nick"): ColumnMask("hash", "t"),
    ("public", "typed", "token"): ColumnMask("hash", "t"),
    ("public", "typed", "doc"): ColumnMask("redact", "t"),
    ("public", "typed", "n"): ColumnMask("hash", "t"),
}

PLAN = MaskPlan(DEMO_MASKS, hmac_key=KEY)
DENY_PLAN = MaskPlan(DEMO_MASKS, hmac_key=KEY, predicates="deny")
