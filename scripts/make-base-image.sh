#!/usr/bin/env bash
# Build the local base image aggregator-base:bookworm (Debian bookworm + python3 + venv) when it
# is absent, for machines that cannot pull python:3.12-slim from a registry.
#
# Why: the Dockerfile takes BASE_IMAGE; where no image registry is reachable, a base is made here
# with debootstrap from the Debian mirror apt is already configured with, then `docker import`ed.
# The base also trusts the CA certificates this host trusts (/usr/local/share/ca-certificates),
# so pip inside `docker build` reaches the package index the same way the host's pip does.
#
# Usage: scripts/make-base-image.sh [--force]
# Env:   BASE_TAG (default aggregator-base:bookworm), DEBIAN_MIRROR (default: read from apt),
#        SUITE (default bookworm), DOCKER_HOST (as for the docker client).
set -euo pipefail

BASE_TAG=${BASE_TAG:-aggregator-base:bookworm}
SUITE=${SUITE:-bookworm}
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { printf 'make-base-image: %s\n' "$*" >&2; }

if [ "$FORCE" = 0 ] && docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
  log "$BASE_TAG already present"
  exit 0
fi

# The mirror apt already uses: first deb822 stanza (or one-line entry) that carries $SUITE itself
# (not -security/-updates). No host is hard-coded here.
apt_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      function flush() { if (uri != "" && has && deb) print uri; uri = ""; has = 0; deb = 0 }
      /^[[:space:]]*$/ { flush(); next }
      /^Types:/ { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) has = 1 }
      END { flush() }
    ' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '$1 == "deb" { sub(/\[[^]]*\][[:space:]]*/, ""); split($0, w);
                                         if (w[3] == suite) print w[2] }' "$f"
  done
}

MIRROR=${DEBIAN_MIRROR:-$(apt_mirror | head -n 1)}
if [ -z "$MIRROR" ]; then
  log "no Debian mirror for suite $SUITE found in /etc/apt/sources.list*; set DEBIAN_MIRROR"
  exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  apt-get install -y -q debootstrap >/dev/null || {
    apt-get update -q >/dev/null
    apt-get install -y -q debootstrap >/dev/null
  }
fi

ROOTFS=$(mktemp -d "${TMPDIR:-/var/tmp}/aggregator-base.XXXXXX")
cleanup() {
  # debootstrap may leave proc/sys mounted inside the target on failure
  for m in proc sys dev/pts dev; do
    if mountpoint -q "$ROOTFS/$m" 2>/dev/null; then umount -l "$ROOTFS/$m" || true; fi
  done
  rm -rf --one-file-system "$ROOTFS"
}
trap cleanup EXIT

log "debootstrap $SUITE from $MIRROR into $ROOTFS"
start=$(date +%s)
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
  tail -n 30 "$ROOTFS.log" >&2
  rm -f "$ROOTFS.log"
  exit 1
}
rm -f "$ROOTFS.log"

# Trust what the host trusts (local CAs only; the Mozilla bundle comes from ca-certificates).
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
fi
chroot "$ROOTFS" update-ca-certificates >/dev/null 2>&1

# Slim it: apt caches, lists, docs and man pages are not needed in a base image.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
  "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*

log "importing as $BASE_TAG"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$BASE_TAG" >/dev/null
log "built $BASE_TAG in $(($(date +%s) - start)) s"
