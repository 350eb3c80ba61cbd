package pgwarden.statement_test

import rego.v1

import data.pgwarden.fixtures_test as fx

# --- wrapper / current / body ------------------------------------------------

test_plain_statement_is_decided_as_sent if {
	stmt := fx.select_products
	data.pgwarden.statement.wrapper == "" with input.statement as stmt
	current := data.pgwarden.statement.current with input.statement as stmt
	outer := data.pgwarden.statement.outer with input.statement as stmt
	current == stmt
	outer == stmt
}

test_prepare_is_decided_by_its_body if {
	body := fx.delete_one_order
	data.pgwarden.statement.wrapper == "prepare" with input.statement as fx.prepare_delete_one
	unwrapped := data.pgwarden.statement.body with input.statement as fx.prepare_delete_one
	current := data.pgwarden.statement.current with input.statement as fx.prepare_delete_one
	unwrapped == body
	current == body
	data.pgwarden.statement.kind == "delete" with input.statement as fx.prepare_delete_one
}

test_explain_analyze_is_decided_by_its_body if {
	body := fx.delete_all_orders
	data.pgwarden.statement.explain_analyze with input.statement as fx.explain_analyze_delete
	data.pgwarden.statement.wrapper == "explain_analyze" with input.statement as fx.explain_analyze_delete
	current := data.pgwarden.statement.current with input.statement as fx.explain_analyze_delete
	current == body
}

test_explain_analyze_recognised_by_flag_alone if {
	stmt := object.union(fx.explain_analyze_delete, {"explain": {"analyze": false, "body": fx.delete_all_orders}})
	data.pgwarden.statement.wrapper == "explain_analyze" with input.statement as stmt
}

test_explain_analyze_recognised_by_explain_field_alone if {
	stmt := object.union(fx.explain_delete, {"explain": {"analyze": true, "body": fx.delete_all_orders}})
	data.pgwarden.statement.explain_analyze with input.statement as stmt
}

test_execute_with_body_is_decided_by_its_body if {
	stmt := object.union(fx.execute_p1, {"execute": {"name": "p1", "body": fx.select_customers}})
	data.pgwarden.statement.wrapper == "execute" with input.statement as stmt
	data.pgwarden.statement.kind == "select" with input.statement as stmt
}

test_execute_without_body_stays_opaque if {
	data.pgwarden.statement.wrapper == "" with input.statement as fx.execute_p1
	data.pgwarden.statement.kind == "execute" with input.statement as fx.execute_p1
	"execute" in data.pgwarden.statement.opaque_kinds
}

test_missing_body if {
	stmt := object.union(fx.prepare_delete_one, {"prepare": {"name": "p1", "body": null}})
	data.pgwarden.statement.missing_body with input.statement as stmt
	not data.pgwarden.statement.current with input.statement as stmt
	data.pgwarden.statement.kind == "unknown" with input.statement as stmt
	data.pgwarden.statement.command == "UNKNOWN" with input.statement as stmt
	not data.pgwarden.statement.missing_body with input.statement as fx.prepare_delete_one
}

# --- plain EXPLAIN runs nothing ----------------------------------------------

test_plain_explain_has_no_facts if {
	data.pgwarden.statement.plain_explain with input.statement as fx.explain_delete
	data.pgwarden.statement.kind == "explain" with input.statement as fx.explain_delete
	data.pgwarden.statement.relations == [] with input.statement as fx.explain_delete
	data.pgwarden.statement.writes == [] with input.statement as fx.explain_delete
	data.pgwarden.statement.columns == [] with input.statement as fx.explain_delete
	data.pgwarden.statement.functions == [] with input.statement as fx.explain_delete
	data.pgwarden.statement.settings == [] with input.statement as fx.explain_delete
	data.pgwarden.statement.flags == {} with input.statement as fx.explain_delete
	not data.pgwarden.statement.plain_explain with input.statement as fx.explain_analyze_delete
}

# --- facts -------------------------------------------------------------------

test_facts_of_the_current_statement if {
	delete := fx.delete_one_order
	relations := data.pgwarden.statement.relations with input.statement as delete
	writes := data.pgwarden.statement.writes with input.statement as delete
	columns := data.pgwarden.statement.columns with input.statement as delete
	flags := data.pgwarden.statement.flags with input.statement as delete
	relations == delete.relations
	writes == delete.writes
	columns == delete.columns
	flags == delete.flags
	functions := data.pgwarden.statement.functions with input.statement as fx.select_dblink
	functions == [{"schema": null, "name": "dblink_exec", "qualified": "dblink_exec"}]
	settings := data.pgwarden.statement.settings with input.statement as fx.set_timeout
	settings == [{"name": "statement_timeout", "value": "5s", "via": "SET"}]
	data.pgwarden.statement.role_change == {"via": "SET ROLE", "role": "postgres"} with input.statement as fx.set_role
	data.pgwarden.statement.copy.direction == "to" with input.statement as fx.copy_orders_out
}

test_missing_facts_are_empty if {
	stmt := {"kind": "select"}
	data.pgwarden.statement.relations == [] with input.statement as stmt
	data.pgwarden.statement.flags == {} with input.statement as stmt
	not data.pgwarden.statement.role_change with input.statement as stmt
	not data.pgwarden.statement.copy with input.statement as stmt
}

test_flag if {
	data.pgwarden.statement.flag("has_where") with input.statement as fx.delete_one_order
	not data.pgwarden.statement.flag("has_where") with input.statement as fx.delete_all_orders
	not data.pgwarden.statement.flag("no_such_flag") with input.statement as fx.delete_one_order
}

test_kind_defaults_to_unknown if {
	data.pgwarden.statement.kind == "unknown" with input.statement as {"text": "?"}
}

test_command if {
	data.pgwarden.statement.command == "TRUNCATE TABLE" with input.statement as fx.truncate_orders
	lower_tag := object.union(fx.select_one, {"command_tag": "select"})
	data.pgwarden.statement.command == "SELECT" with input.statement as lower_tag
	data.pgwarden.statement.command == "UNKNOWN" with input.statement as fx.unknown
}

test_relation_key if {
	data.pgwarden.statement.relation_key({"schema": null, "name": "orders"}) == "public.orders"
	data.pgwarden.statement.relation_key({"schema": "", "name": "orders"}) == "public.orders"
	data.pgwarden.statement.relation_key({"schema": "sales", "name": "orders"}) == "sales.orders"
}

test_read_relations if {
	data.pgwarden.statement.read_relations == {"public.orders", "public.customers"} with input.statement as fx.select_orders_with_email
	data.pgwarden.statement.read_relations == {"public.orders"} with input.statement as fx.copy_orders_out
	data.pgwarden.statement.read_relations == set() with input.statement as fx.delete_all_orders
	{"read", "copy_to"} == data.pgwarden.statement.read_accesses
}

test_written_relations if {
	data.pgwarden.statement.written_relations == {"public.orders"} with input.statement as fx.delete_one_order
	data.pgwarden.statement.written_relations == {"public.customers_copy"} with input.statement as fx.select_into
	stmt := object.union(fx.update_phone, {"writes": []})
	data.pgwarden.statement.written_relations == {"public.customers"} with input.statement as stmt
	"update" in data.pgwarden.statement.write_accesses
}

test_returns_rows if {
	data.pgwarden.statement.returns_rows with input.statement as fx.update_phone_returning
	not data.pgwarden.statement.returns_rows with input.statement as fx.update_phone
}

# --- malformed documents -----------------------------------------------------

test_well_formed_statement_is_not_malformed if {
	count(data.pgwarden.statement.malformed) == 0 with input.statement as fx.select_customers
}

test_statement_not_an_object if {
	data.pgwarden.statement.malformed == {"input.statement is not an object"} with input.statement as "SELECT 1"
}

test_statement_without_kind if {
	"the statement has no kind" in data.pgwarden.statement.malformed with input.statement as {"text": "SELECT 1"}
}

test_list_field_not_a_list if {
	stmt := object.union(fx.select_products, {"writes": null})
	data.pgwarden.statement.malformed == {"statement field \"writes\" is not a list"} with input.statement as stmt
	"writes" in data.pgwarden.statement.list_fields
}

test_flags_not_an_object if {
	stmt := object.union(fx.select_products, {"flags": []})
	data.pgwarden.statement.malformed == {"statement field \"flags\" is not an object"} with input.statement as stmt
}

test_flag_not_a_boolean if {
	stmt := object.union(fx.select_products, {"flags": {"executes_dynamic_sql": 1}})
	data.pgwarden.statement.malformed == {"statement flag \"executes_dynamic_sql\" is not a boolean"} with input.statement as stmt
}

test_entry_without_name if {
	stmt := object.union(fx.select_products, {"relations": [{"schema": null, "access": "read"}]})
	data.pgwarden.statement.malformed == {"a relations entry has no name"} with input.statement as stmt
}
