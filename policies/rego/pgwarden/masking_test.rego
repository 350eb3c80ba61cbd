package pgwarden.masking_test

import rego.v1

import data.pgwarden.fixtures_test as fx

# A small configuration of its own: two labels on one column, group-specific
# strategies, a "*" default.
masking := {
	"column_labels": {
		"public.customers.email": ["pii.email", "pii.contact"],
		"public.customers.ssn": ["pii.national_id"],
		"sales.leads.email": ["pii.email"],
	},
	"labels": {
		"pii.email": {"*": "email", "support": "partial", "dba": "none"},
		"pii.contact": {"support": "hash"},
		"pii.national_id": {"*": "redact", "dba": "none"},
	},
}

masks_for(groups, stmt) := m if {
	m := data.pgwarden.masking.masks with input.identity.groups as groups
		with input.statement as stmt
		with data.pgwarden.config.masking as masking
}

# --- data --------------------------------------------------------------------

test_sections_read_from_data if {
	count(data.pgwarden.masking.column_labels) == 6
	data.pgwarden.masking.label_rules["pii.email"]["*"] == "email"
	data.pgwarden.masking.section == {} with data.pgwarden.config as {}
}

test_identity_groups if {
	data.pgwarden.masking.identity_groups == {"agents"} with input.identity.groups as ["agents", 1]
	data.pgwarden.masking.identity_groups == set() with input.identity as {}
}

# --- which relations are exposed ---------------------------------------------

test_reads_expose if {
	exposed := data.pgwarden.masking.exposed with input.statement as fx.select_orders_with_email
	exposed == {"public.orders", "public.customers"}
}

test_writes_expose_what_they_read_or_return if {
	unbounded := data.pgwarden.masking.exposed with input.statement as fx.update_all_prices
	unbounded == set()
	where := data.pgwarden.masking.exposed with input.statement as fx.update_phone
	where == {"public.customers"}
	returning := object.union(fx.update_all_prices, {"columns": [data.pgwarden.fixtures_test.column("products", "name", "returning")]})
	with_returning := data.pgwarden.masking.exposed with input.statement as returning
	with_returning == {"public.products"}
}

# --- strategies --------------------------------------------------------------

test_relation_of if {
	data.pgwarden.masking.relation_of("public.customers.email") == "public.customers"
	not data.pgwarden.masking.relation_of("customers.email")
}

test_group_strategy_own_entry_then_star if {
	data.pgwarden.masking.group_strategy("pii.email", "support") == "partial" with data.pgwarden.config.masking as masking
	data.pgwarden.masking.group_strategy("pii.email", "agents") == "email" with data.pgwarden.config.masking as masking
	data.pgwarden.masking.group_strategy("pii.email", "dba") == "none" with data.pgwarden.config.masking as masking
	not data.pgwarden.masking.group_strategy("pii.contact", "agents") with data.pgwarden.config.masking as masking
}

test_rank if {
	data.pgwarden.masking.rank("null") > data.pgwarden.masking.rank("redact")
	data.pgwarden.masking.rank("redact") > data.pgwarden.masking.rank("hash")
	data.pgwarden.masking.rank("hash") > data.pgwarden.masking.rank("partial")
	data.pgwarden.masking.rank("partial") > data.pgwarden.masking.rank("email")
	data.pgwarden.masking.rank("email") > data.pgwarden.masking.rank("none")
	data.pgwarden.masking.rank("scramble") == 99
	count(data.pgwarden.masking.strategy_rank) == 6
}

test_candidates if {
	cands := data.pgwarden.masking.candidates(["pii.email", "pii.contact"]) with input.identity.groups as ["support", "dba"]
		with data.pgwarden.config.masking as masking
	cands == {[2, "pii.email", "partial"], [3, "pii.contact", "hash"]}
}

# --- masks -------------------------------------------------------------------

test_every_labelled_column_of_an_exposed_relation_is_masked if {
	# SELECT id FROM customers still lists email and ssn: provenance decides.
	stmt := object.union(fx.select_customers, {"columns": [data.pgwarden.fixtures_test.column("customers", "id", "select")]})
	masks_for(["agents"], stmt) == [
		{"column": "public.customers.email", "label": "pii.email", "strategy": "email"},
		{"column": "public.customers.ssn", "label": "pii.national_id", "strategy": "redact"},
	]
}

test_strictest_strategy_across_labels_and_groups if {
	masks_for(["support"], fx.select_customers) == [
		{"column": "public.customers.email", "label": "pii.contact", "strategy": "hash"},
		{"column": "public.customers.ssn", "label": "pii.national_id", "strategy": "redact"},
	]
	masks_for(["support", "dba"], fx.select_customers) == masks_for(["support"], fx.select_customers)
}

test_none_means_unmasked if {
	masks_for(["dba"], fx.select_customers) == []
}

test_other_schemas_do_not_match if {
	stmt := object.union(fx.select_customers, {"relations": [{"schema": "crm", "name": "customers", "access": "read"}]})
	masks_for(["agents"], stmt) == []
}

test_unexposed_relations_are_not_masked if {
	masks_for(["agents"], fx.delete_all_orders) == []
	masks_for(["agents"], fx.select_products) == []
}

test_mask_entries_is_the_set_of_masks if {
	entries := data.pgwarden.masking.mask_entries with input.identity.groups as ["agents"]
		with input.statement as fx.select_customers
		with data.pgwarden.config.masking as masking
	count(entries) == 2
}

test_reasons if {
	reasons := data.pgwarden.masking.reasons with input.identity.groups as ["agents"]
		with input.statement as fx.select_orders_with_email
	reasons == {
		"5 labelled column(s) of public.customers masked for group agents (pgwarden.masking.labelled_columns)",
		"1 labelled column(s) of public.orders masked for group agents (pgwarden.masking.labelled_columns)",
	}
}

# --- values leaving by other ways ---------------------------------------------

test_write_fed_from_a_masked_column_needs_review if {
	carried := data.pgwarden.masking.carried with input as fx.agent_request with input.statement as fx.insert_select_ssn
	carried == {"public.customers.ssn"}
	review := data.pgwarden.masking.review with input as fx.agent_request with input.statement as fx.insert_select_ssn
	review == {"writing public.audit_notes from masked column(s) public.customers.ssn could store them unmasked (pgwarden.masking.masked_copy)"}
}

test_update_set_from_a_masked_column_needs_review if {
	stmt := object.union(fx.update_phone, {"columns": [
		data.pgwarden.fixtures_test.column("customers", "phone", "set"),
		data.pgwarden.fixtures_test.column("customers", "ssn", "select"),
		data.pgwarden.fixtures_test.column("customers", "id", "where"),
	]})
	carried := data.pgwarden.masking.carried with input as fx.agent_request with input.statement as stmt
	carried == {"public.customers.ssn"}
}

test_write_fed_from_unmasked_columns_needs_no_review if {
	ids := data.pgwarden.masking.review with input as fx.agent_request with input.statement as fx.insert_select_ids
	ids == set()
	where_only := data.pgwarden.masking.carried with input as fx.agent_request with input.statement as fx.update_phone
	where_only == set()
	dba := data.pgwarden.masking.review with input as fx.dba_request with input.statement as fx.insert_select_ssn
	dba == set()
}

test_reads_carry_nothing if {
	carried := data.pgwarden.masking.carried with input as fx.agent_request with input.statement as fx.select_customers
	carried == set()
	{"select", "star", "whole_row"} == data.pgwarden.masking.carrying_contexts
}

test_names_column if {
	data.pgwarden.masking.names_column({"name": "ssn", "context": "select"}, "public.customers.ssn")
	data.pgwarden.masking.names_column({"name": "*", "context": "star"}, "public.customers.ssn")
	data.pgwarden.masking.names_column({"name": "c", "context": "whole_row"}, "public.customers.ssn")
	not data.pgwarden.masking.names_column({"name": "sn", "context": "select"}, "public.customers.ssn")
}

test_side_channel_function_with_masks_is_denied if {
	deny := data.pgwarden.masking.deny with input as fx.agent_request with input.statement as fx.select_notify_ssn
	deny == {"pg_notify could send masked columns outside the result (pgwarden.masking.side_channel)"}
	no_masks := data.pgwarden.masking.deny with input as fx.agent_request with input.statement as fx.select_notify
	no_masks == set()
	data.pgwarden.masking.side_channel_functions == ["pg_notify"]
}

test_unknown_strategy_denies_the_statement if {
	scramble := object.union(masking, {"labels": {"pii.national_id": {"*": "scramble"}}})
	deny := data.pgwarden.masking.deny with input.identity.groups as ["agents"]
		with input.statement as fx.select_customers
		with data.pgwarden.config.masking as scramble
	deny == {"masking strategy scramble for label pii.national_id (column public.customers.ssn) is unknown (pgwarden.masking.unknown_strategy)"}
	masks := data.pgwarden.masking.masks with input.identity.groups as ["agents"]
		with input.statement as fx.select_customers
		with data.pgwarden.config.masking as scramble
	{"column": "public.customers.ssn", "label": "pii.national_id", "strategy": "scramble"} in masks
}

# --- configuration checks ----------------------------------------------------

test_config_errors if {
	broken := {
		"column_labels": {"customers.email": ["pii.email"], "public.customers.ssn": "pii.national_id"},
		"labels": {"pii.email": {"*": "scramble"}},
	}
	errors := data.pgwarden.masking.config_errors with data.pgwarden.config.masking as broken
	errors == {
		"column label key \"customers.email\" is not schema.table.column",
		"labels of column public.customers.ssn are not a list",
		"masking strategy scramble for label pii.email, group * is not one of [\"email\", \"hash\", \"none\", \"null\", \"partial\", \"redact\"]",
	}
	count(data.pgwarden.masking.config_errors) == 0
}

# --- identity-wide masks and revealing relations -----------------------------

identity_masks_for(groups) := m if {
	m := data.pgwarden.masking.identity_masks with input.identity.groups as groups
		with input.statement as fx.select_products
		with data.pgwarden.config.masking as masking
}

read_of(schema, name) := object.union(fx.base_statement, {
	"text": "SELECT * FROM somewhere",
	"relations": [{"schema": schema, "name": name, "access": "read"}],
	"columns": [],
})

test_identity_masks_cover_every_labelled_column_whatever_the_statement if {
	identity_masks_for(["agents"]) == [
		{"column": "public.customers.email", "label": "pii.email", "strategy": "email"},
		{"column": "public.customers.ssn", "label": "pii.national_id", "strategy": "redact"},
		{"column": "sales.leads.email", "label": "pii.email", "strategy": "email"},
	]
	count(identity_masks_for(["dba"])) == 0
}

test_revealing_relations_denied_to_masked_identities if {
	stats := data.pgwarden.masking.deny with input.identity.groups as ["agents"]
		with input.statement as read_of("pg_catalog", "pg_stats")
		with data.pgwarden.config.masking as masking
	some msg in stats
	contains(msg, "pgwarden.masking.revealing_relation")
	activity := data.pgwarden.masking.deny with input.identity.groups as ["agents"]
		with input.statement as read_of("", "pg_stat_activity")
		with data.pgwarden.config.masking as masking
	some unqualified in activity
	contains(unqualified, "pg_stat_activity can reveal")
	dba := data.pgwarden.masking.deny with input.identity.groups as ["dba"]
		with input.statement as read_of("pg_catalog", "pg_stats")
		with data.pgwarden.config.masking as masking
	count(dba) == 0
}

test_predicates_mode_per_group if {
	cfg := object.union(masking, {"predicates": {"*": "filter", "contractors": "deny"}})
	"filter" == data.pgwarden.masking.predicates with input.identity.groups as ["agents"]
		with data.pgwarden.config.masking as cfg
	"deny" == data.pgwarden.masking.predicates with input.identity.groups as ["agents", "contractors"]
		with data.pgwarden.config.masking as cfg
	"filter" == data.pgwarden.masking.predicates with input.identity.groups as ["agents"]
		with data.pgwarden.config.masking as masking
}
