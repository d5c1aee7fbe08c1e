#!/usr/bin/env bash
# Creates (once) crates/python/.venv with the package's test, Spark and benchmark
# requirements, checks that Java (for Spark in local mode) is there (installing Debian's
# OpenJDK 17 if not), then builds the `liveprofile` package from this checkout with
# maturin and installs it into the venv. Re-running rebuilds only what changed (cargo
# keeps the workspace's target folder) and reinstalls only when requirements change.
#
#   crates/python/setup_venv.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
stamp="$venv/.requirements.sha256"
want="$(cat "$here/requirements.txt" | sha256sum | cut -d' ' -f1)"

if ! command -v java >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi

if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" > "$stamp"
fi

# The package from this checkout, built with the venv's maturin into the workspace's target
# folder (so the Rust crates it shares with the workspace are compiled once).
PATH="$venv/bin:$PATH" "$venv/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation --no-deps \
  --force-reinstall "$here"
"$venv/bin/python" -c 'import liveprofile, sys; print(f"liveprofile {liveprofile.__version__} in {sys.prefix}")'
