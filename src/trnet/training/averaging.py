"""An exponential moving average of a model's weights (docs/design.md §7, "Training levers").

With few training speakers, the weights after any one step fit the last batches, and validation
UAR swings from epoch to epoch; the average over the last ~1 / (1 - decay) steps moves slowly,
so the epoch that validation selects is less a lucky point. The average is what is validated,
selected and saved as best.safetensors; training steps update the live weights as before.

Every floating-point entry of the state (weights and BatchNorm's running statistics) is
averaged; integer entries (BatchNorm's batch counter) are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float, warmup: bool = False) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """The decay of update `step` (0-based over the run, so a resume continues the ramp). With
        warm-up, min(decay, (1 + step) / (10 + step)): 0.1 at the first update, 0.5 at the 8th,
        0.99 near the 900th, so the first epochs' average follows the live weights instead of
        staying near the random initialisation (a decay of 0.998 alone leaves 55 % of the
        initial weights after 300 updates, and validation of such an average reads chance)."""
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int = 0) -> None:
        """After optimiser step `step`: average <- decay * average + (1 - decay) * live."""
        decay = self.decay_at(step)
        live = model.state_dict()
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(decay).add_(live[name], alpha=1 - decay)
            else:
                value.copy_(live[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state, strict=True)
