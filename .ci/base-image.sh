#!/usr/bin/env bash
# Build mlmagics/test-base:bookworm, the local stand-in for python:3.11-slim
# (Docker Hub is unreachable from CI). Debian bookworm minbase + python3,
# venv, pip, ca-certificates and tini, imported straight into dockerd.
# Rebuilt only when this script changes (label org.mlmagics.base-recipe);
# FORCE=1 rebuilds anyway (e.g. after the host's pip/apt config changed).
set -euo pipefail

IMAGE=mlmagics/test-base:bookworm
SUITE=bookworm
LABEL=org.mlmagics.base-recipe
# Persistent .deb cache: a recipe edit should not re-download ~50 MB.
DEB_CACHE=/var/cache/mlmagics-debootstrap
WORK_PREFIX=/var/tmp/mlmagics-base.
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

step() { echo "[base-image] $*"; }
die() { echo "[base-image] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot)"
for tool in debootstrap docker tar sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found; run .ci/services.sh first"
done
docker info >/dev/null 2>&1 || die "docker daemon not reachable; run .ci/services.sh first"
# Host python only parses pip's INI files; prefer Debian's over pyenv shims.
PY=$(command -v /usr/bin/python3 || command -v python3) || die "python3 needed on the host to read pip config"

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
RECIPE=$(sha256sum "$SCRIPT_PATH" | cut -c1-16)

verify() {
  # Fast checks that the image can do what Docker tests need: TLS + venv, and
  # a real pip install through whatever index this machine uses.
  step "verify: python3 ssl/venv import"
  docker run --rm --network host "$IMAGE" python3 -c "import ssl,venv; print('ok')" >/dev/null \
    || die "$IMAGE cannot import ssl/venv"
  step "verify: pip install inside a venv (needs the package index)"
  docker run --rm --network host "$IMAGE" sh -c \
    "python3 -m venv /tmp/v && /tmp/v/bin/pip install -q --no-cache-dir six && /tmp/v/bin/python -c 'import six'" \
    || die "pip inside $IMAGE could not install 'six': check /etc/pip.conf in the image and the CA bundle (the host's pip config is copied at build time; FORCE=1 $0 rebuilds)"
  step "verify: ok"
}

# --- cache check -------------------------------------------------------------
current=$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null || true)
if [ "${FORCE:-0}" != 1 ] && [ "$current" = "$RECIPE" ]; then
  step "cached: $IMAGE (recipe $RECIPE)"
  verify
  exit 0
fi
step "building $IMAGE (recipe $RECIPE; image has '${current:-none}')"
start=$SECONDS

# --- host mirror (read at run time, never hard-coded) ------------------------
# First URI serving suite "$SUITE" from deb822 *.sources, else one-line *.list.
find_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
      {
        types = suites = uris = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^[ \t]*#/ || !match($i, /^[A-Za-z-]+:/)) continue
          k = tolower(substr($i, 1, RLENGTH - 1)); v = substr($i, RLENGTH + 1)
          if (k == "types") types = v; else if (k == "suites") suites = v
          else if (k == "uris") uris = v; else if (k == "enabled") enabled = tolower(v)
        }
        if (enabled ~ /no/) next
        if ((" " types " ") ~ /[ \t]deb[ \t]/ && (" " suites " ") ~ ("[ \t]" suite "[ \t]")) {
          split(uris, u, " "); print u[1]; exit
        }
      }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }'
  done
}
MIRROR=$(find_mirror | head -n1)
[ -n "$MIRROR" ] || die "no 'deb ... $SUITE' entry in /etc/apt/sources.list{,.d/} to take the Debian mirror from"
step "mirror: taken from host apt sources"

# --- scratch dir, cleaned on any exit ----------------------------------------
cleanup_dir() {
  local d=$1 m
  # Never rm -rf through a live mount (ours or one debootstrap left behind).
  for m in $(awk -v d="$d/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" || return 0
  done
  rm -rf "$d"
}
for stale in "$WORK_PREFIX"*; do  # leftovers of a killed run
  [ -d "$stale" ] && cleanup_dir "$stale"
done
WORK=$(mktemp -d "${WORK_PREFIX}XXXXXX")
ROOT=$WORK/root
trap 'cleanup_dir "$WORK"' EXIT
mkdir -p "$ROOT/etc/dpkg/dpkg.cfg.d" "$DEB_CACHE"
# No fsync per file while dpkg unpacks: the root is throw-away until imported,
# and this is most of debootstrap's time. Kept in the image, as in Debian's.
echo force-unsafe-io >"$ROOT/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"

# --- debootstrap -------------------------------------------------------------
step "debootstrap: $SUITE minbase (log: $WORK/debootstrap.log while running)"
if ! debootstrap --variant=minbase --cache-dir="$DEB_CACHE" \
      --include=python3,python3-venv,python3-pip,ca-certificates,tini \
      "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
  tail -n 30 "$WORK/debootstrap.log" >&2
  [ -f "$ROOT/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOT/debootstrap/debootstrap.log" >&2
  die "debootstrap failed (output above)"
fi
step "debootstrap: done ($((SECONDS - start)) s)"

# --- trust the same CAs as the host ------------------------------------------
# This machine reaches package indexes through a TLS endpoint signed by local
# CAs; pip/apt in the image must trust them. Local CA files go in too so that a
# later update-ca-certificates in a derived image keeps them.
step "certs: copying host CA bundle and local CAs"
if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
  cp -a /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
  # (rehash warns about the bundle file itself; only failure matters)
  chroot "$ROOT" update-ca-certificates >"$WORK/ca.log" 2>&1 \
    || { cat "$WORK/ca.log" >&2; die "update-ca-certificates failed in the new root"; }
fi
cp "$HOST_CA_BUNDLE" "$ROOT/etc/ssl/certs/ca-certificates.crt"

# --- pip configuration -------------------------------------------------------
# Host pip may point at a specific index URL; carry that over, but drop entries
# that name host-only files (file:// indexes, find-links dirs, constraints),
# which would make pip inside the image fail.
step "pip: writing /etc/pip.conf from host pip config and PIP_* index variables"
PIP_FILES=("${PIP_CONFIG_FILE:-}" /etc/xdg/pip/pip.conf /etc/pip.conf "$HOME/.pip/pip.conf" "$HOME/.config/pip/pip.conf")
"$PY" - "$ROOT/etc/pip.conf" "${PIP_FILES[@]}" <<'PYEOF'
import configparser, os, re, sys

out_path, files = sys.argv[1], [f for f in sys.argv[2:] if f and os.path.isfile(f)]
norm = lambda k: re.sub(r"^-+", "", k.lower().replace("_", "-"))
merged = {}  # section -> {key: value}; later files win, like pip itself
for f in files:
    cp = configparser.RawConfigParser()
    cp.read(f)
    for sec in cp.sections():
        for k, v in cp.items(sec):
            merged.setdefault(sec, {})[norm(k)] = (v, f)
env_keys = {"PIP_INDEX_URL": "index-url", "PIP_EXTRA_INDEX_URL": "extra-index-url",
            "PIP_TRUSTED_HOST": "trusted-host", "PIP_DEFAULT_TIMEOUT": "timeout",
            "PIP_TIMEOUT": "timeout", "PIP_RETRIES": "retries"}
for var, key in env_keys.items():
    if os.environ.get(var):
        merged.setdefault("global", {})[key] = (os.environ[var], "$" + var)

url_keys = {"index-url", "extra-index-url", "find-links"}
# Keys whose values are host paths or host-specific behaviour.
drop_keys = {"cert", "client-cert", "constraint", "constraints", "requirement", "requirements",
             "editable", "cache-dir", "log", "log-file", "target", "prefix", "root", "src",
             "build", "build-dir", "wheel-dir", "dest", "report", "python", "user"}
out = configparser.RawConfigParser()
for sec, items in merged.items():
    for k, (v, src) in items.items():
        if k == "cert":
            continue  # replaced below by the image's copy of the host bundle
        if k in drop_keys:
            print(f"[base-image]   pip: not copying {sec}.{k} from {src} (host path)")
            continue
        if k in url_keys:
            keep = [t for t in v.split() if re.match(r"https?://", t)]
            for t in v.split():
                if t not in keep:
                    print(f"[base-image]   pip: not copying {sec}.{k} entry {t} from {src} (not an http(s) URL)")
            if not keep:
                continue
            v = " ".join(keep)
        if not out.has_section(sec):
            out.add_section(sec)
        out.set(sec, k, v)
if not out.has_section("global"):
    out.add_section("global")
# The image's bundle is the host's bundle (copied above).
out.set("global", "cert", "/etc/ssl/certs/ca-certificates.crt")
with open(out_path, "w") as fh:
    fh.write("# Generated by mlmagics .ci/base-image.sh from the build host's pip config\n")
    out.write(fh)
PYEOF

# --- apt configuration -------------------------------------------------------
# Copy the host's Debian sources so `apt-get` in `docker build --network host`
# uses the same mirror. Entries whose Signed-By keyring the image lacks
# (third-party repos) would break apt-get update, so they are skipped.
step "apt: copying host sources and network settings"
rm -f "$ROOT/etc/apt/sources.list"
keyrings_present() {
  local k
  for k in $(sed -n -e 's/^[[:space:]]*Signed-By:[[:space:]]*//p' -e 's/.*signed-by=\([^] ]*\).*/\1/p' "$1"); do
    [ -e "$ROOT$k" ] || return 1
  done
}
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  if keyrings_present "$f"; then
    cp "$f" "$ROOT$f"
  else
    step "apt: skipping $f (its keyring is not in the image)"
  fi
done
# Local (not package-owned) Acquire:: settings such as proxies or
# Check-Valid-Until for snapshot mirrors are part of "how to reach the mirror".
for f in /etc/apt/apt.conf.d/*; do
  [ -f "$f" ] || continue
  grep -q 'Acquire::' "$f" || continue
  dpkg -S "$f" >/dev/null 2>&1 && continue
  cp "$f" "$ROOT$f"
done
# Same space savers as Debian's official images: no apt caches or
# translations in layers, no docs/man/locales from later installs.
cat >"$ROOT/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
cat >"$ROOT/etc/apt/apt.conf.d/docker-no-languages" <<'EOF'
Acquire::Languages "none";
EOF
cat >"$ROOT/etc/apt/apt.conf.d/docker-gzip-indexes" <<'EOF'
Acquire::GzipIndexes "true";
EOF
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF

# --- security updates, which also proves the copied apt sources work ---------
step "apt: update + upgrade inside the root (security suite)"
mount -t proc proc "$ROOT/proc"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
if ! chroot "$ROOT" sh -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get upgrade -y -qq' >"$WORK/apt.log" 2>&1; then
  tail -n 30 "$WORK/apt.log" >&2
  die "apt-get inside the new root failed with the host's sources (output above)"
fi
chroot "$ROOT" apt-get clean
umount "$ROOT/proc"

# --- trim --------------------------------------------------------------------
step "trim: apt lists, caches, docs, man pages, locales, logs"
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/var/cache/debconf/*-old \
       "$ROOT"/var/lib/dpkg/*-old "$ROOT"/var/log/* "$ROOT"/tmp/* "$ROOT"/var/tmp/* \
       "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/usr/share/lintian/* \
       "$ROOT"/usr/share/locale/* "$ROOT"/debootstrap
find "$ROOT/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete
# Docker provides these at run time; don't leak the build host's.
rm -rf "$ROOT"/dev/* "$ROOT"/proc/* "$ROOT"/sys/* "$ROOT"/run/*
rm -f "$ROOT/etc/resolv.conf" "$ROOT/etc/hostname"
: >"$ROOT/etc/machine-id"

# --- import ------------------------------------------------------------------
step "import: tar | docker import"
old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
tar -C "$ROOT" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --change "LABEL $LABEL=$RECIPE" \
  - "$IMAGE" >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
# /var/lib/docker persists between runs: don't pile up superseded bases
# (kept if something still uses it; docker refuses then, which is fine).
if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]; then
  docker rmi "$old_id" >/dev/null 2>&1 && step "import: removed previous base image ${old_id#sha256:}" || true
fi
step "built $IMAGE in $((SECONDS - start)) s, size $((size / 1000000)) MB"

verify
