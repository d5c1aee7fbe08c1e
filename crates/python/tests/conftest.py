"""Shared fixtures: the repository's bundled models, the CLI binary, simulated events and the
CLI's own tables for them, and a Spark session in local mode."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[3]
MODELS = REPO / "models"
BUNDLED = sorted(p.parent for p in MODELS.glob("*/*/manifest.json"))

# A small simulation: enough users for every tag and platform, a label window inside it.
SIM_USERS = 1_500
SIM_DAYS = 7
SIM_SEED = 11
CUTOFF = "2026-11-06T00:00:00+08:00"
LABEL_WINDOW = "2d"


def cli_binary() -> Path:
    """``LIVEPROFILE_BIN``, else the release binary of the workspace's target folder."""
    if os.environ.get("LIVEPROFILE_BIN"):
        return Path(os.environ["LIVEPROFILE_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "release" / "liveprofile"


def run_cli(*args: object) -> str:
    binary = cli_binary()
    if not binary.exists():
        pytest.fail(f"no liveprofile binary at {binary}: cargo build --release -p liveprofile (or set LIVEPROFILE_BIN)")
    done = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        pytest.fail(f"liveprofile {' '.join(map(str, args))} failed:\n{done.stderr}")
    return done.stdout


class Cli:
    """The CLI's outputs for one simulation: events, user features and examples."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.events = root / "events.parquet"
        self.features = root / "features.parquet"
        self.examples = root / "examples.parquet"
        run_cli("simulate", "--users", SIM_USERS, "--days", SIM_DAYS, "--seed", SIM_SEED, "--out", self.events)
        run_cli("features", "build", "--events", self.events, "--cutoff", CUTOFF, "--label-window", LABEL_WINDOW,
                "--out", self.features)
        run_cli("features", "examples", "--events", self.events, "--out", self.examples)
        # The examples table has a text `platform` id column beside the `platform` feature;
        # scoring by name needs one of them, so the scoring input keeps the feature.
        self.examples_to_score = root / "examples_to_score.parquet"
        table = pq.ParquetFile(self.examples).read()
        pq.write_table(table.remove_column(table.column_names.index("platform")), self.examples_to_score)

    def score(self, model: str, table: Path, keep: str) -> Path:
        out = self.root / f"{model}.{table.stem}.scores.parquet"
        if not out.exists():
            run_cli("score", "--models", MODELS, "--model", model, "--input", table, "--output", out, "--keep", keep)
        return out


@pytest.fixture(scope="session")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(tmp_path_factory.mktemp("cli"))


@pytest.fixture(scope="session")
def spark():
    """Spark in local mode with two cores, its Python workers on this interpreter."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.fail("Spark needs Java: crates/python/setup_venv.sh installs it")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("liveprofile-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "1000")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def read(path: Path):
    return pq.read_table(path)
