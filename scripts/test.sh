#!/usr/bin/env bash
# `make test`: install what the tests need, check the import contracts (lint-imports), then run
# the tests twice:
#   1. the whole suite (tests/) on SQLite, with a private Redis server;
#   2. the database-level tests (tests/unit, tests/integration) on a throwaway PostgreSQL cluster.
# Extra arguments are passed to pytest, e.g. `scripts/test.sh -k workers -x`.
# Redis, PostgreSQL and the tests' temporary files live in one temporary directory; the
# servers are stopped and the directory removed on exit, even on failure or Ctrl-C.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

PG_DATABASE=backdesk_test
WORK=""

cleanup() {
    local status=$?
    trap - EXIT HUP INT TERM
    stop_postgres
    stop_redis
    if [ -n "$WORK" ]; then
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# pytest: run with the given label; exit code 5 (nothing collected) is a broken setup, not a pass.
run_pytest() {
    local label="$1" status=0
    shift
    say "pytest ($label): $*"
    "$VENV/bin/python" -m pytest "$@" || status=$?
    if [ "$status" -eq 5 ]; then
        printf 'error: pytest (%s) collected no tests; check the paths and pytest.ini\n' "$label" >&2
    fi
    return "$status"
}

start=$SECONDS

# 1. System packages: Redis, the PostgreSQL server, Chromium and fonts for the browser tests,
#    Dovecot for the IMAP intake tests. Root installs what is missing; anyone else is told
#    what to install.
packages=()
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || packages+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || packages+=(postgresql)
command -v chromium >/dev/null || packages+=(chromium)
have_package fonts-liberation || packages+=(fonts-liberation)
have_package dovecot-imapd || packages+=(dovecot-imapd)
[ "${#packages[@]}" -eq 0 ] || apt_install "${packages[@]}"

# 2. Python packages.
ensure_venv requirements-test.txt

# 3. One temporary directory for the run: Redis and PostgreSQL data, and pytest's own
#    temporary files (TMPDIR), all removed at the end.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/backdesk-test.XXXXXX")"
chmod 755 "$WORK"  # the PostgreSQL server runs as the postgres user and needs to reach pg/
mkdir "$WORK/redis" "$WORK/pg" "$WORK/tmp"
export TMPDIR="$WORK/tmp"
# The tests choose their own database and instance directory; ignore the caller's.
unset DATABASE_URL BACKDESK_INSTANCE_DIR
export BACKDESK_ENV=testing

# 4. A private Redis for the whole run.
redis_port="$(free_port)"
start_redis "$redis_port" "$WORK/redis"
export REDIS_URL="redis://127.0.0.1:$redis_port/0"
say "Redis on 127.0.0.1:$redis_port"

failed=()

# 5. The architecture contracts (.importlinter): layers, the item-state gate, no import cycles.
say "lint-imports"
"$VENV/bin/lint-imports" --no-cache || failed+=("lint-imports")

# 6. Everything on SQLite.
run_pytest sqlite -q tests "$@" || failed+=("sqlite")

# 7. The database-level tests again on a throwaway PostgreSQL cluster.
pg_port="$(free_port)"
start_postgres "$pg_port" "$WORK/pg"
"$PG_BIN/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres "$PG_DATABASE"
say "PostgreSQL on 127.0.0.1:$pg_port"
DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/$PG_DATABASE" \
    run_pytest postgresql -q tests/unit tests/integration "$@" || failed+=("postgresql")

elapsed=$((SECONDS - start))
if [ "${#failed[@]}" -gt 0 ]; then
    printf '\nmake test: FAILED on %s (%ss)\n' "${failed[*]}" "$elapsed" >&2
    exit 1
fi
printf '\nmake test: all tests passed on SQLite and PostgreSQL (%ss)\n' "$elapsed"
