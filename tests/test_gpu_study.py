"""bench/gpu_study.sh on the CPU at a tiny size (TRNET_GPU_CHECK_DEVICE=cpu), on the test store:
the CPU reference step writes its file, the study trains and evaluates its grid on the fast path
and writes every key of gpu-study.txt, each finite (docs/gpu.md)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_training import store as store  # noqa: F401 - the module fixture

ROOT = Path(__file__).resolve().parents[1]
KEYS = (
    "runs",
    "width",
    "epochs",
    "train_seconds",
    "eval_seconds",
    "gpu_runs_per_hour",
    "cpu_runs_per_hour",
    "ratio",
    "max_abs_logit_diff_vs_fp32",
    "peak_gpu_mib",
)


@pytest.mark.slow
def test_the_study_script_runs_on_the_cpu_and_writes_every_key(store, tmp_path):  # noqa: F811
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHON": sys.executable}
    reference = subprocess.run(
        [sys.executable, "bench/gpu_study.py", "reference", "--store", str(store), "--work", str(tmp_path / "ref")]
        + ["--width", "4", "--epochs", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (tmp_path / "cpu-reference.txt").write_text(reference)
    env.update(
        TRNET_GPU_CHECK_DEVICE="cpu",
        TRNET_GPU_STUDY_STORE=str(store),
        TRNET_GPU_STUDY_REFERENCE=str(tmp_path / "cpu-reference.txt"),
        TRNET_GPU_STUDY_NO_INSTALL="1",
        OUT=str(tmp_path / "out"),
    )
    done = subprocess.run(["bash", "bench/gpu_study.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr + (tmp_path / "out" / "study.err").read_text()
    lines = (tmp_path / "out" / "gpu-study.txt").read_text().splitlines()
    values = dict(line.split(" = ", 1) for line in lines)
    assert values["device"] == "cpu"
    for key in KEYS:
        assert math.isfinite(float(values[key])), key
    assert int(values["runs"]) == 3 * 2  # three systems x two folds x one seed
    assert float(values["max_abs_logit_diff_vs_fp32"]) > 0  # bf16 was on
    assert values["cpu_reference_matches"] == "True"
    assert float(values["ratio"]) == pytest.approx(
        float(values["gpu_runs_per_hour"]) / float(values["cpu_runs_per_hour"]), rel=1e-2
    )
