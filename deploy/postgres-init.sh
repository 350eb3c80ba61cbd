#!/bin/sh
# Runs once, when the postgres container initialises an empty volume (docker-entrypoint-initdb.d),
# after 10-demo-schema.sql: the logins pgwarden uses. Passwords come from the mounted secrets
# through psql's backquote expansion, so they never appear on a command line.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
\set gateway_password `cat /run/secrets/demo_gateway_password`
\set state_password `cat /run/secrets/pgwarden_state_password`

-- The gateway's login for connection "demo": data only. The policy decides who may do what;
-- these grants stay the last line behind it (DDL, even when a policy allows it, fails here).
CREATE ROLE demo_gateway LOGIN PASSWORD :'gateway_password';
GRANT USAGE ON SCHEMA public TO demo_gateway;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO demo_gateway;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO demo_gateway;

-- Approvals and recorded sessions, shared by every gateway instance (the gateway creates its
-- tables in schema pgwarden).
CREATE ROLE pgwarden_state LOGIN PASSWORD :'state_password';
CREATE DATABASE pgwarden_state OWNER pgwarden_state;
SQL
