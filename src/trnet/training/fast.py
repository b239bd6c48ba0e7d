"""The fast path of the stacked trainer (docs/design.md §7.1, "Stacked training"): a setting of
`train_batched`, off by default, for a GPU whose time is short. The float32 path stays the
reference; this one trades exactness for throughput, and a run trained with it records so in its
config.json (`fast_path`), so that it is never resumed or taken as a float32 run.

- bf16 autocast of the forward passes (weights, Adam moments, losses and the weight average
  stay float32): the logits move by a bounded amount (tests/test_gpu_fast.py states it);
- an optional `torch.compile` of the stacked step (`compile`: its mode, e.g. "reduce-overhead");
- no host synchronisation inside an epoch: losses are summed on the device and checked once at
  the epoch's end, where a non-finite one stops training with an error before anything of that
  epoch is saved;
- the condition store resident in device memory as float16 (`DeviceStore`), when it fits, so a
  batch is gathered on the device instead of read, converted and copied from the host;
- validation on the device, one transfer per run and epoch.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from trnet.batches import CROP_MULTIPLE, Batch
from trnet.store import ConditionStore, condition_name
from trnet.store.layout import SHAPE
from trnet.training.stacked import StackedSystem

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
RESIDENT_SHARE = 0.6  # of the free device memory a resident store may take
# max |logit(fast path) - logit(float32)| after the same training steps from the same weights
# (tests/test_gpu_fast.py: measured on the CPU's bf16 autocast, and by bench/gpu_study.py on the
# device), for LMFB inputs of the store's scale; bf16 keeps 8 bits of mantissa (~4e-3 relative)
LOGIT_TOLERANCE = 0.02


@dataclass(frozen=True)
class FastPath:
    bf16: bool = True  # autocast to bfloat16 (CUDA, and the CPU for the tests)
    compile: str | None = None  # torch.compile mode (COMPILE_MODES), None: eager
    resident: bool = True  # the store in device memory (float16) when it fits

    def __post_init__(self) -> None:
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)} or None, got {self.compile!r}")

    def record(self) -> dict:
        """What config.json records of it (numerics only: residency changes no number)."""
        return {"bf16": self.bf16, "compile": self.compile}


def store_bytes(store: ConditionStore, conds: Sequence) -> int:
    """Bytes of a store's X_s and the X and X_e of `conds`, as float16."""
    return (1 + 2 * len(conds)) * len(store) * int(np.prod(SHAPE)) * 2


def fits(nbytes: int, device: torch.device) -> bool:
    """Whether `nbytes` fit in RESIDENT_SHARE of the device's free memory (the CPU: always)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= RESIDENT_SHARE * free


class DeviceStore:
    """The arrays of a ConditionStore that a stack reads, copied once into device memory as float16:
    X_s [U, T, F], and X and X_e [C, U, T, F] of each training condition. `batch` gathers what
    `trnet.batches.make_batch` reads from disk, the same values (float16 widened to float32)."""

    def __init__(self, store: ConditionStore, conds: Sequence, device: torch.device):
        self.store, self.device = store, device
        self.index = {condition_name(c): k for k, c in enumerate(conds)}
        n = len(store)
        self.xs = torch.from_numpy(np.array(store.clean())).to(device)
        self.x = torch.empty((len(conds), n, *SHAPE), dtype=torch.float16, device=device)
        self.xe = torch.empty_like(self.x)
        for k, c in enumerate(conds):
            self.x[k].copy_(torch.from_numpy(np.array(store.noisy(c))))
            self.xe[k].copy_(torch.from_numpy(np.array(store.enhanced(c))))
        self.frames = torch.from_numpy(store.frames.copy())

    def batch(self, labels: np.ndarray, index: np.ndarray, conds: Sequence) -> Batch:
        """make_batch(store, labels, index, conds) from device memory (frames and labels stay on
        the host, where the augmentation draws read them; `trnet.training.batched._stack` moves them)."""
        frames = self.store.frames[index]
        t = int(min(SHAPE[0], -(-max(int(frames.max()), 1) // CROP_MULTIPLE) * CROP_MULTIPLE))
        rows = torch.from_numpy(np.asarray(index)).to(self.device)
        ks = torch.tensor([self.index[condition_name(c)] for c in conds], device=self.device)
        return Batch(
            self.x[ks, rows, :t].float(),
            self.xe[ks, rows, :t].float(),
            self.xs[rows, :t].float(),
            torch.from_numpy(frames.copy()),
            torch.from_numpy(labels[index]),
            index,
            list(conds),
        )


def resident_stores(preps: Sequence, device: torch.device, quiet: bool = True) -> dict[str, DeviceStore] | None:
    """One DeviceStore per store path the runs read (each with the union of their conditions), or
    None when they do not fit together (the batches are then read from the host, as without it)."""
    wanted: dict[str, tuple[ConditionStore, dict]] = {}
    for p in preps:
        store, conds = wanted.setdefault(str(p.store.root), (p.store, {}))
        for c in p.conds:
            conds.setdefault(condition_name(c), c)
    need = sum(store_bytes(store, conds) for store, conds in wanted.values())
    if not fits(need, device):
        if not quiet:
            print(
                f"fast path: the store ({need / 2**30:.1f} GiB as float16) does not fit on {device}; read from the host"
            )
        return None
    return {key: DeviceStore(store, list(conds.values()), device) for key, (store, conds) in wanted.items()}


def describe(fast: FastPath | None) -> dict:
    return asdict(fast) if fast is not None else {}


def logit_drift(
    cfg,
    models: Sequence[torch.nn.Module],
    steps: Sequence[tuple[torch.Tensor, ...]],
    probe: tuple[torch.Tensor, ...],
    device: torch.device | str,
    teachers: Sequence[torch.nn.Module] | None = None,
    **levers,
) -> float:
    """max |logits| difference between the fast path (bf16 autocast) and the float32 reference,
    both stacks started from copies of `models` and trained on the same `steps` (x, xe, xs,
    frames, y, snr_db: [R, B, ...] each), then run on `probe` (x, xe, frames) with the weight
    average when the levers keep one. TF32 is off for the reference, so that it is float32."""
    rows = list(range(len(models)))
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    logits = []
    try:
        for fast in (False, True):
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = fast
            stack = StackedSystem(
                cfg, [copy.deepcopy(m) for m in models], teachers, 1e-3, device, autocast=fast, **levers
            )
            for step in steps:
                stack.train_step(rows, *(t.to(device) for t in step), check_finite=not fast)
            out, _ = stack.predict(rows, *(t.to(device) for t in probe), average=stack.average is not None)
            logits.append(out.float().cpu())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    return float((logits[0] - logits[1]).abs().max())
