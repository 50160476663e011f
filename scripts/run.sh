#!/usr/bin/env bash
# `make run`: Backdesk on this machine with demo data.
#
# Installs what is missing (.venv from requirements.txt; redis-server via apt as root),
# starts a private Redis server, migrates the database, seeds demo data into an empty
# database, then runs the web server, an RQ worker and the scheduler (`flask run-all`)
# until Ctrl-C, which stops all of them and Redis.
#
# Settings (environment): HOST (127.0.0.1), PORT (5000), REDIS_PORT (6390), plus every
# application setting from config.py (DATABASE_URL, BACKDESK_INSTANCE_DIR, SMTP_HOST, ...).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-5000}"
REDIS_PORT="${REDIS_PORT:-6390}"
INSTANCE="${BACKDESK_INSTANCE_DIR:-$ROOT/instance}"
APP_PID=""

cleanup() {
    local status=$?
    trap - EXIT HUP INT TERM
    if [ -n "$APP_PID" ] && kill -0 "$APP_PID" 2>/dev/null; then
        say "stopping Backdesk"
        kill -TERM "$APP_PID" 2>/dev/null || true  # run-all stops web, worker and scheduler
        wait "$APP_PID" 2>/dev/null || true
    fi
    if [ -n "$REDIS_PID" ]; then
        say "stopping Redis"
        stop_redis
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_redis_server
ensure_venv requirements.txt

if port_in_use "$PORT"; then
    die "port $PORT is already in use; set PORT to another port (e.g. PORT=5050 make run)"
fi

start_redis "$REDIS_PORT" "$INSTANCE/redis"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export BASE_URL="${BASE_URL:-http://$HOST:$PORT}"
say "Redis on 127.0.0.1:$REDIS_PORT (data in $INSTANCE/redis)"

FLASK=("$VENV/bin/flask" --app wsgi)
say "migrating the database"
"${FLASK[@]}" db upgrade
seeded="$("${FLASK[@]}" seed-demo --if-empty)"
printf '%s\n' "${seeded%%$'\n'*}"  # the summary line; the logins are shown below

cat <<EOF

  Backdesk: http://$HOST:$PORT/
  API:      http://$HOST:$PORT/api/v1/openapi.json
EOF
if [ -f "$INSTANCE/demo-logins.txt" ]; then
    printf '  Demo logins (email, password, role; also in %s):\n' "$INSTANCE/demo-logins.txt"
    sed 's/^/    /' "$INSTANCE/demo-logins.txt"
fi
printf '  Ctrl-C stops everything.\n\n'

# In the background, and in a session of its own: Ctrl-C reaches this script only, whose
# trap asks run-all to stop web, worker and scheduler in order, and then stops Redis.
setsid "${FLASK[@]}" run-all --host "$HOST" --port "$PORT" &
APP_PID=$!
status=0
wait "$APP_PID" || status=$?
APP_PID=""
exit "$status"
