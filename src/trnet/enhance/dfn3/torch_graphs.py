"""DeepFilterNet3's three ONNX graphs re-implemented in PyTorch, loading the graphs' own
weights (initializers and constant tensors, read from the ONNX protobuf), so that `dfn3` can
run its model on a GPU when there is one (`DFN3(runtime="torch", device=...)`).

The layer structure is read off the graphs (erb_conv0..3, df_conv0..1, grouped linear
layers, GRUs with linear_before_reset = PyTorch's GRU, the ERB decoder's transposed convs and
skip paths, the DF decoder's conv path). Weights are looked up by their ONNX names, which
the pinned model archive fixes. Parity with onnxruntime is tested on the real model.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trnet.enhance.dfn3.model import GRAPHS, HISTORY, _fields, _read_varint, model_files

# ONNX TensorProto data types used by the graphs' weights.
_DTYPES = {1: np.float32, 7: np.int64}


def _tensor(payload: bytes) -> tuple[str, np.ndarray]:
    dims: list[int] = []
    name, dtype, raw, floats = "", 1, None, None
    for field, wire, _, value in _fields(payload):
        if field == 1:  # dims: packed (wire 2) or one varint per field (wire 0)
            if wire == 2:
                i = 0
                while i < len(value):
                    d, i = _read_varint(value, i)
                    dims.append(d)
            else:
                dims.append(_read_varint(value, 0)[0])
        elif field == 2:
            dtype = _read_varint(value, 0)[0]
        elif field == 4:
            floats = np.frombuffer(value, "<f4")
        elif field == 8:
            name = value.decode()
        elif field == 9:
            raw = value
    if dtype not in _DTYPES:
        raise ValueError(f"ONNX tensor {name!r}: unsupported data type {dtype}")
    if raw is not None:
        array = np.frombuffer(raw, np.dtype(_DTYPES[dtype]).newbyteorder("<"))
    elif floats is not None:
        array = floats
    else:
        array = np.zeros(0, _DTYPES[dtype])
    return name, array.reshape(dims).copy()


def onnx_weights(model: bytes) -> dict[str, np.ndarray]:
    """Every initializer and every Constant node's tensor of an ONNX model, by name."""
    out: dict[str, np.ndarray] = {}
    for field, _, _, graph in _fields(model):
        if field != 7:
            continue
        for g_field, _, _, payload in _fields(graph):
            if g_field == 5:  # initializer
                name, array = _tensor(payload)
                out[name] = array
            elif g_field == 1:  # node: keep Constant nodes' value tensors
                outputs, op, tensor = [], "", None
                for n_field, _, _, value in _fields(payload):
                    if n_field == 2:
                        outputs.append(value.decode())
                    elif n_field == 4:
                        op = value.decode()
                    elif n_field == 5:
                        for a_field, _, _, a_value in _fields(value):
                            if a_field == 5:
                                tensor = _tensor(a_value)[1]
                if op == "Constant" and tensor is not None:
                    out[outputs[0]] = tensor
    return out


class _Weights:
    """Hands out the ONNX tensors as frozen parameters, registered on `module` (so that
    `.to(device)` moves them: it updates each parameter in place, and the layers below keep
    references to them in plain tuples)."""

    def __init__(self, arrays: dict[str, np.ndarray], module: nn.Module):
        self.arrays, self.module = arrays, module

    def __call__(self, name: str) -> nn.Parameter:
        param = nn.Parameter(torch.from_numpy(self.arrays[name]), requires_grad=False)
        self.module.register_parameter(name.replace(".", "_").replace(":", "_").replace("/", "_"), param)
        return param


class GroupedLinear(nn.Module):
    """y[b, t, g, :] = x[b, t, g, :] @ w[g] (the graphs' einsum 'btgi,gih->btgh')."""

    def __init__(self, weight: nn.Parameter):
        super().__init__()
        self.weight = weight

    def forward(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        g, i, h = self.weight.shape
        y = torch.bmm(x.reshape(b * t, g, i).transpose(0, 1), self.weight)  # [g, b*t, h]
        return y.transpose(0, 1).reshape(b, t, g * h)


def _gru(w: _Weights, names: list[tuple[str, str, str]]) -> nn.GRU:
    """A PyTorch GRU from ONNX GRU weights (W, R, B per layer; gates z, r, h -> r, z, n)."""
    hidden = w.arrays[names[0][1]].shape[-1]
    gru = nn.GRU(w.arrays[names[0][0]].shape[-1], hidden, num_layers=len(names), batch_first=True)
    order = np.r_[hidden : 2 * hidden, 0:hidden, 2 * hidden : 3 * hidden]
    with torch.no_grad():
        for layer, (wn, rn, bn) in enumerate(names):
            bias = w.arrays[bn][0]
            getattr(gru, f"weight_ih_l{layer}").copy_(torch.from_numpy(w.arrays[wn][0][order]))
            getattr(gru, f"weight_hh_l{layer}").copy_(torch.from_numpy(w.arrays[rn][0][order]))
            getattr(gru, f"bias_ih_l{layer}").copy_(torch.from_numpy(bias[: 3 * hidden][order]))
            getattr(gru, f"bias_hh_l{layer}").copy_(torch.from_numpy(bias[3 * hidden :][order]))
    gru.requires_grad_(False)
    return gru


class Encoder(nn.Module):
    def __init__(self, model: bytes):
        super().__init__()
        w = _Weights(onnx_weights(model), self)
        self.erb0 = (w("onnx::Conv_282"), w("onnx::Conv_283"))
        self.erb_dw = [w("erb_conv1.0.weight"), w("erb_conv2.0.weight"), w("erb_conv3.0.weight")]
        self.erb_pw = [
            (w("onnx::Conv_285"), w("onnx::Conv_286")),
            (w("onnx::Conv_288"), w("onnx::Conv_289")),
            (w("onnx::Conv_291"), w("onnx::Conv_292")),
        ]
        self.df0 = (w("df_conv0.1.weight"), w("onnx::Conv_294"), w("onnx::Conv_295"))
        self.df1 = (w("df_conv1.0.weight"), w("onnx::Conv_297"), w("onnx::Conv_298"))
        self.df_fc_emb = GroupedLinear(w("df_fc_emb.0.weight"))
        self.lin_in = GroupedLinear(w("emb_gru.linear_in.0.weight"))
        self.lin_out = GroupedLinear(w("emb_gru.linear_out.0.weight"))
        self.gru = _gru(
            w, [("/emb_gru/Constant_3_output_0", "/emb_gru/Constant_4_output_0", "/emb_gru/Constant_5_output_0")]
        )
        self.lsnr = (w("onnx::MatMul_337"), w("lsnr_fc.0.bias"))

    def forward(self, feat_erb: Tensor, feat_spec: Tensor, h0: Tensor) -> tuple[Tensor, ...]:
        """Features with HISTORY frames of context in front (zeros at the start)."""
        e0 = F.relu(F.conv2d(feat_erb, *self.erb0, padding=(0, 1)))
        x, skips = e0, []
        for dw, (pw, pb), stride in zip(self.erb_dw, self.erb_pw, (2, 2, 1), strict=False):
            x = F.conv2d(x, dw, stride=(1, stride), padding=(0, 1), groups=64)
            x = F.relu(F.conv2d(x, pw, pb))
            skips.append(x)
        e1, e2, e3 = skips
        dw, pw, pb = self.df0
        c0 = F.relu(F.conv2d(F.conv2d(feat_spec, dw, padding=(0, 1), groups=2), pw, pb))
        dw, pw, pb = self.df1
        c1 = F.relu(F.conv2d(F.conv2d(c0, dw, stride=(1, 2), padding=(0, 1), groups=64), pw, pb))
        b, _, t, _ = c1.shape
        cemb = F.relu(self.df_fc_emb(c1.permute(0, 2, 3, 1).reshape(b, t, -1)))
        emb = e3.permute(0, 2, 3, 1).reshape(b, t, -1) + cemb
        emb, h = self.gru(F.relu(self.lin_in(emb)), h0)
        emb = F.relu(self.lin_out(emb))
        lsnr = torch.sigmoid(emb @ self.lsnr[0] + self.lsnr[1]) * 50 - 15
        return e0, e1, e2, e3, emb, c0, lsnr, h


class ErbDecoder(nn.Module):
    def __init__(self, model: bytes):
        super().__init__()
        w = _Weights(onnx_weights(model), self)
        self.lin_in = GroupedLinear(w("emb_gru.linear_in.0.weight"))
        self.lin_out = GroupedLinear(w("emb_gru.linear_out.0.weight"))
        self.gru = _gru(
            w,
            [
                ("/emb_gru/Constant_3_output_0", "/emb_gru/Constant_4_output_0", "/emb_gru/Constant_5_output_0"),
                ("/emb_gru/Constant_9_output_0", "/emb_gru/Constant_10_output_0", "/emb_gru/Constant_11_output_0"),
            ],
        )
        self.skip = [(w(f"onnx::Conv_{i}"), w(f"onnx::Conv_{i + 1}")) for i in (288, 294, 300, 306)]  # conv3p..conv0p
        self.convt3 = (w("convt3.0.weight"), w("onnx::Conv_291"), w("onnx::Conv_292"))
        self.convt2 = (w("convt2.0.weight"), w("onnx::Conv_297"), w("onnx::Conv_298"))
        self.convt1 = (w("convt1.0.weight"), w("onnx::Conv_303"), w("onnx::Conv_304"))
        self.out = (w("onnx::Conv_309"), w("onnx::Conv_310"))

    def forward(self, emb: Tensor, e3: Tensor, e2: Tensor, e1: Tensor, e0: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
        b, _, t, f8 = e3.shape
        x, h = self.gru(F.relu(self.lin_in(emb)), h0)
        x = F.relu(self.lin_out(x)).view(b, t, f8, -1).permute(0, 3, 1, 2)
        skip = [
            F.relu(F.conv2d(e, wt, bs, groups=64)) for e, (wt, bs) in zip((e3, e2, e1, e0), self.skip, strict=False)
        ]
        dw, pw, pb = self.convt3
        x = F.relu(F.conv2d(F.conv2d(skip[0] + x, dw, padding=(0, 1), groups=64), pw, pb))
        for (dw, pw, pb), s in zip((self.convt2, self.convt1), skip[1:3], strict=False):
            x = F.conv_transpose2d(s + x, dw, stride=(1, 2), padding=(0, 1), output_padding=(0, 1), groups=64)
            x = F.relu(F.conv2d(x, pw, pb))
        return torch.sigmoid(F.conv2d(skip[3] + x, *self.out, padding=(0, 1))), h


class DfDecoder(nn.Module):
    def __init__(self, model: bytes):
        super().__init__()
        w = _Weights(onnx_weights(model), self)
        self.lin_in = GroupedLinear(w("df_gru.linear_in.0.weight"))
        self.gru = _gru(
            w,
            [("onnx::GRU_291", "onnx::GRU_292", "onnx::GRU_293"), ("onnx::GRU_311", "onnx::GRU_312", "onnx::GRU_313")],
        )
        self.skip = GroupedLinear(w("df_skip.weight"))
        self.convp = (w("df_convp.1.weight"), w("onnx::Conv_268"), w("onnx::Conv_269"))
        self.out = GroupedLinear(w("df_out.0.weight"))

    def forward(self, emb: Tensor, c0: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
        """c0 with HISTORY["c0"] frames of context in front."""
        b, t, _ = emb.shape
        x, h = self.gru(F.relu(self.lin_in(emb)), h0)
        x = x + self.skip(emb)
        dw, pw, pb = self.convp
        p = F.relu(F.conv2d(F.conv2d(c0, dw, groups=2), pw, pb)).permute(0, 2, 3, 1)
        return torch.tanh(self.out(x)).view(b, t, p.shape[2], -1) + p, h


class TorchGraphs(nn.Module):
    """Drop-in for `dfn3.Graphs`: the same chunked run, in PyTorch on `device`."""

    def __init__(self, device: str | torch.device):
        super().__init__()
        files = model_files()
        self.p = files.params
        self.hidden = files.hidden
        self.enc = Encoder(files.raw["enc"])
        self.erb_dec = ErbDecoder(files.raw["erb_dec"])
        self.df_dec = DfDecoder(files.raw["df_dec"])
        self.device = torch.device(device)
        self.to(self.device).eval()
        self.layers = {g: getattr(self, g).gru.num_layers for g in GRAPHS}

    def stream(self, batch: int):
        """`dfn3.Graphs.stream`: a step function over consecutive chunks of frames."""
        p, dev = self.p, self.device
        h = {g: torch.zeros(self.layers[g], batch, self.hidden[g], device=dev) for g in GRAPHS}
        hist = {
            "feat_erb": torch.zeros(batch, 1, HISTORY["feat_erb"], p.nb_erb, device=dev),
            "feat_spec": torch.zeros(batch, 2, HISTORY["feat_spec"], p.nb_df, device=dev),
            "c0": None,
        }

        @torch.inference_mode()
        def step(feat_erb: np.ndarray, feat_spec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x = {}
            for name, value in (("feat_erb", feat_erb), ("feat_spec", feat_spec)):
                x[name] = torch.cat([hist[name], torch.from_numpy(value).to(dev)], dim=2)
                hist[name] = x[name][:, :, -HISTORY[name] :]
            e0, e1, e2, e3, emb, c0, _lsnr, h["enc"] = self.enc(x["feat_erb"], x["feat_spec"], h["enc"])
            if hist["c0"] is None:
                hist["c0"] = c0.new_zeros(*c0.shape[:2], HISTORY["c0"], c0.shape[3])
            c0 = torch.cat([hist["c0"], c0], dim=2)
            hist["c0"] = c0[:, :, -HISTORY["c0"] :]
            m, h["erb_dec"] = self.erb_dec(emb, e3, e2, e1, e0, h["erb_dec"])
            c, h["df_dec"] = self.df_dec(emb, c0, h["df_dec"])
            c = c.reshape(batch, -1, p.nb_df, p.df_order, 2).float().cpu().numpy()
            return m[:, 0].float().cpu().numpy(), (c[..., 0] + 1j * c[..., 1]).astype(np.complex64)

        return step
