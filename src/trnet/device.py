"""The torch device of a command (`--device`), checked before any work: a name torch does not
know, or a GPU that this machine or this build of torch lacks, is one line (a UserError), not
an assertion deep inside the first `.to(device)` (docs/design.md, "Faults and bad input")."""

from __future__ import annotations

import torch

from trnet.utils import UserError


def torch_device(name: str | torch.device, option: str = "--device") -> torch.device:
    """The torch.device `name` names, if it can be used here; else UserError naming `option`."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"{option} {name!r}: not a torch device (cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this build of torch has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise UserError(f"{option} {name}: {why}; use {option} cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"{option} {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                            f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"{option} {name}: MPS is not available here; use {option} cpu")
    elif device.type != "cpu":
        raise UserError(f"{option} {name}: trnet runs on cpu, cuda or mps")
    return device
