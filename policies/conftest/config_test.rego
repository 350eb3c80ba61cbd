package main_test

import rego.v1

# A configuration every rule accepts: two instances' worth of shared stores, a production
# connection with verify-full, secrets in files, a decision log that refuses on failure.
good := {
	"listener": {"host": "0.0.0.0", "port": 6432, "tls": {"cert": "/run/secrets/tls.crt", "key": "/run/secrets/tls.key"}},
	"gateway_tokens": {"signing_key_file": "/run/secrets/token.key"},
	"connections": {
		"shop-prod": {
			"host": "db.internal",
			"database": "shop",
			"user": "shop_agent",
			"password_file": "/run/secrets/shop_agent",
			"sslmode": "verify-full",
			"sslrootcert": "/etc/pgwarden/db-ca.pem",
			"roles": [{"groups": ["dba"], "user": "shop_owner", "password_file": "/run/secrets/shop_owner"}],
		},
		"demo": {"host": "127.0.0.1", "database": "demo", "user": "demo", "password_env": "DEMO_PW"},
	},
	"audit": {
		"decision_log": {"dir": "/var/lib/pgwarden/decisions", "on_failure": "refuse"},
		"sessions": {"store": "postgresql://pgwarden@db.internal/audit"},
	},
	"approvals": {
		"store": "postgresql://pgwarden@db.internal/audit",
		"notify": {"mqtt": {"host": "mqtt", "username": "pgwarden", "password_file": "/run/secrets/mqtt"}},
	},
	"masking": {"hash_key_file": "/run/secrets/masking.key"},
}

# object.union merges recursively: replace a key's value as a whole.
replace(obj, key, value) := object.union(object.remove(obj, [key]), {key: value})

with_connection(name, conn) := replace(good, "connections", replace(good.connections, name, conn))

prod := good.connections["shop-prod"]

test_good_configuration_has_no_findings if {
	count(data.main.deny) == 0 with input as good
	count(data.main.warn) == 0 with input as good
}

test_an_empty_document_is_denied_for_its_missing_decision_log if {
	data.main.deny == {"audit.decision_log: required; without it decision records are kept in memory only and lost at exit (set a directory and on_failure: refuse)"} with input as {}
}

# --- sslmode ---

test_production_connection_without_verify_full_is_denied if {
	cfg := with_connection("shop-prod", object.union(prod, {"sslmode": "require"}))
	some msg in data.main.deny with input as cfg
	startswith(msg, "connections.shop-prod.sslmode: a production connection must use sslmode: verify-full")
	contains(msg, "not require")
}

test_production_connection_without_sslmode_is_denied_as_disable if {
	cfg := with_connection("prod", object.remove(prod, ["sslmode"]))
	some msg in data.main.deny with input as cfg
	contains(msg, "connections.prod.sslmode")
	contains(msg, "not disable")
}

test_production_host_counts_too_and_warns_about_the_name if {
	cfg := with_connection("shop", object.union(prod, {"host": "db.prod.internal", "sslmode": "require"}))
	some msg in data.main.deny with input as cfg
	startswith(msg, "connections.shop.sslmode")
	some w in data.main.warn with input as cfg
	startswith(w, "connections.shop: its host db.prod.internal says production")
}

test_non_production_connection_may_skip_tls if {
	cfg := with_connection("products", object.union(prod, {"sslmode": "disable"}))
	count(data.main.deny) == 0 with input as cfg
}

# --- secrets ---

test_inline_upstream_password_is_denied if {
	cfg := with_connection("demo", {"host": "127.0.0.1", "database": "demo", "user": "demo", "password": "hunter2"})
	some msg in data.main.deny with input as cfg
	startswith(msg, "connections.demo.password: an inline upstream password")
}

test_inline_role_password_is_denied if {
	cfg := with_connection("shop-prod", object.union(prod, {"roles": [{"groups": ["dba"], "user": "o", "password": "x"}]}))
	some msg in data.main.deny with input as cfg
	startswith(msg, "connections.shop-prod.roles[0].password")
}

test_inline_mqtt_password_is_denied if {
	cfg := object.union(good, {"approvals": object.union(good.approvals, {"notify": {"mqtt": {"host": "mqtt", "password": "x"}}})})
	some msg in data.main.deny with input as cfg
	startswith(msg, "approvals.notify.mqtt.password")
}

test_password_in_a_store_url_is_denied if {
	cfg := replace(good, "audit", replace(good.audit, "sessions", "postgresql://pgwarden:pw@db/audit"))
	some msg in data.main.deny with input as cfg
	startswith(msg, "audit.sessions.store: the URL carries a password")
}

test_inline_masking_key_is_denied if {
	cfg := object.union(good, {"masking": {"hash_key": "0123456789abcdef"}})
	some msg in data.main.deny with input as cfg
	startswith(msg, "masking.hash_key: an inline masking key")
}

# --- decision log ---

test_missing_decision_log_is_denied if {
	cfg := replace(good, "audit", {"sessions": good.audit.sessions})
	some msg in data.main.deny with input as cfg
	startswith(msg, "audit.decision_log: required")
}

test_decision_log_that_forwards_is_denied if {
	cfg := object.union(good, {"audit": object.union(good.audit, {"decision_log": {"dir": "/d", "on_failure": "forward"}})})
	some msg in data.main.deny with input as cfg
	startswith(msg, "audit.decision_log.on_failure: must be refuse, not forward")
}

test_implicit_on_failure_is_a_warning if {
	every log in [{"dir": "/d"}, "/var/lib/pgwarden/decisions"] {
		cfg := replace(good, "audit", replace(good.audit, "decision_log", log))
		count(data.main.deny) == 0 with input as cfg
		some msg in data.main.warn with input as cfg
		startswith(msg, "audit.decision_log.on_failure: not set")
	}
}

# --- several instances ---

test_sqlite_approvals_with_postgres_sessions_are_denied if {
	cfg := object.union(good, {"approvals": object.union(good.approvals, {"store": "/var/lib/pgwarden/approvals.sqlite"})})
	some msg in data.main.deny with input as cfg
	startswith(msg, "approvals.store: sessions are recorded in Postgres (several instances)")
}

test_single_instance_may_keep_approvals_in_sqlite if {
	cfg := {
		"connections": {"demo": {"database": "demo", "user": "demo", "password_env": "PW"}},
		"audit": {"decision_log": {"dir": "/d", "on_failure": "refuse"}, "sessions": "/var/lib/pgwarden/sessions.sqlite"},
		"approvals": {"store": "/var/lib/pgwarden/approvals.sqlite"},
	}
	count(data.main.deny) == 0 with input as cfg
	count(data.main.warn) == 0 with input as cfg
}

test_sqlite_approvals_with_mqtt_are_a_warning if {
	cfg := {
		"connections": {"demo": {"database": "demo", "user": "demo", "password_env": "PW"}},
		"audit": {"decision_log": {"dir": "/d", "on_failure": "refuse"}},
		"approvals": {"store": "approvals.sqlite", "notify": {"mqtt": {"host": "mqtt"}}},
	}
	count(data.main.deny) == 0 with input as cfg
	some msg in data.main.warn with input as cfg
	startswith(msg, "approvals.store: approvals.sqlite is a file of this host")
}

# --- development shortcuts ---

test_insecure_listener_is_a_warning if {
	cfg := object.union(good, {"listener": {"host": "127.0.0.1", "insecure_loopback_dev": true}})
	some msg in data.main.warn with input as cfg
	startswith(msg, "listener.insecure_loopback_dev")
}
