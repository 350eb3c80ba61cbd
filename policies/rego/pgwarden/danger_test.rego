package pgwarden.danger_test

import rego.v1

import data.pgwarden.fixtures_test as fx

hard_for(stmt) := h if {
	h := data.pgwarden.danger.hard with input as fx.dba_request with input.statement as stmt
}

# --- data --------------------------------------------------------------------

test_lists_read_from_data if {
	"truncate" in data.pgwarden.danger.destructive_kinds
	"pg_read_file" in data.pgwarden.danger.denied_functions
	"dblink" in data.pgwarden.danger.denied_function_prefixes
	"search_path" in data.pgwarden.danger.denied_settings
	"log_" in data.pgwarden.danger.denied_setting_prefixes
	"ALTER SYSTEM" in data.pgwarden.danger.persistent_setting_vias
}

test_lists_must_be_lower_case if {
	count(data.pgwarden.danger.config_errors) == 0
	errors := data.pgwarden.danger.config_errors with data.pgwarden.config.danger.functions as ["PG_Read_File", 7]
	errors == {
		"danger.functions entry PG_Read_File is not a lower-case string",
		"danger.functions entry 7 is not a lower-case string",
	}
	data.pgwarden.danger.lower_case_string("pg_read_file")
	not data.pgwarden.danger.lower_case_string("Role")
}

test_section_defaults_to_empty if {
	data.pgwarden.danger.section == {} with data.pgwarden.config as {}
	data.pgwarden.danger.destructive_kinds == [] with data.pgwarden.config as {}
}

# --- hard rules --------------------------------------------------------------

test_harmless_statements_have_no_hard_findings if {
	hard_for(fx.select_customers) == set()
	hard_for(fx.delete_all_orders) == set()
	hard_for(fx.set_timeout) == set()
	hard_for(fx.explain_delete) == set()
}

test_malformed_statement if {
	stmt := object.union(fx.select_products, {"functions": {}})
	hard_for(stmt) == {"malformed statement document: statement field \"functions\" is not a list (pgwarden.danger.malformed_statement)"}
}

test_missing_body if {
	stmt := object.union(fx.prepare_delete_one, {"prepare": {"name": "p1", "body": null}})
	"PREPARE without an analysable body cannot be decided (pgwarden.danger.opaque_statement)" in hard_for(stmt)
}

test_unknown_kind if {
	hard_for(fx.unknown) == {"statement kind \"unknown\" cannot be analysed (pgwarden.danger.opaque_statement)"}
}

test_nested_prepare_is_opaque if {
	stmt := data.pgwarden.fixtures_test.prepare(fx.prepare_select_products)
	"statement kind \"prepare\" cannot be analysed (pgwarden.danger.opaque_statement)" in hard_for(stmt)
}

test_do_block if {
	hard_for(fx.do_block) == {
		"DO runs an anonymous code block that cannot be analysed (pgwarden.danger.opaque_statement)",
		"DO runs SQL or code the policy cannot see (pgwarden.danger.dynamic_sql)",
	}
}

test_execute_without_body if {
	"EXECUTE p1: the prepared statement's body is not in the input, so it cannot be decided (pgwarden.danger.opaque_statement)" in hard_for(fx.execute_p1)
}

test_wrappers_flagged_dynamic_are_decided_by_their_body if {
	# The analyser flags PREPARE and EXPLAIN ANALYZE as dynamic SQL; their
	# bodies are what runs, and these bodies are not.
	hard_for(fx.prepare_select_products) == set()
	hard_for(fx.explain_analyze_customers) == set()
}

test_dynamic_sql if {
	"SELECT runs SQL or code the policy cannot see (pgwarden.danger.dynamic_sql)" in hard_for(fx.select_query_to_xml)
}

test_copy_program if {
	# `file` holds the command: one reason, not a server-file one too.
	hard_for(fx.copy_program) == {"COPY ... PROGRAM runs a program on the database host (pgwarden.danger.copy_program)"}
	by_flag_only := object.union(fx.copy_orders_out, {"flags": {"copy_program": true}})
	hard_for(by_flag_only) == {"COPY ... PROGRAM runs a program on the database host (pgwarden.danger.copy_program)"}
}

test_server_file if {
	hard_for(fx.copy_server_file) == {"COPY from file \"/etc/passwd\" on the database host (pgwarden.danger.server_file)"}
	to_file := object.union(fx.copy_orders_out, {"copy": {"direction": "to", "file": "/tmp/x"}})
	hard_for(to_file) == {"COPY to file \"/tmp/x\" on the database host (pgwarden.danger.server_file)"}
}

test_direction_word if {
	data.pgwarden.danger.direction_word == "from" with input.statement as fx.copy_notes_in
	data.pgwarden.danger.direction_word == "to" with input.statement as fx.copy_orders_out
}

test_role_change_to_a_named_role if {
	hard_for(fx.set_role) == {"SET ROLE postgres changes the role that runs the SQL (pgwarden.danger.role_change)"}
	data.pgwarden.danger.changes_role with input.statement as fx.set_role
}

test_return_to_the_session_user_is_not_a_role_change if {
	hard_for(fx.reset_role) == set()
	hard_for(fx.discard_all) == set()
}

test_role_change_to_an_unknown_role if {
	"set_config changes the role that runs the SQL (pgwarden.danger.role_change)" in hard_for(fx.set_config_role)
}

test_role_flag_without_the_fact if {
	flag_only := object.union(fx.set_role, {"role_change": null, "settings": [], "command_tag": "SET"})
	hard_for(flag_only) == {"SET changes the role that runs the SQL (pgwarden.danger.role_change)"}
}

test_role_setting_without_the_fact if {
	setting_only := object.union(fx.set_timeout, {"settings": [{"name": "session_authorization", "value": "postgres", "via": "SET"}]})
	hard_for(setting_only) == {"SET changes the role that runs the SQL (pgwarden.danger.role_change)"}
	reset := object.union(fx.set_timeout, {"settings": [{"name": "role", "value": null, "via": "RESET"}]})
	hard_for(reset) == set()
}

test_persistent_setting if {
	hard_for(fx.alter_system) == {"ALTER SYSTEM ... SET work_mem is a persistent setting change (pgwarden.danger.persistent_setting)"}
}

test_protected_setting if {
	hard_for(fx.set_search_path) == {"changing setting search_path is not permitted (pgwarden.danger.protected_setting)"}
	hard_for(fx.set_log_statement) == {"changing setting log_statement is not permitted (pgwarden.danger.protected_setting)"}
	data.pgwarden.danger.protected_setting("Search_Path")
	data.pgwarden.danger.protected_setting("log_min_duration_statement")
	not data.pgwarden.danger.protected_setting("statement_timeout")
}

test_dangerous_function if {
	hard_for(fx.select_read_file) == {"function pg_read_file is dangerous (pgwarden.danger.dangerous_function)"}
	hard_for(fx.select_terminate) == {"function pg_catalog.pg_terminate_backend is dangerous (pgwarden.danger.dangerous_function)"}
	hard_for(fx.select_dblink) == {"function dblink_exec is dangerous (pgwarden.danger.dangerous_function)"}
	hard_for(fx.select_lo_import) == {"function lo_import is dangerous (pgwarden.danger.dangerous_function)"}
	"function set_config is dangerous (pgwarden.danger.dangerous_function)" in hard_for(fx.select_set_config)
	data.pgwarden.danger.dangerous_function("PG_LS_DIR")
	not data.pgwarden.danger.dangerous_function("lower")
	not data.pgwarden.danger.dangerous_function("now")
}

test_function_label if {
	data.pgwarden.danger.function_label({"name": "f", "qualified": "s.f"}) == "s.f"
	data.pgwarden.danger.function_label({"name": "f"}) == "f"
}

# --- waivable findings -------------------------------------------------------

findings_for(stmt) := f if {
	f := data.pgwarden.danger.findings with input as fx.agent_request with input.statement as stmt
}

test_destructive_kind_finding if {
	findings_for(fx.truncate_orders) == {{
		"capability": "truncate",
		"rule": "pgwarden.danger.destructive_kind",
		"what": "TRUNCATE TABLE on public.orders",
		"why": "is destructive",
	}}
	findings_for(fx.create_function) == {{
		"capability": "ddl",
		"rule": "pgwarden.danger.destructive_kind",
		"what": "CREATE FUNCTION",
		"why": "is destructive",
	}}
}

test_unbounded_write_finding if {
	findings_for(fx.delete_all_orders) == {{
		"capability": "unbounded_write",
		"rule": "pgwarden.danger.unbounded_write",
		"what": "DELETE without WHERE on public.orders",
		"why": "is destructive",
	}}
	count(findings_for(fx.update_all_prices)) == 1
	findings_for(fx.delete_one_order) == set()
	findings_for(fx.insert_note) == set()
}

test_subject_phrase if {
	data.pgwarden.danger.subject_phrase == "DROP TABLE on public.audit_notes" with input.statement as fx.drop_table
	data.pgwarden.danger.subject_phrase == "CREATE FUNCTION" with input.statement as fx.create_function
	data.pgwarden.danger.touched == {"public.orders"} with input.statement as fx.truncate_orders
	data.pgwarden.danger.subject_phrase == "SELECT INTO on public.customers_copy" with input.statement as fx.select_into
}

# --- reasons: findings resolved against the grants ---------------------------

test_deny_holds_hard_rules_and_unwaived_findings if {
	deny := data.pgwarden.danger.deny with input as fx.agent_request with input.statement as fx.truncate_orders
	deny == {"TRUNCATE TABLE on public.orders is destructive (pgwarden.danger.destructive_kind)"}
	hard := data.pgwarden.danger.deny with input as fx.dba_request with input.statement as fx.select_read_file
	hard == {"function pg_read_file is dangerous (pgwarden.danger.dangerous_function)"}
}

test_review_for_findings_waived_to_review if {
	review := data.pgwarden.danger.review with input as fx.dba_request with input.statement as fx.delete_all_orders
	review == {"DELETE without WHERE on public.orders is destructive (pgwarden.danger.unbounded_write); group dba on demo may run it after approval"}
	none := data.pgwarden.danger.deny with input as fx.dba_request with input.statement as fx.delete_all_orders
	none == set()
}

test_waived_for_findings_waived_to_allow if {
	waived := data.pgwarden.danger.waived with input as fx.dba_request with input.statement as fx.create_index
	waived == {"CREATE INDEX on public.orders allowed for group dba on demo (waives pgwarden.danger.destructive_kind)"}
}

test_hard_rules_cannot_be_waived if {
	everything := {"permissions": {"ddl": "allow", "do": "allow", "unknown": "allow", "execute": "allow"}}
	deny := data.pgwarden.danger.deny with input as fx.dba_request
		with input.statement as fx.do_block
		with data.pgwarden.config.access.groups.dba.connections.demo as everything
	count(deny) == 2
}
