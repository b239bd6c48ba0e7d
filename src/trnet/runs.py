"""The run directory: the one owner of what a trained run is on disk.

    RUNS/<system>/fold<K>-seed<S>/
        config.json        system + training config, fold speakers, store hash, SE back-end
        log.csv            one row per finished epoch
        best.safetensors   weights chosen on the validation speaker (what inference needs)
        last.safetensors   weights + Adam state while training (exact resume); removed when done
        done.json          written last: the run is finished (best epoch, epochs run)

Checkpoints are safetensors written atomically (temp file + rename). Training, evaluation,
prediction, export and the experiments all read and write runs through this module.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from trnet.models import SERSystem, SystemConfig
from trnet.utils import atomic_path, write_json_atomic, write_text_atomic

BEST, LAST, CONFIG, LOG, DONE = "best.safetensors", "last.safetensors", "config.json", "log.csv", "done.json"
LOG_FIELDS = ["epoch", "loss", "ce", "low", "high", "val_uar", "val_war", "val_ce", "mean_c", "seconds"]


def run_dir(runs: str | Path, system: str, fold: int, seed: int) -> Path:
    return Path(runs) / system / f"fold{fold}-seed{seed}"


def is_finished(path: Path) -> bool:
    return (Path(path) / DONE).exists()


# --------------------------------------------------------------------------- records


def write_config(path: Path, config: dict[str, Any]) -> None:
    write_json_atomic(Path(path) / CONFIG, config)


def read_config(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / CONFIG).read_text())


def write_done(path: Path, done: dict[str, Any]) -> None:
    write_json_atomic(Path(path) / DONE, done)


def read_done(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / DONE).read_text())


def write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(Path(path) / LOG, buf.getvalue())


def read_log(path: Path) -> list[dict[str, float]]:
    log = Path(path) / LOG
    if not log.exists():
        return []
    with open(log, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


# --------------------------------------------------------------------------- checkpoints


def save_weights(path: str | Path, module: torch.nn.Module, metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def load_weights(path: str | Path, module: torch.nn.Module) -> None:
    module.load_state_dict(read_weights(path), strict=True)


def save_training_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
    """Weights (`model.*`) and optimizer moments (`optim.<param>.<name>`) in one file."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state = optimizer.state_dict()
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optim.{pid}.{name}"] = t.detach().cpu().contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"epoch": str(epoch)})


def load_training_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore weights and optimizer moments; return the epoch that was finished."""
    with safe_open(str(path), framework="pt") as f:
        epoch = int(f.metadata()["epoch"])
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
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


def load_run(path: str | Path, device: str = "cpu") -> tuple[SERSystem, dict[str, Any]]:
    """A finished run's best model (eval mode) and its config.json; `path` is the run
    directory or its best.safetensors."""
    path = Path(path)
    ckpt = path if path.suffix == ".safetensors" else path / BEST
    if not ckpt.exists() or not (ckpt.parent / CONFIG).exists():
        raise FileNotFoundError(f"{path}: expected a run directory with {BEST} and {CONFIG}")
    config = read_config(ckpt.parent)
    model = SERSystem(SystemConfig(**config["system"])).to(device)
    load_weights(ckpt, model)
    return model.eval(), config
