"""Train several runs of one system in one process, as one stacked model (`stacked.py`;
docs/design.md §7.1).

A run trained here is the run `trainer.train` would train: the same config.json (written
once, checked against the request first, refused on a mismatch), its own batches
(`train_batches(store, labels, rows, conds, batch_size, seed, epoch)`), validation set,
validation-based best epoch and early stopping, its own frozen teacher, log.csv, checkpoints
and done.json, under its own run lock; a killed run resumes from its last.safetensors, here
or alone. Its weights agree with the run trained alone to float rounding (the convolutions
of a stack add in another order; tested <= 1e-5 after 20 steps), not bit for bit.

Runs advance epoch by epoch together. At every step each run takes its next batch; runs
whose batches have the same size go through the model together, padded to the longest
(padding changes no output: the models mask exactly, docs/design.md §5), and split into
groups of similar length when that saves more frames than the extra call costs. A run whose
epoch has no more batches, or that has stopped, takes no step and its Adam state does not move.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from trnet import runs
from trnet.batches import Batch, condition_snr_db, fit_snr_input_stats, make_batch, n_train_batches, train_batches
from trnet.corpora import LABELS
from trnet.evaluation.metrics import uar, war
from trnet.models import SERSystem, build_teacher, teacher_config
from trnet.runs import RunError
from trnet.training.stacked import LOSS_KEYS, StackedSystem, has_dropout
from trnet.training.trainer import Prepared, RunSpec, _better, prepare, train
from trnet.utils import remove_temp_files

EVAL_BATCH = 64  # utterances per run and call in validation (trainer.validate's batch)
SPLIT_OVERHEAD = 64  # frames x runs one extra call is worth when grouping a step's runs by length


@dataclass
class _Run:
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


def train_batched(
    specs: list[RunSpec], quiet: bool = True, wait: bool = True, max_runs: int | None = None
) -> dict[Path, float | None]:
    """Train (or resume, or skip if finished) runs, those of one system and training config
    stacked `max_runs` at a time (None: all); teachers not yet trained are trained first, the
    same way. Returns run directory -> seconds spent (None: finished before)."""
    out: dict[Path, float | None] = {}
    groups: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        if spec.training.levers() or spec.system.input_norm != "none":
            raise RunError(
                f"{spec.dir}: the training levers ({', '.join(spec.training.levers()) or 'input_norm'}) are "
                "trained one run per model only (docs/design.md §7); set batch_runs = 1"
            )
        groups.setdefault((spec.system, spec.training, spec.device), []).append(spec)
    for group in groups.values():
        out.update(_train_group(group, quiet, wait, max_runs))
    return out


def _train_group(specs: list[RunSpec], quiet: bool, wait: bool, max_runs: int | None) -> dict[Path, float | None]:
    out: dict[Path, float | None] = {}
    todo: list[tuple[RunSpec, Prepared]] = []
    for spec in specs:
        prep = prepare(spec)
        runs.check_config(prep.out, prep.config)  # before anything is written
        if runs.is_finished(prep.out):
            runs.verify_best(prep.out)
            out[prep.out] = None
        else:
            todo.append((spec, prep))
    if not todo:
        return out
    cfg = todo[0][0].system
    if cfg.teacher:
        teacher_specs = [replace(spec, system=teacher_config(cfg)) for spec, _ in todo]
        missing = [t for t in teacher_specs if not runs.is_finished(t.dir)]
        if missing and not quiet:
            print(f"{len(missing)} teacher run(s) not trained yet: training Baseline-c first")
        train_batched(teacher_specs, quiet, wait, max_runs)  # checks finished teachers' settings too
    size = max_runs or len(todo)
    for start in range(0, len(todo), size):
        chunk = todo[start : start + size]
        t0 = time.time()
        with contextlib.ExitStack() as locks:
            ready = []
            for spec, prep in chunk:
                locks.enter_context(runs.lock(prep.out, wait=wait))
                runs.check_config(prep.out, prep.config)  # another process may have started it meanwhile
                if runs.is_finished(prep.out):
                    out[prep.out] = None
                    continue
                if not (prep.out / runs.CONFIG).exists():
                    runs.write_config(prep.out, prep.config)  # once: never rewritten
                remove_temp_files(prep.out)  # of a killed process
                ready.append((spec, prep))
            probe = SERSystem(cfg)
            if len(ready) == 1 or has_dropout(probe):  # nothing to stack, or RNG a stack would draw differently
                for spec, _ in ready:
                    train(spec, quiet=quiet)  # re-enters the lock this process holds
            elif ready:
                _train_stack(ready, quiet)
        for _, prep in chunk:
            out.setdefault(prep.out, time.time() - t0)
    return out


def _start(spec: RunSpec, prep: Prepared, device: torch.device, quiet: bool) -> _Run:
    """The run's model and optimizer as trainer._loop starts them, resumed from last.safetensors."""
    torch.manual_seed(spec.seed)
    model = SERSystem(spec.system)
    fit_snr_input_stats(model, prep.store, spec.fold, prep.conds)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.training.lr)
    run = _Run(spec, prep, model, optimizer)
    if (prep.out / runs.LAST).exists():
        run.epoch = runs.load_training_state(prep.out / runs.LAST, model, optimizer)
        run.history = runs.read_log(prep.out)[: run.epoch]
        for row in run.history:
            if _better(row, run.best):
                run.best = {"val_uar": row["val_uar"], "val_ce": row["val_ce"], "epoch": int(row["epoch"])}
        run.stale = sum(1 for row in run.history if int(row["epoch"]) > run.best["epoch"])
        if not quiet:
            print(f"resuming {prep.out} after epoch {run.epoch}")
    return run


def _train_stack(ready: list[tuple[RunSpec, Prepared]], quiet: bool) -> None:
    device = torch.device(ready[0][0].device)
    cfg, training = ready[0][0].system, ready[0][0].training
    rs = [_start(spec, prep, device, quiet) for spec, prep in ready]
    teachers = None
    if cfg.teacher:
        tcfg = teacher_config(cfg)
        teachers = [build_teacher(runs.read_best(replace(r.spec, system=tcfg).dir), tcfg) for r in rs]
    model = StackedSystem(cfg, [r.model for r in rs], teachers, training.lr, device)
    for i, r in enumerate(rs):
        model.adam.load(i, r.optimizer)
    if teachers is not None and cfg.beta:
        _teacher_cache(model, rs)
    bar = tqdm(
        total=sum(training.epochs - r.epoch for r in rs), desc=f"{cfg.name} x{len(rs)}", disable=quiet, leave=False
    )
    while True:
        for r in rs:
            if not r.done and (r.epoch >= training.epochs or r.stale >= training.patience):
                _finish(r)
        active = [i for i, r in enumerate(rs) if not r.done]
        if not active:
            break
        t0 = time.perf_counter()
        sums, steps = _epoch(model, rs, active)
        vals = _validate(model, rs, active)
        seconds = time.perf_counter() - t0
        for i in active:
            _end_epoch(model, i, rs[i], sums[i], steps[i], vals[i], seconds, quiet)
        bar.update(len(active))
    bar.close()


def _teacher_cache(model: StackedSystem, rs: list[_Run]) -> None:
    """Each run's teacher h_s of each of its training utterances, computed once: the teacher is
    frozen and reads the clean X_s, so h_s of an utterance is the same at every step (up to
    float rounding, which padding to other lengths would change anyway)."""
    items = {}
    for i, r in enumerate(rs):
        rows = np.asarray(r.prep.train_rows)
        items[i] = [(int(row), 0) for row in rows[np.argsort(r.prep.store.frames[rows], kind="stable")]]
    for rows, chunks, batches in _chunked(rs, items, [["clean"]] * len(rs)):
        x, xe, xs, lengths = _stack(batches, model.device)
        h = model.teacher_h(rows, xs, lengths).cpu()
        for j, i in enumerate(rows):
            r = rs[i]
            if r.h_s is None:
                r.h_s = torch.full((len(r.prep.store), h.shape[-1]), float("nan"))
            r.h_s[[row for row, _ in chunks[i]]] = h[j, : len(chunks[i])]


def _chunked(rs: list[_Run], items: dict[int, list[tuple[int, int]]], conds: list) -> Iterator[tuple]:
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
            batches.append(make_batch(p.store, p.labels, idx, [cond_of[c] for _, c in chunk]))
        yield rows, chunks, batches


def _epoch(model: StackedSystem, rs: list[_Run], active: list[int]) -> tuple[dict, dict]:
    """One epoch of every active run (each its own next epoch); loss sums and step counts."""
    batch_size = rs[0].spec.training.batch_size
    iters = {
        i: train_batches(
            rs[i].prep.store,
            rs[i].prep.labels,
            rs[i].prep.train_rows,
            rs[i].prep.conds,
            batch_size,
            rs[i].spec.seed,
            rs[i].epoch,
        )
        for i in active
    }
    sums = {i: torch.zeros(len(LOSS_KEYS), dtype=torch.float64) for i in active}
    steps = dict.fromkeys(active, 0)
    while iters:
        heads = {}
        for i in list(iters):
            b = next(iters[i], None)
            if b is None:
                del iters[i]
            else:
                heads[i] = b
        by_size: dict[int, list[int]] = {}
        for i, b in heads.items():
            by_size.setdefault(len(b.index), []).append(i)
        for rows in by_size.values():
            for group in split_by_length(rows, [heads[i].x.shape[1] for i in rows]):
                lrs = [_lr(rs[i], steps[i]) for i in group]
                losses = _step(model, rs, group, [heads[i] for i in group], lrs).to("cpu", torch.float64)
                for j, i in enumerate(group):
                    sums[i] += losses[j]
                    steps[i] += 1
    return sums, steps


def split_by_length(rows: list[int], lengths: list[int], overhead: int = SPLIT_OVERHEAD) -> list[list[int]]:
    """Groups of `rows` (sorted ascending within each group) whose batches are padded to their
    group's longest: the partition, into runs of similar length, that minimises
    sum(len(group) x longest) + overhead per group (dynamic programming over the sorted lengths)."""
    order = sorted(range(len(rows)), key=lambda k: lengths[k])
    n = len(order)
    cost, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(end):
            c = cost[start] + (end - start) * lengths[order[end - 1]] + overhead
            if c < cost[end]:
                cost[end], cut[end] = c, start
    groups, end = [], n
    while end > 0:
        groups.append(sorted(rows[k] for k in order[cut[end] : end]))
        end = cut[end]
    return groups[::-1]


def _pad(t: torch.Tensor, frames: int) -> torch.Tensor:
    return F.pad(t, (0, 0, 0, frames - t.shape[1])) if t.shape[1] < frames else t


def _stack(batches: list[Batch], device: torch.device) -> tuple[torch.Tensor, ...]:
    frames = max(b.x.shape[1] for b in batches)
    x, xe, xs = (torch.stack([_pad(getattr(b, k), frames) for b in batches]).to(device) for k in ("x", "xe", "xs"))
    lengths = torch.stack([b.frames for b in batches]).to(device)
    return x, xe, xs, lengths


def _lr(r: _Run, step: int) -> float:
    """The run's learning rate at this step of its epoch (trainer._loop: a function of the global step)."""
    per_epoch = n_train_batches(len(r.prep.train_rows), r.spec.training.batch_size)
    return r.spec.training.lr_at(r.epoch * per_epoch + step, per_epoch)


def _step(
    model: StackedSystem, rs: list[_Run], group: list[int], batches: list[Batch], lrs: list[float]
) -> torch.Tensor:
    x, xe, xs, lengths = _stack(batches, model.device)
    y = torch.stack([b.y for b in batches]).to(model.device)
    snr = torch.stack([condition_snr_db(b.conditions) for b in batches]).to(model.device)
    h_s = None
    if rs[group[0]].h_s is not None:
        h_s = torch.stack([rs[i].h_s[b.index] for i, b in zip(group, batches)]).to(model.device)
    try:
        return model.train_step(group, x, xe, xs, lengths, y, snr, h_s, lrs)
    except FloatingPointError as err:
        r = rs[err.args[0][0]]
        raise RunError(
            f"run {r.prep.out}: the loss is not finite at epoch {r.epoch + 1}; training stopped, the run "
            f"is not finished. Look for NaN/Inf in the store {r.spec.store} (rebuild it), or lower the "
            f"learning rate"
        ) from None


def _validate(model: StackedSystem, rs: list[_Run], active: list[int]) -> dict[int, dict]:
    """trainer.validate for every active run: its validation speaker under every training
    condition, all conditions in one pass (sorted by length), runs side by side."""
    items = {}
    for i in active:
        p = rs[i].prep
        pairs = [(int(row), c) for c in range(len(p.conds)) for row in p.val_rows]
        pairs.sort(key=lambda rc: p.store.frames[rc[0]])
        items[i] = pairs
    outs = {i: ([], [], []) for i in active}  # logits, c, condition index, in item order
    c = None
    for rows, chunks, batches in _chunked(rs, items, [None] * len(rs)):
        x, xe, _, lengths = _stack(batches, model.device)
        logits, c = model.predict(rows, x, xe, lengths)
        for j, i in enumerate(rows):
            n = len(chunks[i])
            outs[i][0].append(logits[j, :n].cpu())
            outs[i][1].append(c[j, :n].cpu() if c is not None else None)
            outs[i][2].extend(cond for _, cond in chunks[i])
    vals = {}
    for i in active:
        p = rs[i].prep
        logits = torch.cat(outs[i][0])
        y = torch.from_numpy(p.labels[np.array([row for row, _ in items[i]])])
        ce = F.cross_entropy(logits, y, reduction="none").double()
        conds = torch.tensor(outs[i][2])
        yhat = logits.softmax(-1).argmax(1).numpy()
        cs = torch.cat(outs[i][1]).numpy() if c is not None and outs[i][1][0] is not None else None
        vals[i] = {
            "val_uar": uar(y.numpy(), yhat, len(LABELS)),
            "val_war": war(y.numpy(), yhat),
            "val_ce": float(np.mean([ce[conds == k].mean().item() for k in range(len(p.conds))])),
            "mean_c": float(np.mean(cs)) if cs is not None else float("nan"),
        }
    return vals


def _end_epoch(
    model: StackedSystem, i: int, r: _Run, sums: torch.Tensor, steps: int, val: dict, seconds: float, quiet: bool
) -> None:
    """trainer._loop's end of an epoch for run i: log row, best weights, last checkpoint."""
    epoch = r.epoch + 1
    if not np.isfinite(val["val_ce"]):
        raise RunError(
            f"run {r.prep.out}: the validation loss is {val['val_ce']} after epoch {epoch}; training "
            f"stopped, the run is not finished. Look for NaN/Inf in the store {r.spec.store}"
        )
    mean = (sums / max(steps, 1)).tolist()
    row = {"epoch": epoch, **dict(zip(("loss", "ce", "low", "high", "coef"), mean)), **val, "seconds": seconds}
    r.history.append(row)
    model.adam.store(i, r.model, r.optimizer)  # the run's weights and moments, as the single trainer holds them
    if _better(val, r.best):
        r.best = {"val_uar": val["val_uar"], "val_ce": val["val_ce"], "epoch": epoch}
        runs.save_weights(r.prep.out / runs.BEST, r.model, {"epoch": str(epoch)})
        r.stale = 0
    else:
        r.stale += 1
    runs.write_log(r.prep.out, r.history)
    runs.save_training_state(r.prep.out / runs.LAST, r.model, r.optimizer, epoch)
    r.epoch = epoch
    if not quiet:
        tqdm.write(
            f"{r.spec.system.name} fold {r.spec.fold_name} seed {r.spec.seed} epoch {epoch}: "
            f"loss {row['loss']:.3f} val UAR {val['val_uar']:.3f} "
            f"(best {r.best['val_uar']:.3f} @ {r.best['epoch']})"
        )


def _finish(r: _Run) -> None:
    runs.write_finished(r.prep.out, {**r.best, "epochs_run": len(r.history)})
    (r.prep.out / runs.LAST).unlink(missing_ok=True)
    r.done = True
