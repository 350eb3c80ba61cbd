# Checks of a pgwarden configuration file (the YAML `pgwarden run --config` reads), for review
# in CI: `conftest test --policy policies/conftest pgwarden.yaml` or
# `pgwarden policy check-config pgwarden.yaml`. The input is the parsed YAML.
#
# The loader (`pgwarden config check`) already refuses what cannot work; these rules refuse
# what works but should not reach production. Each message starts with the key it is about.
package main

import rego.v1

connections := object.get(input, "connections", {})

audit := object.get(input, "audit", {})

approvals := object.get(input, "approvals", {})

# --- production connections use verify-full -------------------------------------------------

production_connection(name) if data.conventions.production(name)

production_connection(name) if data.conventions.production(object.get(connections[name], "host", ""))

deny contains msg if {
	some name, conn in connections
	production_connection(name)
	mode := object.get(conn, "sslmode", "disable")
	mode != "verify-full"
	msg := sprintf(
		"connections.%s.sslmode: a production connection must use sslmode: verify-full (with sslrootcert), not %v; anything less lets a network attacker read or change the traffic",
		[name, mode],
	)
}

warn contains msg if {
	some name, conn in connections
	not data.conventions.production(name)
	data.conventions.production(object.get(conn, "host", ""))
	msg := sprintf(
		"connections.%s: its host %v says production but its name does not; name it with a prod word (e.g. %s-prod) so that the policy-data checks, which only see names, treat it as production",
		[name, conn.host, name],
	)
}

# --- secrets never inline -------------------------------------------------------------------

deny contains msg if {
	some name, conn in connections
	"password" in object.keys(conn)
	msg := sprintf(
		"connections.%s.password: an inline upstream password ends up in Git and in backups; use password_file (a mounted secret) or password_env",
		[name],
	)
}

deny contains msg if {
	some name, conn in connections
	some i, role in object.get(conn, "roles", [])
	"password" in object.keys(role)
	msg := sprintf(
		"connections.%s.roles[%d].password: an inline upstream password ends up in Git and in backups; use password_file or password_env",
		[name, i],
	)
}

deny contains msg if {
	mqtt := object.get(approvals, ["notify", "mqtt"], {})
	"password" in object.keys(mqtt)
	msg := "approvals.notify.mqtt.password: an inline broker password ends up in Git; use password_file or password_env"
}

deny contains msg if {
	some key, url in store_urls
	data.conventions.url_with_password(url)
	msg := sprintf("%s: the URL carries a password; give it with PGPASSWORD or a PGPASSFILE instead", [key])
}

masking := object.get(input, "masking", {})

deny contains msg if {
	"hash_key" in object.keys(masking)
	msg := "masking.hash_key: an inline masking key lets anyone with the configuration reverse or forge hashed values; put it in a secret file and name it with masking.hash_key_file"
}

# --- the decision log is kept, and a statement it cannot record is refused -------------------

deny contains msg if {
	not audit.decision_log
	msg := "audit.decision_log: required; without it decision records are kept in memory only and lost at exit (set a directory and on_failure: refuse)"
}

deny contains msg if {
	is_object(audit.decision_log)
	audit.decision_log.on_failure != "refuse"
	msg := sprintf(
		"audit.decision_log.on_failure: must be refuse, not %v; otherwise statements run without a decision record when the disk is full",
		[audit.decision_log.on_failure],
	)
}

warn contains msg if {
	audit.decision_log
	not audit.decision_log.on_failure
	msg := "audit.decision_log.on_failure: not set; the default is refuse, but say it explicitly so that a reviewer sees it (on_failure: refuse)"
}

# --- several instances share their approvals ------------------------------------------------
#
# Convention: a configuration is for several gateway instances when it records sessions in
# Postgres (audit.sessions.store is a postgresql:// URL), the store meant for sharing. Its
# approvals must then be shared too: with a SQLite store, an approval given through one
# instance never reaches a statement held by another.

sessions_store := audit.sessions if is_string(audit.sessions)

sessions_store := audit.sessions.store if is_object(audit.sessions)

store_urls["audit.sessions.store"] := sessions_store

store_urls["approvals.store"] := approvals.store

several_instances if data.conventions.shared_store(sessions_store)

deny contains msg if {
	several_instances
	approvals.store
	not data.conventions.shared_store(approvals.store)
	msg := sprintf(
		"approvals.store: sessions are recorded in Postgres (several instances), so approvals must be in Postgres too, not %v; an approval given through one instance would never reach a statement held by another",
		[approvals.store],
	)
}

warn contains msg if {
	not several_instances
	object.get(approvals, ["notify", "mqtt"], null) != null
	approvals.store
	not data.conventions.shared_store(approvals.store)
	msg := sprintf(
		"approvals.store: %v is a file of this host; if several instances run this configuration (MQTT suggests they might), use a postgresql:// store",
		[approvals.store],
	)
}

# --- development shortcuts ------------------------------------------------------------------

warn contains msg if {
	object.get(input, ["listener", "insecure_loopback_dev"], false) == true
	msg := "listener.insecure_loopback_dev: tokens travel without TLS; for development only"
}
