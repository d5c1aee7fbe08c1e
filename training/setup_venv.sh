#!/usr/bin/env bash
# Create training/.venv (if missing) and install the pinned requirements into it.
# Safe to run again: an existing venv is reused and satisfied pins are left alone.
# Nothing is installed outside the venv.
#
#   training/setup_venv.sh            # uses python3 from PATH
#   PYTHON=python3.11 training/setup_venv.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi
vpy="$venv/bin/python"

"$vpy" -m pip install --disable-pip-version-check --quiet \
    -r "$here/requirements.txt" -c "$here/constraints.txt"

# The liveprofile package (the Rust runtime and feature pipeline in process) from this
# checkout: notebooks build features with it and check every package they publish against
# the served runtime. cargo keeps the workspace's target folder, so a rebuild is quick.
PATH="$venv/bin:$PATH" "$vpy" -m pip install --disable-pip-version-check --quiet \
    --no-build-isolation --no-deps --force-reinstall "$here/../crates/python"

# Make liveprofile_training importable from the venv (notebooks, pytest, scripts).
site="$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
printf '%s\n' "$here" > "$site/liveprofile_training.pth"

# Kernel spec "python3" inside the venv, pinned to the venv's interpreter, so that
# papermill -k python3 runs notebooks with this environment.
"$vpy" -m ipykernel install --sys-prefix --name python3 \
    --display-name "Python 3 (liveprofile training)" >/dev/null

TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0 "$vpy" - <<'PY'
import sys
import keras, liveprofile, onnx, onnxruntime, papermill, tensorflow, tf2onnx  # noqa: F401
import liveprofile_training
print(f"training venv ready: {sys.executable}")
PY
