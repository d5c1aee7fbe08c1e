"""Helpers shared by the client tests and the benchmark: free loopback ports and waiting
for a KServe v2 server to be ready."""

import socket
import subprocess
import time


def free_port() -> int:
    """A loopback port that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(addr: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Polls ServerReady until true; fails if the process exits or the time runs out."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(addr)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            if client.is_server_ready():
                return
        except Exception:  # not listening yet
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{addr} not ready after {timeout} s")
