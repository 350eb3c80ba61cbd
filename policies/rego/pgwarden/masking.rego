# pgwarden.masking: which result columns are masked, and how.
#
# Data (data.pgwarden.config.masking):
#
#   column_labels."<schema>.<table>.<column>"  list of labels, e.g.
#       "public.customers.email": ["pii.email"]
#   labels."<label>"."<group>"                 strategy for that group
#   labels."<label>"."*"                       strategy for every group not
#                                              listed for that label
#   side_channel_functions                     functions that move values out
#                                              of band (pg_notify): denied in
#                                              a statement that masks
#
# Strategies, strictest first: null > redact > hash > partial > email > none.
# "none" means unmasked. When an identity's groups disagree, or a column has
# several labels, the strictest strategy wins (ties: the label sorting last).
#
# A statement "exposes" a relation when it returns the relation's rows to the
# client: a read (SELECT, joins, subqueries, COPY TO) or, with RETURNING, a
# write. Every labelled column of an exposed relation is listed, whichever
# columns the statement names: the gateway masks by the provenance Postgres
# reports for each result field, so an extra entry costs nothing while a
# missing one would leak (SELECT *, row_to_json(c), RETURNING *).
#
# Masking the result is not enough when the statement can move a masked
# value elsewhere. For an identity that gets masks:
#   masked_copy    (review) a write that reads a masked column's value: in a
#                  select list, the right-hand side of SET, *, or a whole-row
#                  reference. INSERT INTO notes SELECT ssn FROM customers
#                  would store it unmasked; UPDATE customers SET phone =
#                  lower(phone) is harmless. Only a person can tell, so the
#                  write waits for one. Matched on the column name alone.
#   side_channel   (deny) calling a side_channel_functions entry: pg_notify
#                  sends its payload to listeners, not in the result.
# Not covered here (the gateway's part): error texts that quote a value
# (SELECT ssn::int ...) and inference through WHERE predicates.
#
# Unqualified relation names are taken to be in schema public (see
# pgwarden.statement.relation_key). Views and materialised views are
# relations of their own: label their columns too.
package pgwarden.masking

import rego.v1

default section := {}

section := data.pgwarden.config.masking if is_object(data.pgwarden.config.masking)

column_labels := object.get(section, "column_labels", {})

label_rules := object.get(section, "labels", {})

side_channel_functions := object.get(section, "side_channel_functions", [])

strategy_rank := {"none": 0, "email": 1, "partial": 2, "hash": 3, "redact": 4, "null": 5}

# A strategy the gateway does not know ranks above all others, so that it is
# the one chosen, and the statement is denied (see `deny`).
rank(s) := strategy_rank[s] if {
	strategy_rank[s]
} else := 99

default identity_groups := set()

identity_groups := names if {
	is_array(input.identity.groups)
	names := {g | some g in input.identity.groups; is_string(g)}
}

exposed contains key if {
	some key in data.pgwarden.statement.read_relations
}

exposed contains key if {
	data.pgwarden.statement.returns_rows
	some key in data.pgwarden.statement.written_relations
}

# "public.customers" for "public.customers.email".
relation_of(column) := concat(".", [parts[0], parts[1]]) if {
	parts := split(column, ".")
	count(parts) == 3
}

# The strategy a group gets for a label: its own entry, else the "*" entry.
group_strategy(label, group) := s if {
	s := label_rules[label][group]
} else := s if {
	s := label_rules[label]["*"]
}

# [rank, label, strategy] for every (label, group) that masks the column.
candidates(labels) := {[r, label, s] |
	some label in labels
	some group in identity_groups
	s := group_strategy(label, group)
	r := rank(s)
	r > 0
}

mask_entries contains {"column": column, "label": strictest[1], "strategy": strictest[2]} if {
	some column, labels in column_labels
	relation_of(column) in exposed
	is_array(labels)
	cands := candidates(labels)
	count(cands) > 0
	strictest := max(cands)
}

masks := sort(mask_entries)

# Every labelled column masked for this identity, whichever relations a statement names. The
# gateway rewrites each statement of such an identity with these, so that views, functions and
# catalogs that reach a labelled table are masked or refused too, not only the tables named.
identity_mask_entries contains {"column": column, "label": strictest[1], "strategy": strictest[2]} if {
	some column, labels in column_labels
	is_array(labels)
	cands := candidates(labels)
	count(cands) > 0
	strictest := max(cands)
}

identity_masks := sort(identity_mask_entries)

# What a masked column in WHERE / JOIN / GROUP BY / ORDER BY does for this identity: "filter"
# compares masked values (a predicate cannot probe the real ones), "deny" refuses the statement.
# data: masking.predicates."<group>" or ."*"; the strictest of the identity's groups wins.
default predicates := "filter"

predicates := "deny" if {
	some group in identity_groups
	object.get(object.get(section, "predicates", {}), group, object.get(object.get(section, "predicates", {}), "*", "filter")) == "deny"
}

# Catalog views that show other sessions' statement texts or column statistics: for an identity
# with masks they would reveal values (most_common_vals) or the hash key blocks in rewritten text.
default revealing_relations := [
	"pg_catalog.pg_stat_activity",
	"pg_catalog.pg_stats",
	"pg_catalog.pg_stats_ext",
	"pg_catalog.pg_stats_ext_exprs",
	"pg_catalog.pg_prepared_statements",
	"pg_catalog.pg_statistic",
	"public.pg_stat_statements",
]

revealing_relations := section.revealing_relations if is_array(section.revealing_relations)

reasons contains msg if {
	some relation in exposed
	masked := [entry.column | some entry in mask_entries; relation_of(entry.column) == relation]
	count(masked) > 0
	msg := sprintf(
		"%d labelled column(s) of %s masked for %s (pgwarden.masking.labelled_columns)",
		[count(masked), relation, data.pgwarden.access.group_phrase(identity_groups)],
	)
}

# Column references whose value a write could store elsewhere.
carrying_contexts := {"select", "star", "whole_row"}

carried contains entry.column if {
	count(data.pgwarden.statement.writes) > 0
	some col in data.pgwarden.statement.columns
	col.context in carrying_contexts
	some entry in mask_entries
	names_column(col, entry.column)
}

names_column(col, _) if col.name == "*"

names_column(col, _) if col.context == "whole_row"

names_column(col, column) if endswith(column, concat("", [".", col.name]))

review contains msg if {
	count(carried) > 0
	msg := sprintf(
		"writing %s from masked column(s) %s could store them unmasked (pgwarden.masking.masked_copy)",
		[concat(", ", sort(data.pgwarden.statement.written_relations)), concat(", ", sort(carried))],
	)
}

deny contains msg if {
	count(mask_entries) > 0
	some f in data.pgwarden.statement.functions
	lower(f.name) in side_channel_functions
	msg := sprintf(
		"%s could send masked columns outside the result (pgwarden.masking.side_channel)",
		[f.name],
	)
}

deny contains msg if {
	count(identity_mask_entries) > 0
	some relation in data.pgwarden.statement.read_relations
	revealing(relation)
	msg := sprintf(
		"%s can reveal masked values or other sessions' statements to an identity with masks (pgwarden.masking.revealing_relation)",
		[relation],
	)
}

# Unqualified names are keyed public.<name>, but pg_catalog is searched first.
revealing(relation) if relation in revealing_relations

revealing(relation) if {
	startswith(relation, "public.")
	concat("", ["pg_catalog.", substring(relation, 7, -1)]) in revealing_relations
}

deny contains msg if {
	some entry in mask_entries
	not strategy_rank[entry.strategy]
	msg := sprintf(
		"masking strategy %v for label %s (column %s) is unknown (pgwarden.masking.unknown_strategy)",
		[entry.strategy, entry.label, entry.column],
	)
}

# --- configuration checks ----------------------------------------------------

config_errors contains sprintf("column label key \"%s\" is not schema.table.column", [column]) if {
	some column, _ in column_labels
	not relation_of(column)
}

config_errors contains sprintf("labels of column %s are not a list", [column]) if {
	some column, labels in column_labels
	not is_array(labels)
}

config_errors contains sprintf("masking strategy %v for label %s, group %s is not one of %v", [s, label, group, sort(object.keys(strategy_rank))]) if {
	some label, rules in label_rules
	some group, s in rules
	not strategy_rank[s]
}
