package pgwarden.review_test

import rego.v1

import data.pgwarden.fixtures_test as fx

review := {
	"approvers": ["dba", "security"],
	"timeout_seconds": 600,
	"connections": {"prod": {"approvers": ["sre"], "timeout_seconds": 60}},
}

test_defaults_from_data if {
	data.pgwarden.review.approvers == ["dba"] with input as fx.agent_request
	data.pgwarden.review.timeout_seconds == 300 with input as fx.agent_request
	data.pgwarden.review.section == {} with data.pgwarden.config as {}
}

test_settings_per_connection_override_the_defaults if {
	settings := data.pgwarden.review.settings with input as fx.agent_request
		with input.session.connection as "prod"
		with data.pgwarden.config.review as review
	settings == {"approvers": ["sre"], "timeout_seconds": 60}
	data.pgwarden.review.approvers == ["dba", "security"] with input as fx.agent_request with data.pgwarden.config.review as review
	data.pgwarden.review.connection_settings == {} with input as fx.agent_request with data.pgwarden.config.review as review
}

test_approvers_are_strings if {
	data.pgwarden.review.approvers == ["dba"] with data.pgwarden.config.review.approvers as ["dba", 1, null]
}

test_timeout_must_be_a_positive_number if {
	data.pgwarden.review.timeout_seconds == 600 with data.pgwarden.config.review as review
	data.pgwarden.review.timeout_seconds == 300 with data.pgwarden.config.review.timeout_seconds as 0
	data.pgwarden.review.timeout_seconds == 300 with data.pgwarden.config.review.timeout_seconds as "5m"
	data.pgwarden.review.default_timeout_seconds == 300
}

test_reasons_come_from_access_and_danger if {
	access := data.pgwarden.review.reasons with input as fx.agent_request with input.statement as fx.insert_note
	access == {"insert on public.audit_notes by group agents on demo needs approval (pgwarden.access.needs_review)"}
	danger := data.pgwarden.review.reasons with input as fx.dba_request with input.statement as fx.truncate_orders
	danger == {"TRUNCATE TABLE on public.orders is destructive (pgwarden.danger.destructive_kind); group dba on demo may run it after approval"}
	masking := data.pgwarden.review.reasons with input as fx.agent_request with input.statement as fx.insert_select_ssn
	count(masking) == 2
}

test_required if {
	data.pgwarden.review.required with input as fx.agent_request with input.statement as fx.insert_note
	not data.pgwarden.review.required with input as fx.agent_request with input.statement as fx.select_products
}

test_request if {
	request := data.pgwarden.review.request with input as fx.agent_request with input.statement as fx.delete_one_order
	request == {
		"approvers": ["dba"],
		"timeout_seconds": 300,
		"reason": "delete on public.orders by group agents on demo needs approval (pgwarden.access.needs_review)",
	}
	not data.pgwarden.review.request with input as fx.agent_request with input.statement as fx.select_products
}

test_review_without_approvers_is_a_deny if {
	deny := data.pgwarden.review.deny with input as fx.agent_request
		with input.statement as fx.insert_note
		with data.pgwarden.config.review.approvers as []
	deny == {"the statement needs approval but no approvers are configured (pgwarden.review.no_approvers)"}
	decision := data.pgwarden.decision with input as fx.agent_request
		with input.statement as fx.insert_note
		with data.pgwarden.config.review.approvers as []
	decision.action == "deny"
	none := data.pgwarden.review.deny with input as fx.agent_request with input.statement as fx.insert_note
	none == set()
}
