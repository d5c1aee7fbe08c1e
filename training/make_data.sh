#!/usr/bin/env bash
# Build the training data with the Rust pipeline (features are never recomputed in Python).
#
#   training/make_data.sh [--small] [--build] [OUT_DIR]     # OUT_DIR defaults to training/data
#
# Writes
#   OUT_DIR/sim/events.parquet          simulated events (100k users x 28 days, seed 7;
#   OUT_DIR/sim/events.truth.parquet      --small: 4,000 users x 28 days) and ground truth
#   OUT_DIR/sim/users.parquet           user features as of 2026-11-23 00:00 +08:00,
#   OUT_DIR/sim/users.schema.json         tags over the 7 days after it
#   OUT_DIR/sim/conversion.parquet      conversion examples of visits from 2026-11-09 on
#   OUT_DIR/sim/conversion.schema.json
#   OUT_DIR/taobao/events.parquet       the Tianchi UserBehavior sample as events (--small:
#                                         the synthetic test file in its format)
#   OUT_DIR/taobao/users.parquet        user features as of 2017-12-02 00:00 +08:00,
#   OUT_DIR/taobao/users.schema.json      labels over the 2 days after it
#   OUT_DIR/data.json                   the parameters above and the binary's version
#
# The Taobao input: UserBehavior.csv in the real data sets' folder, $LIVEPROFILE_DATASETS
# (relative to the repository root; default ../shared/datasets beside the repository),
# under taobao-userbehavior/; with --small, the synthetic file
# training/datasets/taobao-synthetic/UserBehavior.synthetic.csv (no real data needed);
# TAOBAO_CSV=/path/to/file overrides both. training/datasets/README.md says where to get
# the real file. The release binary target/release/liveprofile is built with
# `cargo build --release -p liveprofile` when it is missing (or always with --build);
# LIVEPROFILE_BIN=/path/to/liveprofile uses another binary. Each run rewrites the files
# it produces.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

small=0
build=0
out=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --small) small=1 ;;
        --build) build=1 ;;
        -h|--help) sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "make_data.sh: unknown option $1" >&2; exit 2 ;;
        *)
            if [[ -n "$out" ]]; then echo "make_data.sh: one OUT_DIR only" >&2; exit 2; fi
            out="$1" ;;
    esac
    shift
done
out="${out:-$here/data}"

if [[ "$small" == 1 ]]; then
    users=4000
else
    users=100000
fi
days=28
seed=7
# 2026-11-02 00:00 China time (a Monday), passed explicitly rather than relying on the
# simulator's default start.
start_ms=1793548800000
start="2026-11-02T00:00:00+08:00"
cutoff="2026-11-23T00:00:00+08:00"
label_window="7d"
examples_from="2026-11-09T00:00:00+08:00"
taobao_cutoff="2017-12-02T00:00:00+08:00"
taobao_window="2d"
datasets="${LIVEPROFILE_DATASETS:-../shared/datasets}"
case "$datasets" in /*) ;; *) datasets="$repo/$datasets" ;; esac
synthetic_csv="$here/datasets/taobao-synthetic/UserBehavior.synthetic.csv"
if [[ -n "${TAOBAO_CSV:-}" ]]; then
    taobao_csv="$TAOBAO_CSV"
    taobao_from="TAOBAO_CSV"
elif [[ "$small" == 1 ]]; then
    taobao_csv="$synthetic_csv"
    taobao_from="--small: the synthetic test file"
else
    taobao_csv="$datasets/taobao-userbehavior/UserBehavior.csv"
    taobao_from="LIVEPROFILE_DATASETS=${LIVEPROFILE_DATASETS:-<unset: default ../shared/datasets beside the repository>}"
fi
# Checked before any build, so that a missing data set is reported at once.
if [[ ! -f "$taobao_csv" ]]; then
    cat >&2 <<EOF
make_data.sh: Taobao data set not found: $taobao_csv
  (from $taobao_from)
  Full training reads the real data sets from \$LIVEPROFILE_DATASETS (relative to the
  repository root; default ../shared/datasets beside the repository). Get "User Behavior
  Data from Taobao for Recommendation" from Alibaba Tianchi (dataset 649,
  https://tianchi.aliyun.com/dataset/649; research use with citation) and put
  UserBehavior.csv at <datasets>/taobao-userbehavior/UserBehavior.csv, or set
  TAOBAO_CSV=/path/to/UserBehavior.csv. See training/datasets/README.md.
  The tests need no real data: make_data.sh --small uses the synthetic file
  training/datasets/taobao-synthetic/UserBehavior.synthetic.csv.
EOF
    exit 1
fi
taobao_synthetic=false
if [[ "$(cd "$(dirname "$taobao_csv")" && pwd)/$(basename "$taobao_csv")" == "$synthetic_csv" ]]; then
    taobao_synthetic=true
fi

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
bin="${LIVEPROFILE_BIN:-$target_dir/release/liveprofile}"
if [[ -z "${LIVEPROFILE_BIN:-}" ]] && { [[ "$build" == 1 ]] || [[ ! -x "$bin" ]]; }; then
    echo "building $bin"
    (cd "$repo" && cargo build --release -p liveprofile)
fi
if [[ ! -x "$bin" ]]; then
    echo "make_data.sh: no liveprofile binary at $bin" >&2
    exit 1
fi
mkdir -p "$out/sim" "$out/taobao"
out="$(cd "$out" && pwd)"
started=$SECONDS
step() {
    local t0=$SECONDS
    echo "+ liveprofile $*" >&2
    "$bin" "$@"
    echo "  ($((SECONDS - t0)) s)" >&2
}

step simulate --users "$users" --days "$days" --seed "$seed" --start-ms "$start_ms" --out "$out/sim/events.parquet"
step features build --events "$out/sim/events.parquet" --cutoff "$cutoff" \
    --label-window "$label_window" --out "$out/sim/users.parquet"
step features examples --events "$out/sim/events.parquet" --from "$examples_from" \
    --out "$out/sim/conversion.parquet"
step import taobao --input "$taobao_csv" --out "$out/taobao/events.parquet"
step features build --events "$out/taobao/events.parquet" --cutoff "$taobao_cutoff" \
    --label-window "$taobao_window" --out "$out/taobao/users.parquet"

for f in sim/events.parquet sim/events.truth.parquet sim/users.parquet sim/users.schema.json \
         sim/conversion.parquet sim/conversion.schema.json \
         taobao/events.parquet taobao/users.parquet taobao/users.schema.json; do
    if [[ ! -s "$out/$f" ]]; then
        echo "make_data.sh: expected $out/$f" >&2
        exit 1
    fi
done

version="$("$bin" --version 2>/dev/null || echo unknown)"
cat > "$out/data.json.tmp" <<JSON
{
  "small": $([[ "$small" == 1 ]] && echo true || echo false),
  "liveprofile": "$version",
  "simulate": {"users": $users, "days": $days, "seed": $seed, "start": "$start", "start_ms": $start_ms},
  "users": {"cutoff": "$cutoff", "label_window": "$label_window"},
  "conversion": {"from": "$examples_from"},
  "taobao": {"input": "$(basename "$taobao_csv")", "synthetic": $taobao_synthetic, "cutoff": "$taobao_cutoff", "label_window": "$taobao_window"}
}
JSON
mv "$out/data.json.tmp" "$out/data.json"
echo "data in $out ($((SECONDS - started)) s)"
