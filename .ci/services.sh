#!/usr/bin/env bash
# Bring up what the mlmagics test suite needs: host packages, a Docker daemon,
# a local v2 registry on 127.0.0.1:5000, and the team workspace's stores:
# PostgreSQL on 127.0.0.1:55432, an S3 endpoint (moto) on 127.0.0.1:5005 and
# Azure Blob (Azurite) on 127.0.0.1:10000 (tests/stores.py uses them). Safe to
# run repeatedly: every step checks first and only acts when something is missing.
set -euo pipefail

DOCKERD_LOG=/tmp/mlmagics-dockerd.log
REGISTRY_LOG=/tmp/mlmagics-registry.log
REGISTRY_CONFIG=/tmp/mlmagics-registry.yml
REGISTRY_ADDR=127.0.0.1:5000
REGISTRY_ROOT=/var/lib/mlmagics-registry

# The team workspace's stores: throwaway servers of our own, on 127.0.0.1 only,
# with their state under SERVICES_ROOT. Nothing here needs the project's .venv
# (it is installed after this script runs).
SERVICES_ROOT=/var/lib/mlmagics-services
PG_ADDR=127.0.0.1
PG_PORT=55432
PG_DATA=$SERVICES_ROOT/postgres
PG_SOCKET_DIR=$SERVICES_ROOT/postgres-socket
PG_LOG=/tmp/mlmagics-postgres.log
PG_ROLE=mlmagics
PG_MACHINES=10.231.0.0/16
PG_DB=mlmagics
# A test-only password for a throwaway cluster that listens on 127.0.0.1 alone;
# tests/stores.py uses the same one. Not a secret.
PG_PASSWORD=mlmagics-test
MOTO_ADDR=127.0.0.1:5005
MOTO_VENV=$SERVICES_ROOT/moto-venv
MOTO_LOG=/tmp/mlmagics-moto.log
MOTO_REQUIREMENT='moto[server]==5.2.5'
AZURITE_HOST=127.0.0.1
AZURITE_PORT=10000
AZURITE_DIR=$SERVICES_ROOT/azurite
AZURITE_DATA=$SERVICES_ROOT/azurite-data
AZURITE_LOG=/tmp/mlmagics-azurite.log
# Pinned: 3.36 and later want Node.js 21+, and this project's machines have Node.js 20.
AZURITE_VERSION=3.35.0

# curl is used below for the registry health check, so it is part of the set.
# postgresql: the workspace's metadata server (its client tools: pg_isready, psql);
# python3-venv: the venv moto's S3 server runs from (Debian's python3, not .venv).
PACKAGES=(docker.io docker-registry debootstrap chromium wrk curl postgresql python3-venv)

step() { echo "[services] $*"; }
die() { echo "[services] ERROR: $*" >&2; exit 1; }
# Lines a daemon wrote since this script last started it (logs are appended).
log_tail() { awk '/^=== started by/ {n=0; delete l} {l[n++]=$0} END {s=(n>20?n-20:0); for(i=s;i<n;i++) print l[i]}' "$1" 2>/dev/null; }

# Every daemon below is started and awaited the same way.
# start_daemon: in a session of its own (setsid), so the daemon outlives this script and its CI
# step, its output appended to <log> after a marker line. -w keeps $daemon_pid alive exactly as
# long as the daemon, so wait_up notices a crash at once.
daemon_pid=
start_daemon() { # <log> <command> [<argument>...]
  local log=$1
  shift
  echo "=== started by .ci/services.sh at $(date -u +%FT%TZ)" >>"$log"
  setsid -w "$@" >>"$log" 2>&1 </dev/null &
  daemon_pid=$!
}
# wait_up: wait at most about <seconds> for <check> to pass (each check has a timeout of its own);
# die with the last lines of <log> if it does not, or if the daemon start_daemon started (none
# when the step found one already running) exits first. Then forget that daemon.
wait_up() { # <name> <check> <seconds> <log> [<address it answers on>]
  local name=$1 check=$2 seconds=$3 log=$4 addr=${5:-}
  for _ in $(seq "$seconds"); do
    "$check" && break
    if [ -n "$daemon_pid" ] && ! kill -0 "$daemon_pid" 2>/dev/null; then
      die "$name exited during startup${addr:+ (is $addr taken?)}; last log lines:
$(log_tail "$log")"
    fi
    sleep 1
  done
  "$check" || die "$name did not answer${addr:+ on $addr} within $seconds s; last log lines:
$(log_tail "$log")"
  daemon_pid=
}

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, starts dockerd)"

# --- (a) packages ------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  step "packages: all present (${PACKAGES[*]})"
else
  # Only refresh indexes when we really have to install: update is the slow part.
  step "packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  # Recommends on purpose: chromium needs fonts-liberation, docker.io wants
  # cgroupfs-mount/xz-utils/git -- the same set this host was provisioned with.
  apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi

# --- (b) Docker daemon -------------------------------------------------------
# /run is on disk on this machine, so pid files survive a reboot. dockerd
# refuses to start if its pid file names a live process, and after a reboot
# that pid may belong to something else: drop pid files that do not point at
# the program they are for.
clear_stale_pidfile() { # <pidfile> <expected comm>
  local f=$1 want=$2 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null || true)
  if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" != "$want" ]; then
    rm -f "$f"
  fi
}

# docker info has no timeout of its own: a daemon that accepts but never answers would hang it.
docker_up() { timeout 10 docker info >/dev/null 2>&1; }

if docker_up; then
  step "dockerd: already running"
else
  if pgrep -x dockerd >/dev/null; then
    step "dockerd: process exists but is not answering yet, waiting for it"
  else
    clear_stale_pidfile /run/docker.pid dockerd
    clear_stale_pidfile /run/docker/containerd/containerd.pid containerd
    step "dockerd: starting (log: $DOCKERD_LOG)"
    start_daemon "$DOCKERD_LOG" dockerd
  fi
  wait_up dockerd docker_up 60 "$DOCKERD_LOG"
  step "dockerd: up"
fi

# --- (b2) a fixed MAC address for docker0 -----------------------------------------
# A Linux bridge whose address nobody set takes the lowest MAC of its ports, so docker0's
# address changes whenever a container with a lower one starts or stops. Containers that still
# send to the old address (their ARP entry for the gateway, which docker-proxy connects from) lose
# packets for seconds: open connections to a published port stall (seen as 10 s read timeouts in
# the Docker update test). Once the address is set, the kernel keeps it.
if [ -e /sys/class/net/docker0/addr_assign_type ] && [ "$(cat /sys/class/net/docker0/addr_assign_type)" != 3 ]; then
  ip link set docker0 address 02:42:ac:11:00:01 || die "could not set docker0's MAC address"
  step "docker0: MAC address fixed at 02:42:ac:11:00:01 (it no longer follows the containers)"
fi

# --- (c) local registry ------------------------------------------------------
registry_up() { curl -fs -o /dev/null --max-time 2 "http://$REGISTRY_ADDR/v2/"; }

if registry_up; then
  step "registry: already answering on http://$REGISTRY_ADDR/v2/"
else
  mkdir -p "$REGISTRY_ROOT"
  # Our own config: Debian's default one enables htpasswd auth and listens on
  # all interfaces; tests want an open registry reachable only locally.
  cat >"$REGISTRY_CONFIG" <<EOF
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $REGISTRY_ROOT
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
  headers:
    X-Content-Type-Options: [nosniff]
EOF
  if pgrep -f "docker-registry serve $REGISTRY_CONFIG" >/dev/null; then
    step "registry: process exists but is not answering yet, waiting for it"
  else
    step "registry: starting on $REGISTRY_ADDR (storage: $REGISTRY_ROOT)"
    start_daemon "$REGISTRY_LOG" /usr/bin/docker-registry serve "$REGISTRY_CONFIG"
  fi
  wait_up registry registry_up 30 "$REGISTRY_LOG" "$REGISTRY_ADDR"
  step "registry: up"
fi

# --- (d) pushing to the plain-HTTP registry ----------------------------------
# dockerd treats 127.0.0.0/8 as an insecure (HTTP) registry by default, so no
# daemon.json change is needed; just confirm nobody configured that away.
cidrs=$(docker info --format '{{range .RegistryConfig.InsecureRegistryCIDRs}}{{.}} {{end}}')
case " $cidrs " in
  *" 127.0.0.0/8 "*) step "registry: dockerd allows HTTP pushes to 127.0.0.0/8 (insecure CIDRs: ${cidrs% })" ;;
  *) die "dockerd does not list 127.0.0.0/8 as insecure (got: '$cidrs'); pushes to $REGISTRY_ADDR would fail — add it to insecure-registries in /etc/docker/daemon.json and restart dockerd" ;;
esac


# --- (e) PostgreSQL on 127.0.0.1:55432 ---------------------------------------
# A cluster of our own in $PG_DATA (Debian's "main" cluster, if any, is left
# alone), run in the foreground by setsid like the daemons above. TCP takes
# passwords only (scram-sha-256); the Unix socket in $PG_SOCKET_DIR lets the
# postgres user in by peer authentication to set up the role and database.
pg_up() { pg_isready -q -h "$PG_ADDR" -p "$PG_PORT" -t 2 >/dev/null 2>&1; }
# The contract tests/stores.py relies on: the role logs in over TCP with its
# password, may create databases, and owns its database.
pg_ready_for_tests() {
  local ok
  ok=$(PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=2 psql -X -qAt \
    "host=$PG_ADDR port=$PG_PORT user=$PG_ROLE dbname=$PG_DB sslmode=disable" \
    -c "select r.rolcreatedb and pg_get_userbyid(d.datdba) = current_user
        from pg_roles r, pg_database d
        where r.rolname = current_user and d.datname = current_database()" 2>/dev/null || true)
  [ "$ok" = t ]
}
# The postmaster its pid file names is alive. After a reboot that pid may be
# anybody's; a postgres process always works inside its data directory.
pg_postmaster_alive() {
  local pid
  pid=$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)
  [ -n "$pid" ] && [ "$(readlink -f "/proc/$pid/cwd" 2>/dev/null || true)" = "$PG_DATA" ]
}

# Who may log in how: ours, written on every start. The server listens on 127.0.0.1 alone; the
# second host line is for the multi-machine test (tests/notebooks/test_team_workspace.py), whose
# "machines" are network namespaces on a bridge of 10.231.0.0/16 addresses: their connections reach
# this server through the bridge (the test forwards its address to 127.0.0.1) from their own address.
PG_HBA="# Written by .ci/services.sh. TYPE DATABASE USER ADDRESS METHOD
local all postgres            peer
local all all                 scram-sha-256
host  all all  127.0.0.1/32   scram-sha-256
host  all all  $PG_MACHINES   scram-sha-256"
write_pg_hba() {
  printf '%s\n' "$PG_HBA" >"$PG_DATA/pg_hba.conf"
  chown postgres:postgres "$PG_DATA/pg_hba.conf"
}

if pg_up && pg_ready_for_tests; then
  step "postgres: already answering on $PG_ADDR:$PG_PORT (role $PG_ROLE, database $PG_DB)"
else
  # The server binaries of the cluster's own major version; for a new cluster, the newest installed.
  if [ -f "$PG_DATA/PG_VERSION" ]; then
    pg_version=$(cat "$PG_DATA/PG_VERSION")
  else
    pg_version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1)
  fi
  PG_BIN=/usr/lib/postgresql/$pg_version/bin
  [ -x "$PG_BIN/postgres" ] || die "postgres: no server binaries in $PG_BIN (is Debian's postgresql package installed?)"
  if ! pg_up; then
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
      step "postgres: creating a cluster (PostgreSQL $pg_version) in $PG_DATA"
      rm -rf "$PG_DATA"
      install -d -o postgres -g postgres -m 0700 "$PG_DATA"
      echo "=== started by .ci/services.sh at $(date -u +%FT%TZ): initdb" >>"$PG_LOG"
      (cd / && runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256) >>"$PG_LOG" 2>&1 \
        || die "postgres: initdb failed; last log lines:
$(log_tail "$PG_LOG")"
    fi
    write_pg_hba
    install -d -o postgres -g postgres -m 0755 "$PG_SOCKET_DIR"
    if pg_postmaster_alive; then
      step "postgres: process exists but is not answering yet, waiting for it"
    else
      # postgres refuses to start while its pid files name a live process, whoever's it is.
      rm -f "$PG_DATA/postmaster.pid" "$PG_SOCKET_DIR/.s.PGSQL.$PG_PORT.lock"
      step "postgres: starting on $PG_ADDR:$PG_PORT (data: $PG_DATA, socket: $PG_SOCKET_DIR)"
      # Settings on the command line, so they hold whatever the cluster's files say. A throwaway
      # cluster for tests: no fsync (a crash may lose it; the tests create what they need anyway).
      start_daemon "$PG_LOG" runuser -u postgres -- "$PG_BIN/postgres" -D "$PG_DATA" \
        -c listen_addresses="$PG_ADDR" -c port="$PG_PORT" -c unix_socket_directories="$PG_SOCKET_DIR" \
        -c password_encryption=scram-sha-256 -c fsync=off -c synchronous_commit=off -c full_page_writes=off
    fi
    wait_up postgres pg_up 60 "$PG_LOG" "$PG_ADDR:$PG_PORT"
  fi
  if ! pg_ready_for_tests; then
    step "postgres: setting up role $PG_ROLE (CREATEDB) and database $PG_DB"
    if ! (cd / && runuser -u postgres -- "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" -d postgres) \
      >>"$PG_LOG" 2>&1 <<EOF
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN CREATE ROLE $PG_ROLE; END IF;
END \$\$;
-- The server logs a failing statement's text, and die shows this log: keep the password out of it.
SET log_min_error_statement = panic;
ALTER ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_ROLE' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')\gexec
ALTER DATABASE $PG_DB OWNER TO $PG_ROLE;
EOF
    then
      die "postgres: could not set up role $PG_ROLE and database $PG_DB through $PG_SOCKET_DIR (is $PG_ADDR:$PG_PORT someone else's server?); last log lines:
$(log_tail "$PG_LOG")"
    fi
    pg_ready_for_tests || die "postgres: $PG_ROLE still cannot log in to $PG_DB over TCP with its password; last log lines:
$(log_tail "$PG_LOG")"
  fi
  step "postgres: up"
fi
# A cluster this script started earlier may have older rules (before the machines' line): write ours if they
# differ, and reload every time (cheap; a reload that failed on an earlier run is made up for).
if pg_postmaster_alive; then
  if [ "$(cat "$PG_DATA/pg_hba.conf" 2>/dev/null)" != "$PG_HBA" ]; then
    step "postgres: updating pg_hba.conf"
    write_pg_hba
  fi
  (cd / && runuser -u postgres -- psql -X -qAt -h "$PG_SOCKET_DIR" -p "$PG_PORT" -d postgres -c 'select pg_reload_conf()') \
    >>"$PG_LOG" 2>&1 \
    || die "postgres: could not reload its configuration through $PG_SOCKET_DIR; last log lines:
$(log_tail "$PG_LOG")"
fi

# --- (f) an S3 endpoint: moto's server on 127.0.0.1:5005 --------------------------
# From a venv of its own on Debian's python3 (/usr/bin/python3: whatever else
# "python3" is on PATH), so it does not depend on the project's .venv.
moto_up() {
  case "$(curl -fs --max-time 2 "http://$MOTO_ADDR/" 2>/dev/null || true)" in
    *ListAllMyBucketsResult*) return 0 ;;
    *) return 1 ;;
  esac
}

if moto_up; then
  step "moto: already answering on http://$MOTO_ADDR/"
else
  if ! "$MOTO_VENV/bin/python" - "$MOTO_REQUIREMENT" 2>/dev/null <<'EOF'
import sys, importlib.metadata as md
import moto.server  # noqa: F401  (the server's own dependencies import)
want = sys.argv[1].split("==")[1]
sys.exit(md.version("moto") != want)
EOF
  then
    step "moto: installing $MOTO_REQUIREMENT into $MOTO_VENV"
    echo "=== started by .ci/services.sh at $(date -u +%FT%TZ): install" >>"$MOTO_LOG"
    { /usr/bin/python3 -m venv --clear "$MOTO_VENV" \
        && "$MOTO_VENV/bin/pip" install -q "$MOTO_REQUIREMENT"; } >>"$MOTO_LOG" 2>&1 \
      || die "moto: could not install $MOTO_REQUIREMENT into $MOTO_VENV (needs Debian's python3-venv); last log lines:
$(log_tail "$MOTO_LOG")"
  fi
  if pgrep -f "$MOTO_VENV/bin/moto_server" >/dev/null; then
    step "moto: process exists but is not answering yet, waiting for it"
  else
    step "moto: starting on $MOTO_ADDR"
    start_daemon "$MOTO_LOG" "$MOTO_VENV/bin/moto_server" -H "${MOTO_ADDR%:*}" -p "${MOTO_ADDR#*:}"
  fi
  wait_up moto moto_up 30 "$MOTO_LOG" "$MOTO_ADDR"
  step "moto: up"
fi

# --- (g) Azure Blob: Azurite on 127.0.0.1:10000 -------------------------------
# The blob service alone, from npm into $AZURITE_DIR, its data in $AZURITE_DATA.
azurite_up() {
  case "$(curl -s -o /dev/null -D - --max-time 2 "http://$AZURITE_HOST:$AZURITE_PORT/" 2>/dev/null || true)" in
    *[Ss]erver:\ Azurite-Blob*) return 0 ;;
    *) return 1 ;;
  esac
}
azurite_installed() {
  [ -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ] && command -v node >/dev/null \
    && [ "$(node -p 'require(process.argv[1]).version' "$AZURITE_DIR/node_modules/azurite/package.json" 2>/dev/null || true)" = "$AZURITE_VERSION" ]
}

if azurite_up; then
  step "azurite: already answering on http://$AZURITE_HOST:$AZURITE_PORT/"
else
  if ! azurite_installed; then
    { command -v npm && command -v node; } >/dev/null \
      || die "azurite: npm (and node) not found on PATH; Azurite comes from the npm registry and runs on Node.js -- install Node.js with npm (20 or later) and run this again"
    step "azurite: installing azurite@$AZURITE_VERSION into $AZURITE_DIR"
    mkdir -p "$AZURITE_DIR"
    echo "=== started by .ci/services.sh at $(date -u +%FT%TZ): install" >>"$AZURITE_LOG"
    npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --omit=dev "azurite@$AZURITE_VERSION" >>"$AZURITE_LOG" 2>&1 </dev/null \
      || die "azurite: npm install azurite@$AZURITE_VERSION failed; last log lines:
$(log_tail "$AZURITE_LOG")"
    azurite_installed || die "azurite: installed, but $AZURITE_DIR/node_modules/.bin/azurite-blob is not azurite $AZURITE_VERSION"
  fi
  if pgrep -f "$AZURITE_DIR/node_modules/.bin/azurite-blob" >/dev/null; then
    step "azurite: process exists but is not answering yet, waiting for it"
  else
    mkdir -p "$AZURITE_DATA"
    step "azurite: starting the blob service on $AZURITE_HOST:$AZURITE_PORT (data: $AZURITE_DATA)"
    # --loose: accept headers Azurite does not know; --skipApiVersionCheck: SDKs newer than this Azurite.
    start_daemon "$AZURITE_LOG" "$AZURITE_DIR/node_modules/.bin/azurite-blob" --blobHost "$AZURITE_HOST" --blobPort "$AZURITE_PORT" \
      --location "$AZURITE_DATA" --silent --skipApiVersionCheck --loose --disableTelemetry
  fi
  wait_up azurite azurite_up 30 "$AZURITE_LOG" "$AZURITE_HOST:$AZURITE_PORT"
  step "azurite: up"
fi

step "ready: docker (dockerd), registry http://$REGISTRY_ADDR, postgres $PG_ADDR:$PG_PORT (role $PG_ROLE, database $PG_DB), s3 (moto) http://$MOTO_ADDR, azure blob (azurite) http://$AZURITE_HOST:$AZURITE_PORT/devstoreaccount1"
step "logs: dockerd -> $DOCKERD_LOG (only if started here), registry -> $REGISTRY_LOG (config: $REGISTRY_CONFIG), postgres -> $PG_LOG, moto -> $MOTO_LOG, azurite -> $AZURITE_LOG"
