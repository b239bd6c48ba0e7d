"""Shared test helpers: where the shared data lives, and skipping cleanly when it is absent."""

from __future__ import annotations

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
def one_thread():
    """Tiny tensors: on a shared 2-core machine, intra-op threads only add contention (~100x)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


NO_DATA = "needs the shared data"
NO_DATA_STATUS = "skipped: no ../shared/data"


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    """Tests skipped for want of ../shared/data get a category of their own, so the final
    summary line counts them apart from other skips ("... 31 skipped: no ../shared/data")."""
    if report.skipped and NO_DATA in str(report.longrepr):
        return NO_DATA_STATUS, "s", "SKIPPED (no ../shared/data)"
    return None
