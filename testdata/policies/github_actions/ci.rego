# A policy for CI jobs that authenticate with GitHub Actions OIDC tokens: every job may read,
# only workflows of one repository running on refs/heads/main may write, nothing may run DDL.
package pgwarden

import rego.v1

writer_repository := "acme/app"

writer_ref := "refs/heads/main"

claims := input.identity.claims

from_main_of_writer_repo if {
	input.identity.auth_method == "oidc"
	claims.repository == writer_repository
	claims.ref == writer_ref
}

deny_reasons contains "DDL is not allowed from CI" if input.statement.flags.ddl

deny_reasons contains sprintf("writes are allowed only from %s on %s, not %s on %s", [
	writer_repository, writer_ref, object.get(claims, "repository", "?"), object.get(claims, "ref", "?"),
]) if {
	input.statement.flags.modifies_data
	not from_main_of_writer_repo
}

deny_reasons contains "only plain reads and writes are allowed from CI" if {
	not input.statement.kind in {"select", "insert", "update", "delete", "transaction"}
}

default decision := {"action": "deny", "reasons": ["no decision"], "masks": [], "review": null}

decision := {"action": "deny", "reasons": reasons, "masks": [], "review": null} if {
	count(deny_reasons) > 0
	reasons := sort(deny_reasons)
}

decision := {"action": "allow", "reasons": ["allowed for CI"], "masks": [], "review": null} if {
	count(deny_reasons) == 0
}
