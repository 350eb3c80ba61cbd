#!/bin/sh
# Writes the secrets compose.yaml mounts (compose `secrets:`), once: a file that exists is kept,
# so delete one to rotate it. Usage:
#   deploy/init-secrets.sh [DIR]     DIR defaults to $PGWARDEN_SECRETS, else deploy/secrets
# Needs the pgwarden command (on PATH, in .venv/bin after `make venv`, or named by $PGWARDEN).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-${PGWARDEN_SECRETS:-$here/secrets}}"
if [ -z "${PGWARDEN:-}" ]; then
    if command -v pgwarden >/dev/null 2>&1; then PGWARDEN=pgwarden; else PGWARDEN="$here/../.venv/bin/pgwarden"; fi
fi

umask 077
mkdir -p "$dir"
chmod 700 "$dir"

password() {  # 32 random bytes, hex: safe in any configuration syntax
    [ -s "$dir/$1" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/$1"
}
password postgres_password        # the Postgres superuser (only the postgres container uses it)
password demo_gateway_password    # the gateway's upstream login for connection "demo"
password pgwarden_state_password  # the login of the approvals and session stores
password mqtt_password            # the gateway's broker account

[ -s "$dir/token_signing_key" ] || "$PGWARDEN" token keygen "$dir/token_signing_key" >/dev/null
# Development certificates (self-signed): replace them with your CA's for anything real.
[ -s "$dir/gateway_tls/server.crt" ] ||
    "$PGWARDEN" cert dev --out-dir "$dir/gateway_tls" --host localhost --host 127.0.0.1 --host pgwarden >/dev/null
[ -s "$dir/postgres_tls/server.crt" ] ||
    "$PGWARDEN" cert dev --out-dir "$dir/postgres_tls" --host postgres >/dev/null

# The containers run as their own non-root users, not as you: the files must be readable through
# the bind mounts. The directory (0700) keeps other users of this host out.
chmod 0644 "$dir"/*_password "$dir/token_signing_key" "$dir"/*_tls/server.crt "$dir"/*_tls/server.key
echo "secrets in $dir"
