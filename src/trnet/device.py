"""The torch device a command runs on: one check for every command (`train`, `reproduce`,
`demo`, `predict`), so a missing GPU is one line and exit 2. Apart from `trnet.utils` because
it imports torch, which the commands' parsers (`trnet --help`) do not."""

from __future__ import annotations

import torch

from trnet.utils import UserError


def torch_device(name: str | None) -> str:
    """The torch device `name` names ("cpu", "cuda", "cuda:N"; None: cuda when there is one,
    else cpu), checked here once for every command: a device this machine lacks is a UserError
    (one line, exit 2), not a traceback at the first tensor moved to it."""
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name}: not a device; expected cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise UserError(
                f"--device {name}: CUDA is not available here (torch {torch.__version__}, {build}); "
                "install a CUDA build of torch (docs/scaleout.md, On a GPU) or use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise UserError(f"--device {name}: only cpu and cuda are supported")
    return str(device)
