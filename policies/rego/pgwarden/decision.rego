# pgwarden: the decision for one statement, assembled from the concerns.
#
# Entry point: data.pgwarden.decision, always defined:
#
#   {"action":  "allow" | "deny" | "mask" | "review",
#    "reasons": [human-readable text, each naming the rule that produced it],
#    "masks":   [{"column": "public.customers.email", "label": "pii.email",
#                 "strategy": "email"}],           always present, [] on deny
#    "review":  null | {"approvers": [...], "timeout_seconds": n, "reason": "..."}}
#
# Precedence: any deny reason -> deny (all deny reasons); else any review
# reason -> review (masks still listed, applied once approved); else masks ->
# mask; else allow. Anything no rule allows is denied by the default.
#
# The concerns, each its own package and section of data.pgwarden.config:
#   pgwarden.statement  which statement is decided (PREPARE / EXPLAIN ANALYZE
#                       are decided by their body) and its facts
#   pgwarden.access     identity, revocation, group grants per connection
#   pgwarden.danger     hard rules and destructive statements
#   pgwarden.masking    column labels -> masks per group
#   pgwarden.review     approvers and timeouts
package pgwarden

import rego.v1

default decision := {
	"action": "deny",
	"reasons": ["no rule allows this statement (pgwarden.default_deny)"],
	"masks": [],
	"review": null,
}

decision := {
	"action": "deny",
	"reasons": sort(deny_reasons),
	"masks": [],
	"review": null,
} if {
	count(deny_reasons) > 0
}

decision := {
	"action": "review",
	"reasons": sort(data.pgwarden.review.reasons),
	"masks": data.pgwarden.masking.masks,
	"review": data.pgwarden.review.request,
} if {
	count(deny_reasons) == 0
	data.pgwarden.review.required
}

decision := {
	"action": "mask",
	"reasons": array.concat(sort(allow_reasons), sort(data.pgwarden.masking.reasons)),
	"masks": data.pgwarden.masking.masks,
	"review": null,
} if {
	count(deny_reasons) == 0
	not data.pgwarden.review.required
	count(allow_reasons) > 0
	count(data.pgwarden.masking.masks) > 0
}

decision := {
	"action": "allow",
	"reasons": sort(allow_reasons),
	"masks": [],
	"review": null,
} if {
	count(deny_reasons) == 0
	not data.pgwarden.review.required
	count(allow_reasons) > 0
	count(data.pgwarden.masking.masks) == 0
}

deny_reasons := (((data.pgwarden.access.deny | data.pgwarden.danger.deny) | data.pgwarden.masking.deny) | data.pgwarden.review.deny) | config_missing

allow_reasons := data.pgwarden.access.allow | data.pgwarden.danger.waived

# Mistakes in data.pgwarden.config, checked apart from the decision to keep
# them off the per-statement path: meant to be evaluated once when the policy
# is loaded, a non-empty result refusing it; the unit tests require it empty
# for the shipped data. Most mistakes fail closed in the decision as well (an
# unknown permission value is a deny, an unknown masking strategy denies the
# statements it would apply to); a column label key that is not
# schema.table.column, or an upper-case deny-list entry, is caught only here.
config_errors := (data.pgwarden.access.config_errors | data.pgwarden.danger.config_errors) | data.pgwarden.masking.config_errors

config_missing contains "no configuration at data.pgwarden.config (pgwarden.config_missing)" if {
	not is_object(data.pgwarden.config)
}
