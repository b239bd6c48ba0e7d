"""A run inside a stack (`trnet.training.batched`; docs/design.md §7.1): its state, its batches
(from the host store, or from device memory on the fast path), and the evaluation-mode passes
over the stack: the teachers' h_s cache and validation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from trnet.batches import Batch, make_batch
from trnet.corpora import LABELS
from trnet.evaluation.metrics import uar, war
from trnet.models import SERSystem
from trnet.training.averaging import WeightAverage
from trnet.training.fast import DeviceStore
from trnet.training.stacked import StackedSystem
from trnet.training.trainer import Prepared, RunSpec

EVAL_BATCH = 64  # utterances per run and call in validation (trainer.validate's batch)


@dataclass
class StackRun:
    spec: RunSpec
    prep: Prepared
    model: SERSystem
    optimizer: torch.optim.Optimizer
    epoch: int = 0  # epochs finished
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"val_uar": -1.0, "val_ce": float("inf"), "epoch": -1})
    stale: int = 0
    done: bool = False
    h_s: torch.Tensor | None = None  # the frozen teacher's h_s of every store row (training rows filled)
    average: WeightAverage | None = None  # the weight average's checkpoint form (training.ema_decay)
    resident: DeviceStore | None = None  # the run's store in device memory (fast path)


def teacher_cache(model: StackedSystem, rs: list[StackRun]) -> None:
    """Each run's teacher h_s of each of its training utterances, computed once: the teacher is
    frozen and reads the clean X_s, so h_s of an utterance is the same at every step (up to
    float rounding, which padding to other lengths would change anyway). Kept on the device
    with a resident store (the fast path), else on the host."""
    items = {}
    for i, r in enumerate(rs):
        rows = np.asarray(r.prep.train_rows)
        items[i] = [(int(row), 0) for row in rows[np.argsort(r.prep.store.frames[rows], kind="stable")]]
    for rows, chunks, batches in chunked(rs, items, [["clean"]] * len(rs)):
        x, xe, xs, lengths = stack_batches(batches, model.device)
        h = model.teacher_h(rows, xs, lengths)
        for j, i in enumerate(rows):
            r = rs[i]
            where = model.device if r.resident is not None else torch.device("cpu")
            if r.h_s is None:
                r.h_s = torch.full((len(r.prep.store), h.shape[-1]), float("nan"), device=where)
            r.h_s[[row for row, _ in chunks[i]]] = h[j, : len(chunks[i])].to(where)


def batch_of(r: StackRun, index: np.ndarray, conds: list) -> Batch:
    """make_batch, from device memory when the run's store is resident (the fast path)."""
    p = r.prep
    return (
        r.resident.batch(p.labels, index, conds)
        if r.resident is not None
        else make_batch(p.store, p.labels, index, conds)
    )


def chunked(rs: list[StackRun], items: dict[int, list[tuple[int, int]]], conds: list) -> Iterator[tuple]:
    """Eval-mode calls over each run's (store row, condition index) items, EVAL_BATCH per run
    and call: (runs in the call, their items, their batches padded to one size)."""
    n_calls = max(-(-len(v) // EVAL_BATCH) for v in items.values())
    for k in range(n_calls):
        rows = [i for i in items if k * EVAL_BATCH < len(items[i])]
        chunks = {i: items[i][k * EVAL_BATCH : (k + 1) * EVAL_BATCH] for i in rows}
        size = max(len(c) for c in chunks.values())
        batches = []
        for i in rows:
            p, chunk = rs[i].prep, chunks[i]
            chunk = chunk + [chunk[-1]] * (size - len(chunk))  # eval mode: examples are independent
            idx = np.array([row for row, _ in chunk])
            cond_of = conds[i] if isinstance(conds[i], list) else p.conds
            batches.append(batch_of(rs[i], idx, [cond_of[c] for _, c in chunk]))
        yield rows, chunks, batches


def pad(t: torch.Tensor, frames: int) -> torch.Tensor:
    return F.pad(t, (0, 0, 0, frames - t.shape[1])) if t.shape[1] < frames else t


def stack_batches(batches: list[Batch], device: torch.device) -> tuple[torch.Tensor, ...]:
    frames = max(b.x.shape[1] for b in batches)
    x, xe, xs = (torch.stack([pad(getattr(b, k), frames) for b in batches]).to(device) for k in ("x", "xe", "xs"))
    lengths = torch.stack([b.frames for b in batches]).to(device)
    return x, xe, xs, lengths


def validate_runs(model: StackedSystem, rs: list[StackRun], active: list[int]) -> dict[int, dict]:
    """trainer.validate for every active run (of its weight average, when it keeps one): its
    validation speaker under every training condition, all conditions in one pass (sorted by
    length), runs side by side; logits stay on the device until a run's last call."""
    items = {}
    for i in active:
        p = rs[i].prep
        pairs = [(int(row), c) for c in range(len(p.conds)) for row in p.val_rows]
        pairs.sort(key=lambda rc: p.store.frames[rc[0]])
        items[i] = pairs
    outs = {i: ([], [], []) for i in active}  # logits, c, condition index, in item order
    c = None
    for rows, chunks, batches in chunked(rs, items, [None] * len(rs)):
        x, xe, _, lengths = stack_batches(batches, model.device)
        logits, c = model.predict(rows, x, xe, lengths, average=model.average is not None)
        for j, i in enumerate(rows):
            n = len(chunks[i])
            outs[i][0].append(logits[j, :n])
            outs[i][1].append(c[j, :n] if c is not None else None)
            outs[i][2].extend(cond for _, cond in chunks[i])
    vals = {}
    for i in active:
        p = rs[i].prep
        logits = torch.cat(outs[i][0]).cpu()
        y = torch.from_numpy(p.labels[np.array([row for row, _ in items[i]])])
        ce = F.cross_entropy(logits, y, reduction="none").double()
        conds = torch.tensor(outs[i][2])
        yhat = logits.softmax(-1).argmax(1).numpy()
        cs = torch.cat(outs[i][1]).cpu().numpy() if c is not None and outs[i][1][0] is not None else None
        vals[i] = {
            "val_uar": uar(y.numpy(), yhat, len(LABELS)),
            "val_war": war(y.numpy(), yhat),
            "val_ce": float(np.mean([ce[conds == k].mean().item() for k in range(len(p.conds))])),
            "mean_c": float(np.mean(cs)) if cs is not None else float("nan"),
        }
    return vals
