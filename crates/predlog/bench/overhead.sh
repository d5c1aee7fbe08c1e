#!/usr/bin/env bash
# The prediction log's cost to the service: closed-loop throughput of `liveprofile loadgen`
# against `liveprofile serve` without and with `--prediction-log` (every request logged),
# alternated ROUNDS times in one run, then the ratio of the means.
#
#   crates/predlog/bench/overhead.sh [ROUNDS] [SECONDS] [PROTOCOL]    # defaults: 3 10 conversion
#
# Needs the release binary (cargo build --release -p liveprofile). Servers listen on
# loopback; the log and the servers' data go to a temporary folder, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../../.."
rounds="${1:-3}"
seconds="${2:-10}"
protocol="${3:-conversion}"
bin="${CARGO_TARGET_DIR:-target}/release/liveprofile"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

run() { # $1: label, $2...: extra serve flags; prints requests/s
  local label="$1"; shift
  "$bin" serve --addr 127.0.0.1:50161 --metrics-addr 127.0.0.1:50162 --data-dir "$work/data-$label" \
    --experiments "$work/experiments" --durability write "$@" >"$work/serve-$label.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    curl -sf http://127.0.0.1:50162/metrics >/dev/null 2>&1 && break
    sleep 0.2
  done
  "$bin" loadgen --target 127.0.0.1:50161 --protocol "$protocol" --seconds "$seconds" --warmup 2 \
    --concurrency 16 --label "$label" 2>/dev/null | tee -a "$work/reports" | sed -n 's/.*"requests_per_s":\([0-9.]*\).*/\1/p'
  # The log's own count of rows dropped (queue full), once the queue has drained.
  sleep 0.5
  local dropped
  dropped="$(curl -sf http://127.0.0.1:50162/metrics | sed -n 's/^liveprofile_prediction_log{stat="rows_dropped"} //p')"
  echo "${dropped:-none}" >>"$work/dropped"
  kill -INT "$pid"
  wait "$pid" || true
}

off=(); on=()
for r in $(seq "$rounds"); do
  off+=("$(run "off-$r")")
  on+=("$(run "on-$r" --prediction-log "$work/log-$r")")
  echo "round $r: without the log ${off[-1]} req/s, with it ${on[-1]} req/s" >&2
done
python3 - "${off[*]}" "${on[*]}" "$work" <<'PY'
import glob, sys
off = [float(x) for x in sys.argv[1].split()]
on = [float(x) for x in sys.argv[2].split()]
import statistics as st
a, b = st.mean(off), st.mean(on)
rows = 0
try:
    import pyarrow.parquet as pq
    rows = sum(pq.read_metadata(f).num_rows for f in glob.glob(f"{sys.argv[3]}/log-*/predictions-*.parquet"))
except ImportError:
    pass
print(f"without the log: {a:,.0f} req/s (runs {', '.join(f'{x:,.0f}' for x in off)})")
print(f"with the log:    {b:,.0f} req/s (runs {', '.join(f'{x:,.0f}' for x in on)})")
print(f"with / without:  {b / a:.3f} ({100 * (1 - b / a):+.1f}% throughput lost)")
with open(f"{sys.argv[3]}/dropped") as f:
    counts = f.read().split()
logged = [c for c in counts if c != "none"]
print(f"rows dropped:    {sum(int(c) for c in logged):,} (the log's rows_dropped over its {len(logged)} runs)")
if rows:
    print(f"rows logged:     {rows:,}")
PY
