package policy_data_test

import rego.v1

data_with(connection, permissions) := {"config": {"access": {"groups": {
	"agents": {"connections": {"demo": {"permissions": {"read": "allow", "ddl": "allow"}}}},
	"dba": {"connections": {connection: {"permissions": permissions}}},
}}}}

test_ddl_on_production_is_denied if {
	doc := data_with("shop-prod", {"read": "allow", "ddl": "allow"})
	data.policy_data.deny == {"access.groups.dba.connections.shop-prod.permissions.ddl: DDL must not be granted on a production connection (it is allow); ship schema changes as reviewed migrations"} with input as doc
}

test_ddl_on_production_is_denied_even_with_review if {
	doc := data_with("prod", {"ddl": "review"})
	some msg in data.policy_data.deny with input as doc
	contains(msg, "(it is review)")
}

test_ddl_elsewhere_and_denied_ddl_pass if {
	count(data.policy_data.deny) == 0 with input as data_with("staging", {"ddl": "allow"})
	count(data.policy_data.deny) == 0 with input as data_with("prod", {"ddl": "deny", "read": "allow"})
	count(data.policy_data.deny) == 0 with input as data_with("prod", {"read": "allow"})
}

test_destructive_capabilities_without_review_on_production_warn if {
	doc := data_with("shop-prod", {"truncate": "allow", "grant": "review", "unbounded_write": "allow"})
	data.policy_data.warn == {
		"access.groups.dba.connections.shop-prod.permissions.truncate: allowed without review on a production connection; consider review, so that a second person approves each one",
		"access.groups.dba.connections.shop-prod.permissions.unbounded_write: allowed without review on a production connection; consider review, so that a second person approves each one",
	} with input as doc
}

test_documents_without_grants_have_no_findings if {
	count(data.policy_data.deny) == 0 with input as {}
	count(data.policy_data.warn) == 0 with input as {"config": {"access": {"groups": {"x": {}}}}}
}
