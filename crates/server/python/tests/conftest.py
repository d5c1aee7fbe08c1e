"""Starts `liveprofile serve` on the bundled models for the client tests."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from servers import free_port, wait_ready  # noqa: E402

REPO = Path(__file__).resolve().parents[4]
MODELS = REPO / "models"


def binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    path = target / "release" / "liveprofile"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `cargo build --release -p liveprofile` first")
    return path


@pytest.fixture(scope="session")
def server():
    """Address of a server on the bundled models; stopped with SIGTERM at the end."""
    port = free_port()
    addr = f"127.0.0.1:{port}"
    data = tempfile.mkdtemp(prefix="liveprofile-client-tests-")
    env = dict(os.environ, LIVEPROFILE_ADMIN_TOKEN="client-test-token", LIVEPROFILE_DATA_DIR=data)
    process = subprocess.Popen(
        [str(binary()), "serve", "--models", str(MODELS), "--addr", addr, "--metrics-addr", f"127.0.0.1:{free_port()}"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(addr, process)
        yield addr
    finally:
        process.terminate()
        try:
            _, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        assert process.returncode == 0, err[-2000:]
        assert "drained" in err, err[-2000:]


def golden(model: str):
    """Manifest and golden examples of version 1 of a bundled model."""
    folder = MODELS / model / "1"
    manifest = json.loads((folder / "manifest.json").read_text())
    examples = json.loads((folder / "golden.json").read_text())
    return manifest, examples
