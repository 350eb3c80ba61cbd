# pgwarden.statement: which statement is being decided, and its facts.
#
# The gateway sends one statement document at a time as input.statement (see
# docs/policy-authoring.md). Two kinds only announce another statement:
#
#   PREPARE p AS <body>   the body runs later, at EXECUTE
#   EXPLAIN ANALYZE <body> the body runs now
#
# For both, every other package decides the body: `current` is the body and
# `wrapper` names what was unwrapped. A plain EXPLAIN runs nothing, so its
# facts are empty here (the analyser may copy the body's facts onto it).
#
# Every other package reads statement facts through this one, never through
# input.statement directly, so that the unwrapping happens in one place.
# This package never decides anything.
#
# Other packages refer to this one by full path (data.pgwarden.statement.kind),
# never through `import data.pgwarden.statement`: regorus evaluates the whole
# imported package for every reference through an alias (about 0.1 ms each,
# on the hot path), and does not resolve function calls through imports at
# all (microsoft/regorus#747). The same holds for every pgwarden package.
package pgwarden.statement

import rego.v1

outer := input.statement

# Kinds whose effect cannot be seen in their facts. After unwrapping, a
# statement of one of these kinds is denied by pgwarden.danger.
opaque_kinds := {"unknown", "do", "prepare", "execute"}

# Relation access modes that return the relation's rows to the client.
read_accesses := {"read", "copy_to"}

# Relation access modes of data-modifying statements; with RETURNING these
# return rows too.
write_accesses := {"insert", "update", "delete", "merge"}

# The list-valued fields of a statement document.
list_fields := {"relations", "columns", "functions", "writes", "settings"}

default wrapper := ""

wrapper := "prepare" if outer.kind == "prepare"

wrapper := "explain_analyze" if {
	outer.kind == "explain"
	explain_analyze
}

# Forward compatible: once the gateway resolves EXECUTE to the prepared body,
# it is decided like PREPARE. Without a body EXECUTE stays opaque (denied).
wrapper := "execute" if {
	outer.kind == "execute"
	is_object(outer.execute.body)
}

explain_analyze if outer.explain.analyze == true

explain_analyze if outer.flags.explain_analyze == true

plain_explain if {
	outer.kind == "explain"
	not explain_analyze
}

body := outer.prepare.body if wrapper == "prepare"

body := outer.explain.body if wrapper == "explain_analyze"

body := outer.execute.body if wrapper == "execute"

# A wrapper whose body is missing: nothing can be decided.
missing_body if {
	wrapper != ""
	not is_object(body)
}

current := outer if wrapper == ""

current := body if {
	wrapper != ""
	is_object(body)
}

default kind := "unknown"

kind := current.kind if is_string(current.kind)

# What the reasons call the statement: its command tag (DELETE, DROP TABLE),
# else its kind.
command := upper(current.command_tag) if {
	is_string(current.command_tag)
	current.command_tag != ""
} else := upper(kind)

default relations := []

relations := current.relations if {
	not plain_explain
	is_array(current.relations)
}

default columns := []

columns := current.columns if {
	not plain_explain
	is_array(current.columns)
}

default functions := []

functions := current.functions if {
	not plain_explain
	is_array(current.functions)
}

default writes := []

writes := current.writes if {
	not plain_explain
	is_array(current.writes)
}

default settings := []

settings := current.settings if {
	not plain_explain
	is_array(current.settings)
}

default flags := {}

flags := current.flags if {
	not plain_explain
	is_object(current.flags)
}

flag(name) if flags[name] == true

role_change := current.role_change if {
	not plain_explain
	is_object(current.role_change)
}

copy := current.copy if {
	not plain_explain
	is_object(current.copy)
}

# "schema.name" of a relation (or of a write target). An unqualified name is
# taken to be in schema public: a simplification until the gateway resolves
# names with the session's search_path (changing search_path is denied by the
# shipped data for that reason).
relation_key(rel) := concat(".", [rel.schema, rel.name]) if {
	is_string(rel.schema)
	rel.schema != ""
} else := concat(".", ["public", rel.name])

# Relations whose rows the statement returns to the client.
read_relations contains relation_key(rel) if {
	some rel in relations
	rel.access in read_accesses
}

# Relations the statement modifies, from the write facts.
written_relations contains relation_key(w) if {
	some w in writes
}

written_relations contains relation_key(rel) if {
	some rel in relations
	rel.access in write_accesses
}

# RETURNING sends modified rows back to the client.
returns_rows if {
	some col in columns
	col.context == "returning"
}

# A statement document that does not follow the contract is denied
# (pgwarden.danger.malformed_statement); these say what is wrong.
malformed contains "input.statement is not an object" if not is_object(input.statement)

malformed contains "the statement has no kind" if {
	is_object(current)
	not is_string(current.kind)
}

malformed contains sprintf("statement field \"%s\" is not a list", [field]) if {
	is_object(current)
	some field in list_fields
	value := object.get(current, field, [])
	not is_array(value)
}

malformed contains "statement field \"flags\" is not an object" if {
	is_object(current)
	value := object.get(current, "flags", {})
	not is_object(value)
}

# Booleans must arrive as booleans: an engine binding that turned true into 1
# would otherwise switch every `flag(...)` rule off, silently.
malformed contains sprintf("statement flag \"%s\" is not a boolean", [name]) if {
	some name, value in flags
	not is_boolean(value)
}

malformed contains sprintf("a %s entry has no name", [field]) if {
	is_object(current)
	some field in {"relations", "writes", "functions"}
	entries := object.get(current, field, [])
	is_array(entries)
	some entry in entries
	not is_string(entry.name)
}
