#!/usr/bin/env bash
# Renders a report page in headless Chromium (Debian's package, installed if missing) and
# writes a PNG screenshot beside it, to look at the page as a reader sees it.
# Usage: crates/analysis/scripts/render_report.sh report/report.html [width] [height]
set -euo pipefail
page="$(realpath "$1")"
width="${2:-1200}"
height="${3:-3400}"
if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
out="${page%.html}.png"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --window-size="${width},${height}" --screenshot="$out" "file://$page" >/dev/null 2>&1
test -s "$out"
echo "$out"
