#!/bin/sh
# The pgwarden image's entry point. PGPASSWORD_FILE names a mounted secret holding the password
# libpq uses for the postgresql:// stores (approvals, sessions): the password stays out of the
# container's configuration (`docker inspect`) and out of the store URLs.
set -eu
if [ -n "${PGPASSWORD_FILE:-}" ]; then
    PGPASSWORD="$(cat "$PGPASSWORD_FILE")"
    export PGPASSWORD
    unset PGPASSWORD_FILE
fi
exec "$@"
