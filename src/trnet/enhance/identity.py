"""`identity`: x_e = x. For tests and for the ablation "no SE" (Baseline-e with no enhancer
must equal Baseline-n)."""

from __future__ import annotations

from torch import Tensor

from trnet.enhance.base import Enhancer, make_version


class Identity(Enhancer):
    name = "identity"

    @property
    def version(self) -> str:
        return make_version(self.name)

    def _enhance_one(self, x: Tensor) -> Tensor:
        return x
