package pgwarden_test

import rego.v1

import data.pgwarden

statement(kind, writes) := {"kind": kind, "flags": {"ddl": false, "modifies_data": writes}}

main_job := {"auth_method": "oidc", "claims": {"repository": "acme/app", "ref": "refs/heads/main"}}

branch_job := {"auth_method": "oidc", "claims": {"repository": "acme/app", "ref": "refs/heads/feature"}}

other_repo := {"auth_method": "oidc", "claims": {"repository": "evil/fork", "ref": "refs/heads/main"}}

test_main_may_write if {
	pgwarden.decision.action == "allow" with input as {"identity": main_job, "statement": statement("insert", true)}
}

test_branch_may_read_not_write if {
	pgwarden.decision.action == "allow" with input as {"identity": branch_job, "statement": statement("select", false)}
	pgwarden.decision.action == "deny" with input as {"identity": branch_job, "statement": statement("insert", true)}
}

test_other_repository_may_not_write if {
	pgwarden.decision.action == "deny" with input as {"identity": other_repo, "statement": statement("delete", true)}
}

test_gateway_tokens_may_not_write if {
	pgwarden.decision.action == "deny" with input as {
		"identity": {"auth_method": "gateway-token", "claims": {"repository": "acme/app", "ref": "refs/heads/main"}},
		"statement": statement("insert", true),
	}
}

test_ddl_denied_even_on_main if {
	pgwarden.decision.action == "deny" with input as {
		"identity": main_job,
		"statement": {"kind": "ddl", "flags": {"ddl": true, "modifies_data": false}},
	}
}
