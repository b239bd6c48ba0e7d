"""Checkpoints as safetensors, written atomically (temp file + rename).

`best.safetensors` holds model weights only (what inference needs). `last.safetensors`
holds weights plus the Adam state so that a killed run resumes at its last finished epoch
and ends with exactly the weights an uninterrupted run would have.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from trnet.utils import atomic_path


def save_weights(path: str | Path, module: torch.nn.Module, metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_weights(path: str | Path, module: torch.nn.Module) -> None:
    module.load_state_dict(load_file(str(path)), strict=True)


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
    from safetensors import safe_open

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
