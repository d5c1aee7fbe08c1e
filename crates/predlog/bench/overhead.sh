#!/usr/bin/env bash
# The prediction log's cost to the service: closed-loop throughput of `liveprofile loadgen`
# against `liveprofile serve` without and with `--prediction-log` (every request logged),
# alternated ROUNDS times in one run, then the ratio of the means; and the server's CPU time
# per request over the same measured seconds (from /proc), steadier than throughput on a
# machine the load generator shares.
#
#   crates/predlog/bench/overhead.sh [ROUNDS] [SECONDS] [PROTOCOL]    # defaults: 3 10 conversion
#
# Runs of one setting differ by up to 25% on a shared 2-core machine, in slow and fast
# spells: for a figure use many short rounds (30 of 4 s), and read the median of the rounds'
# ratios beside the ratio of the means.
#
# Needs the release binary (cargo build --release -p liveprofile). Servers listen on
# loopback; the log and the servers' data go to a temporary folder, removed at the end.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../../.."
rounds="${1:-3}"
seconds="${2:-10}"
protocol="${3:-conversion}"
bin="${CARGO_TARGET_DIR:-target}/release/liveprofile"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

server_ticks() { # $1: pid; its CPU time so far, clock ticks (fields 14 and 15 of /proc/PID/stat)
  sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

run() { # $1: label, $2...: extra serve flags; writes requests/s and the server's CPU us per request to $work/result
  local label="$1"; shift
  "$bin" serve --addr 127.0.0.1:50161 --metrics-addr 127.0.0.1:50162 --data-dir "$work/data-$label" \
    --experiments "$work/experiments" --durability write "$@" >"$work/serve-$label.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    curl -sf http://127.0.0.1:50162/metrics >/dev/null 2>&1 && break
    sleep 0.2
  done
  "$bin" loadgen --target 127.0.0.1:50161 --protocol "$protocol" --seconds "$seconds" --warmup 2 \
    --concurrency 16 --label "$label" >"$work/report-$label" 2>/dev/null &
  local loadgen=$!
  # The server's CPU time (user + system, clock ticks) over the measured seconds.
  sleep 2
  local cpu0 cpu1
  cpu0="$(server_ticks "$pid")"
  sleep "$seconds"
  cpu1="$(server_ticks "$pid")"
  wait "$loadgen"
  cat "$work/report-$label" >>"$work/reports"
  local rps
  rps="$(sed -n 's/.*"requests_per_s":\([0-9.]*\).*/\1/p' "$work/report-$label")"
  if [ -z "$rps" ] || [ "$rps" = "0.0" ]; then
    echo "loadgen gave no throughput for $label: $(cat "$work/report-$label")" >&2
    exit 1
  fi
  local cpu
  cpu="$(python3 -c "import os,sys; print((int(sys.argv[2])-int(sys.argv[1]))/os.sysconf('SC_CLK_TCK')*1e6/(float(sys.argv[3])*float(sys.argv[4])))" "$cpu0" "$cpu1" "$rps" "$seconds")"
  echo "$rps $cpu" >"$work/result"
  # The log's own count of rows dropped (queue full, or a file that could not be written),
  # once the queue has drained.
  sleep 0.5
  local dropped
  dropped="$(curl -sf http://127.0.0.1:50162/metrics | sed -n 's/^liveprofile_prediction_log{stat="rows_dropped"} //p')"
  echo "${dropped:-none}" >>"$work/dropped"
  kill -INT "$pid"
  wait "$pid" || true
}

off=(); on=(); off_cpu=(); on_cpu=()
for r in $(seq "$rounds"); do
  run "off-$r"
  read -r rps cpu <"$work/result"
  off+=("$rps"); off_cpu+=("$cpu")
  run "on-$r" --prediction-log "$work/log-$r"
  read -r rps cpu <"$work/result"
  on+=("$rps"); on_cpu+=("$cpu")
  printf 'round %s: without the log %.0f req/s (%.1f us CPU/req), with it %.0f req/s (%.1f us CPU/req)\n' \
    "$r" "${off[-1]}" "${off_cpu[-1]}" "${on[-1]}" "${on_cpu[-1]}" >&2
done
python3 - "${off[*]}" "${on[*]}" "$work" "${off_cpu[*]}" "${on_cpu[*]}" <<'PY'
import glob, sys
off = [float(x) for x in sys.argv[1].split()]
on = [float(x) for x in sys.argv[2].split()]
off_cpu = [float(x) for x in sys.argv[4].split()]
on_cpu = [float(x) for x in sys.argv[5].split()]
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
# Each round's two runs are next to each other in time: the median of their ratios is less
# moved by the machine's slow spells than the ratio of the means.
pairs = [y / x for x, y in zip(off, on)]
print(f"rounds' ratios:  median {st.median(pairs):.3f} ({', '.join(f'{p:.3f}' for p in pairs)})")
# The server's CPU per request is steadier than throughput on a shared machine: the same
# cost, seen from the server's side.
c, d = st.mean(off_cpu), st.mean(on_cpu)
print(f"server CPU:      {c:.1f} us/request without the log, {d:.1f} with it ({100 * (d / c - 1):+.1f}%)")
with open(f"{sys.argv[3]}/dropped") as f:
    counts = f.read().split()
logged = [c for c in counts if c != "none"]
print(f"rows dropped:    {sum(int(c) for c in logged):,} (the log's rows_dropped over its {len(logged)} runs)")
if rows:
    print(f"rows logged:     {rows:,}")
PY
