# Checks of pgwarden's policy data (policies/rego/pgwarden/data.json, the `config` document the
# shipped Rego reads), for review in CI:
#   conftest test --policy policies/conftest --namespace policy_data policies/rego/pgwarden/data.json
# `pgwarden policy check-config` runs them on every data file under the configuration's
# policy.paths. Production connections are recognised by name (see conventions.rego).
package policy_data

import rego.v1

# Capabilities a production grant may hold only through a person's approval (value "review").
approval_only := {"truncate", "grant", "unbounded_write"}

grants contains [group, connection, permissions] if {
	some group, g in object.get(input, ["config", "access", "groups"], {})
	some connection, grant in object.get(g, "connections", {})
	data.conventions.production(connection)
	permissions := object.get(grant, "permissions", {})
}

# No group may run DDL on production through the gateway, not even with an approval:
# schema changes go through migrations, reviewed and deployed like code.
deny contains msg if {
	some [group, connection, permissions] in grants
	value := object.get(permissions, "ddl", "deny")
	value != "deny"
	msg := sprintf(
		"access.groups.%s.connections.%s.permissions.ddl: DDL must not be granted on a production connection (it is %v); ship schema changes as reviewed migrations",
		[group, connection, value],
	)
}

warn contains msg if {
	some [group, connection, permissions] in grants
	some capability in approval_only
	permissions[capability] == "allow"
	msg := sprintf(
		"access.groups.%s.connections.%s.permissions.%s: allowed without review on a production connection; consider review, so that a second person approves each one",
		[group, connection, capability],
	)
}
