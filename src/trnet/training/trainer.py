"""Train one system on one fold and seed (SPEC §7).

Model selection and early stopping look at the validation speaker only; the test speaker
is never evaluated here (the authors' code picked the best epoch on the test speaker).
A run lives in RUNS/<system>/fold<K>-seed<S>/ and resumes from its last finished epoch.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from trnet.corpora import LABELS
from trnet.evaluation.evaluate import predict_condition
from trnet.evaluation.metrics import uar, war
from trnet.models import SERSystem, SystemConfig, TrainingConfig, build_teacher, load_config, load_training_config, teacher_config
from trnet.models.losses import compute_losses
from trnet.protocol.folds import loso_folds
from trnet.store import ConditionStore, condition_name
from trnet.training.checkpoint import load_training_state, load_weights, save_training_state, save_weights
from trnet.training.data import condition_set, condition_snr_db, fit_snr_input_stats, label_indices, train_batches
from trnet.utils import atomic_path, write_json_atomic

LOG_FIELDS = ["epoch", "loss", "ce", "low", "high", "val_uar", "val_war", "val_ce", "mean_c", "seconds"]


@dataclass(frozen=True)
class RunSpec:
    system: SystemConfig
    training: TrainingConfig
    fold: int
    seed: int
    store: Path
    runs: Path
    train_noise: str | None = None
    device: str = "cpu"

    @property
    def dir(self) -> Path:
        return run_dir(self.runs, self.system.name, self.fold, self.seed)


def run_dir(runs: Path, system: str, fold: int, seed: int) -> Path:
    return Path(runs) / system / f"fold{fold}-seed{seed}"


def fold_rows(store: ConditionStore, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Store rows of (train, validation, test) for a LOSO fold, plus the fold's speakers."""
    folds = loso_folds(store.rows)
    if not 0 <= fold < len(folds):
        raise ValueError(f"fold {fold} out of range: this corpus has {len(folds)} folds (0..{len(folds) - 1})")
    f = folds[fold]
    spk = np.array([r["speaker"] for r in store.rows])
    rows = lambda speakers: np.flatnonzero(np.isin(spk, list(speakers)))  # noqa: E731
    info = {"test_speaker": f.test_speaker, "val_speaker": f.val_speaker, "train_speakers": list(f.train_speakers)}
    return rows(f.train_speakers), rows([f.val_speaker]), rows([f.test_speaker]), info


def default_train_noise(store: ConditionStore) -> str | None:
    """The paper trains on ESC-50 noise; otherwise the store's first noise corpus."""
    if not store.noises:
        return None
    return "esc50" if "esc50" in store.noises else store.noises[0]


def is_finished(path: Path) -> bool:
    return (path / "done.json").exists()


def train(spec: RunSpec, quiet: bool = False) -> Path:
    """Train (or resume, or skip if finished) one run; returns its directory."""
    from tqdm import tqdm

    out = spec.dir
    if is_finished(out):
        return out
    store = ConditionStore(spec.store)
    train_noise = spec.train_noise or default_train_noise(store)
    if spec.system.train_conditions != "clean" and train_noise is None:
        raise ValueError(f"{spec.system.name} trains on noisy data but the store {spec.store} has no noise corpus")
    conds = condition_set(store, spec.system.train_conditions, train_noise)
    labels = label_indices(store)
    train_rows, val_rows, _, speakers = fold_rows(store, spec.fold)
    device = torch.device(spec.device)

    teacher = None
    if spec.system.teacher:
        teacher_cfg = teacher_config(spec.system)
        teacher_spec = replace(spec, system=teacher_cfg)
        if not is_finished(teacher_spec.dir):
            if not quiet:
                print(f"teacher {teacher_spec.dir} not trained yet: training Baseline-c first")
            train(teacher_spec, quiet=quiet)
        teacher = build_teacher(_read_weights(teacher_spec.dir / "best.safetensors"), teacher_cfg).to(device)

    torch.manual_seed(spec.seed)
    model = SERSystem(spec.system)
    fit_snr_input_stats(model, store, spec.fold, conds)  # training speakers only; saved with the weights
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.training.lr)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "system": asdict(spec.system),
        "training": asdict(spec.training),
        "fold": spec.fold,
        "seed": spec.seed,
        "labels": list(LABELS),
        "train_noise": train_noise,
        "train_conditions": [condition_name(c) for c in conds],
        "store": str(Path(spec.store).resolve()),
        "store_hash": store.key["hash"],
        "se": store.key["se"],
        "se_options": store.key["se_options"],
        **speakers,
    }
    write_json_atomic(out / "config.json", config)

    start_epoch, best = 0, {"val_uar": -1.0, "val_ce": float("inf"), "epoch": -1}
    history: list[dict] = []
    if (out / "last.safetensors").exists():
        start_epoch = load_training_state(out / "last.safetensors", model, optimizer)
        history = _read_log(out / "log.csv")[:start_epoch]
        for row in history:  # best so far follows from the log, whatever step a kill interrupted
            if _better(row, best):
                best = {"val_uar": row["val_uar"], "val_ce": row["val_ce"], "epoch": int(row["epoch"])}
        if not quiet:
            print(f"resuming {out} after epoch {start_epoch}")

    epochs, patience = spec.training.epochs, spec.training.patience
    stale = sum(1 for row in history if int(row["epoch"]) > best["epoch"])
    for epoch in range(start_epoch, epochs):
        if stale >= patience:
            break
        torch.manual_seed(spec.seed * 1000 + epoch)  # dropout etc.: fixed per epoch, so resume is exact
        model.train()
        t0 = time.perf_counter()
        sums = {"loss": 0.0, "ce": 0.0, "low": 0.0, "high": 0.0}
        n_batches = -(-len(train_rows) // spec.training.batch_size)
        bar = tqdm(
            train_batches(store, labels, train_rows, conds, spec.training.batch_size, spec.seed, epoch),
            total=n_batches,
            desc=f"{spec.system.name} f{spec.fold} s{spec.seed} ep {epoch + 1}/{epochs}",
            leave=False,
            disable=quiet,
        )
        steps = 0
        for batch in bar:
            b = batch.to(device)
            out_ = model(b.x, b.xe, b.frames)
            h_s = teacher.embed(b.xs, b.frames) if teacher is not None else None
            losses = compute_losses(out_, b.y, b.xs, b.frames, h_s, spec.system, x=b.x, xe=b.xe, snr_db=condition_snr_db(b.conditions))
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            steps += 1
            for k_out, k_in in (("loss", "total"), ("ce", "ce"), ("low", "low"), ("high", "high")):
                sums[k_out] += losses[k_in].item()
            bar.set_postfix({k: f"{v / steps:.3f}" for k, v in sums.items()})
        val = validate(model, store, labels, val_rows, conds, device)
        row = {
            "epoch": epoch + 1,
            **{k: v / max(steps, 1) for k, v in sums.items()},
            **val,
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        if _better(val, best):
            best = {"val_uar": val["val_uar"], "val_ce": val["val_ce"], "epoch": epoch + 1}
            save_weights(out / "best.safetensors", model, {"epoch": str(epoch + 1)})
            stale = 0
        else:
            stale += 1
        _write_log(out / "log.csv", history)
        save_training_state(out / "last.safetensors", model, optimizer, epoch + 1)
        if not quiet:
            tqdm.write(
                f"{spec.system.name} fold {spec.fold} seed {spec.seed} epoch {epoch + 1}: loss {row['loss']:.3f} "
                f"val UAR {val['val_uar']:.3f} (best {best['val_uar']:.3f} @ {best['epoch']})"
            )
    write_json_atomic(out / "done.json", {**best, "epochs_run": len(history)})
    (out / "last.safetensors").unlink(missing_ok=True)  # the run is final; only best is needed
    return out


def validate(model: SERSystem, store: ConditionStore, labels: np.ndarray, rows: np.ndarray, conds: list, device) -> dict:
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


def _better(val: dict, best: dict) -> bool:
    """Higher validation UAR wins; on a tie, lower validation cross-entropy."""
    return val["val_uar"] > best["val_uar"] or (val["val_uar"] == best["val_uar"] and val["val_ce"] < best["val_ce"])


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def _read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def load_run(path: str | Path, device: str = "cpu") -> tuple[SERSystem, dict]:
    """A finished run's best model (eval mode) and its config.json."""
    path = Path(path)
    ckpt = path if path.suffix == ".safetensors" else path / "best.safetensors"
    cfg_path = ckpt.parent / "config.json"
    if not ckpt.exists() or not cfg_path.exists():
        raise FileNotFoundError(f"{path}: expected a run directory with best.safetensors and config.json")
    config = json.loads(cfg_path.read_text())
    model = SERSystem(SystemConfig(**config["system"])).to(device)
    load_weights(ckpt, model)
    return model.eval(), config


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
    encoder/width, or fewer epochs)."""
    system = replace(load_config(config), **(system_overrides or {}))
    training = replace(load_training_config(config), **{k: v for k, v in (training_overrides or {}).items() if v is not None})
    return RunSpec(system=system, training=training, fold=fold, seed=seed, store=Path(store), runs=Path(runs), **kw)
