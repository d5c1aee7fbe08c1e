#!/usr/bin/env bash
# Ingest benchmark: starts a Mosquitto broker and `liveprofile serve` (profile store in a
# temporary folder, MQTT subscription on), then runs `liveprofile ingest-bench` against it,
# once per durability setting; finally the in-process store figures for STORE_USERS users.
#
# Usage: crates/server/bench/ingest_freshness.sh [SECONDS] [STORE_USERS]
# INGEST_BENCH_FLAGS adds flags to the server phases' `liveprofile ingest-bench` (e.g.
# "--load-share 0.35" for the freshness probes under a third of the peak); LIVEPROFILE_BIN
# runs another build (side by side with this one).
# Needs mosquitto (apt-get install mosquitto) and a release build (cargo build --release -p liveprofile).
set -euo pipefail
cd "$(dirname "$0")/../../.."
seconds="${1:-10}"
store_users="${2:-1000000}"
bin="${LIVEPROFILE_BIN:-target/release/liveprofile}"
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$bin" ] || { echo "build first: cargo build --release -p liveprofile" >&2; exit 1; }
[ -x "$mosquitto" ] || { echo "install mosquitto: apt-get install mosquitto" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mqtt_port=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n' "$mqtt_port" > "$work/mosquitto.conf"
"$mosquitto" -c "$work/mosquitto.conf" >/dev/null 2>&1 &
pids+=($!)

mkdir -p "$work/models"
cp -r models/user_tags "$work/models/"

for durability in fsync write; do
  port=$(free_port)
  "$bin" serve --models "$work/models" --addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$(free_port)" \
    --data-dir "$work/data-$durability" --durability "$durability" \
    --mqtt-broker "127.0.0.1:$mqtt_port" --mqtt-client-id "bench-$durability" 2>"$work/serve-$durability.log" &
  server=$!
  pids+=($server)
  "$bin" ingest-bench --target "127.0.0.1:$port" --mqtt-broker "127.0.0.1:$mqtt_port" \
    --seconds "$seconds" --label "durability=$durability" ${INGEST_BENCH_FLAGS:-}
  kill "$server"
  wait "$server" || true
done

if [ "$store_users" -gt 0 ]; then
  "$bin" ingest-bench --store-only --store-users "$store_users" --label store
fi
