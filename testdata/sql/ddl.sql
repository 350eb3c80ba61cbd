-- Schema changes: CREATE / ALTER / DROP of tables, views, indexes, functions, roles, schemas,
-- extensions and more; SELECT INTO and CREATE TABLE AS; GRANT / REVOKE; COMMENT; rules, triggers.
-- Format: see tests/unit/analysis/corpus.py.

-- @case create-table
-- @expect node: CreateStmt
-- @expect kind: ddl
-- @expect command_tag: CREATE TABLE
-- @expect relations: [notes:ddl]
-- @expect flags: {ddl: true, writes: true, is_utility: true, modifies_data: false}
CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL);

-- @case create-table-references-like-inherits
-- @expect relations: [public.notes:ddl, customers:ddl, orders:ddl, audit_notes:ddl]
-- @expect functions: [now]
CREATE TABLE public.notes (LIKE orders, customer_id int REFERENCES customers (id), at timestamptz DEFAULT now()) INHERITS (audit_notes);

-- @case create-table-default-side-effect
-- A function call in a DEFAULT or CHECK is a function call all the same.
-- @expect functions: [nextval, pg_sleep]
-- @expect columns: [t.x@select]
-- @expect flags: {side_effect_functions: true}
CREATE TABLE t (id int DEFAULT nextval('s'), x int CHECK (x > pg_sleep(0)::text::int));

-- @case create-table-partition-of
-- @expect command_tag: CREATE TABLE
-- @expect relations: [orders_2026:ddl, orders:ddl]
CREATE TABLE orders_2026 PARTITION OF orders FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');

-- @case create-temp-table
-- @expect relations: [scratch:ddl]
CREATE TEMP TABLE scratch (x int) ON COMMIT DROP;

-- @case create-unlogged-table-if-not-exists
-- @expect relations: [s.t:ddl]
CREATE UNLOGGED TABLE IF NOT EXISTS s.t (x int);

-- @case create-table-as
-- @expect node: CreateTableAsStmt
-- @expect kind: ddl
-- @expect command_tag: CREATE TABLE AS
-- @expect relations: [customers:read, copy_of_customers:ddl, copy_of_customers:insert]
-- @expect writes: [copy_of_customers:select_into:nowhere]
-- @expect flags: {ddl: true, writes: true, modifies_data: true, select_into: false}
CREATE TABLE copy_of_customers AS SELECT * FROM customers;

-- @case create-table-as-with-no-data
-- @expect relations: [customers:read, empty_copy:ddl]
-- @expect writes: []
-- @expect flags: {ddl: true, modifies_data: false}
CREATE TABLE empty_copy AS SELECT * FROM customers WITH NO DATA;

-- @case select-into
-- @expect node: SelectStmt
-- @expect kind: ddl
-- @expect command_tag: SELECT INTO
-- @expect relations: [customers:read, stolen:ddl, stolen:insert]
-- @expect writes: [stolen:select_into:nowhere]
-- @expect flags: {select_into: true, ddl: true, writes: true, modifies_data: true, is_utility: true}
SELECT email, ssn INTO stolen FROM customers;

-- @case select-into-temp
-- @expect relations: [customers:read, tmp_emails:ddl, tmp_emails:insert]
-- @expect flags: {select_into: true}
SELECT email INTO TEMP TABLE tmp_emails FROM customers;

-- @case create-materialized-view
-- @expect command_tag: CREATE MATERIALIZED VIEW
-- @expect relations: [orders:read, order_totals:ddl, order_totals:insert]
-- @expect writes: [order_totals:select_into:nowhere]
CREATE MATERIALIZED VIEW order_totals AS SELECT customer_id, count(*) FROM orders GROUP BY customer_id;

-- @case create-view
-- @expect node: ViewStmt
-- @expect command_tag: CREATE VIEW
-- @expect relations: [customer_emails:ddl, customers:read]
-- @expect columns: [customers.email@select]
-- @expect flags: {ddl: true, modifies_data: false}
CREATE VIEW customer_emails AS SELECT email FROM customers;

-- @case create-or-replace-recursive-view
-- @expect relations: [v:ddl, orders:read]
CREATE OR REPLACE RECURSIVE VIEW v (n) AS SELECT 1 UNION ALL SELECT n + 1 FROM v WHERE n < (SELECT count(*) FROM orders);

-- @case alter-view
-- @expect command_tag: ALTER VIEW
-- @expect relations: [customer_emails:ddl]
ALTER VIEW customer_emails RENAME TO emails;

-- @case drop-view
-- @expect command_tag: DROP VIEW
-- @expect relations: [customer_emails:ddl, s.v:ddl]
DROP VIEW IF EXISTS customer_emails, s.v CASCADE;

-- @case create-index
-- @expect node: IndexStmt
-- @expect command_tag: CREATE INDEX
-- @expect relations: [orders:ddl]
-- @expect functions: [lower]
-- @expect columns: [orders.customer_id@select, orders.card_last4@select, orders.card_last4@function_arg, orders.quantity@select, orders.quantity@where]
CREATE INDEX CONCURRENTLY orders_idx ON orders (customer_id, lower(card_last4)) INCLUDE (quantity) WHERE quantity > 1;

-- @case drop-index
-- @expect command_tag: DROP INDEX
-- @expect relations: [orders_idx:ddl]
DROP INDEX orders_idx;

-- @case alter-index
-- @expect command_tag: ALTER INDEX
-- @expect relations: [orders_idx:ddl]
ALTER INDEX orders_idx SET (fillfactor = 70);

-- @case alter-table-add-column
-- @expect node: AlterTableStmt
-- @expect command_tag: ALTER TABLE
-- @expect relations: [customers:ddl]
-- @expect functions: [gen_random_uuid]
ALTER TABLE customers ADD COLUMN token uuid DEFAULT gen_random_uuid();

-- @case alter-table-foreign-key
-- @expect relations: [orders:ddl, customers:ddl]
ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (customer_id) REFERENCES customers (id);

-- @case alter-table-disable-rls
-- @expect command_tag: ALTER TABLE
-- @expect relations: [customers:ddl]
ALTER TABLE customers DISABLE ROW LEVEL SECURITY;

-- @case alter-table-rename-column
-- @expect node: RenameStmt
-- @expect command_tag: ALTER TABLE
-- @expect relations: [customers:ddl]
ALTER TABLE customers RENAME COLUMN ssn TO national_id;

-- @case alter-table-set-schema
-- @expect node: AlterObjectSchemaStmt
-- @expect command_tag: ALTER TABLE
-- @expect relations: [customers:ddl]
ALTER TABLE customers SET SCHEMA archive;

-- @case alter-table-owner
-- @expect command_tag: ALTER TABLE
-- @expect relations: [customers:ddl]
ALTER TABLE customers OWNER TO mallory;

-- @case alter-table-attach-partition
-- @expect relations: [orders:ddl, orders_2027:ddl]
ALTER TABLE orders ATTACH PARTITION orders_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');

-- @case alter-table-column-type-using
-- @expect relations: [orders:ddl]
-- @expect columns: [orders.card_last4@select]
ALTER TABLE orders ALTER COLUMN card_last4 TYPE int USING card_last4::int;

-- @case drop-table
-- @expect node: DropStmt
-- @expect kind: ddl
-- @expect command_tag: DROP TABLE
-- @expect relations: [orders:ddl, public.customers:ddl]
-- @expect flags: {ddl: true, writes: true, modifies_data: false}
DROP TABLE orders, public.customers;

-- @case drop-table-if-exists-cascade
-- @expect relations: [audit_notes:ddl]
DROP TABLE IF EXISTS audit_notes CASCADE;

-- @case drop-sequence-and-foreign-table
-- @expect command_tag: DROP SEQUENCE
-- @expect relations: [s:ddl]
DROP SEQUENCE s;

-- @case create-sequence
-- @expect node: CreateSeqStmt
-- @expect command_tag: CREATE SEQUENCE
-- @expect relations: [order_numbers:ddl]
CREATE SEQUENCE order_numbers START 100;

-- @case alter-sequence
-- @expect command_tag: ALTER SEQUENCE
-- @expect relations: [order_numbers:ddl]
ALTER SEQUENCE order_numbers RESTART WITH 1;

-- @case create-function-plpgsql
-- String-bodied functions are opaque.
-- @expect node: CreateFunctionStmt
-- @expect kind: ddl
-- @expect command_tag: CREATE FUNCTION
-- @expect relations: []
-- @expect flags: {ddl: true, executes_dynamic_sql: true, modifies_data: false}
CREATE FUNCTION wipe() RETURNS void LANGUAGE plpgsql AS $$ BEGIN DELETE FROM orders; END $$;

-- @case create-function-security-definer-set
-- @expect command_tag: CREATE FUNCTION
-- @expect settings: [{name: search_path, value: public, via: CREATE FUNCTION}]
-- @expect flags: {executes_dynamic_sql: true, changes_session_setting: false}
CREATE OR REPLACE FUNCTION f(a int DEFAULT 1) RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = public AS 'SELECT a';

-- @case create-function-sql-standard-body
-- SQL-standard bodies are parsed: their accesses are reported (fail closed).
-- @expect command_tag: CREATE FUNCTION
-- @expect relations: [orders:read]
-- @expect flags: {executes_dynamic_sql: true}
CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql RETURN (SELECT count(*) FROM orders);

-- @case create-procedure-begin-atomic
-- @expect command_tag: CREATE PROCEDURE
-- @expect relations: [audit_notes:insert, orders:delete]
-- @expect writes: [audit_notes:insert:nowhere, orders:delete:nowhere]
-- @expect flags: {modifies_data: true, executes_dynamic_sql: true}
CREATE PROCEDURE purge() LANGUAGE sql BEGIN ATOMIC DELETE FROM orders; INSERT INTO audit_notes (note) VALUES ('purged'); END;

-- @case alter-function-set
-- @expect command_tag: ALTER FUNCTION
-- @expect settings: [{name: role, value: admin, via: ALTER FUNCTION}]
-- @expect flags: {sets_role: false, changes_session_setting: false}
ALTER FUNCTION f(int) SET role = 'admin';

-- @case alter-procedure-owner
-- @expect command_tag: ALTER PROCEDURE
ALTER PROCEDURE purge() OWNER TO mallory;

-- @case drop-function
-- @expect command_tag: DROP FUNCTION
-- @expect relations: []
-- @expect functions: []
DROP FUNCTION IF EXISTS wipe(), f(int);

-- @case create-role
-- @expect node: CreateRoleStmt
-- @expect kind: ddl
-- @expect command_tag: CREATE ROLE
-- @expect flags: {ddl: true, writes: true}
CREATE ROLE mallory LOGIN SUPERUSER PASSWORD 'x';

-- @case create-user
-- @expect command_tag: CREATE ROLE
CREATE USER eve WITH PASSWORD 'x' IN ROLE pg_read_server_files;

-- @case alter-role
-- @expect node: AlterRoleStmt
-- @expect command_tag: ALTER ROLE
ALTER ROLE app_user WITH SUPERUSER BYPASSRLS;

-- @case alter-role-set
-- @expect node: AlterRoleSetStmt
-- @expect command_tag: ALTER ROLE
-- @expect settings: [{name: search_path, value: 'evil, public', via: ALTER ROLE}]
-- @expect flags: {changes_session_setting: false, ddl: true}
ALTER ROLE app_user SET search_path = evil, public;

-- @case alter-role-reset-all
-- @expect settings: [{name: all, via: ALTER ROLE}]
ALTER ROLE app_user RESET ALL;

-- @case drop-role
-- @expect command_tag: DROP ROLE
DROP ROLE IF EXISTS mallory;

-- @case create-schema-with-elements
-- @expect command_tag: CREATE SCHEMA
-- @expect relations: [t:ddl, v:ddl, customers:read]
CREATE SCHEMA s AUTHORIZATION app CREATE TABLE t (x int) CREATE VIEW v AS SELECT email FROM customers;

-- @case drop-schema
-- @expect command_tag: DROP SCHEMA
-- @expect relations: []
DROP SCHEMA s CASCADE;

-- @case create-extension
-- Extension scripts run SQL we cannot see.
-- @expect command_tag: CREATE EXTENSION
-- @expect flags: {ddl: true, executes_dynamic_sql: true}
CREATE EXTENSION IF NOT EXISTS dblink;

-- @case alter-extension-update
-- @expect command_tag: ALTER EXTENSION
-- @expect flags: {executes_dynamic_sql: true}
ALTER EXTENSION dblink UPDATE TO '1.3';

-- @case drop-extension
-- @expect command_tag: DROP EXTENSION
DROP EXTENSION dblink;

-- @case create-type-enum-domain
-- @expect command_tag: CREATE TYPE
CREATE TYPE mood AS ENUM ('sad', 'ok');

-- @case create-domain
-- @expect command_tag: CREATE DOMAIN
CREATE DOMAIN positive AS int CHECK (VALUE > 0);

-- @case create-aggregate
-- @expect node: DefineStmt
-- @expect command_tag: CREATE AGGREGATE
CREATE AGGREGATE my_sum (int) (SFUNC = int4pl, STYPE = int);

-- @case drop-type
-- @expect command_tag: DROP TYPE
DROP TYPE mood;

-- @case create-trigger
-- @expect node: CreateTrigStmt
-- @expect command_tag: CREATE TRIGGER
-- @expect relations: [orders:ddl]
-- @expect functions: []
-- @expect columns: [orders.quantity@select]
CREATE TRIGGER audit AFTER INSERT OR UPDATE ON orders FOR EACH ROW WHEN (NEW.quantity > 100) EXECUTE FUNCTION log_order();

-- @case drop-trigger
-- @expect command_tag: DROP TRIGGER
-- @expect relations: [public.orders:ddl]
DROP TRIGGER audit ON public.orders;

-- @case create-event-trigger
-- @expect command_tag: CREATE EVENT TRIGGER
CREATE EVENT TRIGGER no_ddl ON ddl_command_start EXECUTE FUNCTION stop_ddl();

-- @case create-rule
-- Rule actions are statements; what they touch is reported.
-- @expect node: RuleStmt
-- @expect command_tag: CREATE RULE
-- @expect relations: [orders:ddl, audit_notes:delete]
-- @expect writes: [audit_notes:delete:nowhere]
-- @expect flags: {modifies_data: true, ddl: true}
CREATE RULE r AS ON INSERT TO orders DO ALSO DELETE FROM audit_notes;

-- @case create-rule-new-row
-- @expect relations: [orders:ddl, audit_notes:insert]
-- @expect columns: [audit_notes.note@insert, orders.card_last4@select]
CREATE RULE keep AS ON DELETE TO orders DO ALSO INSERT INTO audit_notes (note) VALUES (old.card_last4);

-- @case create-rule-select-instead
-- @expect relations: [customer_emails:ddl, customers:read]
CREATE OR REPLACE RULE "_RETURN" AS ON SELECT TO customer_emails DO INSTEAD SELECT ssn AS email FROM customers;

-- @case drop-rule
-- @expect command_tag: DROP RULE
-- @expect relations: [orders:ddl]
DROP RULE r ON orders;

-- @case create-policy
-- @expect command_tag: CREATE POLICY
-- @expect relations: [orders:ddl, acl:read]
-- @expect columns: [orders.customer_id@select]
CREATE POLICY own_orders ON orders USING (customer_id = current_setting('app.customer')::int OR EXISTS (SELECT 1 FROM acl));

-- @case drop-policy
-- @expect command_tag: DROP POLICY
-- @expect relations: [orders:ddl]
DROP POLICY own_orders ON orders;

-- @case grant-table
-- @expect node: GrantStmt
-- @expect kind: grant
-- @expect command_tag: GRANT
-- @expect relations: [customers:grant, public.orders:grant]
-- @expect flags: {ddl: true, writes: true, is_utility: true}
GRANT SELECT (email), UPDATE ON customers, public.orders TO mallory WITH GRANT OPTION;

-- @case grant-all-tables-in-schema
-- @expect kind: grant
-- @expect relations: []
GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;

-- @case revoke
-- @expect command_tag: REVOKE
-- @expect relations: [customers:grant]
REVOKE ALL ON customers FROM PUBLIC;

-- @case grant-role
-- @expect node: GrantRoleStmt
-- @expect kind: grant
-- @expect command_tag: GRANT ROLE
GRANT pg_read_server_files, pg_execute_server_program TO app_user;

-- @case revoke-role
-- @expect command_tag: REVOKE ROLE
REVOKE admin FROM app_user;

-- @case grant-function
-- @expect command_tag: GRANT
-- @expect relations: []
GRANT EXECUTE ON FUNCTION pg_read_file(text) TO app_user;

-- @case alter-default-privileges
-- @expect kind: grant
-- @expect command_tag: ALTER DEFAULT PRIVILEGES
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO app_user;

-- @case comment-on-table
-- @expect node: CommentStmt
-- @expect kind: ddl
-- @expect command_tag: COMMENT
-- @expect relations: [customers:comment]
COMMENT ON TABLE customers IS 'people';

-- @case comment-on-column
-- @expect relations: [public.customers:comment]
COMMENT ON COLUMN public.customers.ssn IS 'secret';

-- @case comment-on-function
-- @expect relations: []
COMMENT ON FUNCTION f(int) IS 'x';

-- @case security-label
-- @expect node: SecLabelStmt
-- @expect command_tag: SECURITY LABEL
-- @expect relations: [customers:ddl]
SECURITY LABEL FOR selinux ON TABLE customers IS 'system_u:object_r:sepgsql_table_t:s0';

-- @case create-database
-- @expect command_tag: CREATE DATABASE
CREATE DATABASE scratch;

-- @case drop-database
-- @expect command_tag: DROP DATABASE
DROP DATABASE IF EXISTS scratch WITH (FORCE);

-- @case alter-database-set
-- @expect command_tag: ALTER DATABASE
-- @expect settings: [{name: default_transaction_read_only, value: 'off', via: ALTER DATABASE}]
ALTER DATABASE shop SET default_transaction_read_only = off;

-- @case create-tablespace
-- @expect command_tag: CREATE TABLESPACE
CREATE TABLESPACE fast LOCATION '/mnt/fast';

-- @case create-foreign-data
-- @expect command_tag: CREATE SERVER
CREATE SERVER other FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'evil.example');

-- @case create-user-mapping
-- @expect command_tag: CREATE USER MAPPING
CREATE USER MAPPING FOR app_user SERVER other OPTIONS (user 'x', password 'y');

-- @case create-foreign-table
-- @expect node: CreateForeignTableStmt
-- @expect command_tag: CREATE FOREIGN TABLE
-- @expect relations: [remote_orders:ddl]
CREATE FOREIGN TABLE remote_orders (id int) SERVER other;

-- @case import-foreign-schema
-- @expect node: ImportForeignSchemaStmt
-- @expect command_tag: IMPORT FOREIGN SCHEMA
-- @expect relations: [local.accounts:ddl, local.payments:ddl]
IMPORT FOREIGN SCHEMA public LIMIT TO (accounts, payments) FROM SERVER other INTO local;

-- @case import-foreign-schema-all
-- @expect relations: []
IMPORT FOREIGN SCHEMA public FROM SERVER other INTO local;

-- @case create-publication
-- @expect command_tag: CREATE PUBLICATION
-- @expect relations: [customers:ddl, s.orders:ddl]
CREATE PUBLICATION leak FOR TABLE customers, s.orders;

-- @case create-subscription
-- @expect command_tag: CREATE SUBSCRIPTION
CREATE SUBSCRIPTION sub CONNECTION 'host=evil.example' PUBLICATION p;

-- @case create-statistics
-- @expect command_tag: CREATE STATISTICS
-- @expect relations: [orders:ddl]
CREATE STATISTICS st (dependencies) ON customer_id, product_id FROM orders;

-- @case create-cast-and-operator
-- @expect command_tag: CREATE CAST
CREATE CAST (text AS int) WITH FUNCTION my_cast(text);

-- @case create-language-is-create-extension
-- The grammar turns a bare CREATE LANGUAGE into CREATE EXTENSION (so does Postgres's tag).
-- @expect node: CreateExtensionStmt
-- @expect command_tag: CREATE EXTENSION
-- @expect flags: {executes_dynamic_sql: true}
CREATE LANGUAGE plperlu;

-- @case create-language-with-handler
-- @expect node: CreatePLangStmt
-- @expect command_tag: CREATE LANGUAGE
CREATE LANGUAGE plsample HANDLER plsample_call_handler;

-- @case reassign-owned
-- @expect command_tag: REASSIGN OWNED
-- @expect kind: ddl
REASSIGN OWNED BY app_user TO mallory;

-- @case drop-owned
-- @expect command_tag: DROP OWNED
DROP OWNED BY app_user;

-- @case alter-system
-- @expect node: AlterSystemStmt
-- @expect kind: ddl
-- @expect command_tag: ALTER SYSTEM
-- @expect settings: [{name: shared_preload_libraries, value: evil, via: ALTER SYSTEM}]
-- @expect flags: {ddl: true, writes: true, changes_session_setting: false}
ALTER SYSTEM SET shared_preload_libraries = 'evil';

-- @case alter-system-reset
-- @expect settings: [{name: work_mem, via: ALTER SYSTEM}]
ALTER SYSTEM RESET work_mem;
