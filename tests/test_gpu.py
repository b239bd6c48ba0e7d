"""CUDA: the same model on the CPU and on the GPU, stacked training on the GPU, and a clear
error where there is no GPU. The `gpu` tests skip without CUDA; bench/gpu_check.sh runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.test_training import TINY
from tests.test_training import store as store  # noqa: F401 - the module fixture
from trnet import configs
from trnet.models import SERSystem, load_config
from trnet.training.batched import train_batched
from trnet.training.trainer import spec_from_names

CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not CUDA, reason="needs CUDA")


def _inputs(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x, xe = (torch.randn(5, 160, 80, generator=g) * 3 + 8 for _ in range(2))
    return x, xe, torch.tensor([160, 120, 97, 60, 17])


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("system", configs.names())
def test_cpu_and_cuda_give_the_same_logits_and_c(system: str) -> None:
    """Eval mode, random weights and statistics; TF32 off (cuDNN would otherwise round the
    convolutions' inputs to 10 mantissa bits)."""
    torch.manual_seed(0)
    model = SERSystem(replace(load_config(system), width=8)).eval()
    for m in model.modules():  # statistics other than 0 / 1, so that they matter
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x, xe, frames = _inputs()
    with torch.no_grad():
        cpu = model(x, xe, frames)
        flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            gpu_out = model.cuda()(x.cuda(), xe.cuda(), frames.cuda())
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
    torch.testing.assert_close(gpu_out.logits.cpu(), cpu.logits, rtol=1e-4, atol=1e-4)
    if cpu.c is not None:
        torch.testing.assert_close(gpu_out.c.cpu(), cpu.c, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@gpu
def test_stacked_steps_on_cuda_equal_alone_steps_on_the_cpu() -> None:
    """The stacked trainer's step on CUDA against each run alone on the CPU, float64: 20 steps."""
    from tests.test_batched import _stacked_vs_alone

    stacked, _ = _stacked_vs_alone(torch.float64, "trnet-std-snr", device="cuda")
    assert stacked <= 1e-5


@pytest.mark.gpu
@gpu
@pytest.mark.slow
def test_a_stacked_grid_trains_on_cuda(store, tmp_path) -> None:  # noqa: F811
    specs = [
        spec_from_names(
            "trnet",
            fold,
            1,
            store,
            tmp_path,
            system_overrides=TINY,
            training_overrides={"epochs": 2, "batch_size": 8},
            device="cuda",
        )
        for fold in (0, 1, 2)
    ]
    train_batched(specs)
    for spec in specs:
        assert json.loads((spec.dir / "done.json").read_text())["epochs_run"] == 2
        assert (spec.dir.parent.parent / "baseline-c" / spec.dir.name / "done.json").exists()  # its teacher


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize(
    "command",
    [
        ["train", "--config", "trnet", "--fold", "0", "--store", "nowhere", "--out", "runs"],
        ["reproduce", "recipes/emodb-refinement.toml"],
        ["demo", "--quick"],
        ["predict", "x.wav", "--model", "nowhere"],
    ],
)
def test_cuda_without_cuda_is_one_line_and_exit_2(command: list[str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trnet.cli", *command, "--device", "cuda"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "CUDA is not available" in lines[0], result.stderr
