#!/usr/bin/env bash
# Bring up what the mlmagics test suite needs: host packages, a Docker daemon
# and a local v2 registry on 127.0.0.1:5000. Safe to run repeatedly: every
# step checks first and only acts when something is missing.
set -euo pipefail

DOCKERD_LOG=/tmp/mlmagics-dockerd.log
REGISTRY_LOG=/tmp/mlmagics-registry.log
REGISTRY_CONFIG=/tmp/mlmagics-registry.yml
REGISTRY_ADDR=127.0.0.1:5000
REGISTRY_ROOT=/var/lib/mlmagics-registry

# curl is used below for the registry health check, so it is part of the set.
PACKAGES=(docker.io docker-registry debootstrap chromium wrk curl)

step() { echo "[services] $*"; }
die() { echo "[services] ERROR: $*" >&2; exit 1; }
# Lines a daemon wrote since this script last started it (logs are appended).
log_tail() { awk '/^=== started by/ {n=0; delete l} {l[n++]=$0} END {s=(n>20?n-20:0); for(i=s;i<n;i++) print l[i]}' "$1" 2>/dev/null; }

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

if docker info >/dev/null 2>&1; then
  step "dockerd: already running"
else
  if pgrep -x dockerd >/dev/null; then
    step "dockerd: process exists but is not answering yet, waiting for it"
  else
    clear_stale_pidfile /run/docker.pid dockerd
    clear_stale_pidfile /run/docker/containerd/containerd.pid containerd
    step "dockerd: starting (log: $DOCKERD_LOG)"
    echo "=== started by .ci/services.sh at $(date -u +%FT%TZ)" >>"$DOCKERD_LOG"
    # setsid: own session, so the daemon outlives this script and its CI step;
    # -w keeps $! alive exactly as long as the daemon, so a crash fails fast.
    setsid -w dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    dockerd_pid=$!
  fi
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    if [ -n "${dockerd_pid:-}" ] && ! kill -0 "$dockerd_pid" 2>/dev/null; then
      die "dockerd exited during startup; last log lines:
$(log_tail "$DOCKERD_LOG")"
    fi
    sleep 1
  done
  docker info >/dev/null 2>&1 \
    || die "dockerd did not answer within 60 s; last log lines:
$(log_tail "$DOCKERD_LOG")"
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
    echo "=== started by .ci/services.sh at $(date -u +%FT%TZ)" >>"$REGISTRY_LOG"
    setsid -w /usr/bin/docker-registry serve "$REGISTRY_CONFIG" >>"$REGISTRY_LOG" 2>&1 </dev/null &
    registry_pid=$!
  fi
  for _ in $(seq 30); do
    registry_up && break
    if [ -n "${registry_pid:-}" ] && ! kill -0 "$registry_pid" 2>/dev/null; then
      die "registry exited during startup (port 5000 taken?); last log lines:
$(log_tail "$REGISTRY_LOG")"
    fi
    sleep 1
  done
  registry_up || die "registry did not answer on http://$REGISTRY_ADDR/v2/ within 30 s; last log lines:
$(log_tail "$REGISTRY_LOG")"
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

step "ready. logs: dockerd -> $DOCKERD_LOG (only if started here), registry -> $REGISTRY_LOG, registry config -> $REGISTRY_CONFIG"
