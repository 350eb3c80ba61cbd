package pgwarden.access_test

import rego.v1

import data.pgwarden.fixtures_test as fx

# A small configuration of its own, so that these tests read on their own.
config := {
	"access": {
		"groups": {
			"analysts": {"connections": {
				"warehouse": {"permissions": {"read": "allow", "insert": "review"}},
				"demo": {"permissions": {"read": "allow"}},
			}},
			"loaders": {"connections": {"warehouse": {"permissions": {"insert": "allow", "lock": "review", "read": "deny"}}}},
			"typos": {"connections": {"warehouse": {"permissions": {"read": "yes"}}}},
		},
		"harmless_kinds": ["transaction"],
		"revoked": {"subjects": ["mallory"], "token_ids": ["t-revoked"]},
	},
	"danger": {"destructive_kinds": ["truncate"]},
}

warehouse_request(groups) := {
	"identity": {"subject": "ana", "groups": groups, "token_id": "t-1"},
	"session": {"connection": "warehouse"},
	"statement": fx.select_products,
}

analyst := warehouse_request(["analysts"])

loader := warehouse_request(["loaders"])

analyst_and_loader := warehouse_request(["analysts", "loaders"])

# --- configuration sections --------------------------------------------------

test_sections_read_from_data if {
	data.pgwarden.access.harmless_kinds == ["transaction"] with data.pgwarden.config as config
	data.pgwarden.access.revoked_subjects == ["mallory"] with data.pgwarden.config as config
	data.pgwarden.access.revoked_token_ids == ["t-revoked"] with data.pgwarden.config as config
	data.pgwarden.access.danger_capabilities == {"truncate", "unbounded_write"} with data.pgwarden.config as config
	data.pgwarden.access.danger_section == {"destructive_kinds": ["truncate"]} with data.pgwarden.config as config
	count(data.pgwarden.access.groups) == 3 with data.pgwarden.config as config
}

test_sections_default_to_empty if {
	data.pgwarden.access.section == {} with data.pgwarden.config as {}
	data.pgwarden.access.danger_section == {} with data.pgwarden.config as {}
	data.pgwarden.access.groups == {} with data.pgwarden.config as {}
	data.pgwarden.access.danger_capabilities == {"unbounded_write"} with data.pgwarden.config as {}
}

# --- groups and grants -------------------------------------------------------

test_granted_groups_are_those_with_a_grant_on_the_connection if {
	data.pgwarden.access.connection == "warehouse" with input as analyst_and_loader
	granted := data.pgwarden.access.granted_groups with input as analyst_and_loader with data.pgwarden.config as config
	granted == {"analysts", "loaders"}
	demo := data.pgwarden.access.granted_groups with input as analyst_and_loader
		with input.session.connection as "demo"
		with data.pgwarden.config as config
	demo == {"analysts"}
}

test_identity_groups_ignore_non_strings if {
	groups := data.pgwarden.access.identity_groups with input.identity.groups as ["agents", 7, null]
	groups == {"agents"}
	none := data.pgwarden.access.identity_groups with input.identity.groups as "agents"
	none == set()
}

test_grant if {
	grant := data.pgwarden.access.grant("loaders") with input as loader with data.pgwarden.config as config
	grant.permissions.insert == "allow"
}

test_capability_action_most_permissive_wins if {
	data.pgwarden.access.capability_action("insert") == "review" with input as analyst with data.pgwarden.config as config
	data.pgwarden.access.capability_action("insert") == "allow" with input as analyst_and_loader with data.pgwarden.config as config
	data.pgwarden.access.capability_action("read") == "allow" with input as analyst_and_loader with data.pgwarden.config as config
	data.pgwarden.access.capability_action("lock") == "review" with input as analyst_and_loader with data.pgwarden.config as config
}

test_capability_action_missing_or_invalid_is_deny if {
	data.pgwarden.access.capability_action("delete") == "deny" with input as analyst with data.pgwarden.config as config
	data.pgwarden.access.capability_action("read") == "deny" with input as loader with data.pgwarden.config as config
	typo := warehouse_request(["typos"])
	data.pgwarden.access.capability_action("read") == "deny" with input as typo with data.pgwarden.config as config
}

test_group_phrase if {
	data.pgwarden.access.group_phrase(set()) == "no group"
	data.pgwarden.access.group_phrase({"dba"}) == "group dba"
	data.pgwarden.access.group_phrase({"dba", "agents"}) == "groups agents, dba"
}

test_groups_holding if {
	held := data.pgwarden.access.groups_holding("read", "allow") with input as analyst_and_loader with data.pgwarden.config as config
	held == "group analysts"
	phrase := data.pgwarden.access.granted_phrase with input as analyst_and_loader with data.pgwarden.config as config
	phrase == "groups analysts, loaders"
}

# --- what a statement needs --------------------------------------------------

needed_for(stmt) := n if {
	n := data.pgwarden.access.needed with input as fx.agent_request with input.statement as stmt
}

required_for(stmt) := r if {
	r := data.pgwarden.access.required with input as fx.agent_request with input.statement as stmt
}

test_select_needs_read if {
	needed_for(fx.select_one) == {"read"}
	needed_for(fx.select_customers) == {"read"}
	"select" in data.pgwarden.access.data_kinds
}

test_copy_needs_read_or_copy_from if {
	needed_for(fx.copy_orders_out) == {"read"}
	needed_for(fx.copy_notes_in) == {"copy_from"}
	copy_query := object.union(fx.copy_orders_out, {"relations": []})
	needed_for(copy_query) == {"read"}
}

test_writes_need_their_kind if {
	needed_for(fx.insert_note) == {"insert"}
	needed_for(fx.delete_all_orders) == {"delete"}
	needed_for(fx.delete_one_order) == {"delete", "read"} # WHERE reads the target
	needed_for(fx.merge_prices) == {"merge", "read"}
	needed_for(fx.select_into) == {"ddl", "read", "select_into"}
	flag_only := object.union(fx.select_into, {"writes": []})
	needed_for(flag_only) == {"ddl", "read", "select_into"}
	"merge" in data.pgwarden.access.write_kinds
}

test_other_kinds_need_themselves if {
	needed_for(fx.lock_orders) == {"lock"}
	needed_for(fx.vacuum_orders) == {"maintenance"}
	needed_for(fx.call_procedure) == {"call"}
	future := object.union(fx.select_one, {"kind": "teleport"})
	needed_for(future) == {"teleport"}
}

test_harmless_and_opaque_kinds_need_nothing if {
	needed_for(fx.begin) == set()
	needed_for(fx.set_timeout) == set()
	needed_for(fx.do_block) == set()
	needed_for(fx.unknown) == set()
}

test_danger_capabilities_are_not_required_here if {
	needed_for(fx.truncate_orders) == {"truncate"}
	required_for(fx.truncate_orders) == set()
	required_for(fx.delete_all_orders) == {"delete"}
}

test_targets_and_describe if {
	targets := data.pgwarden.access.targets("read") with input.statement as fx.select_orders_with_email
	targets == {"public.customers", "public.orders"}
	insert_targets := data.pgwarden.access.targets("insert") with input.statement as fx.insert_note
	insert_targets == {"public.audit_notes"}
	data.pgwarden.access.describe("read") == "read on public.customers, public.orders" with input.statement as fx.select_orders_with_email
	data.pgwarden.access.describe("lock") == "lock" with input.statement as fx.lock_orders
}

# --- reasons -----------------------------------------------------------------

deny_for(request, stmt) := d if {
	d := data.pgwarden.access.deny with input as request with input.statement as stmt with data.pgwarden.config as config
}

test_no_identity if {
	reasons := data.pgwarden.access.deny with input as {"session": {"connection": "warehouse"}, "statement": fx.begin}
		with data.pgwarden.config as config
	"no authenticated identity in the input (pgwarden.access.no_identity)" in reasons
}

test_revoked_subject if {
	mallory := object.union(analyst, {"identity": {"subject": "mallory"}})
	deny_for(mallory, fx.begin) == {"subject \"mallory\" is revoked (pgwarden.access.subject_revoked)"}
}

test_revoked_token if {
	revoked := object.union(analyst, {"identity": {"token_id": "t-revoked"}})
	deny_for(revoked, fx.begin) == {"token \"t-revoked\" is revoked (pgwarden.access.token_revoked)"}
}

test_connection_not_granted if {
	stranger := warehouse_request(["visitors", "guests"])
	deny_for(stranger, fx.begin) == {"groups guests, visitors of ana is not granted connection \"warehouse\" (pgwarden.access.connection_not_granted)"}
}

test_not_permitted if {
	deny_for(analyst, fx.delete_one_order) == {"delete on public.orders is not permitted for group analysts on warehouse (pgwarden.access.not_permitted)"}
	deny_for(analyst, fx.select_products) == set()
}

test_needs_review if {
	reasons := data.pgwarden.access.review with input as analyst with input.statement as fx.insert_note with data.pgwarden.config as config
	reasons == {"insert on public.audit_notes by group analysts on warehouse needs approval (pgwarden.access.needs_review)"}
}

test_allow_for_capabilities if {
	reasons := data.pgwarden.access.allow with input as analyst_and_loader with input.statement as fx.insert_note
		with data.pgwarden.config as config
	reasons == {"insert allowed for group loaders on warehouse"}
}

test_allow_for_harmless_kinds if {
	reasons := data.pgwarden.access.allow with input as analyst with input.statement as fx.begin with data.pgwarden.config as config
	reasons == {"transaction allowed for group analysts on warehouse"}
	stranger := warehouse_request(["visitors"])
	none := data.pgwarden.access.allow with input as stranger with input.statement as fx.begin with data.pgwarden.config as config
	none == set()
}

# --- configuration checks ----------------------------------------------------

test_config_errors if {
	errors := data.pgwarden.access.config_errors with data.pgwarden.config as config
	errors == {"permission typos.warehouse.read is yes, not allow|review|deny"}
	{"allow", "review", "deny"} == data.pgwarden.access.permission_values
}
