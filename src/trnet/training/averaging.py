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
    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """After an optimiser step: average <- decay * average + (1 - decay) * live."""
        live = model.state_dict()
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(self.decay).add_(live[name], alpha=1 - self.decay)
            else:
                value.copy_(live[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state, strict=True)
