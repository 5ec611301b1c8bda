#!/usr/bin/env bash
# Container smoke test: build the image and run it under a real Docker engine, end to end.
#
# What it proves: the image builds; the daemon in it polls fixture feeds served by this script on
# 127.0.0.1, serves them, reports healthy to the engine's own HEALTHCHECK, runs as non-root,
# stops on SIGTERM within 10 s with a clean shutdown, keeps its SQLite data in the /data volume
# across a restart, and logs JSON lines.
#
# Network: the container runs with --network host and a mounted config (tests/data/container)
# whose only sources are on 127.0.0.1; the daemon binds 127.0.0.1 only. Nothing else is reached.
#
# Engine: uses the engine `docker info` already reaches; otherwise starts its own dockerd
# (data root /var/lib/aggregator-docker, kept so images stay cached; exec root, socket and pid
# file under /run/aggregator-docker) and stops it at the end. No engine can be started -> SKIP.
#
# Usage: scripts/container-smoke.sh
# Env:   BASE_IMAGE (default python:3.12-slim; when absent locally, the local Debian base
#        aggregator-base:bookworm is built by scripts/make-base-image.sh and used instead),
#        IMAGE (default aggregator:smoke), CONTAINER_SMOKE_INSTALL=1 (apt-get install docker.io
#        when dockerd is missing), DOCKERD_DATA_ROOT, DOCKERD_EXTRA_ARGS (extra dockerd flags),
#        KEEP_DOCKERD=1 (leave a started dockerd up), SMOKE_LOG_DIR (keep the container's log).
# Exit:  0 when every check passed (or SKIP), 1 when any check failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA_DIR="$ROOT/tests/data/container"
IMAGE=${IMAGE:-aggregator:smoke}
BASE_IMAGE=${BASE_IMAGE:-python:3.12-slim}
LOCAL_BASE=aggregator-base:bookworm
FIXTURE_PORT=18931 # the port written in tests/data/container/aggregator.toml
DOCKERD_DATA_ROOT=${DOCKERD_DATA_ROOT:-/var/lib/aggregator-docker}
DOCKERD_RUN=/run/aggregator-docker
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} # legacy builder: no buildx plugin, no frontend pull

T0=$(date +%s)
RUN_ID="smoke-$$-$T0"
CONTAINER="aggregator-$RUN_ID"
VOLUME="aggregator-data-$RUN_ID"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/container-smoke.XXXXXX")
STARTED_DOCKERD_PID=""
FEED_PID=""
PASSED=0
FAILED=0
FAILED_NAMES=()
declare -A TIMES=()

say() { printf '%s\n' "$*"; }
pass() { PASSED=$((PASSED + 1)); say "PASS: $1"; }
fail() { FAILED=$((FAILED + 1)); FAILED_NAMES+=("$1"); say "FAIL: $1${2:+ -- $2}"; }
now_ms() { date +%s%3N; }

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  set +e
  if [ -n "${DOCKER_OK:-}" ]; then
    docker rm -f "$CONTAINER" "$CONTAINER-init" >/dev/null 2>&1
    docker volume rm -f "$VOLUME" >/dev/null 2>&1
  fi
  if [ -n "$FEED_PID" ]; then kill "$FEED_PID" 2>/dev/null; wait "$FEED_PID" 2>/dev/null; fi
  if [ -n "$STARTED_DOCKERD_PID" ] && [ "${KEEP_DOCKERD:-0}" != 1 ]; then
    kill "$STARTED_DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$STARTED_DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$STARTED_DOCKERD_PID" 2>/dev/null && kill -9 "$STARTED_DOCKERD_PID" 2>/dev/null
    say "stopped the dockerd this script started (pid $STARTED_DOCKERD_PID)"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

skip() {
  say "SKIP: $*"
  exit 0
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------- 1. engine
engine_up() { timeout 10 docker info >/dev/null 2>&1; }

start_dockerd() { # start_dockerd EXTRA_ARGS...: 0 when the engine answers within 30 s
  mkdir -p "$DOCKERD_DATA_ROOT" "$DOCKERD_RUN"
  local log="$DOCKERD_RUN/dockerd.log"
  dockerd --data-root "$DOCKERD_DATA_ROOT" --exec-root "$DOCKERD_RUN/exec" \
    --pidfile "$DOCKERD_RUN/dockerd.pid" -H "unix://$DOCKERD_RUN/docker.sock" \
    "$@" >"$log" 2>&1 &
  STARTED_DOCKERD_PID=$!
  export DOCKER_HOST="unix://$DOCKERD_RUN/docker.sock"
  for _ in $(seq 1 60); do
    engine_up && return 0
    kill -0 "$STARTED_DOCKERD_PID" 2>/dev/null || break
    sleep 0.5
  done
  say "dockerd $* did not come up; last log lines:"
  tail -n 5 "$log" | sed 's/^/  | /'
  kill "$STARTED_DOCKERD_PID" 2>/dev/null && wait "$STARTED_DOCKERD_PID" 2>/dev/null
  STARTED_DOCKERD_PID=""
  return 1
}

ensure_engine() {
  command -v docker >/dev/null 2>&1 || skip "no docker client on PATH"
  if engine_up; then
    say "engine: using the running one (${DOCKER_HOST:-default socket})"
    return
  fi
  # A dockerd this script left behind (killed run): reuse it and stop it at the end.
  if [ -S "$DOCKERD_RUN/docker.sock" ] && [ -f "$DOCKERD_RUN/dockerd.pid" ]; then
    local pid
    pid=$(cat "$DOCKERD_RUN/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null && DOCKER_HOST="unix://$DOCKERD_RUN/docker.sock" engine_up; then
      export DOCKER_HOST="unix://$DOCKERD_RUN/docker.sock"
      STARTED_DOCKERD_PID=$pid
      say "engine: reusing this script's dockerd left running (pid $pid)"
      return
    fi
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    if [ "${CONTAINER_SMOKE_INSTALL:-0}" = 1 ] && [ "$(id -u)" = 0 ]; then
      say "engine: installing docker.io with apt-get"
      { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io; } \
        >"$WORK/apt.log" 2>&1 || skip "apt-get install docker.io failed (see apt output)"
    else
      skip "no Docker engine reachable and no dockerd binary (set CONTAINER_SMOKE_INSTALL=1 as root to apt-get install docker.io)"
    fi
  fi
  [ "$(id -u)" = 0 ] || skip "no Docker engine reachable and starting dockerd needs root"
  # Containers use host networking only, so the daemon needs no bridge and no iptables rules
  # (nothing is left behind on the host's network). vfs when overlay2 cannot mount.
  local extra=()
  read -r -a extra <<<"${DOCKERD_EXTRA_ARGS:-}"
  if start_dockerd --bridge=none --iptables=false --ip6tables=false "${extra[@]}"; then
    :
  elif start_dockerd --bridge=none --iptables=false --ip6tables=false --storage-driver=vfs \
    "${extra[@]}"; then
    :
  else
    skip "dockerd could not be started here (see the log lines above)"
  fi
  say "engine: started dockerd pid $STARTED_DOCKERD_PID, DOCKER_HOST=$DOCKER_HOST," \
    "storage $(docker info -f '{{.Driver}}' 2>/dev/null)"
}

phase_start=$(date +%s)
ensure_engine
DOCKER_OK=1
say "engine: server $(docker version -f '{{.Server.Version}}' 2>/dev/null), client $(docker version -f '{{.Client.Version}}' 2>/dev/null)"
TIMES[engine]=$(($(date +%s) - phase_start))
pass "docker engine reachable"

# ---------------------------------------------------------------- 2. base image
phase_start=$(date +%s)
BUILD_ARGS=()
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  say "base: $BASE_IMAGE present locally"
  BUILD_ARGS+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
else
  say "base: $BASE_IMAGE not present locally; using $LOCAL_BASE"
  if "$ROOT/scripts/make-base-image.sh"; then
    pass "local base image $LOCAL_BASE available"
  else
    fail "local base image $LOCAL_BASE available"
    exit 1
  fi
  BUILD_ARGS+=(--build-arg "BASE_IMAGE=$LOCAL_BASE")
fi
TIMES[base]=$(($(date +%s) - phase_start))

# ---------------------------------------------------------------- 3. build
phase_start=$(date +%s)
# --network host: pip in the build reaches the package index exactly as the host does.
if docker build --network host "${BUILD_ARGS[@]}" -t "$IMAGE" "$ROOT" >"$WORK/build.log" 2>&1; then
  pass "docker build $IMAGE ($(($(date +%s) - phase_start)) s)"
else
  fail "docker build $IMAGE"
  tail -n 30 "$WORK/build.log" | sed 's/^/  | /'
  exit 1
fi
TIMES[build]=$(($(date +%s) - phase_start))
# Drop the untagged build-stage images of earlier runs (this run's stays as the build cache).
docker image prune -f --filter "until=$T0" >/dev/null 2>&1 || true
phase_start=$(date +%s)

# ---------------------------------------------------------------- 4. fixture server + run
FEED_PORT=$(free_port)
APP_PORT=$(free_port)
python3 -m http.server --bind 127.0.0.1 "$FEED_PORT" --directory "$DATA_DIR/feeds" \
  >"$WORK/feeds.log" 2>&1 &
FEED_PID=$!
for _ in $(seq 1 50); do
  python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$FEED_PORT/smoke.json', timeout=1)" \
    2>/dev/null && break
  sleep 0.1
done

mkdir -p "$WORK/config"
sed "s/127\.0\.0\.1:$FIXTURE_PORT/127.0.0.1:$FEED_PORT/g" "$DATA_DIR/aggregator.toml" \
  >"$WORK/config/aggregator.toml"
chmod 755 "$WORK" "$WORK/config" # the container's uid 10001 must read the mounted config
chmod 644 "$WORK/config/aggregator.toml"
if grep -Eo 'https?://[^/"]+' "$WORK/config/aggregator.toml" | grep -v "^http://127\.0\.0\.1:" |
  grep -q .; then
  fail "smoke config names only 127.0.0.1" "refusing to run"
  exit 1
fi

docker volume create "$VOLUME" >/dev/null
docker run -d --name "$CONTAINER" --network host \
  -v "$VOLUME:/data" \
  -v "$WORK/config:/smoke-config:ro" \
  -e AGGREGATOR_CONFIG=/smoke-config/aggregator.toml \
  -e AGGREGATOR_SERVER_HOST=127.0.0.1 \
  -e AGGREGATOR_SERVER_PORT="$APP_PORT" \
  -e AGGREGATOR_SERVER_BASE_URL="http://127.0.0.1:$APP_PORT" \
  "$IMAGE" >/dev/null
say "run: container $CONTAINER on 127.0.0.1:$APP_PORT, fixture feeds on 127.0.0.1:$FEED_PORT"
BASE="http://127.0.0.1:$APP_PORT"

# ---------------------------------------------------------------- 5. checks
health_status() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$CONTAINER" 2>/dev/null; }
wait_healthy() { # wait_healthy TIMEOUT_S
  local deadline=$(($(date +%s) + $1)) st
  while [ "$(date +%s)" -lt "$deadline" ]; do
    st=$(health_status)
    [ "$st" = healthy ] && return 0
    [ "$(docker inspect -f '{{.State.Running}}' "$CONTAINER")" = true ] || return 1
    sleep 1
  done
  return 1
}
# stopped_logged FILE: the daemon's last word on shutdown, "stopped" from an aggregator.* logger.
stopped_logged() {
  python3 -c '
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    try:
        rec = json.loads(line)
    except ValueError:
        continue
    if isinstance(rec, dict) and str(rec.get("logger", "")).startswith("aggregator") \
            and rec.get("message") == "stopped":
        sys.exit(0)
sys.exit(1)' "$1"
}
http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1" || true; }

# Prints the sorted story ids of /feeds/all.json; exits 1 unless every fixture title is there.
FEED_CHECK='
import json, sys, urllib.request
want = sys.argv[2:]
try:
    doc = json.load(urllib.request.urlopen(sys.argv[1], timeout=5))
except Exception as exc:
    print("unreadable:", exc, file=sys.stderr); sys.exit(1)
titles = {i.get("title") for i in doc.get("items", [])}
missing = [t for t in want if t not in titles]
if missing:
    print("missing:", missing, file=sys.stderr); sys.exit(1)
print("\n".join(sorted(i["id"] for i in doc["items"])))
'
FIXTURE_TITLES=$(python3 - "$DATA_DIR/feeds" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
d = Path(sys.argv[1])
titles = [e.text for e in ET.parse(d / "smoke.rss.xml").iter("title")][1:]
titles += [i["title"] for i in json.loads((d / "smoke.json").read_text("utf-8"))["items"]]
print("\n".join(titles))
EOF
)
mapfile -t TITLES <<<"$FIXTURE_TITLES"

t_start=$(now_ms)
if wait_healthy 90; then
  pass "engine HEALTHCHECK reports healthy ($(( ($(now_ms) - t_start) / 1000 )) s after start)"
else
  fail "engine HEALTHCHECK reports healthy" "status '$(health_status)' after 90 s"
fi

code=$(http_status "$BASE/healthz")
if [ "$code" = 200 ]; then pass "GET /healthz -> 200"; else fail "GET /healthz -> 200" "got $code"; fi

IDS_BEFORE=""
for _ in $(seq 1 30); do
  IDS_BEFORE=$(python3 -c "$FEED_CHECK" "$BASE/feeds/all.json" "${TITLES[@]}" 2>"$WORK/feedcheck.err") && break
  IDS_BEFORE=""
  sleep 1
done
if [ -n "$IDS_BEFORE" ]; then
  pass "/feeds/all.json serves all ${#TITLES[@]} fixture items ($(wc -l <<<"$IDS_BEFORE") stories)"
else
  fail "/feeds/all.json serves all ${#TITLES[@]} fixture items" "$(cat "$WORK/feedcheck.err")"
fi

uid=$(docker exec "$CONTAINER" id -u 2>/dev/null || echo "?")
if [ "$uid" != 0 ] && [ "$uid" != "?" ]; then pass "docker exec id -u is $uid (non-root)"; else
  fail "docker exec id -u is non-root" "got $uid"; fi
pid1_uid=$(docker exec "$CONTAINER" sh -c 'grep "^Uid:" /proc/1/status' 2>/dev/null | awk '{print $2 "/" $3 "/" $4 "/" $5}')
if [ -n "$pid1_uid" ] && ! grep -Eq '(^|/)0(/|$)' <<<"$pid1_uid"; then
  pass "PID 1 (the daemon) runs as uid $pid1_uid (real/effective/saved/fs)"
else
  fail "PID 1 runs as non-root" "Uid: $pid1_uid"
fi

# The daemon fetched only what it was given: every polled URL is on 127.0.0.1.
docker logs "$CONTAINER" >"$WORK/logs1.txt" 2>&1
if python3 - "$WORK/logs1.txt" "$FEED_PORT" <<'EOF'
import json, sys
port = sys.argv[2]
urls = set()
for line in open(sys.argv[1], encoding="utf-8"):
    try:
        rec = json.loads(line)
    except ValueError:
        continue
    if isinstance(rec, dict) and rec.get("url"):
        urls.add(rec["url"])
bad = [u for u in urls if not u.startswith(f"http://127.0.0.1:{port}/")]
print(f"  polled URLs: {sorted(urls)}")
sys.exit(1 if bad or not urls else 0)
EOF
then pass "every URL in the logs is the fixture server on 127.0.0.1"; else
  fail "every URL in the logs is the fixture server on 127.0.0.1"; fi

# SIGTERM: docker stop sends STOPSIGNAL (SIGTERM), waits 10 s, then SIGKILL (exit 137).
t_stop=$(now_ms)
docker stop -t 10 "$CONTAINER" >/dev/null
stop_ms=$(($(now_ms) - t_stop))
exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$CONTAINER")
if [ "$stop_ms" -lt 10000 ]; then pass "docker stop took ${stop_ms} ms (< 10 s, no SIGKILL)"; else
  fail "docker stop within 10 s" "took ${stop_ms} ms"; fi
case "$exit_code" in
  0) pass "exit code after SIGTERM: 0 (the daemon returned normally)" ;;
  143) pass "exit code after SIGTERM: 143 (128+SIGTERM: the process ended by the signal)" ;;
  *) fail "exit code after SIGTERM is 0 or 143" "got $exit_code" ;;
esac
docker logs "$CONTAINER" >"$WORK/logs2.txt" 2>&1
if grep -q '"message": "Finished server process' "$WORK/logs2.txt"; then
  pass "logs: HTTP server finished (uvicorn 'Finished server process')"
else fail "logs: HTTP server finished (uvicorn 'Finished server process')"; fi
if stopped_logged "$WORK/logs2.txt"; then
  pass "logs: daemon shutdown completed ('stopped' logged after the tick in flight)"
else
  fail "logs: daemon shutdown completed ('stopped' logged)" \
    "last lines: $(tail -n 2 "$WORK/logs2.txt" | cut -c1-160 | tr '\n' ' ')"
fi

# Restart with the fixture server down: what /feeds/all.json serves must come from /data.
kill "$FEED_PID" 2>/dev/null || true
wait "$FEED_PID" 2>/dev/null || true
FEED_PID=""
docker start "$CONTAINER" >/dev/null
t_start=$(now_ms)
code=""
for _ in $(seq 1 60); do
  code=$(http_status "$BASE/healthz")
  [ "$code" = 200 ] && break
  sleep 0.5
done
if [ "$code" = 200 ]; then
  pass "after docker start: /healthz 200 in $(($(now_ms) - t_start)) ms"
else fail "after docker start: /healthz 200" "got $code"; fi
IDS_AFTER=$(python3 -c "$FEED_CHECK" "$BASE/feeds/all.json" "${TITLES[@]}" 2>"$WORK/feedcheck.err" || true)
if [ -n "$IDS_BEFORE" ] && [ "$IDS_AFTER" = "$IDS_BEFORE" ]; then
  pass "after restart (publisher down): same $(wc -l <<<"$IDS_AFTER") story ids in /feeds/all.json"
else
  fail "after restart: same story ids in /feeds/all.json" \
    "before=[$(tr '\n' ' ' <<<"$IDS_BEFORE")] after=[$(tr '\n' ' ' <<<"$IDS_AFTER")] $(cat "$WORK/feedcheck.err")"
fi
db_info=$(docker exec "$CONTAINER" python3 -c '
import os, sqlite3
p = "/data/aggregator.db"
n = sqlite3.connect(f"file:{p}?mode=ro", uri=True).execute("select count(*) from items").fetchone()[0]
print(os.path.getsize(p), n)' 2>&1 || true)
read -r db_size db_items <<<"$db_info" || true
if [[ "${db_items:-}" =~ ^[0-9]+$ ]] && [ "$db_items" -ge "${#TITLES[@]}" ]; then
  pass "sqlite file /data/aggregator.db in volume $VOLUME: $db_size bytes, $db_items items"
else fail "sqlite file in the /data volume holds the items" "$db_info"; fi
if wait_healthy 60; then pass "engine HEALTHCHECK healthy again after restart"; else
  fail "engine HEALTHCHECK healthy again after restart" "status '$(health_status)'"; fi

# Every log line (both runs) is one JSON object with time, level, logger, message.
docker stop -t 10 "$CONTAINER" >/dev/null
docker logs "$CONTAINER" >"$WORK/logs3.txt" 2>&1
if python3 - "$WORK/logs3.txt" <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8").read().splitlines() if l.strip()]
bad = []
for l in lines:
    try:
        rec = json.loads(l)
        ok = isinstance(rec, dict) and {"time", "level", "logger", "message"} <= rec.keys()
    except ValueError:
        ok = False
    if not ok:
        bad.append(l)
print(f"  {len(lines)} log lines, {len(bad)} not JSON objects")
for l in bad[:5]:
    print("  | " + l[:200])
sys.exit(1 if bad or not lines else 0)
EOF
then pass "logs are JSON lines"; else fail "logs are JSON lines"; fi
if [ -n "${SMOKE_LOG_DIR:-}" ]; then
  mkdir -p "$SMOKE_LOG_DIR" && cp "$WORK/logs3.txt" "$SMOKE_LOG_DIR/container.log"
fi

# Not PID 1 (docker run --init, compose `init: true`): the kernel ignores a default-action
# SIGTERM sent to a namespace's PID 1 but not to its child, so this run proves that the daemon's
# own shutdown path (not PID 1's immunity) is what ends it cleanly.
APP_PORT2=$(free_port)
docker run -d --init --name "$CONTAINER-init" --network host \
  -v "$VOLUME:/data" \
  -v "$WORK/config:/smoke-config:ro" \
  -e AGGREGATOR_CONFIG=/smoke-config/aggregator.toml \
  -e AGGREGATOR_SERVER_HOST=127.0.0.1 \
  -e AGGREGATOR_SERVER_PORT="$APP_PORT2" \
  "$IMAGE" >/dev/null
code=""
for _ in $(seq 1 60); do
  code=$(http_status "http://127.0.0.1:$APP_PORT2/healthz")
  [ "$code" = 200 ] && break
  sleep 0.5
done
t_stop=$(now_ms)
docker stop -t 10 "$CONTAINER-init" >/dev/null
stop_ms=$(($(now_ms) - t_stop))
exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$CONTAINER-init")
docker logs "$CONTAINER-init" >"$WORK/logs-init.txt" 2>&1
if [ "$code" = 200 ] && [ "$stop_ms" -lt 10000 ] && [ "$exit_code" = 0 ] &&
  stopped_logged "$WORK/logs-init.txt"; then
  pass "under --init (daemon not PID 1): SIGTERM -> exit 0 in ${stop_ms} ms, 'stopped' logged"
else
  fail "under --init (daemon not PID 1): clean SIGTERM shutdown" \
    "healthz $code, stop ${stop_ms} ms, exit $exit_code; last: $(tail -n 1 "$WORK/logs-init.txt" | cut -c1-160)"
fi
TIMES[run]=$(($(date +%s) - phase_start))

# ---------------------------------------------------------------- 6. summary
say ""
say "timings: engine ${TIMES[engine]} s, base ${TIMES[base]} s, build ${TIMES[build]} s," \
  "run+checks ${TIMES[run]} s, total $(($(date +%s) - T0)) s"
say "image: $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))," \
  "base: ${BUILD_ARGS[*]#--build-arg }"
if [ "$FAILED" -eq 0 ]; then
  say "container-smoke: $PASSED passed, 0 failed"
  exit 0
fi
say "failed checks: $(printf '%s; ' "${FAILED_NAMES[@]}")"
say "last log lines of the container:"
tail -n 15 "$WORK/logs3.txt" | cut -c1-240 | sed 's/^/  | /'
say "container-smoke: $PASSED passed, $FAILED failed"
exit 1
