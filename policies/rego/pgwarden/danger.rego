# pgwarden.danger: statements that are dangerous whoever sends them.
#
# Two tiers:
#
# Hard rules (`hard`), never waivable by any grant:
#   malformed_statement   the statement document does not follow the contract
#   opaque_statement      kind unknown / DO / EXECUTE without its body /
#                         PREPARE or EXPLAIN ANALYZE without a body
#   dynamic_sql           flags.executes_dynamic_sql (EXECUTE in plpgsql, ...)
#   copy_program          COPY ... PROGRAM (a shell on the database host)
#   server_file           COPY to or from a file on the database host
#   role_change           SET ROLE x, SET SESSION AUTHORIZATION x, or a role
#                         change whose target is unknown. Returning to the
#                         session user (RESET ROLE, SET ROLE NONE, DISCARD ALL:
#                         role null) grants nothing the login lacked: allowed
#   persistent_setting    ALTER SYSTEM / ALTER ROLE / ALTER DATABASE ... SET
#   protected_setting     changing a setting on the data's deny list
#   dangerous_function    calling a function on the data's deny list
#
# Waivable findings (`findings`), denied unless a granted group holds the
# named capability in pgwarden.access (then allowed or held for review):
#   destructive_kind      a kind listed in destructive_kinds (ddl, truncate,
#                         grant); the capability is the kind itself
#   unbounded_write       DELETE or UPDATE without WHERE; capability
#                         "unbounded_write"
#
# Data (data.pgwarden.config.danger):
#   destructive_kinds     statement kinds that are destructive
#   functions             function names denied (matched on the unqualified,
#                         lower-cased name, whatever schema qualifies it)
#   function_prefixes     name prefixes denied (families: dblink*, lo_*, ...)
#   settings              setting names nobody may change (SET, RESET,
#                         set_config)
#   setting_prefixes      setting name prefixes nobody may change
# Names and prefixes are written in lower case (data.pgwarden.config_errors
# reports any that are not): they are matched against the lower-cased name
# as they are, without being copied for every statement.
package pgwarden.danger

import rego.v1

default section := {}

section := data.pgwarden.config.danger if is_object(data.pgwarden.config.danger)

destructive_kinds := object.get(section, "destructive_kinds", [])

denied_functions := object.get(section, "functions", [])

denied_function_prefixes := object.get(section, "function_prefixes", [])

denied_settings := object.get(section, "settings", [])

denied_setting_prefixes := object.get(section, "setting_prefixes", [])

persistent_setting_vias := {"ALTER ROLE", "ALTER DATABASE", "ALTER SYSTEM"}

# --- hard rules --------------------------------------------------------------

hard contains sprintf("malformed statement document: %s (pgwarden.danger.malformed_statement)", [problem]) if {
	some problem in data.pgwarden.statement.malformed
}

hard contains sprintf("%s without an analysable body cannot be decided (pgwarden.danger.opaque_statement)", [upper(data.pgwarden.statement.outer.kind)]) if {
	data.pgwarden.statement.missing_body
}

hard contains sprintf("statement kind \"%s\" cannot be analysed (pgwarden.danger.opaque_statement)", [data.pgwarden.statement.kind]) if {
	not data.pgwarden.statement.missing_body
	data.pgwarden.statement.kind in data.pgwarden.statement.opaque_kinds
	not data.pgwarden.statement.kind in {"do", "execute"}
}

hard contains "DO runs an anonymous code block that cannot be analysed (pgwarden.danger.opaque_statement)" if {
	data.pgwarden.statement.kind == "do"
}

hard contains msg if {
	data.pgwarden.statement.kind == "execute"
	msg := sprintf(
		"EXECUTE %v: the prepared statement's body is not in the input, so it cannot be decided (pgwarden.danger.opaque_statement)",
		[object.get(data.pgwarden.statement.current, ["execute", "name"], "")],
	)
}

hard contains sprintf("%s runs SQL or code the policy cannot see (pgwarden.danger.dynamic_sql)", [data.pgwarden.statement.command]) if {
	data.pgwarden.statement.flag("executes_dynamic_sql")
}

hard contains "COPY ... PROGRAM runs a program on the database host (pgwarden.danger.copy_program)" if {
	data.pgwarden.statement.copy.program == true
}

hard contains "COPY ... PROGRAM runs a program on the database host (pgwarden.danger.copy_program)" if {
	data.pgwarden.statement.flag("copy_program")
}

hard contains sprintf("COPY %s file \"%s\" on the database host (pgwarden.danger.server_file)", [direction_word, data.pgwarden.statement.copy.file]) if {
	is_string(data.pgwarden.statement.copy.file)
	not data.pgwarden.statement.copy.program == true # then `file` is the shell command
}

direction_word := "from" if {
	data.pgwarden.statement.copy.direction == "from"
} else := "to"

hard contains sprintf("%s changes the role that runs the SQL (pgwarden.danger.role_change)", [role_change_phrase]) if {
	changes_role
}

changes_role if is_string(data.pgwarden.statement.role_change.role)

# set_config('role', expr, ...): the target is not known.
changes_role if data.pgwarden.statement.role_change.via == "set_config"

# The flag without the fact: fail closed.
changes_role if {
	data.pgwarden.statement.flag("sets_role")
	not data.pgwarden.statement.role_change
}

# Defence in depth, should a role setting not be reported as a role change.
changes_role if {
	some s in data.pgwarden.statement.settings
	s.name in {"role", "session_authorization"}
	is_string(s.value)
}

role_change_phrase := sprintf("%s %s", [data.pgwarden.statement.role_change.via, data.pgwarden.statement.role_change.role]) if {
	is_string(data.pgwarden.statement.role_change.via)
	is_string(data.pgwarden.statement.role_change.role)
} else := data.pgwarden.statement.role_change.via if {
	is_string(data.pgwarden.statement.role_change.via)
} else := data.pgwarden.statement.command

hard contains sprintf("%s ... SET %s is a persistent setting change (pgwarden.danger.persistent_setting)", [s.via, s.name]) if {
	some s in data.pgwarden.statement.settings
	s.via in persistent_setting_vias
}

hard contains sprintf("changing setting %s is not permitted (pgwarden.danger.protected_setting)", [s.name]) if {
	some s in data.pgwarden.statement.settings
	protected_setting(s.name)
}

protected_setting(name) if lower(name) in denied_settings

protected_setting(name) if strings.any_prefix_match(lower(name), denied_setting_prefixes)

hard contains sprintf("function %s is dangerous (pgwarden.danger.dangerous_function)", [function_label(f)]) if {
	some f in data.pgwarden.statement.functions
	dangerous_function(f.name)
}

dangerous_function(name) if lower(name) in denied_functions

dangerous_function(name) if strings.any_prefix_match(lower(name), denied_function_prefixes)

function_label(f) := f.qualified if {
	is_string(f.qualified)
} else := f.name

# --- configuration checks ----------------------------------------------------

config_errors contains sprintf("danger.%s entry %v is not a lower-case string", [list, entry]) if {
	some list in ["functions", "function_prefixes", "settings", "setting_prefixes"]
	some entry in object.get(section, list, [])
	not lower_case_string(entry)
}

lower_case_string(s) if {
	is_string(s)
	lower(s) == s
}

# --- waivable findings -------------------------------------------------------

findings contains {
	"capability": data.pgwarden.statement.kind,
	"rule": "pgwarden.danger.destructive_kind",
	"what": subject_phrase,
	"why": "is destructive",
} if {
	data.pgwarden.statement.kind in destructive_kinds
}

findings contains {
	"capability": "unbounded_write",
	"rule": "pgwarden.danger.unbounded_write",
	"what": sprintf("%s without WHERE on %s", [upper(w.kind), data.pgwarden.statement.relation_key(w)]),
	"why": "is destructive",
} if {
	some w in data.pgwarden.statement.writes
	w.kind in {"delete", "update"}
	not w.has_where == true
}

# "TRUNCATE on public.orders", "CREATE FUNCTION".
subject_phrase := sprintf("%s on %s", [data.pgwarden.statement.command, concat(", ", sort(touched))]) if {
	count(touched) > 0
} else := data.pgwarden.statement.command

# The relations acted on; those only read are not the subject.
touched := {data.pgwarden.statement.relation_key(rel) |
	some rel in data.pgwarden.statement.relations
	not rel.access in data.pgwarden.statement.read_accesses
}

# --- reasons -----------------------------------------------------------------

deny contains msg if {
	some msg in hard
}

deny contains sprintf("%s %s (%s)", [f.what, f.why, f.rule]) if {
	some f in findings
	data.pgwarden.access.capability_action(f.capability) == "deny"
}

review contains msg if {
	some f in findings
	data.pgwarden.access.capability_action(f.capability) == "review"
	msg := sprintf(
		"%s %s (%s); %s on %s may run it after approval",
		[f.what, f.why, f.rule, data.pgwarden.access.groups_holding(f.capability, "review"), data.pgwarden.access.connection],
	)
}

waived contains msg if {
	some f in findings
	data.pgwarden.access.capability_action(f.capability) == "allow"
	msg := sprintf(
		"%s allowed for %s on %s (waives %s)",
		[f.what, data.pgwarden.access.groups_holding(f.capability, "allow"), data.pgwarden.access.connection, f.rule],
	)
}
