# Shared helpers for scripts/run.sh and scripts/test.sh. Source it; do not run it.
#
# Everything here works on a fresh Debian 12 machine: system packages come from apt
# (only when running as root; otherwise the missing package is named and we stop),
# Python packages go into .venv from the pinned requirements files.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# True when a Debian package is installed.
have_package() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

_APT_UPDATED=""
# apt_install PACKAGE...: install whichever of the packages are missing (root only).
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        have_package "$pkg" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if ! is_root; then
        printf 'error: missing system packages: %s\n' "${missing[*]}" >&2
        printf '       install them with:  sudo apt-get install -y %s\n' "${missing[*]}" >&2
        printf '       (or run this command as root and it installs them itself)\n' >&2
        exit 1
    fi
    command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$_APT_UPDATED" ]; then
        say "apt-get update"
        apt-get update -qq
        _APT_UPDATED=1
    fi
    say "apt-get install ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_redis_server: the redis-server binary (Debian package redis-server, which brings redis-cli).
ensure_redis_server() {
    if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
        return 0
    fi
    apt_install redis-server
    # The package starts a system-wide Redis where an init system runs; we never use it.
    command -v redis-server >/dev/null || die "redis-server still not found after installing it"
}

# postgres_bindir: newest /usr/lib/postgresql/<version>/bin that has initdb (installs postgresql if none).
postgres_bindir() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -z "$dir" ] || [ ! -x "$dir/initdb" ]; then
        apt_install postgresql >&2
        dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    fi
    [ -n "$dir" ] && [ -x "$dir/initdb" ] || die "PostgreSQL server binaries (initdb) not found"
    printf '%s\n' "$dir"
}

# ensure_venv REQUIREMENTS_FILE: create .venv if needed and install the file's packages,
# skipping pip when the requirements have not changed since the last install.
ensure_venv() {
    local req="$1" stamp hash
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3.11 (apt-get install python3)"
        if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
            apt_install python3-venv  # Debian ships venv's pip bootstrap separately
        fi
        say "creating virtualenv in $VENV"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    # The stamp covers every requirements file (they include each other) and the interpreter.
    hash="$({ cat "$ROOT"/requirements*.txt; "$VENV/bin/python" -VV; } | sha256sum | cut -c1-16)"
    stamp="$VENV/.installed-$(basename "$req").$hash"
    if [ -f "$stamp" ]; then
        return 0
    fi
    say "installing $(basename "$req") into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/$req"
    rm -f "$VENV/.installed-$(basename "$req")".*
    touch "$stamp"
}

# free_port: print a TCP port nobody listens on right now.
free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# port_in_use PORT: true when something accepts connections on 127.0.0.1:PORT.
port_in_use() {
    "$VENV/bin/python" -c 'import socket, sys; s = socket.socket(); s.settimeout(1); sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"
}

REDIS_PID=""
# start_redis PORT DATA_DIR: a private redis-server in the background, with the persistence
# settings production uses (append-only file, never evict), answering before we return.
# It runs in a session of its own, so Ctrl-C reaches the script (whose trap stops Redis
# after the app), not Redis directly.
start_redis() {
    local port="$1" dir="$2" i
    mkdir -p "$dir"
    if port_in_use "$port"; then
        die "port $port is already in use; set REDIS_PORT to another port"
    fi
    setsid redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize no \
        --appendonly yes --appendfsync everysec --maxmemory-policy noeviction --save "" \
        --logfile "$dir/redis.log" &
    REDIS_PID=$!
    for i in $(seq 1 100); do
        if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ]; then
            return 0
        fi
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$dir/redis.log" >&2 || true
    die "redis-server did not start on port $port"
}

stop_redis() {
    if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    REDIS_PID=""
}

PG_DIR=""
PG_BIN=""
PG_AS=()
# start_postgres PORT DIR: a throwaway PostgreSQL cluster in DIR (trust auth, local only,
# no durability: it is deleted afterwards). As root the server runs as the postgres user.
start_postgres() {
    local port="$1"
    PG_DIR="$2"
    PG_BIN="$(postgres_bindir)"
    if is_root; then
        id postgres >/dev/null 2>&1 || die "no postgres user; reinstall the postgresql package"
        chown postgres:postgres "$PG_DIR"
        PG_AS=(runuser -u postgres --)
    fi
    (cd "$PG_DIR" && "${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --locale=C \
        --no-sync >"$PG_DIR/initdb.log" 2>&1) || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    (cd "$PG_DIR" && "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null) || { tail -n 30 "$PG_DIR/postgres.log" >&2; die "PostgreSQL did not start"; }
}

stop_postgres() {
    if [ -n "$PG_DIR" ] && [ -f "$PG_DIR/data/postmaster.pid" ]; then
        (cd "$PG_DIR" && "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1) || true
    fi
}
