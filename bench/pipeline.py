"""The one-file ONNX pipeline (`trnet export --format onnx --pipeline`) against `trnet predict`:
parity of the per-window probabilities and speech shares, and real-time factor on one thread.

    python bench/pipeline.py [--onnx trnet.onnx] [--shared ../shared/data] [--files 20] [--repeat 3]

Inputs: the example clips, and --files EmoDB files (every 25th, resampled from 22.05 kHz to
16 kHz with trnet.audio.load_audio, as `trnet predict` reads them) clean and mixed at 0 dB
with an ESC-50 clip, plus one 30 s input (EmoDB files end to end: 11 windows). Both sides
get the same 16 kHz waveform. RTF = seconds of compute / seconds of audio over all inputs,
best of --repeat (the two sides alternating), after one warm-up input; `trnet predict` runs `Predictor.predict` (DFN3,
features, model, Silero) with torch and DFN3's onnxruntime on one thread; the graph runs in
onnxruntime with one intra-op and one inter-op thread. Model loading is outside both.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def inputs(shared: Path, count: int) -> list[tuple[str, np.ndarray]]:
    from trnet.audio import load_audio
    from trnet.protocol.mixing import fit_length, mix_at_snr

    root = Path(__file__).resolve().parents[1]
    out = [(p.name, load_audio(p)) for p in sorted((root / "examples").glob("*.flac"))]
    files = sorted((shared / "emodb/wav").glob("*.wav"))[::25][:count]
    esc = [r["filename"] for r in csv.DictReader((shared / "esc50/meta/esc50.csv").open()) if r["fold"] == "2"]
    for k, path in enumerate(files):
        clean = load_audio(path)
        noise = fit_length(load_audio(shared / "esc50/audio" / esc[(7 * k) % len(esc)]), len(clean))
        if np.abs(noise).max() == 0:
            noise = fit_length(load_audio(shared / "esc50/audio" / esc[(7 * k + 1) % len(esc)]), len(clean))
        out += [(path.name, clean), (f"{path.name}@0dB", mix_at_snr(clean, noise, 0.0))]
    out.append(("emodb-30s", np.concatenate([load_audio(p) for p in files])[: 30 * 16_000]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", type=Path, help="an exported pipeline (default: export the bundled model now)")
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1] / "../shared/data")
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import onnxruntime as ort

    import trnet
    from trnet.pipeline.export import export_pipeline
    from trnet.runs import load_run

    predictor = trnet.load()
    path = args.onnx
    if path is None:
        path = Path(tempfile.mkdtemp()) / "trnet.onnx"
        model, config = load_run(predictor.path)
        export_pipeline(model, config, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    data = inputs(args.shared, args.files)
    worst, worst_speech, rows = 0.0, 0.0, []
    for name, wave in data:
        p = predictor.predict(wave, 16_000)
        windows = p.windows or [p]
        want = np.array([[w.probabilities[k] for k in predictor.labels] for w in windows])
        got, _, speech = session.run(["probabilities", "c", "speech"], {"waveform": wave[None]})
        delta = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
        d_speech = float(np.abs(speech - np.array([w.speech for w in windows])).max())
        worst, worst_speech = max(worst, delta), max(worst_speech, d_speech)
        rows.append((name, len(wave) / 16_000, len(windows), delta, d_speech))
    for name, seconds, n, delta, d_speech in rows:
        print(f"{name:<36} {seconds:6.2f} s  {n:2d} windows  max |d prob| {delta:.2e}  max |d speech| {d_speech:.2e}")
    print(
        f"\nparity over {len(rows)} inputs: max |delta probability| {worst:.2e}, max |delta speech| {worst_speech:.2e}"
    )
    audio = sum(len(w) for _, w in data) / 16_000
    sides = {
        "trnet predict": lambda w: predictor.predict(w, 16_000),
        "onnx pipeline": lambda w: session.run(None, {"waveform": w[None]}),
    }
    times: dict[str, list[float]] = {side: [] for side in sides}
    for run in sides.values():
        run(data[0][1])  # warm-up
    for _ in range(args.repeat):  # the two sides alternate, so that a change of load hits both
        for side, run in sides.items():
            start = time.perf_counter()
            for _, wave in data:
                run(wave)
            times[side].append(time.perf_counter() - start)
    for side, t in times.items():
        print(
            f"{side}: RTF {min(t) / audio:.4f} "
            f"(best of {len(t)}: {min(t):.2f} s for {audio:.0f} s of audio, one thread)"
        )
    ratios = sorted(b / a for a, b in zip(times["trnet predict"], times["onnx pipeline"], strict=False))
    print(
        f"pipeline / predict: best {min(times['onnx pipeline']) / min(times['trnet predict']):.2f}x the time; "
        f"per alternation {', '.join(f'{r:.2f}' for r in ratios)}"
    )


if __name__ == "__main__":
    main()
