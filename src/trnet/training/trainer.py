"""Train one system on one fold and seed (docs/design.md §7).

Model selection and early stopping look at the validation speaker only; the test speaker
is never evaluated here (the authors' code picked the best epoch on the test speaker).
A run lives in a run directory (`trnet.runs`) and resumes from its last finished epoch, only
with the settings it was started with. A non-finite loss stops training with an error.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from trnet import runs
from trnet.batches import (
    condition_set,
    condition_snr_db,
    default_train_noise,
    eval_batches,
    fit_snr_input_stats,
    label_indices,
    n_train_batches,
    train_batches,
)
from trnet.corpora import LABELS
from trnet.device import torch_device
from trnet.evaluation.evaluate import predict_condition
from trnet.evaluation.metrics import uar, war
from trnet.models import (
    SERSystem,
    SystemConfig,
    TrainingConfig,
    build_teacher,
    load_config,
    load_training_config,
    teacher_config,
)
from trnet.models.losses import compute_losses
from trnet.models.system import RECIPE_TRAINING
from trnet.protocol.folds import Holdout, loso_folds, split
from trnet.runs import RunError
from trnet.store import ConditionStore, condition_name
from trnet.training.augment import augment, batch_rng
from trnet.training.averaging import WeightAverage
from trnet.utils import UserError, check_seed, remove_temp_files


@dataclass(frozen=True)
class RunSpec:
    system: SystemConfig
    training: TrainingConfig
    fold: int | Holdout  # a LOSO fold, or a split with no test speaker (the bundled model)
    seed: int
    store: Path
    runs: Path
    train_noise: str | tuple[str, ...] | None = None  # several: each noise corpus's SNRs are drawn
    device: str = "cpu"

    @property
    def fold_name(self) -> int | str:
        return self.fold.name if isinstance(self.fold, Holdout) else self.fold

    @property
    def dir(self) -> Path:
        return runs.run_dir(self.runs, self.system.name, self.fold_name, self.seed)


@dataclass(frozen=True)
class Prepared:
    """What a run needs before training: its store, labels, rows, conditions and the
    config.json it is (or will be) recorded with."""

    out: Path
    store: ConditionStore
    labels: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray
    conds: list
    config: dict


def prepare(spec: RunSpec) -> Prepared:
    """Check a run's settings (RunError for impossible ones) and derive its data and config;
    reads only."""
    for name, value in (("epochs", spec.training.epochs), ("batch_size", spec.training.batch_size)):
        if value < 1:
            raise RunError(f"{name} must be at least 1, got {value}")
    try:  # everything checked before anything is written (docs/design.md §9.4)
        check_seed(spec.seed, "seed")
        torch_device(spec.device)
    except UserError as err:
        raise RunError(str(err)) from None
    store = ConditionStore(spec.store)
    if not isinstance(spec.fold, Holdout):
        n_folds = len(loso_folds(store.rows))
        if not 0 <= spec.fold < n_folds:
            raise RunError(f"fold {spec.fold} out of range: the store's corpus has {n_folds} folds (0..{n_folds - 1})")
    for noise in [spec.train_noise] if isinstance(spec.train_noise, str) else spec.train_noise or ():
        if noise not in store.noises:
            raise RunError(
                f"train noise {noise!r} is not in the store {spec.store} "
                f"(it has {', '.join(store.noises) or 'no noise'})"
            )
    train_noise = spec.train_noise or default_train_noise(store)
    if spec.system.train_conditions != "clean" and train_noise is None:
        raise RunError(f"{spec.system.name} trains on noisy data but the store {spec.store} has no noise corpus")
    conds = condition_set(store, spec.system.train_conditions, train_noise)
    store.check(conds)  # the arrays this run reads match their checksums, before anything is written
    labels = label_indices(store)
    try:
        fold = split(store.rows, spec.fold)
    except ValueError as err:
        raise RunError(str(err)) from None
    train_rows, val_rows = fold.train, fold.val
    config = {
        "system": asdict(spec.system),
        "training": asdict(spec.training),
        "fold": spec.fold_name,
        "seed": spec.seed,
        "labels": list(LABELS),
        "train_noise": train_noise if isinstance(train_noise, str | None) else list(train_noise),
        "train_conditions": [condition_name(c) for c in conds],
        "store": str(Path(spec.store).resolve()),
        "store_hash": store.key["hash"],
        **store.se.to_fields(),  # the store's SE setting, as every config.json holds it
        **fold.speakers(),
    }
    return Prepared(spec.dir, store, labels, train_rows, val_rows, conds, config)


def train(spec: RunSpec, quiet: bool = False, wait: bool = False) -> Path:
    """Train (or resume, or skip if finished) one run; returns its directory. A run that
    exists with other settings is a RunError, found before anything is written. A run another
    process is training is an error, or with `wait`, waited for (then resumed or skipped)."""
    p = prepare(spec)
    out, store, labels, train_rows, val_rows, conds, config = (
        p.out,
        p.store,
        p.labels,
        p.train_rows,
        p.val_rows,
        p.conds,
        p.config,
    )
    device = torch.device(spec.device)
    runs.check_config(out, config)  # before anything is written
    if runs.is_finished(out):
        runs.verify_best(out)
        return out

    teacher = None
    if spec.system.teacher:
        teacher_cfg = teacher_config(spec.system)
        teacher_spec = replace(spec, system=teacher_cfg)
        if not runs.is_finished(teacher_spec.dir) and not quiet:
            print(f"teacher {teacher_spec.dir} not trained yet: training Baseline-c first")
        train(teacher_spec, quiet=quiet, wait=wait)  # checks a finished teacher's settings too
        teacher = build_teacher(runs.read_best(teacher_spec.dir), teacher_cfg).to(device)

    with runs.lock(out, wait=wait):
        runs.check_config(out, config)  # another process may have started it meanwhile
        if runs.is_finished(out):
            return out
        if not (out / runs.CONFIG).exists():
            runs.write_config(out, config)  # once: an existing run's config.json is never rewritten
        remove_temp_files(out)  # of a killed process
        _loop(spec, out, store, labels, train_rows, val_rows, conds, teacher, device, quiet)
    return out


def _loop(
    spec: RunSpec,
    out: Path,
    store: ConditionStore,
    labels: np.ndarray,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    conds: list,
    teacher,
    device: torch.device,
    quiet: bool,
) -> None:
    torch.manual_seed(spec.seed)
    model = SERSystem(spec.system)
    fit_snr_input_stats(model, store, spec.fold, conds)  # training speakers only; saved with the weights
    model = model.to(device)
    training = spec.training
    optimizer = (  # docs/design.md §7: Adam is the paper's; weight decay is a lever, decoupled (AdamW)
        torch.optim.AdamW(model.parameters(), lr=training.lr, weight_decay=training.weight_decay)
        if training.weight_decay
        else torch.optim.Adam(model.parameters(), lr=training.lr)
    )
    average = WeightAverage(model, training.ema_decay, training.ema_warmup) if training.ema_decay else None
    h_cache = (
        teacher_outputs(teacher, store, labels, train_rows, device) if teacher and training.teacher_cache else None
    )
    start_epoch, best = 0, {"val_uar": -1.0, "val_ce": float("inf"), "epoch": -1}
    history: list[dict] = []
    if (out / runs.LAST).exists():
        start_epoch = runs.load_training_state(out / runs.LAST, model, optimizer, average)
        history = runs.read_log(out)[:start_epoch]
        for row in history:  # best so far follows from the log, whatever step a kill interrupted
            if _better(row, best):
                best = {"val_uar": row["val_uar"], "val_ce": row["val_ce"], "epoch": int(row["epoch"])}
        if not quiet:
            print(f"resuming {out} after epoch {start_epoch}")

    epochs, patience = spec.training.epochs, spec.training.patience
    augmenting = bool(training.crop_s or training.freq_masks or training.time_masks)
    stale = sum(1 for row in history if int(row["epoch"]) > best["epoch"])
    for epoch in range(start_epoch, epochs):
        if stale >= patience:
            break
        torch.manual_seed(spec.seed * 1000 + epoch)  # dropout etc.: fixed per epoch, so resume is exact
        model.train()
        t0 = time.perf_counter()
        sums = {"loss": 0.0, "ce": 0.0, "low": 0.0, "high": 0.0, "coef": 0.0}
        n_batches = -(-len(train_rows) // spec.training.batch_size)
        bar = tqdm(
            train_batches(
                store,
                labels,
                train_rows,
                conds,
                spec.training.batch_size,
                spec.seed,
                epoch,
                bucket=spec.training.bucket,
            ),
            total=n_batches,
            desc=f"{spec.system.name} f{spec.fold_name} s{spec.seed} ep {epoch + 1}/{epochs}",
            leave=False,
            disable=True if quiet else None,  # None: a bar on a terminal only, never into a log file
        )
        steps = 0
        per_epoch = n_train_batches(len(train_rows), spec.training.batch_size)
        for batch in bar:
            for group in optimizer.param_groups:  # the schedule is a function of the global step
                group["lr"] = spec.training.lr_at(epoch * per_epoch + steps, per_epoch)
            if augmenting:
                batch = augment(batch, training, batch_rng(spec.seed, epoch, steps))
            b = batch.to(device)
            out_ = model(b.x, b.xe, b.frames)
            if h_cache is not None:
                h_s = h_cache[torch.from_numpy(b.index).to(device)]
            else:
                h_s = teacher.embed(b.xs, b.frames) if teacher is not None else None
            losses = compute_losses(
                out_,
                b.y,
                b.xs,
                b.frames,
                h_s,
                spec.system,
                x=b.x,
                xe=b.xe,
                snr_db=condition_snr_db(b.conditions).to(device),
                label_smoothing=training.label_smoothing,
            )
            if not torch.isfinite(losses["total"]):
                raise RunError(
                    f"run {out}: the loss is {losses['total'].item()} at epoch {epoch + 1}, batch "
                    f"{steps + 1}; training stopped, the run is not finished. Look for NaN/Inf in the "
                    f"store {spec.store} (rebuild it), or lower the learning rate"
                )
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            if average is not None:
                average.update(model, epoch * per_epoch + steps)
            steps += 1
            for k_out, k_in in (("loss", "total"), ("ce", "ce"), ("low", "low"), ("high", "high"), ("coef", "coef")):
                sums[k_out] += losses[k_in].item()
            bar.set_postfix({k: f"{v / steps:.3f}" for k, v in sums.items()})
        judged = average.model if average is not None else model  # the average is validated and kept
        val = validate(judged, store, labels, val_rows, conds, device)
        if not np.isfinite(val["val_ce"]):
            raise RunError(
                f"run {out}: the validation loss is {val['val_ce']} after epoch {epoch + 1}; training "
                f"stopped, the run is not finished. Look for NaN/Inf in the store {spec.store}"
            )
        row = {
            "epoch": epoch + 1,
            **{k: v / max(steps, 1) for k, v in sums.items()},
            **val,
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        if _better(val, best):
            best = {"val_uar": val["val_uar"], "val_ce": val["val_ce"], "epoch": epoch + 1}
            runs.save_weights(out / runs.BEST, judged, {"epoch": str(epoch + 1)})
            stale = 0
        else:
            stale += 1
        runs.write_log(out, history)
        runs.save_training_state(
            out / runs.LAST, model, optimizer, epoch + 1, average.state_dict() if average is not None else None
        )
        if not quiet:
            tqdm.write(
                f"{spec.system.name} fold {spec.fold_name} seed {spec.seed} epoch {epoch + 1}: loss {row['loss']:.3f} "
                f"val UAR {val['val_uar']:.3f} (best {best['val_uar']:.3f} @ {best['epoch']})"
            )
    runs.write_finished(out, {**best, "epochs_run": len(history)})
    (out / runs.LAST).unlink(missing_ok=True)  # the run is final; only best is needed


def validate(
    model: SERSystem, store: ConditionStore, labels: np.ndarray, rows: np.ndarray, conds: list, device
) -> dict:
    """Validation speaker under every training condition, pooled."""
    preds = [predict_condition(model, store, labels, rows, c, device=device) for c in conds]
    y = np.concatenate([p.y_true for p in preds])
    yhat = np.concatenate([p.y_pred for p in preds])
    cs = [p.c for p in preds if p.c is not None]
    return {
        "val_uar": uar(y, yhat, len(LABELS)),
        "val_war": war(y, yhat),
        "val_ce": float(np.mean([p.ce for p in preds])),
        "mean_c": float(np.mean(np.concatenate(cs))) if cs else float("nan"),
    }


@torch.no_grad()
def teacher_outputs(teacher, store: ConditionStore, labels: np.ndarray, rows: np.ndarray, device) -> torch.Tensor:
    """The frozen teacher's h_s = embed(X_s) of every training utterance, once, on its whole clean
    input, indexed by store row (docs/design.md §7, `teacher_cache`). X_s does not depend on the
    condition drawn, and the teacher is in eval mode with padding masked, so without crops this
    equals the per-batch h_s; with a crop it is the whole utterance's embedding."""
    cache = None
    for b in eval_batches(store, labels, rows, "clean", 64):
        b = b.to(device)
        h = teacher.embed(b.xs, b.frames)
        if cache is None:
            cache = h.new_zeros((len(store.rows), h.shape[1]))
        cache[torch.from_numpy(b.index).to(device)] = h
    return cache


def _better(val: dict, best: dict) -> bool:
    """Higher validation UAR wins; on a tie, lower validation cross-entropy."""
    return val["val_uar"] > best["val_uar"] or (val["val_uar"] == best["val_uar"] and val["val_ce"] < best["val_ce"])


def recipe_run_spec(
    recipe: Any,
    system: str,
    fold: Any,
    seed: int,
    store: Path,
    runs: Path,
    system_extra: dict | None = None,
    training_extra: dict | None = None,
    **kw,
) -> RunSpec:
    """A run of a recipe, `trnet reproduce`'s or `trnet bundle`'s (both carry `encoder`, `width`
    and the RECIPE_TRAINING keys): the system at the recipe's encoder and width, trained with its
    settings; the extras add or replace settings (a bundle raises the epochs of a small corpus).
    One place for both recipes, so that a training key a recipe gains reaches every run of either."""
    return spec_from_names(
        system,
        fold,
        seed,
        store,
        runs,
        system_overrides={"encoder": recipe.encoder, "width": recipe.width, **(system_extra or {})},
        training_overrides={**{key: getattr(recipe, key) for key in RECIPE_TRAINING}, **(training_extra or {})},
        **kw,
    )


def spec_from_names(
    config: str,
    fold: int,
    seed: int,
    store: Path,
    runs: Path,
    system_overrides: dict | None = None,
    training_overrides: dict | None = None,
    **kw,
) -> RunSpec:
    """A RunSpec from a system name or TOML path, with optional field overrides (a recipe's
    encoder/width, or fewer epochs); RunError for an unknown system or an impossible value."""
    try:
        system = replace(load_config(config), **(system_overrides or {}))
        training = replace(
            load_training_config(config), **{k: v for k, v in (training_overrides or {}).items() if v is not None}
        )
    except (OSError, ValueError, TypeError) as err:
        raise RunError(str(err)) from None
    return RunSpec(system=system, training=training, fold=fold, seed=seed, store=Path(store), runs=Path(runs), **kw)
