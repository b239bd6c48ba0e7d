"""`trnet complexity`: parameters and MACs of the seven systems (paper Table 2, docs/design.md §8).

Per 5 s utterance: a 500 x 80 LMFB input, all frames valid, batch 1; the SE front-end is
excluded. MACs are counted with torch.utils.flop_counter.FlopCounterMode (MACs = FLOPs / 2);
it counts convolutions and matrix products, which is where all but a fraction of a percent of
the work is (BatchNorm, ReLU, pooling and masking are not counted). Training = one forward of
the student plus, for systems with L_high, the frozen teacher's forward on X_s (no backward);
inference = the student alone, which never holds the teacher. Models are built on the meta
device: shapes only, no memory or compute."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from trnet import configs
from trnet.features import N_MELS
from trnet.features import T_MAX as FRAMES  # 5 s at a 10 ms shift, padded
from trnet.models import SERSystem, load_config, teacher_config


def _macs(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() // 2


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def complexity_table(encoder: str = "resnet", width: int = 32) -> list[dict]:
    """One row per system of the paper's Table 1, in table order: {system, train_params, train_macs, infer_params,
    infer_macs} (counts, not millions)."""
    rows = []
    with torch.device("meta"), torch.no_grad():
        feats = torch.zeros(1, FRAMES, N_MELS)
        lengths = torch.full((1,), FRAMES)
        for name in configs.names(paper_only=True):
            cfg = replace(load_config(name), encoder=encoder, width=width, n_mels=N_MELS)
            model = SERSystem(cfg).eval()
            params, macs = _params(model), _macs(lambda model=model: model(feats, feats, lengths))
            row = {
                "system": name,
                "train_params": params,
                "train_macs": macs,
                "infer_params": params,
                "infer_macs": macs,
            }
            if cfg.teacher:
                teacher = SERSystem(teacher_config(cfg)).eval()
                row["train_params"] += _params(teacher)
                row["train_macs"] += _macs(lambda teacher=teacher: teacher.embed(feats, lengths))
            rows.append(row)
    return rows


def format_table(rows: list[dict], encoder: str, width: int) -> str:
    lines = [
        f"Parameters and MACs per 5 s utterance ({FRAMES} x {N_MELS} LMFB), SE excluded; "
        f"encoder {encoder}, width {width}.",
        "Training: one forward of the student plus the frozen teacher where the system has one (no backward).",
        "",
        f"{'system':<15} {'train params (M)':>17} {'train MACs (G)':>15} "
        f"{'infer params (M)':>17} {'infer MACs (G)':>15}",
    ]
    for r in rows:
        lines.append(
            f"{r['system']:<15} {r['train_params'] / 1e6:>17.2f} {r['train_macs'] / 1e9:>15.2f} "
            f"{r['infer_params'] / 1e6:>17.2f} {r['infer_macs'] / 1e9:>15.2f}"
        )
    return "\n".join(lines)
