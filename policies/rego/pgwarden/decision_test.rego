# The default stance of the shipped policy and data, end to end through
# data.pgwarden.decision. One test per row of the stance table in
# docs/policy-authoring.md.
package pgwarden.decision_test

import rego.v1

import data.pgwarden.fixtures_test as fx

customer_masks := [
	{"column": "public.customers.birth_date", "label": "pii.birth_date", "strategy": "null"},
	{"column": "public.customers.email", "label": "pii.email", "strategy": "email"},
	{"column": "public.customers.full_name", "label": "pii.name", "strategy": "partial"},
	{"column": "public.customers.phone", "label": "pii.phone", "strategy": "partial"},
	{"column": "public.customers.ssn", "label": "pii.national_id", "strategy": "redact"},
]

card_mask := {"column": "public.orders.card_last4", "label": "pci.card_fragment", "strategy": "hash"}

action_for(request, stmt) := d.action if {
	d := data.pgwarden.decision with input as request with input.statement as stmt
}

# --- the decision document ---------------------------------------------------

test_allow_document if {
	d := data.pgwarden.decision with input as fx.agent_request with input.statement as fx.select_products
	d == {
		"action": "allow",
		"reasons": ["read allowed for group agents on demo"],
		"masks": [],
		"review": null,
	}
}

test_mask_document if {
	d := data.pgwarden.decision with input as fx.agent_request with input.statement as fx.select_customers
	d.action == "mask"
	d.masks == customer_masks
	d.reasons == [
		"read allowed for group agents on demo",
		"5 labelled column(s) of public.customers masked for group agents (pgwarden.masking.labelled_columns)",
	]
	d.review == null
}

test_review_document if {
	# The WHERE reads orders, so its labelled column is listed for when it runs.
	d := data.pgwarden.decision with input as fx.agent_request with input.statement as fx.delete_one_order
	reason := "delete on public.orders by group agents on demo needs approval (pgwarden.access.needs_review)"
	d == {
		"action": "review",
		"reasons": [reason],
		"masks": [card_mask],
		"review": {"approvers": ["dba"], "timeout_seconds": 300, "reason": reason},
	}
}

test_deny_document_lists_only_deny_reasons if {
	# DELETE also needs review for agents; the deny wins and stands alone.
	d := data.pgwarden.decision with input as fx.agent_request with input.statement as fx.delete_all_orders
	d == {
		"action": "deny",
		"reasons": ["DELETE without WHERE on public.orders is destructive (pgwarden.danger.unbounded_write)"],
		"masks": [],
		"review": null,
	}
}

test_deny_collects_every_deny_reason if {
	d := data.pgwarden.decision with input as fx.readonly_request with input.statement as fx.delete_all_orders
	d.action == "deny"
	d.reasons == [
		"DELETE without WHERE on public.orders is destructive (pgwarden.danger.unbounded_write)",
		"delete on public.orders is not permitted for group readonly on demo (pgwarden.access.not_permitted)",
	]
}

test_review_keeps_masks if {
	d := data.pgwarden.decision with input as fx.agent_request with input.statement as fx.update_phone_returning
	d.action == "review"
	d.masks == customer_masks
	d.review.approvers == ["dba"]
}

test_default_decision_is_deny if {
	# A COPY with no direction and no relations: no rule allows it.
	stmt := object.union(fx.base_statement, {"kind": "copy", "command_tag": "COPY"})
	d := data.pgwarden.decision with input as fx.agent_request with input.statement as stmt
	d == {
		"action": "deny",
		"reasons": ["no rule allows this statement (pgwarden.default_deny)"],
		"masks": [],
		"review": null,
	}
}

test_missing_configuration_is_deny if {
	d := data.pgwarden.decision with input as fx.dba_request with data.pgwarden.config as null
	d.action == "deny"
	"no configuration at data.pgwarden.config (pgwarden.config_missing)" in d.reasons
}

test_shipped_configuration_has_no_errors if {
	count(data.pgwarden.config_errors) == 0
}

test_configuration_errors_are_collected if {
	errors := data.pgwarden.config_errors with data.pgwarden.config.masking.column_labels as {"customers.email": ["pii.email"]}
		with data.pgwarden.config.access.groups.agents.connections.demo.permissions.read as "yes"
	count(errors) == 2
}

# --- agents: reads masked, bounded writes reviewed, the rest denied ----------

test_agents_read_unlabelled_allowed if action_for(fx.agent_request, fx.select_products) == "allow"

test_agents_select_one_allowed if action_for(fx.agent_request, fx.select_one) == "allow"

test_agents_read_labelled_masked if action_for(fx.agent_request, fx.select_customers) == "mask"

test_agents_join_masks_both_relations if {
	d := data.pgwarden.decision with input as fx.agent_request with input.statement as fx.select_orders_with_email
	d.action == "mask"
	d.masks == array.concat(customer_masks, [card_mask])
}

test_agents_copy_to_stdout_masked if {
	d := data.pgwarden.decision with input as fx.agent_request with input.statement as fx.copy_orders_out
	d.action == "mask"
	d.masks == [card_mask]
}

test_agents_insert_reviewed if action_for(fx.agent_request, fx.insert_note) == "review"

test_agents_update_with_where_reviewed if action_for(fx.agent_request, fx.update_phone) == "review"

test_agents_delete_with_where_reviewed if action_for(fx.agent_request, fx.delete_one_order) == "review"

test_agents_merge_reviewed if action_for(fx.agent_request, fx.merge_prices) == "review"

test_agents_delete_without_where_denied if action_for(fx.agent_request, fx.delete_all_orders) == "deny"

test_agents_update_without_where_denied if action_for(fx.agent_request, fx.update_all_prices) == "deny"

test_agents_select_into_denied if action_for(fx.agent_request, fx.select_into) == "deny"

test_agents_copy_from_stdin_denied if action_for(fx.agent_request, fx.copy_notes_in) == "deny"

test_agents_truncate_denied if action_for(fx.agent_request, fx.truncate_orders) == "deny"

test_agents_drop_table_denied if action_for(fx.agent_request, fx.drop_table) == "deny"

test_agents_create_function_denied if action_for(fx.agent_request, fx.create_function) == "deny"

test_agents_grant_denied if action_for(fx.agent_request, fx.grant_select) == "deny"

test_agents_lock_denied if action_for(fx.agent_request, fx.lock_orders) == "deny"

test_agents_vacuum_denied if action_for(fx.agent_request, fx.vacuum_orders) == "deny"

test_agents_checkpoint_denied if action_for(fx.agent_request, fx.checkpoint) == "deny"

test_agents_cursor_denied if action_for(fx.agent_request, fx.declare_cursor) == "deny"

test_agents_call_denied if action_for(fx.agent_request, fx.call_procedure) == "deny"

test_writes_fed_from_masked_values_reviewed if {
	d := data.pgwarden.decision with input as fx.agent_request with input.statement as fx.insert_select_ssn
	d.action == "review"
	"writing public.audit_notes from masked column(s) public.customers.ssn could store them unmasked (pgwarden.masking.masked_copy)" in d.reasons
	action_for(fx.dba_request, fx.insert_select_ssn) == "allow"
}

test_agents_notify_with_masked_values_denied if {
	action_for(fx.agent_request, fx.select_notify_ssn) == "deny"
	action_for(fx.agent_request, fx.select_notify) == "allow"
}

# --- everyone: session statements allowed, hard rules denied -----------------

test_transaction_control_allowed if {
	action_for(fx.agent_request, fx.begin) == "allow"
	action_for(fx.agent_request, fx.begin_read_only) == "allow"
}

test_show_allowed if action_for(fx.readonly_request, fx.show_search_path) == "allow"

test_harmless_set_allowed if {
	d := data.pgwarden.decision with input as fx.agent_request with input.statement as fx.set_timeout
	d.action == "allow"
	d.reasons == ["set allowed for group agents on demo"]
}

test_listen_allowed if action_for(fx.agent_request, fx.listen_jobs) == "allow"

test_discard_allowed if action_for(fx.agent_request, fx.discard_all) == "allow"

test_deallocate_allowed if action_for(fx.agent_request, fx.deallocate_p1) == "allow"

test_plain_explain_allowed if action_for(fx.agent_request, fx.explain_delete) == "allow"

test_explain_analyze_decided_by_body if {
	action_for(fx.agent_request, fx.explain_analyze_delete) == "deny"
	action_for(fx.agent_request, fx.explain_analyze_customers) == "mask"
}

test_prepare_decided_by_body if {
	action_for(fx.agent_request, fx.prepare_select_products) == "allow"
	action_for(fx.agent_request, fx.prepare_select_customers) == "mask"
	action_for(fx.agent_request, fx.prepare_delete_one) == "review"
	action_for(fx.agent_request, fx.prepare_delete_all) == "deny"
}

test_execute_without_body_denied if action_for(fx.dba_request, fx.execute_p1) == "deny"

test_unknown_denied if action_for(fx.dba_request, fx.unknown) == "deny"

test_do_denied if action_for(fx.dba_request, fx.do_block) == "deny"

test_dynamic_sql_denied if action_for(fx.dba_request, fx.select_query_to_xml) == "deny"

test_copy_program_denied if action_for(fx.dba_request, fx.copy_program) == "deny"

test_copy_server_file_denied if action_for(fx.dba_request, fx.copy_server_file) == "deny"

test_set_role_denied if {
	action_for(fx.dba_request, fx.set_role) == "deny"
	action_for(fx.dba_request, fx.set_config_role) == "deny"
}

test_reset_role_allowed if action_for(fx.agent_request, fx.reset_role) == "allow"

test_call_and_create_function_denied if {
	# Both run code the facts cannot see (flags.executes_dynamic_sql).
	action_for(fx.dba_request, fx.call_procedure) == "deny"
	action_for(fx.dba_request, fx.create_function) == "deny"
}

test_protected_setting_denied if {
	action_for(fx.dba_request, fx.set_search_path) == "deny"
	action_for(fx.dba_request, fx.set_log_statement) == "deny"
	action_for(fx.dba_request, fx.select_set_config) == "deny"
}

test_alter_system_denied if action_for(fx.dba_request, fx.alter_system) == "deny"

test_dangerous_functions_denied if {
	action_for(fx.dba_request, fx.select_read_file) == "deny"
	action_for(fx.dba_request, fx.select_terminate) == "deny"
	action_for(fx.dba_request, fx.select_dblink) == "deny"
	action_for(fx.dba_request, fx.select_lo_import) == "deny"
}

test_revoked_subject_denied if {
	d := data.pgwarden.decision with input as fx.dba_request
		with input.statement as fx.select_products
		with data.pgwarden.config.access.revoked.subjects as ["ci-bot"]
	d.action == "deny"
	d.reasons == ["subject \"ci-bot\" is revoked (pgwarden.access.subject_revoked)"]
}

test_ungranted_group_denied if {
	d := data.pgwarden.decision with input as fx.stranger_request with input.statement as fx.begin
	d.reasons == ["group interns of ci-bot is not granted connection \"demo\" (pgwarden.access.connection_not_granted)"]
}

test_ungranted_connection_denied if {
	action_for(fx.dba_request, fx.begin) == "allow"
	d := data.pgwarden.decision with input as fx.dba_request with input.statement as fx.begin with input.session.connection as "prod"
	d.action == "deny"
}

test_no_identity_denied if {
	d := data.pgwarden.decision with input as {"session": fx.session, "statement": fx.select_products}
	d.action == "deny"
	"no authenticated identity in the input (pgwarden.access.no_identity)" in d.reasons
}

test_malformed_statement_denied if {
	stmt := object.union(fx.select_products, {"relations": "products"})
	action_for(fx.dba_request, stmt) == "deny"
}

# --- readonly: reads masked, nothing else ------------------------------------

test_readonly_read_masked if action_for(fx.readonly_request, fx.select_customers) == "mask"

test_readonly_write_denied if {
	action_for(fx.readonly_request, fx.insert_note) == "deny"
	action_for(fx.readonly_request, fx.delete_one_order) == "deny"
}

test_readonly_transaction_allowed if action_for(fx.readonly_request, fx.begin) == "allow"

# --- dba: unmasked, writes and DDL allowed, the worst reviewed ----------------

test_dba_read_unmasked if {
	d := data.pgwarden.decision with input as fx.dba_request with input.statement as fx.select_customers
	d.action == "allow"
	d.masks == []
}

test_dba_writes_allowed if {
	action_for(fx.dba_request, fx.insert_note) == "allow"
	action_for(fx.dba_request, fx.delete_one_order) == "allow"
	action_for(fx.dba_request, fx.copy_notes_in) == "allow"
	action_for(fx.dba_request, fx.select_into) == "allow"
}

test_dba_ddl_allowed if {
	d := data.pgwarden.decision with input as fx.dba_request with input.statement as fx.drop_table
	d.action == "allow"
	d.reasons == ["DROP TABLE on public.audit_notes allowed for group dba on demo (waives pgwarden.danger.destructive_kind)"]
}

test_dba_maintenance_lock_and_cursors_allowed if {
	action_for(fx.dba_request, fx.vacuum_orders) == "allow"
	action_for(fx.dba_request, fx.checkpoint) == "allow"
	action_for(fx.dba_request, fx.lock_orders) == "allow"
	action_for(fx.dba_request, fx.declare_cursor) == "allow"
	action_for(fx.dba_request, fx.create_index) == "allow"
}

test_dba_destructive_reviewed if {
	action_for(fx.dba_request, fx.truncate_orders) == "review"
	action_for(fx.dba_request, fx.delete_all_orders) == "review"
	action_for(fx.dba_request, fx.grant_select) == "review"
}

# --- several groups ----------------------------------------------------------

test_several_groups_grants_most_permissive if {
	action_for(fx.agent_dba_request, fx.insert_note) == "allow"
}

test_several_groups_masks_strictest if {
	d := data.pgwarden.decision with input as fx.agent_dba_request with input.statement as fx.select_customers
	d.action == "mask"
	d.masks == customer_masks
}
