"""Shared fixtures: every notebook in notebooks/ is run once in smoke mode per session.

Notebooks with a ``data_dir`` parameter read the output of ``training/make_data.sh``;
each test run builds it once with ``--small`` into a temporary folder (the Rust pipeline,
so a fresh clone produces its own data; the script builds the release binary if it is
missing). The tests read only data inside the repository: the Taobao table comes from the
synthetic file ``training/datasets/taobao-synthetic/UserBehavior.synthetic.csv`` and
notebooks with a ``data_path`` parameter get the UCI copy in ``training/datasets/``. The
real data sets (``$LIVEPROFILE_DATASETS``, default ``../shared/datasets``) are used only by
the tests that say so, which skip when the file is absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from liveprofile_training import data

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
    """``make_data.sh --small`` into a temporary folder, once per test run.

    The Taobao input is the synthetic test file, whatever ``TAOBAO_CSV`` the caller has set.
    """
    out = tmp_path_factory.mktemp("data")
    env = dict(os.environ, TAOBAO_CSV=str(data.SYNTHETIC_TAOBAO_CSV))
    proc = subprocess.run(
        [str(MAKE_DATA), "--small", str(out)], capture_output=True, text=True, timeout=3600, env=env
    )
    if proc.returncode != 0:
        pytest.fail(f"make_data.sh --small failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return out


@pytest.fixture(scope="session")
def liveprofile_bin(small_data) -> Path:
    """The binary make_data.sh used (it builds it when missing), found as that script does."""
    if os.environ.get("LIVEPROFILE_BIN"):
        return Path(os.environ["LIVEPROFILE_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or "target")
    if not target.is_absolute():
        target = data.REPO_ROOT / target
    return target / "release" / "liveprofile"


def missing_real_dataset(relative: str) -> str | None:
    """None when the real data set file is there; else a skip reason naming the file and the variable."""
    path = data.datasets_dir() / relative
    if path.is_file():
        return None
    return (
        f"real data set absent: no {path} (set {data.DATASETS_ENV} to the folder that holds {relative}; "
        "see training/datasets/README.md)"
    )


@pytest.fixture(scope="session", params=NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def smoke_run(request, tmp_path_factory) -> SmokeRun:
    notebook: Path = request.param
    work = tmp_path_factory.mktemp(notebook.stem)
    models_dir = work / "models"
    output = work / notebook.name
    parameters = {"mode": "smoke", "models_dir": str(models_dir)}
    declared = notebook_parameters(notebook)
    if "data_dir" in declared:
        parameters["data_dir"] = str(request.getfixturevalue("small_data"))
    if "data_path" in declared:  # the UCI notebook: the copy in the repository
        parameters["data_path"] = str(data.BUNDLED_UCI_CSV)
    run_notebook(notebook, output, parameters)
    packages = sorted(p.parent for p in models_dir.glob("*/*/manifest.json"))
    data_dir = Path(parameters["data_dir"]) if "data_dir" in parameters else None
    return SmokeRun(notebook=notebook, output=output, models_dir=models_dir, packages=packages, data_dir=data_dir)


@pytest.fixture(scope="session")
def venv_prefix() -> str:
    return sys.prefix
