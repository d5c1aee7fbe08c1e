#!/usr/bin/env bash
# What running an experiment costs ScoreConversion: two servers on the same models
# (conversion versions 1 and 2), one with no experiment and one with an experiment whose
# target covers every row (50/50 between the versions), driven in alternating rounds by
# the same load (`liveprofile loadgen --protocol conversion`, one row per request, rows
# cycling through USERS distinct users). The warm-up exposes the users (each first
# exposure is logged before its answer); the measured time is the steady state where
# answers find their users exposed. A last round measures first exposures only (every
# request a new user) with the default durability (fsync).
#
# Usage: crates/server/bench/experiment_overhead.sh [SECONDS] [ROUNDS] [USERS]
# Needs a release build (cargo build --release -p liveprofile).
set -euo pipefail
cd "$(dirname "$0")/../../.."
seconds="${1:-10}"
rounds="${2:-3}"
users="${3:-20000}"
bin=target/release/liveprofile
[ -x "$bin" ] || { echo "build first: cargo build --release -p liveprofile" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for v in 1 2; do
  mkdir -p "$work/models/conversion/$v"
  cp models/conversion/1/* "$work/models/conversion/$v/"
  python3 - "$work/models/conversion/$v/manifest.json" "$v" <<'PY'
import json, sys
p, v = sys.argv[1], int(sys.argv[2])
m = json.load(open(p)); m["version"] = v; json.dump(m, open(p, "w"), indent=2)
PY
done
now_ms=$(python3 -c 'import time; print(int(time.time()*1000))')
mkdir -p "$work/with/experiments" "$work/without/experiments"
cat > "$work/with/experiments/bench.toml" <<TOML
name = "bench"
salt = "bench"
primary = "orders_per_visit"
start = $((now_ms - 86400000))
end = $((now_ms + 86400000))
[target]
categories = ["apparel"]
platforms = ["taobao"]
[[arms]]
name = "control"
share = 50
models = { conversion = 1 }
[[arms]]
name = "treatment"
share = 50
models = { conversion = 2 }
TOML

declare -A port
for side in without with; do
  port[$side]=$(free_port)
  "$bin" serve --models "$work/models" --addr "127.0.0.1:${port[$side]}" --metrics-addr 127.0.0.1:0 \
    --data-dir "$work/$side/profiles" --experiments "$work/$side/experiments" --log-format json \
    > "$work/$side.log" 2>&1 &
  pids+=($!)
done
sleep 3
load() {
  "$bin" loadgen --target "127.0.0.1:$1" --protocol conversion --package "$work/models/conversion/1" \
    --platform taobao --category apparel --concurrency 16 --connections 2 --label "$2" "${@:3}" | sed -n 1p
}
for r in $(seq "$rounds"); do
  for side in without with; do
    load "${port[$side]}" "round $r, experiment $side:" --users "$users" --seconds "$seconds" --warmup 5
  done
done
echo "first exposures only (a new user per request, fsync durability):"
for side in without with; do
  load "${port[$side]}" "experiment $side:" --users 1000000000 --seconds "$seconds" --warmup 1
done
