"""Shared test helpers: where the shared data lives (and skipping cleanly when it is absent),
one-thread fixtures for a shared machine, and waiting for a process to reach a point before
killing it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason when it is not there."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the shared data at {path} (absent on this machine)")
    return path


@pytest.fixture(scope="session")
def emodb_dir() -> Path:
    return shared_path("emodb", "wav")


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread: tiny tensors on a shared 2-core machine gain nothing from intra-op
    threads, and more threads than free cores stall each other (~100x)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def one_openmp_thread() -> Iterator[None]:
    """One OpenMP/BLAS thread (t-SNE's), for the same reason."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until `path` exists; fail if `proc` ends first or `timeout` passes."""
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"process ended (rc {proc.returncode}) before {path} appeared"
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def kill_when(path: Path, proc: subprocess.Popen, group: bool = False, timeout: float = 120) -> None:
    """SIGKILL `proc` (its whole process group with `group`, as a crash would) once `path`
    exists, and reap it: the kill -9 of the resume tests."""
    try:
        wait_for(path, proc, timeout)
    finally:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


NO_DATA = "needs the shared data"
NO_DATA_STATUS = "skipped: no ../shared/data"


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    """Tests skipped for want of ../shared/data get a category of their own, so the final
    summary line counts them apart from other skips ("... 31 skipped: no ../shared/data")."""
    if report.skipped and NO_DATA in str(report.longrepr):
        return NO_DATA_STATUS, "s", "SKIPPED (no ../shared/data)"
    return None
