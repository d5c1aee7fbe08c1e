"""Shared fixtures: every notebook in notebooks/ is run once in smoke mode per session."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TRAINING_DIR = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = TRAINING_DIR / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@dataclass
class SmokeRun:
    notebook: Path
    output: Path
    models_dir: Path
    packages: list[Path]


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


@pytest.fixture(scope="session", params=NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def smoke_run(request, tmp_path_factory) -> SmokeRun:
    notebook: Path = request.param
    work = tmp_path_factory.mktemp(notebook.stem)
    models_dir = work / "models"
    output = work / notebook.name
    run_notebook(notebook, output, {"mode": "smoke", "models_dir": str(models_dir)})
    packages = sorted(p.parent for p in models_dir.glob("*/*/manifest.json"))
    return SmokeRun(notebook=notebook, output=output, models_dir=models_dir, packages=packages)


@pytest.fixture(scope="session")
def venv_prefix() -> str:
    return sys.prefix
