#!/usr/bin/env bash
# lmpipe's team stack on one machine, natively (no Docker): the same services as infra/compose.yaml.
#
#   infra/local-stack.sh up        # PostgreSQL, Prefect server (auth on) on it, work pools and their workers, S3, Ray
#   . .stack/client.env            # this shell is now a client of it (PREFECT_API_URL, PREFECT_API_AUTH_STRING, …)
#   prefect deploy --prefect-file deployments/prefect.yaml --all
#   infra/local-stack.sh status    # what runs, where
#   infra/local-stack.sh down      # stop everything (the data in .stack/ stays; `up` again resumes it)
#
# Everything binds to 127.0.0.1. Secrets (the PostgreSQL password, the API auth string) are generated on the first
# `up` into $LMPIPE_STACK_DIR/secrets.env (mode 600) and never leave it; clients read client.env (mode 600).
#
# Settings (environment):
#   LMPIPE_STACK_DIR       where the stack keeps its data, logs, pids and env files   (default: <checkout>/.stack)
#   LMPIPE_STACK_SERVICES  which services to run         (default: "postgres prefect pools worker gpu-worker s3 ray")
#   LMPIPE_PG_PORT / LMPIPE_PREFECT_PORT / LMPIPE_S3_PORT / LMPIPE_RAY_PORT     (default: 5433 / 4200 / 9000 / 6380)
#   LMPIPE_RAY_DASHBOARD_PORT / LMPIPE_RAY_CLIENT_PORT / LMPIPE_RAY_AGENT_PORT  (default: 8266 / 6381 / 52366)
#   LMPIPE_PYTHON          the interpreter with lmpipe installed                     (default: <checkout>/.venv/bin/python)
#   LMPIPE_PG_BIN          PostgreSQL's bin directory    (default: the newest /usr/lib/postgresql/*/bin; Debian's
#                          `apt-get install postgresql`)
# Run as root, PostgreSQL runs as the `postgres` user (initdb refuses root): the stack directory must then be
# reachable by that user (not under a 0700 directory).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${LMPIPE_STACK_DIR:-$REPO/.stack}"
SERVICES="${LMPIPE_STACK_SERVICES:-postgres prefect pools worker gpu-worker s3 ray}"
PG_PORT="${LMPIPE_PG_PORT:-5433}"
PREFECT_PORT="${LMPIPE_PREFECT_PORT:-4200}"
S3_PORT="${LMPIPE_S3_PORT:-9000}"
RAY_PORT="${LMPIPE_RAY_PORT:-6380}"
RAY_DASHBOARD_PORT="${LMPIPE_RAY_DASHBOARD_PORT:-8266}"
RAY_CLIENT_PORT="${LMPIPE_RAY_CLIENT_PORT:-6381}"  # outside Ray's worker port range (10002-19999)
RAY_AGENT_PORT="${LMPIPE_RAY_AGENT_PORT:-52366}"  # the dashboard agent's HTTP port (Ray's default 52365 + 1)
PY="${LMPIPE_PYTHON:-$REPO/.venv/bin/python}"
BIN="$(dirname "$PY")"
PGDATA="$STACK/postgres"

log() { printf '[local-stack] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
has() { [[ " $SERVICES " == *" $1 "* ]]; }

pg_bin() {
  if [[ -n "${LMPIPE_PG_BIN:-}" ]]; then echo "$LMPIPE_PG_BIN"; return; fi
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [[ -n "$d" ]] || die "PostgreSQL not found: apt-get install postgresql (or set LMPIPE_PG_BIN)"
  echo "$d"
}

as_pg() {  # run a PostgreSQL server command as its owner (the postgres user when we are root)
  if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

secrets() {
  mkdir -p "$STACK/run" "$STACK/logs"
  if [[ ! -f "$STACK/secrets.env" ]]; then
    (umask 077; {
      echo "PG_PASSWORD=$(openssl rand -hex 16)"
      echo "PREFECT_AUTH=lmpipe:$(openssl rand -hex 16)"
    } > "$STACK/secrets.env")
  fi
  # shellcheck disable=SC1091
  . "$STACK/secrets.env"
}

write_client_env() {
  (umask 077; {
    echo "export PREFECT_API_URL=http://127.0.0.1:$PREFECT_PORT/api"
    echo "export PREFECT_API_AUTH_STRING=$PREFECT_AUTH"
    if has s3; then
      echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT"
      echo "export AWS_ACCESS_KEY_ID=lmpipe-local"  # moto accepts any key: the stack's S3 is local
      echo "export AWS_SECRET_ACCESS_KEY=lmpipe-local"
    fi
    if has ray; then echo "export RAY_ADDRESS=127.0.0.1:$RAY_PORT"; fi
  } > "$STACK/client.env")
}

running() { [[ -f "$STACK/run/$1.pid" ]] && kill -0 "$(cat "$STACK/run/$1.pid")" 2>/dev/null; }

spawn() {  # spawn NAME CMD...: a background service in its own session, its pid in run/NAME.pid
  local name="$1"; shift
  if running "$name"; then log "$name already running (pid $(cat "$STACK/run/$name.pid"))"; return; fi
  setsid "$@" >>"$STACK/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$STACK/run/$name.pid"
  log "$name started (pid $!, log $STACK/logs/$name.log)"
}

wait_for() {  # wait_for WHAT SECONDS CMD...
  local what="$1" secs="$2"; shift 2
  for _ in $(seq "$((secs * 2))"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  die "$what not ready after ${secs} s (logs in $STACK/logs)"
}

up_postgres() {
  local bin; bin="$(pg_bin)"
  if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
    mkdir -p "$PGDATA"
    local pw="$STACK/run/pgpass.tmp"
    (umask 077; echo "$PG_PASSWORD" > "$pw")
    if [[ "$(id -u)" == 0 ]]; then chown postgres "$PGDATA" "$pw"; fi
    as_pg "$bin/initdb" -D "$PGDATA" -U postgres --auth=scram-sha-256 --pwfile="$pw" >>"$STACK/logs/postgres.log"
    rm -f "$pw"
  fi
  if ! as_pg "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PGDATA" >/dev/null
    log "postgres started on 127.0.0.1:$PG_PORT"
  fi
  export PGPASSWORD="$PG_PASSWORD"
  if ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='prefect'" | grep -q 1
  then
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE prefect"
  fi
}

prefect_env() {
  export PREFECT_HOME="$STACK/prefect-home"
  export PREFECT_API_URL="http://127.0.0.1:$PREFECT_PORT/api"
  export PREFECT_API_AUTH_STRING="$PREFECT_AUTH"
  export PREFECT_SERVER_ANALYTICS_ENABLED=false
}

api_ready() {
  curl -fsS -u "$PREFECT_AUTH" "http://127.0.0.1:$PREFECT_PORT/api/ready"
}

up_prefect() {
  prefect_env
  spawn prefect env \
    PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://postgres:$PG_PASSWORD@127.0.0.1:$PG_PORT/prefect" \
    PREFECT_SERVER_API_AUTH_STRING="$PREFECT_AUTH" \
    PREFECT_SERVER_API_HOST=127.0.0.1 PREFECT_SERVER_API_PORT="$PREFECT_PORT" \
    "$BIN/prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT"
  wait_for "prefect server" 180 api_ready
  log "prefect server ready on http://127.0.0.1:$PREFECT_PORT (UI and API; auth on)"
}

up_pools() {
  prefect_env
  local pool
  for pool in lmpipe-cpu lmpipe-gpu; do
    "$BIN/prefect" work-pool inspect "$pool" >/dev/null 2>&1 ||
      "$BIN/prefect" work-pool create "$pool" --type process >/dev/null
  done
  log "work pools lmpipe-cpu, lmpipe-gpu"
}

up_worker() {
  prefect_env
  spawn worker-cpu env LMPIPE_HOME="$REPO" PREFECT_WORKER_QUERY_SECONDS="${PREFECT_WORKER_QUERY_SECONDS:-5}" \
    "$BIN/prefect" worker start --pool lmpipe-cpu --type process
}

# The training deployment's pool: on a team's GPU node this worker runs there; here it shares the machine (and the
# train flow falls back to the CPU when there is no GPU).
up_gpu_worker() {
  prefect_env
  spawn worker-gpu env LMPIPE_HOME="$REPO" PREFECT_WORKER_QUERY_SECONDS="${PREFECT_WORKER_QUERY_SECONDS:-5}" \
    "$BIN/prefect" worker start --pool lmpipe-gpu --work-queue training --type process
}

up_s3() {
  [[ -x "$BIN/moto_server" ]] || die "moto_server not found in $BIN: pip install 'lmpipe[dev]'"
  spawn s3 "$BIN/moto_server" -H 127.0.0.1 -p "$S3_PORT"
  wait_for "s3 (moto)" 30 curl -fsS "http://127.0.0.1:$S3_PORT/moto-api/"
}

# `ray start --block` stays in the foreground and takes its processes down when it is stopped: `down` stops this
# stack's Ray head only (a plain `ray stop` would stop every Ray instance on the machine).
up_ray() {
  [[ -x "$BIN/ray" ]] || die "ray not found in $BIN: pip install 'lmpipe[ray]'"
  spawn ray env RAY_USAGE_STATS_ENABLED=0 "$BIN/ray" start --head --block --node-ip-address 127.0.0.1 \
    --port "$RAY_PORT" --dashboard-host 127.0.0.1 --dashboard-port "$RAY_DASHBOARD_PORT" \
    --ray-client-server-port "$RAY_CLIENT_PORT" --dashboard-agent-listen-port "$RAY_AGENT_PORT" --disable-usage-stats
  wait_for "ray" 90 "$BIN/ray" status --address "127.0.0.1:$RAY_PORT"
  log "ray head on 127.0.0.1:$RAY_PORT (client ray://127.0.0.1:$RAY_CLIENT_PORT)"
}

stop_pid() {
  local name="$1" pid
  [[ -f "$STACK/run/$name.pid" ]] || return 0
  pid="$(cat "$STACK/run/$name.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    log "$name stopped"
  fi
  rm -f "$STACK/run/$name.pid"
}

down() {
  stop_pid worker-gpu
  stop_pid worker-cpu
  stop_pid prefect
  stop_pid s3
  stop_pid ray
  if [[ -f "$PGDATA/PG_VERSION" ]]; then
    local bin; bin="$(pg_bin)"
    if as_pg "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
      as_pg "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
      log "postgres stopped"
    fi
  fi
}

status() {
  local name
  for name in prefect worker-cpu worker-gpu s3 ray; do
    if running "$name"; then echo "$name: running (pid $(cat "$STACK/run/$name.pid"))"; else echo "$name: stopped"; fi
  done
  if [[ -f "$PGDATA/PG_VERSION" ]] && as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    echo "postgres: running (127.0.0.1:$PG_PORT)"
  else
    echo "postgres: stopped"
  fi
}

case "${1:-}" in
  up)
    [[ -x "$PY" ]] || die "no interpreter at $PY: run make install (or set LMPIPE_PYTHON)"
    secrets
    has postgres && up_postgres
    has prefect && up_prefect
    has pools && up_pools
    has worker && up_worker
    has gpu-worker && up_gpu_worker
    has s3 && up_s3
    has ray && up_ray
    write_client_env
    log "up. Clients: . $STACK/client.env"
    ;;
  down) secrets; down ;;
  status) secrets; status ;;
  env) cat "$STACK/client.env" ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
