"""The cheap masking inside the network (models/masking.py `zero_finite_padding`, MaskedBatchNorm's
`finite_padding`): a product with a 0/1 mask where the padding is known to be finite. It must give
the numbers of `masked_fill` bit for bit (outputs, gradients, running statistics), so runs trained
before it keep their meaning, and the network's input must stay masked the robust way."""

from __future__ import annotations

import copy

import pytest
import torch

import trnet.models.encoder as encoder_module
from trnet.models.encoder import ENCODERS
from trnet.models.masking import MaskedBatchNorm, zero_finite_padding, zero_padding

pytestmark = pytest.mark.usefixtures("one_thread")
LENGTHS = torch.tensor([70, 23, 1, 48])


def test_finite_padding_masks_exactly_as_masked_fill():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 90, 6)
    assert torch.equal(zero_finite_padding(x, LENGTHS, 2), zero_padding(x, LENGTHS, 2))
    robust, cheap = MaskedBatchNorm(3), MaskedBatchNorm(3, finite_padding=True)
    xr, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    yr, yc = robust(xr, LENGTHS), cheap(xc, LENGTHS)
    (yr * torch.arange(90.0)[:, None]).sum().backward()
    (yc * torch.arange(90.0)[:, None]).sum().backward()
    assert torch.equal(yr, yc) and torch.equal(xr.grad, xc.grad)
    assert all(
        torch.equal(a, b) for a, b in zip(robust.state_dict().values(), cheap.state_dict().values(), strict=False)
    )


@pytest.mark.parametrize("encoder", ["resnet", "cnn6"])
def test_encoder_gives_the_numbers_of_masked_fill(encoder, monkeypatch):
    """The whole encoder, train and eval mode, against a copy whose masking is masked_fill."""
    torch.manual_seed(0)
    x = torch.randn(4, 90, 80) * 3 + 8
    x[1, 23:] = float("nan")  # garbage padding: the input must still be masked the robust way
    fast = ENCODERS[encoder](width=4).train()
    slow = copy.deepcopy(fast)
    for module in slow.modules():
        if isinstance(module, MaskedBatchNorm):
            module.finite_padding = False
    results = []
    for model, mask in ((slow, zero_padding), (fast, zero_finite_padding)):
        monkeypatch.setattr(encoder_module, "zero_finite_padding", mask)
        torch.manual_seed(1)  # the same dropout masks (CNN6)
        h = model(x, LENGTHS)
        h.square().sum().backward()
        with torch.no_grad():
            h_eval = model.eval()(x, LENGTHS)
        results.append([h, h_eval, *(p.grad for p in model.parameters()), *model.buffers()])
    assert torch.isfinite(results[1][0]).all()
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=False))
