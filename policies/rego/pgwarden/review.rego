# pgwarden.review: when a statement waits for a human, and for whom.
#
# A statement needs review when pgwarden.access holds one of its capabilities
# at "review" (e.g. agents' writes), pgwarden.danger finds a danger a grant
# waives only to "review" (e.g. a DBA's TRUNCATE), or pgwarden.masking sees a
# write fed from masked columns. Review never overrides a deny:
# pgwarden.decision checks denies first.
#
# Data (data.pgwarden.config.review):
#   approvers          groups whose members may approve (default for all
#                      connections)
#   timeout_seconds    how long the statement waits before it is refused
#   connections.<connection>.approvers / .timeout_seconds
#                      per-connection overrides
#
# A review with no approvers could never be approved: it is a deny instead.
package pgwarden.review

import rego.v1

default section := {}

section := data.pgwarden.config.review if is_object(data.pgwarden.config.review)

default_timeout_seconds := 300

default connection_settings := {}

connection_settings := entry if {
	entry := section.connections[data.pgwarden.access.connection]
	is_object(entry)
}

# The defaults, overridden by the entry for this connection.
settings := object.union(object.remove(section, ["connections"]), connection_settings)

approvers := sort({a | some a in object.get(settings, "approvers", []); is_string(a)})

timeout_seconds := settings.timeout_seconds if {
	is_number(settings.timeout_seconds)
	settings.timeout_seconds > 0
} else := default_timeout_seconds

reasons := (data.pgwarden.access.review | data.pgwarden.danger.review) | data.pgwarden.masking.review

required if count(reasons) > 0

request := {
	"approvers": approvers,
	"timeout_seconds": timeout_seconds,
	"reason": concat("; ", sort(reasons)),
} if required

deny contains "the statement needs approval but no approvers are configured (pgwarden.review.no_approvers)" if {
	required
	count(approvers) == 0
}
