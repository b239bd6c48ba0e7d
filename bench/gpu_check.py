"""The measurements of bench/gpu_check.sh, one step per call; each prints `key: value` lines
(the shell script appends them to its results file).

    python bench/gpu_check.py parity  --device cuda
    python bench/gpu_check.py store   --device cuda --data .gpu --work DIR [--utterances N]
    python bench/gpu_check.py train   --device cuda --work DIR [--epochs 31]
    python bench/gpu_check.py dfn3    --device cuda --data .gpu [--utterances 64]

parity: logits and c of every system (resnet width 8, random weights and statistics, eval
mode), CPU against the device, max |delta|, with TF32 off and with torch's default.
store: EmoDB (4 classes, .gpu/emodb) + DEMAND noise (.gpu/noise/demand-vbd, the only noise
packed), the five SNRs, DeepFilterNet3 with its torch runtime on the device, wall time.
train: one TRNet run of the EmoDB refinement setting (resnet width 8, batch 8, fold 0, seed 1,
training noise DEMAND) on that store, after its Baseline-c teacher; wall time of each and peak
GPU memory. dfn3: DFN3's torch runtime on the device, batches of 16 EmoDB utterances,
against onnxruntime on the CPU (one utterance group at a time, as the store does), utterances/s.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch


def peak_mib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else float("nan")


def parity(device: str) -> None:
    from trnet import configs
    from trnet.models import SERSystem, load_config

    g = torch.Generator().manual_seed(0)
    x, xe = (torch.randn(8, 208, 80, generator=g) * 3 + 8 for _ in range(2))
    frames = torch.tensor([208, 190, 160, 120, 97, 60, 33, 17])
    worst = {"strict": [0.0, 0.0], "default": [0.0, 0.0]}
    for name in configs.names():
        torch.manual_seed(0)
        model = SERSystem(replace(load_config(name), width=8)).eval()
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        with torch.no_grad():
            ref = model(x, xe, frames)
            dev = model.to(device)
            for mode, tf32 in (("strict", False), ("default", None)):
                saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
                if tf32 is not None:
                    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
                out = dev(x.to(device), xe.to(device), frames.to(device))
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
                dl = (out.logits.cpu() - ref.logits).abs().max().item()
                dc = (out.c.cpu() - ref.c).abs().max().item() if ref.c is not None else 0.0
                worst[mode] = [max(worst[mode][0], dl), max(worst[mode][1], dc)]
                print(f"parity {name} {mode}: max |d logits| {dl:.2e}, max |d c| {dc:.2e}")
            model.to("cpu")
    for mode, (dl, dc) in worst.items():
        print(f"parity_{mode}_max_logits: {dl:.3e}\nparity_{mode}_max_c: {dc:.3e}")


def build_store(data: Path, work: Path, se: str, device: str, utterances: int | None) -> tuple[int, float]:
    """WORK/store from the packed EmoDB (every `len // utterances`-th file, so every speaker
    stays) and DEMAND noise, DFN3 on `device` (or another back-end at its defaults); returns
    (utterances, build seconds). bench/gpu_study.py builds its store with it too."""
    from trnet import corpora, enhance
    from trnet.corpora import write_manifest
    from trnet.store import BuildSpec, build

    work.mkdir(parents=True, exist_ok=True)
    rows = corpora.load("emodb", data / "emodb", "utterances").rows
    rows = rows[:: max(1, len(rows) // utterances)][:utterances] if utterances else rows  # every speaker
    noise = corpora.load("noise", data / "noise" / "demand-vbd", "noise").rows
    write_manifest(work / "emodb.csv", rows, "utterances")
    write_manifest(work / "demand.csv", noise, "noise")
    options = {"runtime": "torch", "device": device} if se == "dfn3" else {}
    spec = BuildSpec(
        corpus=work / "emodb.csv", noise={"demand": work / "demand.csv"}, se=enhance.spec(se, options), seed=1
    )
    t0 = time.perf_counter()
    build(spec, work / "store", workers=1, quiet=True)
    return len(rows), time.perf_counter() - t0


def store(device: str, data: Path, work: Path, utterances: int | None) -> None:
    n, seconds = build_store(data, work, "dfn3", device, utterances)
    print(f"store_utterances: {n}\nstore_seconds: {seconds:.1f}")


def train(device: str, work: Path, epochs: int) -> None:
    from trnet.training.trainer import spec_from_names
    from trnet.training.trainer import train as train_run

    torch.set_num_threads(1)
    for system in ("baseline-c", "trnet"):
        spec = spec_from_names(
            system,
            0,
            1,
            work / "store",
            work / "runs",
            system_overrides={"width": 8},
            training_overrides={"epochs": epochs, "batch_size": 8, "patience": epochs},
            train_noise="demand",
            device=device,
        )
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        train_run(spec, quiet=True)
        key = system.replace("-", "_")
        print(
            f"train_{key}_seconds: {time.perf_counter() - t0:.1f}\ntrain_{key}_epochs: {epochs}\n"
            f"train_{key}_peak_gpu_mib: {peak_mib(device):.0f}"
        )


def dfn3(device: str, data: Path, utterances: int) -> None:
    from trnet import corpora, enhance
    from trnet.audio import load_audio, pad_or_trim

    rows = corpora.load("emodb", data / "emodb", "utterances").rows[:utterances]
    waves = [pad_or_trim(load_audio(r["path"])) for r in rows]
    wave = torch.from_numpy(np.stack([w for w, _ in waves]))
    lengths = torch.tensor([n for _, n in waves])
    torch.set_num_threads(1)
    for name, options, batch in (
        ("onnxruntime_cpu", {}, 2),
        ("torch_" + device.split(":")[0], {"runtime": "torch", "device": device}, 16),
    ):
        se = enhance.load("dfn3", **options)
        se.enhance(wave[:batch], lengths[:batch])  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(0, len(wave), batch):
            se.enhance(wave[i : i + batch], lengths[i : i + batch])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        print(
            f"dfn3_{name}_utterances_per_s: {len(wave) / seconds:.2f}  # batch {batch}, EmoDB utterances "
            f"(mean {float(lengths.float().mean()) / 16000:.2f} s), 1 CPU thread"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("parity", "store", "train", "dfn3"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data", type=Path, default=Path(".gpu"))
    ap.add_argument("--work", type=Path, default=Path("gpu-check/work"))
    ap.add_argument("--epochs", type=int, default=31)
    ap.add_argument("--utterances", type=int)
    args = ap.parse_args()
    if args.step == "parity":
        parity(args.device)
    elif args.step == "store":
        store(args.device, args.data, args.work, args.utterances)
    elif args.step == "train":
        train(args.device, args.work, args.epochs)
    else:
        dfn3(args.device, args.data, args.utterances or 64)


if __name__ == "__main__":
    main()
