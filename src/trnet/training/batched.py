"""Train several runs of one system in one process, as one stacked model (`stacked.py`;
docs/design.md §7.1).

A run trained here is the run `trainer.train` would train: the same config.json (written
once, checked against the request first, refused on a mismatch), its own batches
(`train_batches(store, labels, rows, conds, batch_size, seed, epoch)`), validation set,
validation-based best epoch and early stopping, its own frozen teacher, log.csv, checkpoints
and done.json, under its own run lock; a killed run resumes from its last.safetensors, here
or alone. Its weights agree with the run trained alone to float rounding (the convolutions
of a stack add in another order; tested <= 1e-5 after 20 steps), not bit for bit. The training
levers (docs/design.md §7, "Training levers") act per run as in the single trainer: the same
augmentation draws (`batch_rng(seed, epoch, step)` of the run's own step), warm-up, AdamW,
label smoothing, its own weight average (validated and kept), the cached teacher, the input
normalisation.

`fast` (a `trnet.training.fast.FastPath`, off by default) trades exactness for GPU throughput:
bf16 autocast, an optional torch.compile, no host synchronisation inside an epoch, the store
resident in device memory, validation on the device; recorded in config.json.

Runs advance epoch by epoch together. At every step each run takes its next batch; runs
whose batches have the same size go through the model together, padded to the longest
(padding changes no output: the models mask exactly, docs/design.md §5), and split into
groups of similar length when that saves more frames than the extra call costs. A run whose
epoch has no more batches, or that has stopped, takes no step and its Adam state does not move.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from trnet import runs
from trnet.batches import (
    Batch,
    condition_snr_db,
    fit_snr_input_stats,
    n_train_batches,
    train_batches,
    train_order,
)
from trnet.models import SERSystem, build_teacher, teacher_config
from trnet.runs import RunError
from trnet.training.augment import augment, batch_rng
from trnet.training.averaging import WeightAverage
from trnet.training.fast import FastPath, resident_stores
from trnet.training.stacked import LOSS_KEYS, StackedSystem, has_dropout
from trnet.training.stacked_runs import StackRun, batch_of, stack_batches, teacher_cache
from trnet.training.stacked_runs import validate_runs as _validate
from trnet.training.trainer import Prepared, RunSpec, _better, prepare, train
from trnet.utils import remove_temp_files

SPLIT_OVERHEAD = 64  # frames x runs one extra call is worth when grouping a step's runs by length


def train_batched(
    specs: list[RunSpec],
    quiet: bool = True,
    wait: bool = True,
    max_runs: int | None = None,
    fast: FastPath | None = None,
) -> dict[Path, float | None]:
    """Train (or resume, or skip if finished) runs, those of one system and training config
    stacked `max_runs` at a time (None: all); teachers not yet trained are trained first, the
    same way. `fast`: the fast path (module docstring), None the float32 reference. Returns run
    directory -> seconds spent (None: finished before)."""
    out: dict[Path, float | None] = {}
    groups: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        if spec.training.ema_warmup:  # one decay per stack today: the ramp is the single trainer's
            raise RunError(
                f"{spec.dir}: ema_warmup is trained one run per model only (docs/design.md §7); set batch_runs = 1"
            )
        groups.setdefault((spec.system, spec.training, spec.device), []).append(spec)
    for group in groups.values():
        out.update(_train_group(group, quiet, wait, max_runs, fast))
    return out


def _prepare(spec: RunSpec, fast: FastPath | None) -> Prepared:
    """trainer.prepare, with the fast path recorded in config.json (a key only when it is on, so
    float32 runs keep their config and a run is resumed only on the path it was started on)."""
    prep = prepare(spec)
    return replace(prep, config={**prep.config, "fast_path": fast.record()}) if fast is not None else prep


def _train_group(
    specs: list[RunSpec], quiet: bool, wait: bool, max_runs: int | None, fast: FastPath | None
) -> dict[Path, float | None]:
    out: dict[Path, float | None] = {}
    todo: list[tuple[RunSpec, Prepared]] = []
    for spec in specs:
        prep = _prepare(spec, fast)
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
        train_batched(teacher_specs, quiet, wait, max_runs, fast)  # checks finished teachers' settings too
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
            if fast is None and (len(ready) == 1 or has_dropout(probe)):  # nothing to stack, or RNG a
                for spec, _ in ready:  # stack would draw differently
                    train(spec, quiet=quiet)  # re-enters the lock this process holds
            elif has_dropout(probe):
                raise RunError(f"{cfg.name}: the fast path stacks runs, and a model with dropout is not stacked")
            elif ready:
                _train_stack(ready, quiet, fast)
        for _, prep in chunk:
            out.setdefault(prep.out, time.time() - t0)
    return out


def _start(spec: RunSpec, prep: Prepared, device: torch.device, quiet: bool) -> StackRun:
    """The run's model, optimizer and weight average as trainer._loop starts them, resumed from
    last.safetensors."""
    torch.manual_seed(spec.seed)
    model = SERSystem(spec.system)
    fit_snr_input_stats(model, prep.store, spec.fold, prep.conds)
    model = model.to(device)
    t = spec.training
    optimizer = (
        torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        if t.weight_decay
        else torch.optim.Adam(model.parameters(), lr=t.lr)
    )
    average = WeightAverage(model, t.ema_decay) if t.ema_decay else None
    run = StackRun(spec, prep, model, optimizer, average=average)
    if (prep.out / runs.LAST).exists():
        run.epoch = runs.load_training_state(prep.out / runs.LAST, model, optimizer, average)
        run.history = runs.read_log(prep.out)[: run.epoch]
        for row in run.history:
            if _better(row, run.best):
                run.best = {"val_uar": row["val_uar"], "val_ce": row["val_ce"], "epoch": int(row["epoch"])}
        run.stale = sum(1 for row in run.history if int(row["epoch"]) > run.best["epoch"])
        if not quiet:
            print(f"resuming {prep.out} after epoch {run.epoch}")
    return run


def _train_stack(ready: list[tuple[RunSpec, Prepared]], quiet: bool, fast: FastPath | None = None) -> None:
    device = torch.device(ready[0][0].device)
    cfg, training = ready[0][0].system, ready[0][0].training
    rs = [_start(spec, prep, device, quiet) for spec, prep in ready]
    teachers = None
    if cfg.teacher:
        tcfg = teacher_config(cfg)
        teachers = [build_teacher(runs.read_best(replace(r.spec, system=tcfg).dir), tcfg) for r in rs]
    model = StackedSystem(
        cfg,
        [r.model for r in rs],
        teachers,
        training.lr,
        device,
        weight_decay=training.weight_decay,
        label_smoothing=training.label_smoothing,
        ema_decay=training.ema_decay,
        autocast=fast is not None and fast.bf16,
        compile_mode=fast.compile if fast is not None else None,
    )
    for i, r in enumerate(rs):
        model.adam.load(i, r.optimizer)
        if model.average is not None:
            model.average.load(i, r.average)
    if fast is not None and fast.resident:
        stores = resident_stores([r.prep for r in rs], device, quiet)
        for r in rs:
            r.resident = stores[str(r.prep.store.root)] if stores else None
    # the teachers' h_s once per utterance: the lever, or (without crops, where it equals the
    # per-batch h_s up to float rounding) always; with crops and without the lever, per batch
    if teachers is not None and cfg.beta and (training.teacher_cache or not training.crop_s):
        teacher_cache(model, rs)
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
        sums, steps = _epoch(model, rs, active, sync=fast is None)
        if fast is not None:
            check_sums(rs, sums)
        vals = _validate(model, rs, active)
        seconds = time.perf_counter() - t0
        for i in active:
            _end_epoch(model, i, rs[i], sums[i], steps[i], vals[i], seconds, quiet)
        bar.update(len(active))
    bar.close()


def _epoch(model: StackedSystem, rs: list[StackRun], active: list[int], sync: bool = True) -> tuple[dict, dict]:
    """One epoch of every active run (each its own next epoch, its own batches and augmentation
    draws, as trainer._loop's); loss sums (float64 on the host, or without `sync` float32 on
    the device, checked by _end_epoch) and step counts."""
    training = rs[0].spec.training
    augmenting = bool(training.crop_s or training.freq_masks or training.time_masks)
    iters = {}
    for i in active:
        r, p = rs[i], rs[i].prep
        order = train_order(
            p.store, p.train_rows, p.conds, training.batch_size, r.spec.seed, r.epoch, bucket=training.bucket
        )
        iters[i] = (
            (batch_of(r, idx, conds) for idx, conds in order)
            if r.resident is not None
            else train_batches(
                p.store,
                p.labels,
                p.train_rows,
                p.conds,
                training.batch_size,
                r.spec.seed,
                r.epoch,
                bucket=training.bucket,
            )
        )
    where, dtype = (torch.device("cpu"), torch.float64) if sync else (model.device, torch.float32)
    sums = {i: torch.zeros(len(LOSS_KEYS), dtype=dtype, device=where) for i in active}
    steps = dict.fromkeys(active, 0)
    while iters:
        heads = {}
        for i in list(iters):
            b = next(iters[i], None)
            if b is None:
                del iters[i]
            else:  # the single trainer's draws: the run's seed, epoch and step within the epoch
                heads[i] = augment(b, training, batch_rng(rs[i].spec.seed, rs[i].epoch, steps[i])) if augmenting else b
        by_size: dict[int, list[int]] = {}
        for i, b in heads.items():
            by_size.setdefault(len(b.index), []).append(i)
        for rows in by_size.values():
            for group in split_by_length(rows, [heads[i].x.shape[1] for i in rows]):
                lrs = [_lr(rs[i], steps[i]) for i in group]
                losses = _step(model, rs, group, [heads[i] for i in group], lrs, sync).to(where, dtype)
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


def _lr(r: StackRun, step: int) -> float:
    """The run's learning rate at this step of its epoch (trainer._loop: a function of the global step)."""
    per_epoch = n_train_batches(len(r.prep.train_rows), r.spec.training.batch_size)
    return r.spec.training.lr_at(r.epoch * per_epoch + step, per_epoch)


def _step(
    model: StackedSystem,
    rs: list[StackRun],
    group: list[int],
    batches: list[Batch],
    lrs: list[float],
    sync: bool = True,
) -> torch.Tensor:
    x, xe, xs, lengths = stack_batches(batches, model.device)
    y = torch.stack([b.y for b in batches]).to(model.device)
    snr = torch.stack([condition_snr_db(b.conditions) for b in batches]).to(model.device)
    h_s = None
    if rs[group[0]].h_s is not None:
        h_s = torch.stack(
            [rs[i].h_s[torch.from_numpy(b.index).to(rs[i].h_s.device)] for i, b in zip(group, batches, strict=False)]
        ).to(model.device)
    try:
        return model.train_step(group, x, xe, xs, lengths, y, snr, h_s, lrs, check_finite=sync)
    except FloatingPointError as err:
        raise _not_finite(rs[err.args[0][0]]) from None


def _not_finite(r: StackRun) -> RunError:
    return RunError(
        f"run {r.prep.out}: the loss is not finite at epoch {r.epoch + 1}; training stopped, the run "
        f"is not finished. Look for NaN/Inf in the store {r.spec.store} (rebuild it), or lower the "
        f"learning rate"
    )


def check_sums(rs: list[StackRun], sums: dict[int, torch.Tensor]) -> None:
    """The fast path's one check per epoch (one host synchronisation): every loss sum finite, or
    a RunError before anything of the epoch is saved."""
    keys = list(sums)
    finite = torch.isfinite(torch.stack([sums[i] for i in keys])).all(1).tolist()
    for i, ok in zip(keys, finite, strict=False):
        if not ok:
            raise _not_finite(rs[i])


def _end_epoch(
    model: StackedSystem, i: int, r: StackRun, sums: torch.Tensor, steps: int, val: dict, seconds: float, quiet: bool
) -> None:
    """trainer._loop's end of an epoch for run i: log row, best weights (of the weight average
    when the run keeps one), last checkpoint."""
    epoch = r.epoch + 1
    if not np.isfinite(val["val_ce"]):
        raise RunError(
            f"run {r.prep.out}: the validation loss is {val['val_ce']} after epoch {epoch}; training "
            f"stopped, the run is not finished. Look for NaN/Inf in the store {r.spec.store}"
        )
    mean = (sums.to("cpu", torch.float64) / max(steps, 1)).tolist()
    row = {
        "epoch": epoch,
        **dict(zip(("loss", "ce", "low", "high", "coef"), mean, strict=False)),
        **val,
        "seconds": seconds,
    }
    r.history.append(row)
    model.adam.store(i, r.model, r.optimizer)  # the run's weights and moments, as the single trainer holds them
    if r.average is not None:
        r.average.load_state_dict(model.average.state_dict(i))
    judged = r.average.model if r.average is not None else r.model
    if _better(val, r.best):
        r.best = {"val_uar": val["val_uar"], "val_ce": val["val_ce"], "epoch": epoch}
        runs.save_weights(r.prep.out / runs.BEST, judged, {"epoch": str(epoch)})
        r.stale = 0
    else:
        r.stale += 1
    runs.write_log(r.prep.out, r.history)
    average = r.average.state_dict() if r.average is not None else None
    runs.save_training_state(r.prep.out / runs.LAST, r.model, r.optimizer, epoch, average)
    r.epoch = epoch
    if not quiet:
        tqdm.write(
            f"{r.spec.system.name} fold {r.spec.fold_name} seed {r.spec.seed} epoch {epoch}: "
            f"loss {row['loss']:.3f} val UAR {val['val_uar']:.3f} "
            f"(best {r.best['val_uar']:.3f} @ {r.best['epoch']})"
        )


def _finish(r: StackRun) -> None:
    runs.write_finished(r.prep.out, {**r.best, "epochs_run": len(r.history)})
    (r.prep.out / runs.LAST).unlink(missing_ok=True)
    r.done = True
