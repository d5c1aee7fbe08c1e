#!/usr/bin/env bash
# Creates (once) the Python environment of the service's client tests and benchmark peer
# in crates/server/python/.venv. Re-running is cheap: it reinstalls only when the
# requirements change.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
stamp="$venv/.requirements.sha256"
want="$(cat "$here/requirements.txt" "$here/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -r "$here/requirements.txt" -c "$here/constraints.txt"
echo "$want" > "$stamp"
