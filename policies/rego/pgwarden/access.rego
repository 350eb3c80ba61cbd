# pgwarden.access: who may do what on which upstream connection.
#
# Data (data.pgwarden.config.access):
#
#   groups.<group>.description                  free text
#   groups.<group>.connections.<connection>     a grant: the group may use this
#                                               upstream connection at all
#   groups.<group>.connections.<connection>.permissions.<capability>
#                                               "allow" | "review" | "deny"
#   harmless_kinds     statement kinds any granted group may run (transaction,
#                      show, set, ...); the hard rules of pgwarden.danger
#                      still apply to them
#   revoked.subjects   identity subjects that are refused everything
#   revoked.token_ids  token ids (identity.token_id) refused everything
#
# Capabilities a statement needs:
#   "read"                      it returns rows of a relation (SELECT, COPY TO)
#   "insert" "update" "delete" "merge" "copy_from" "select_into"
#                               one per write it makes (statement.writes[].kind)
#   any other statement kind    e.g. "lock", "maintenance", "call", "utility"
# The destructive kinds and "unbounded_write" are capabilities too, but
# pgwarden.danger asks for them (with its own reasons); the opaque kinds
# (unknown, do, prepare, execute) cannot be granted at all.
#
# A missing capability, or any value other than "allow" / "review", is a deny.
# With several granted groups the most permissive grant wins
# (allow > review > deny); masking, by contrast, takes the strictest.
package pgwarden.access

import rego.v1

default section := {}

section := data.pgwarden.config.access if is_object(data.pgwarden.config.access)

groups := object.get(section, "groups", {})

# The data's lists are used as they are (`x in list`), not copied into sets:
# a copy would be rebuilt, element by element, for every statement.
harmless_kinds := object.get(section, "harmless_kinds", [])

revoked_subjects := object.get(section, ["revoked", "subjects"], [])

revoked_token_ids := object.get(section, ["revoked", "token_ids"], [])

default danger_section := {}

danger_section := data.pgwarden.config.danger if is_object(data.pgwarden.config.danger)

# Capabilities pgwarden.danger asks for itself.
danger_capabilities := {k | some k in object.get(danger_section, "destructive_kinds", [])} | {"unbounded_write"}

connection := input.session.connection

default identity_groups := set()

identity_groups := names if {
	is_array(input.identity.groups)
	names := {g | some g in input.identity.groups; is_string(g)}
}

# The identity's groups that hold a grant on this connection.
granted_groups contains g if {
	some g in identity_groups
	is_object(groups[g].connections[connection])
}

grant(g) := groups[g].connections[connection]

# The most permissive action any granted group holds for a capability.
capability_action(capability) := "allow" if {
	some g in granted_groups
	grant(g).permissions[capability] == "allow"
} else := "review" if {
	some g in granted_groups
	grant(g).permissions[capability] == "review"
} else := "deny"

# "group agents", "groups agents, dba": for reasons.
group_phrase(names) := sprintf("group %s", [concat(", ", sort(names))]) if {
	count(names) == 1
} else := sprintf("groups %s", [concat(", ", sort(names))]) if {
	count(names) > 1
} else := "no group"

# The granted groups holding exactly this action for a capability, as text.
groups_holding(capability, action) := group_phrase({g |
	some g in granted_groups
	grant(g).permissions[capability] == action
})

granted_phrase := group_phrase(granted_groups)

# --- what the statement needs ------------------------------------------------

data_kinds := {"select", "insert", "update", "delete", "merge", "copy"}

write_kinds := {"insert", "update", "delete", "merge"}

needed contains "read" if data.pgwarden.statement.kind == "select"

needed contains "read" if count(data.pgwarden.statement.read_relations) > 0

needed contains "read" if data.pgwarden.statement.copy.direction == "to"

needed contains data.pgwarden.statement.kind if data.pgwarden.statement.kind in write_kinds

needed contains "copy_from" if data.pgwarden.statement.copy.direction == "from"

needed contains w.kind if {
	some w in data.pgwarden.statement.writes
	is_string(w.kind)
}

# SELECT INTO creates a table even if no write fact names it.
needed contains "select_into" if data.pgwarden.statement.flag("select_into")

# Any other kind is its own capability: a kind this policy does not know
# (a future analyser version) is thereby denied until a grant names it.
needed contains data.pgwarden.statement.kind if {
	not data.pgwarden.statement.kind in data_kinds
	not data.pgwarden.statement.kind in harmless_kinds
	not data.pgwarden.statement.kind in data.pgwarden.statement.opaque_kinds
}

required := needed - danger_capabilities

# The relations a capability acts on, for reasons.
targets(capability) := data.pgwarden.statement.read_relations if {
	capability == "read"
}

targets(capability) := keys if {
	capability != "read"
	keys := {key |
		some w in data.pgwarden.statement.writes
		w.kind == capability
		key := data.pgwarden.statement.relation_key(w)
	}
}

describe(capability) := sprintf("%s on %s", [capability, concat(", ", sort(targets(capability)))]) if {
	count(targets(capability)) > 0
} else := capability

# --- reasons -----------------------------------------------------------------

deny contains "no authenticated identity in the input (pgwarden.access.no_identity)" if {
	not is_string(input.identity.subject)
}

deny contains sprintf("subject \"%s\" is revoked (pgwarden.access.subject_revoked)", [input.identity.subject]) if {
	input.identity.subject in revoked_subjects
}

deny contains sprintf("token \"%s\" is revoked (pgwarden.access.token_revoked)", [input.identity.token_id]) if {
	input.identity.token_id in revoked_token_ids
}

deny contains msg if {
	count(granted_groups) == 0
	msg := sprintf(
		"%s of %s is not granted connection \"%s\" (pgwarden.access.connection_not_granted)",
		[group_phrase(identity_groups), object.get(input, ["identity", "subject"], "?"), object.get(input, ["session", "connection"], "")],
	)
}

deny contains msg if {
	count(granted_groups) > 0
	some capability in required
	capability_action(capability) == "deny"
	msg := sprintf(
		"%s is not permitted for %s on %s (pgwarden.access.not_permitted)",
		[describe(capability), granted_phrase, connection],
	)
}

review contains msg if {
	some capability in required
	capability_action(capability) == "review"
	msg := sprintf(
		"%s by %s on %s needs approval (pgwarden.access.needs_review)",
		[describe(capability), groups_holding(capability, "review"), connection],
	)
}

allow contains msg if {
	some capability in required
	capability_action(capability) == "allow"
	msg := sprintf("%s allowed for %s on %s", [capability, groups_holding(capability, "allow"), connection])
}

allow contains msg if {
	data.pgwarden.statement.kind in harmless_kinds
	count(granted_groups) > 0
	msg := sprintf("%s allowed for %s on %s", [data.pgwarden.statement.kind, granted_phrase, connection])
}

# --- configuration checks ----------------------------------------------------

permission_values := {"allow", "review", "deny"}

config_errors contains sprintf("permission %s.%s.%s is %v, not allow|review|deny", [g, c, capability, action]) if {
	some g, group in groups
	some c, connection_grant in object.get(group, "connections", {})
	some capability, action in object.get(connection_grant, "permissions", {})
	not action in permission_values
}
