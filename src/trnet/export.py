"""`trnet export`: the inference graph of a trained run as ONNX or TorchScript.

    trnet export --model runs/trnet/fold0-seed1 --format onnx --out trnet.onnx

The graph is what runs at inference (docs/design.md §5): SNR-aware module, encoder, bridge and
classifier; SE and LMFB stay outside it (the SE model is a plug-in with its own runtime).

    inputs   x       float32 [B, T, 80]  LMFB of the noisy signal (trnet.features.fbank)
             xe      float32 [B, T, 80]  LMFB of the enhanced signal
             frames  int64   [B]         valid frames per utterance (frames beyond are ignored)
    outputs  logits  float32 [B, classes]
             c       float32 [B]         SNR coefficient; NaN for systems without one

B and T are dynamic. Every system has the same signature; one that reads only X or only X_e
ignores the other input. Labels, system and SE back-end travel in the file's metadata (ONNX
metadata_props; TorchScript extra file `trnet.json`). After writing, the export is run on a
random batch and compared with PyTorch (logits and c); the file is renamed into place only if
they agree. `--out` may not name a file of a run directory (weights, config, log) nor the model
itself, nor an existing file that is not an export of trnet's (unless forced); `--out DIR/`
gets DIR/<model>.onnx|.pt. The file is serialised in memory and written by Python, so a full disk
is an OSError naming the file (never an abort inside the C++ writer) and leaves no temp file.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from trnet.enhance import Spec
from trnet.models import SERSystem
from trnet.pretrained import is_bundle
from trnet.runs import run_of
from trnet.utils import UserError, atomic_path, check_file_path

FORMATS = ("onnx", "torchscript")
INPUTS = ("x", "xe", "frames")
OUTPUTS = ("logits", "c")
OPSET = 17


class ExportError(UserError):
    """The exported graph does not compute what the PyTorch model computes."""


TOLERANCE = 1e-4  # max |delta logits| accepted between PyTorch and the export


class InferenceGraph(nn.Module):
    """(X, X_e, frames) -> (logits, c): SERSystem's forward with a fixed output signature."""

    def __init__(self, model: SERSystem) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, xe: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model(x, xe, frames)
        c = out.c if out.c is not None else torch.full_like(out.logits[:, 0], float("nan"))
        return out.logits, c


def example_inputs(n_mels: int = 80, batch: int = 2, t: int = 123, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """LMFB-like random inputs with distinct lengths (tracing sees no special case)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, t, n_mels, generator=g) * 2 + 8
    xe = x + torch.randn(batch, t, n_mels, generator=g)
    frames = torch.linspace(t, max(1, t // 3), batch).long()
    return x, xe, frames


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")


def export(model: SERSystem, fmt: str, out: str | Path, metadata: dict[str, str] | None = None) -> float:
    """Write `model`'s inference graph to `out` atomically; return the max |delta logits|
    between PyTorch and the export on a check batch (ExportError if above TOLERANCE)."""
    check_format(fmt)
    graph = InferenceGraph(model).eval()  # export restores the top module's mode on all children
    args = example_inputs(model.cfg.n_mels)
    check = example_inputs(model.cfg.n_mels, batch=3, t=211, seed=1)
    with atomic_path(out) as tmp, _legacy_exporters(), torch.no_grad():
        if fmt == "onnx":
            _export_onnx(graph, args, tmp, metadata or {})
            got = run_onnx(tmp, *check)
        else:
            _export_torchscript(graph, args, tmp, metadata or {})
            got = torch.jit.load(str(tmp))(*check)
        want = graph(*check)
        delta = float((got[0] - want[0]).abs().max())
        if not delta <= TOLERANCE:
            raise ExportError(
                f"exported graph disagrees with PyTorch: max |delta logits| = {delta:.2e} > {TOLERANCE:.0e}"
            )
        delta_c = c_delta(got[1], want[1])
        if not delta_c <= TOLERANCE:
            raise ExportError(f"exported graph disagrees with PyTorch: max |delta c| = {delta_c:.2e} > {TOLERANCE:.0e}")
    return delta


def c_delta(got: Tensor, want: Tensor) -> float:
    """max |delta c|, where NaN (a system without c) must stay NaN: a NaN on one side only is inf."""
    same_nan = torch.isnan(got) & torch.isnan(want)
    diff = torch.where(same_nan, torch.zeros_like(want), (got - want).abs())
    return float(torch.nan_to_num(diff, nan=float("inf")).max()) if diff.numel() else 0.0


def _export_onnx(graph: InferenceGraph, args: tuple[Tensor, ...], path: Path, metadata: dict[str, str]) -> None:
    try:
        import onnx
    except ImportError as err:
        raise UserError(f"{err}; install the export extras: pip install 'trnet[export]'") from None

    dynamic = {"x": {0: "batch", 1: "frames_t"}, "xe": {0: "batch", 1: "frames_t"}, "frames": {0: "batch"}}
    dynamic.update({name: {0: "batch"} for name in OUTPUTS})
    buffer = io.BytesIO()
    torch.onnx.export(
        graph, args, buffer, input_names=list(INPUTS), output_names=list(OUTPUTS),
        dynamic_axes=dynamic, opset_version=OPSET, dynamo=False,
    )  # fmt: skip
    proto = onnx.load_from_string(buffer.getvalue())
    # the exporter drops inputs the graph never reads (x of Baseline-e, xe of Baseline-c/-n):
    # put them back so that every system has the one signature documented above
    present = {i.name: i for i in proto.graph.input}
    typed = {"x": (onnx.TensorProto.FLOAT, ["batch", "frames_t", graph.model.cfg.n_mels]),
             "xe": (onnx.TensorProto.FLOAT, ["batch", "frames_t", graph.model.cfg.n_mels]),
             "frames": (onnx.TensorProto.INT64, ["batch"])}  # fmt: skip
    inputs = [present.get(name) or onnx.helper.make_tensor_value_info(name, *typed[name]) for name in INPUTS]
    del proto.graph.input[:]
    proto.graph.input.extend(inputs)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    path.write_bytes(proto.SerializeToString())


def _export_torchscript(graph: InferenceGraph, args: tuple[Tensor, ...], path: Path, metadata: dict[str, str]) -> None:
    traced = torch.jit.trace(graph, args, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={"trnet.json": json.dumps(metadata)})
    path.write_bytes(buffer.getvalue())


@contextmanager
def _legacy_exporters() -> Iterator[None]:
    """Silence PyTorch's deprecation notices for torch.jit and the TorchScript-based ONNX
    exporter: TorchScript is a format users ask for, and the torch.export-based ONNX exporter
    needs onnxscript (not a dependency); both paths are checked for exactness on every export."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def run_onnx(path: str | Path, x: Tensor, xe: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
    """Run an exported ONNX graph with onnxruntime (CPU) -> (logits, c)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"x": x.numpy(), "xe": xe.numpy(), "frames": frames.numpy()}
    logits, c = session.run(list(OUTPUTS), feeds)
    return torch.from_numpy(logits), torch.from_numpy(c)


def run_metadata(config: dict) -> dict[str, str]:
    """What a consumer of the file needs to use it: labels, system, SE front-end (`trnet.se`:
    {"se": name, "se_options": {...}}, the shape of config.json; null for a run that names none)."""
    se = Spec.from_fields(config)
    return {
        "trnet.labels": json.dumps(config["labels"]),
        "trnet.system": json.dumps(config["system"]),
        "trnet.se": json.dumps(None if se is None else se.to_fields()),
    }


SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


def out_file(out: str, fmt: str, model: str | Path) -> Path:
    """The file `--out` names: a path ending in '/' is a folder (made if new), which gets
    FOLDER/<model><suffix>, the model named by its bundle folder or RUNS/<system>/<run>. An
    existing folder without the '/' stays an error (check_out): it may be a typo for a file."""
    path = Path(out)
    if not out.endswith(("/", os.sep)):
        return path
    model = Path(model)
    name = model.stem if model.is_file() else model.name if is_bundle(model) else f"{model.parent.name}-{model.name}"
    return path / f"{name}{SUFFIXES.get(fmt, '')}"


def is_export(path: Path) -> bool:
    """Whether `path` is a file trnet exported (its metadata carries trnet's keys)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return any(n.endswith("/extra/trnet.json") for n in z.namelist())
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        return any(p.key == "trnet.labels" for p in proto.metadata_props)
    except Exception:  # noqa: BLE001 - any unreadable file is simply not one of ours
        return False


def check_out(out: Path, model: str | Path, force: bool = False) -> None:
    """UserError if writing `out` could destroy a run: a file of a run directory, or the
    model file itself (also through a link), or a path that cannot be a file; or if `out`
    is a file that is not an export of trnet's, unless `force`."""
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; expected a file name (or {out}/ to write {out}/<model>.onnx|.pt)")
    check_file_path(out, "--out")
    run = run_of(out) or (out.parent if is_bundle(out.parent) else None)
    if run is not None:
        raise UserError(f"--out {out} is a file of the run {run}; write the export to another file")
    model = Path(model)
    model_file = model / "best.safetensors" if model.is_dir() else model
    if out.exists() and model_file.exists() and out.resolve() == model_file.resolve():
        raise UserError(f"--out {out} is the model being exported; write the export to another file")
    if (out.exists() or out.is_symlink()) and not force and not (out.is_file() and is_export(out)):
        raise UserError(
            f"--out {out} exists and is not a trnet export; refusing to overwrite it (--force to replace it)"
        )
