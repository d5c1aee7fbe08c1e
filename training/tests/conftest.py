"""Shared fixtures: every notebook in notebooks/ is run once in smoke mode per session.

Notebooks with a ``data_dir`` parameter read the output of ``training/make_data.sh``;
each test run builds it once with ``--small`` into a temporary folder (the Rust pipeline,
so a fresh clone produces its own data; the script builds the release binary if it is
missing).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TRAINING_DIR = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = TRAINING_DIR / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
MAKE_DATA = TRAINING_DIR / "make_data.sh"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@dataclass
class SmokeRun:
    notebook: Path
    output: Path
    models_dir: Path
    packages: list[Path]
    data_dir: Path | None = None


def run_notebook(notebook: Path, output: Path, parameters: dict) -> None:
    import papermill

    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(notebook.parent),
        progress_bar=False,
        log_output=False,
    )


def notebook_parameters(notebook: Path) -> dict:
    import papermill

    return papermill.inspect_notebook(str(notebook))


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """``make_data.sh --small`` into a temporary folder, once per test run."""
    out = tmp_path_factory.mktemp("data")
    proc = subprocess.run(
        [str(MAKE_DATA), "--small", str(out)], capture_output=True, text=True, timeout=3600
    )
    if proc.returncode != 0:
        pytest.fail(f"make_data.sh --small failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return out


@pytest.fixture(scope="session", params=NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def smoke_run(request, tmp_path_factory) -> SmokeRun:
    notebook: Path = request.param
    work = tmp_path_factory.mktemp(notebook.stem)
    models_dir = work / "models"
    output = work / notebook.name
    parameters = {"mode": "smoke", "models_dir": str(models_dir)}
    if "data_dir" in notebook_parameters(notebook):
        parameters["data_dir"] = str(request.getfixturevalue("small_data"))
    run_notebook(notebook, output, parameters)
    packages = sorted(p.parent for p in models_dir.glob("*/*/manifest.json"))
    data_dir = Path(parameters["data_dir"]) if "data_dir" in parameters else None
    return SmokeRun(notebook=notebook, output=output, models_dir=models_dir, packages=packages, data_dir=data_dir)


@pytest.fixture(scope="session")
def venv_prefix() -> str:
    return sys.prefix
