"""Starts `liveprofile serve` on the bundled models for the client tests."""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
MODELS = REPO / "models"


def binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    path = target / "release" / "liveprofile"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `cargo build --release -p liveprofile` first")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(addr: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(addr)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if client.is_server_ready():
                return
        except Exception:  # not listening yet
            pass
        time.sleep(0.05)
    raise RuntimeError("server not ready in time")


@pytest.fixture(scope="session")
def server():
    """Address of a server on the bundled models; stopped with SIGTERM at the end."""
    port = free_port()
    addr = f"127.0.0.1:{port}"
    env = dict(os.environ, LIVEPROFILE_ADMIN_TOKEN="client-test-token")
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
