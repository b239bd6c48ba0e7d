"""The run directory: the one owner of what a trained run is on disk.

    RUNS/<system>/fold<K>-seed<S>/
        config.json        system + training config, fold speakers, store hash, SE back-end
        log.csv            one row per finished epoch
        best.safetensors   weights chosen on the validation speaker (what inference needs)
        last.safetensors   weights + Adam state while training (exact resume); removed when done
        done.json          written last: the run is finished (best epoch, epochs run, and
                           the SHA-256 of best.safetensors, checked whenever it is loaded)
        .lock              held by the process training the run (an OS lock)

What a run directory guarantees: config.json is written once, when the run starts, and never
rewritten; a run is resumed or reused only with the settings it records (`check_config`
refuses others, naming them); done.json exists only for a run that trained to the end with
finite losses, and the weights it vouches for are verified on every load. Checkpoints are
safetensors written atomically (temp file + rename). Training, evaluation, prediction, export
and the experiments all read and write runs through this module.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from trnet.models import SERSystem, SystemConfig, TrainingConfig
from trnet.utils import (
    BEST,
    CONFIG,
    DONE,
    LAST,
    LOG,
    UserError,
    atomic_path,
    exclusive_lock,
    sha256_file,
    write_json_atomic,
    write_text_atomic,
)

LOCK = ".lock"
FILES = (BEST, LAST, CONFIG, LOG, DONE, LOCK)
UNCHECKED = ("store",)  # config keys a run may change: the store's location (its content is store_hash)


class RunError(UserError):
    """A run directory that cannot be used as asked (other settings, damaged files, ...)."""


LOG_FIELDS = ["epoch", "loss", "ce", "low", "high", "coef", "val_uar", "val_war", "val_ce", "mean_c", "seconds"]


def run_dir(runs: str | Path, system: str, fold: int | str, seed: int) -> Path:
    """fold<K>-seed<S> for a LOSO fold, <name>-seed<S> for a named split (`Holdout`)."""
    return Path(runs) / system / (f"fold{fold}-seed{seed}" if isinstance(fold, int) else f"{fold}-seed{seed}")


def is_finished(path: Path) -> bool:
    return (Path(path) / DONE).exists()


def run_of(path: str | Path) -> Path | None:
    """The run directory whose own file (weights, config, log, ...) `path` is, else None;
    links are followed."""
    path = Path(path).resolve()
    return path.parent if path.name in FILES and (path.parent / CONFIG).exists() else None


@contextlib.contextmanager
def lock(path: Path, wait: bool = False) -> Iterator[None]:
    """Hold the run's lock while training it: if another process does, an error at once, or
    with `wait` (an engine rerunning a grid while a killed driver's workers still finish their
    step), wait for it."""
    Path(path).mkdir(parents=True, exist_ok=True)
    with exclusive_lock(Path(path) / LOCK, f"another training of the run {path}", wait=wait):
        yield


# --------------------------------------------------------------------------- records


def write_config(path: Path, config: dict[str, Any]) -> None:
    write_json_atomic(Path(path) / CONFIG, config)


def read_config(path: Path) -> dict[str, Any]:
    file = Path(path) / CONFIG
    try:
        config = json.loads(file.read_text())
    except ValueError as err:
        raise RunError(f"{file} is not valid JSON ({err}); restore it, or delete the run to train it again") from None
    if not isinstance(config, dict):
        raise RunError(f"{file}: expected a JSON object")
    for key, kind, what in (
        ("system", dict, "an object"),
        ("se", str, "a string"),
        ("se_options", dict, "an object"),
        ("labels", list, "a list"),
    ):
        if key in config and config[key] is not None and not isinstance(config[key], kind):
            raise RunError(f"{file}: {key} must be {what}, got {type(config[key]).__name__}; restore it")
    return config


def check_config(path: Path, requested: dict[str, Any]) -> None:
    """RunError naming the settings in which an existing run (its config.json) differs from
    `requested`; nothing if there is no run yet or the settings agree. Reads only."""
    if not (Path(path) / CONFIG).exists():
        return
    old = read_config(path)
    requested = json.loads(json.dumps(requested))  # as config.json holds it: tuples are lists
    try:  # fields added to the configs since the run was made take their defaults
        old = {
            **old,
            "system": asdict(SystemConfig(**old["system"])),
            "training": asdict(TrainingConfig(**old["training"])),
        }
    except (KeyError, TypeError, ValueError) as err:
        raise RunError(
            f"{Path(path) / CONFIG} lacks or has unknown settings ({err}); "
            f"use another --out, or delete {path} to train it again"
        ) from None
    changed = [
        _change(k, old.get(k), requested.get(k))
        for k in sorted(set(old) | set(requested))
        if k not in UNCHECKED and old.get(k) != requested.get(k)
    ]
    if changed:
        raise RunError(
            f"run {path} was made with other settings ({', '.join(c for cs in changed for c in cs)}); "
            f"use another --out, or delete {path} to train it again"
        )


def _change(key: str, old: Any, new: Any) -> list[str]:
    """'system.width 4 -> 8' for each differing leaf (one level of nesting)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            c
            for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)
            for c in _change(f"{key}.{k}", old.get(k), new.get(k))
        ]
    show = [str(v)[:10] + "..." if len(str(v)) > 13 else str(v) for v in (old, new)]
    return [f"{key} {show[0]} -> {show[1]}"]


def write_done(path: Path, done: dict[str, Any]) -> None:
    write_json_atomic(Path(path) / DONE, done)


def read_done(path: Path) -> dict[str, Any]:
    file = Path(path) / DONE
    try:
        done = json.loads(file.read_text())
    except ValueError as err:
        raise RunError(f"{file} is not valid JSON ({err}); delete the run to train it again") from None
    if not isinstance(done, dict):
        raise RunError(f"{file}: expected a JSON object, got {type(done).__name__}; delete the run to train it again")
    return done


def write_finished(path: Path, done: dict[str, Any]) -> None:
    """Mark the run finished: done.json with `done` and the SHA-256 of best.safetensors."""
    write_done(path, {**done, "best_sha256": sha256_file(Path(path) / BEST)})


def verify_best(path: Path) -> None:
    """RunError if best.safetensors is not the file done.json vouches for (nothing to check
    without done.json, or with one written before checksums were recorded)."""
    path = Path(path)
    if not (path / DONE).exists():
        return
    expected = read_done(path).get("best_sha256")
    if expected is None:
        return
    if not (path / BEST).exists():
        raise RunError(f"{path / BEST} is missing from a finished run; restore it, or delete the run to retrain")
    if sha256_file(path / BEST) != expected:
        raise RunError(
            f"{path / BEST}: SHA-256 differs from the one recorded in {DONE} (the file was damaged or "
            "replaced); restore it, or delete the run to train it again"
        )


def write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows({**row, "epoch": int(row["epoch"])} for row in rows)  # read back as floats after a resume
    write_text_atomic(Path(path) / LOG, buf.getvalue())


def read_log(path: Path) -> list[dict[str, float]]:
    log = Path(path) / LOG
    if not log.exists():
        return []
    with open(log, newline="") as f:
        # a column a run's older log lacks reads as NaN
        return [
            {k: float(v) if v not in ("", None) else float("nan") for k, v in row.items()} for row in csv.DictReader(f)
        ]


# --------------------------------------------------------------------------- checkpoints


def _write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> None:
    """Serialise in memory, then write with Python's file I/O (atomically): a full disk is an
    OSError naming the file (one line), not safetensors' own error type."""
    data = save(tensors, metadata=metadata)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_weights(path: str | Path, module: torch.nn.Module, metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    _write_safetensors(path, tensors, metadata)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (RunError if it is missing, truncated or not one)."""
    if not Path(path).is_file():
        raise RunError(f"{path}: no weights file there")
    try:
        return load_file(str(path))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for any damage
        raise RunError(
            f"{path}: not a readable safetensors file ({type(err).__name__}: {err}); restore it, or train the run again"
        ) from None


def read_best(path: Path) -> dict[str, torch.Tensor]:
    """A finished run's best weights, checked against done.json."""
    verify_best(path)
    return read_weights(Path(path) / BEST)


def load_weights(path: str | Path, module: torch.nn.Module) -> None:
    try:
        module.load_state_dict(read_weights(path), strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise RunError(f"{path}: the weights do not fit the model of config.json ({first})") from None


def save_training_state(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    average: dict[str, torch.Tensor] | None = None,
) -> None:
    """Weights (`model.*`), optimizer moments (`optim.<param>.<name>`) and, with the weight
    average of docs/design.md §7, its state (`average.*`) in one file."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"average.{k}": v.detach().cpu().contiguous() for k, v in (average or {}).items()})
    state = optimizer.state_dict()
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optim.{pid}.{name}"] = t.detach().cpu().contiguous()
    _write_safetensors(path, tensors, {"epoch": str(epoch)})


def load_training_state(
    path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, average: Any = None
) -> int:
    """Restore weights, optimizer moments and (given one) the weight average's state; return the
    epoch that was finished."""
    tensors = read_weights(path)
    with safe_open(str(path), framework="pt") as f:
        epoch = int(f.metadata()["epoch"])
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    if average is not None:
        average.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("average.")})
    state = optimizer.state_dict()
    device = next(model.parameters()).device
    restored: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            restored.setdefault(int(pid), {})[name] = value if name == "step" else value.to(device)
    state["state"] = restored
    optimizer.load_state_dict(state)
    return epoch


# --------------------------------------------------------------------------- loading


def load_run(
    path: str | Path,
    device: str = "cpu",
    allow_unfinished: bool = False,
) -> tuple[SERSystem, dict[str, Any]]:
    """A finished run's best model (eval mode) and its config.json; `path` is the run
    directory or its best.safetensors. A run without done.json (killed, or still training) is
    a RunError; with `allow_unfinished` its last checkpoint (last.safetensors) is loaded and
    config["unfinished"] says which epoch it holds."""
    path = Path(path)
    ckpt = path if path.suffix == ".safetensors" else path / BEST
    if not (ckpt.parent / CONFIG).exists() or not (ckpt.exists() or allow_unfinished):
        raise RunError(f"{path}: expected a run directory with {BEST} and {CONFIG}")
    unfinished = None
    if not is_finished(ckpt.parent):
        if not allow_unfinished:
            raise RunError(
                f"{ckpt.parent} is not a finished run (no {DONE}: its training was stopped or is still "
                f"going); finish it with `trnet train`, or pass --allow-unfinished to use its last "
                "checkpoint"
            )
        ckpt, unfinished = ckpt.parent / LAST, _last_epoch(ckpt.parent / LAST)
    config = read_config(ckpt.parent)
    try:
        system = SystemConfig(**config["system"])
        if not isinstance(config["labels"], list):
            raise TypeError("labels is not a list")
    except (KeyError, TypeError, ValueError) as err:
        raise RunError(f"{ckpt.parent / CONFIG} lacks or has unknown settings ({type(err).__name__}: {err})") from None
    if ckpt.name == BEST:
        verify_best(ckpt.parent)
    model = SERSystem(system).to(device)
    if unfinished is None:
        load_weights(ckpt, model)
        return model.eval(), config
    weights = {k[6:]: v for k, v in read_weights(ckpt).items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise RunError(
            f"{ckpt}: the weights do not fit the model of config.json ({str(err).strip().splitlines()[0]})"
        ) from None
    return model.eval(), {**config, "unfinished": {"checkpoint": str(ckpt), "epoch": unfinished}}


def _last_epoch(path: Path) -> int:
    """The epoch an unfinished run's last.safetensors holds (RunError if there is none yet)."""
    if not path.is_file():
        raise RunError(
            f"{path.parent} is not finished and has no {LAST} yet (stopped in its first epoch); "
            "train it with `trnet train`"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            return int(f.metadata()["epoch"])
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for any damage
        raise RunError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {err}); train the run again"
        ) from None
