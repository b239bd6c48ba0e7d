"""Write the waveform-to-emotion pipeline (`trnet.pipeline.graph`) as one ONNX file:
`trnet export --format onnx --pipeline --out FILE`.

The PyTorch pipeline goes through the TorchScript exporter (opset 17, dynamic signal length).
After writing, the file is run with onnxruntime on a check signal and compared with the
PyTorch pipeline (and its speech shares with `trnet.vad`'s, what `trnet predict` computes);
it is renamed into place only if they agree.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from trnet import vad
from trnet.models import SERSystem
from trnet.pipeline.graph import Core, example_wave, metadata
from trnet.utils import UserError, atomic_path

OPSET = 17
TOLERANCE = 1e-4  # max |delta probability| between the file and PyTorch on the check signal


class PipelineError(UserError):
    """The exported pipeline does not compute what the PyTorch pipeline computes."""


def _onnx(module: torch.nn.Module, args: tuple, inputs: list[str], outputs: list[str], dynamic: dict):
    import onnx

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shape arithmetic: the graph stays dynamic (checked)
        torch.onnx.export(
            module, args, buf, input_names=inputs, output_names=outputs,
            dynamic_axes=dynamic, opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    return onnx.load_from_string(buf.getvalue())


def build(model: SERSystem, labels: list[str], extra: dict[str, str] | None = None):
    """The ONNX model (onnx.ModelProto) and the PyTorch pipeline it was traced from."""
    import onnx

    core = Core(model).eval()
    outputs = ["probabilities", "c", "speech"]
    dynamic = {"waveform": {1: "N"}, **{o: {0: "W"} for o in outputs}}
    with torch.no_grad():
        proto = _onnx(core, (example_wave(7.3),), ["waveform"], outputs, dynamic)
    proto.graph.name = "trnet_pipeline"
    for key, value in {**metadata(labels), **(extra or {})}.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    return proto, core


def check(path: str | Path, core: Core, seconds: float = 11.0) -> float:
    """max |delta| between the file and PyTorch on a check signal: probabilities against the
    PyTorch pipeline, speech shares against trnet.vad's (what `trnet predict` computes)."""
    import onnxruntime as ort

    wave = example_wave(seconds, seed=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got, _, speech = session.run(["probabilities", "c", "speech"], {"waveform": wave.numpy()})
    with torch.no_grad():
        want = core(wave)[0]
        want_speech = core(wave, torch.from_numpy(vad.chunk_probabilities(wave[0].numpy())))[2]
    if got.shape != tuple(want.shape):
        raise PipelineError(f"exported pipeline gives {got.shape[0]} windows, PyTorch {want.shape[0]}")
    return max(float(np.abs(got - want.numpy()).max()), float(np.abs(speech - want_speech.numpy()).max()))


def export_pipeline(model: SERSystem, config: dict, out: str | Path, extra: dict[str, str] | None = None) -> float:
    """Write the pipeline of a loaded run to `out` atomically; the check's max |delta|."""
    import onnx

    try:
        merged, core = build(model, list(config["labels"]), extra)
    except ImportError as err:
        raise UserError(f"{err}; install the export extras: pip install 'trnet[export]'") from None
    with atomic_path(out) as tmp:
        onnx.save(merged, str(tmp))
        delta = check(tmp, core)
        if not delta <= TOLERANCE:
            raise PipelineError(
                f"exported pipeline disagrees with PyTorch: max |delta| = {delta:.2e} > {TOLERANCE:.0e}"
            )
    return delta


def describe(path: str | Path) -> dict[str, object]:
    """The metadata of a pipeline file, decoded."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return {k: json.loads(v) if v[:1] in "[{" else v for k, v in props.items()}
