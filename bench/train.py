"""Training throughput per system on this machine, and the fraction of the measured CPU
matrix-multiply peak that a training step reaches.

    python bench/train.py [--width 32] [--encoder resnet] [--frames 208] [--batch 32] [--steps 3]

One step = forward of student (and the frozen teacher where the system has one), eq. (8)
loss, backward, Adam update, on random LMFB of --frames valid frames (EmoDB's 2 s
utterances crop to 208 frames; IEMOCAP's ~4.5 s mean to ~450). FLOPs per step are counted
with torch.utils.flop_counter on the same step; the peak is a 2048x2048 float32 matmul.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from trnet import configs
from trnet.models import SERSystem, build_teacher, load_config, teacher_config
from trnet.models.losses import compute_losses


def matmul_peak(seconds: float = 1.0) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * 2048**3 * n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--encoder", default="resnet", choices=["resnet", "cnn6"])
    ap.add_argument("--frames", type=int, default=208)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--systems", default=",".join(configs.names(paper_only=True)))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    peak = matmul_peak()
    print(f"{args.threads} thread(s); float32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{args.encoder} width {args.width}, batch {args.batch} x {args.frames} frames, best of {args.steps} steps\n")
    print(f"{'system':<15}{'s/step':>8}{'utt/s':>8}{'GFLOP/step':>12}{'GFLOP/s':>9}{'% peak':>8}")
    B, T = args.batch, args.frames
    x, xe, xs = (torch.randn(B, T, 80) * 3 + 8 for _ in range(3))
    lengths, y = torch.full((B,), T), torch.randint(0, 4, (B,))
    snr_db = torch.tensor([20.0, 15, 10, 5, 0, -5])[torch.arange(B) % 6]  # TRNet-std-snr's L_c reads it
    for name in args.systems.split(","):
        cfg = replace(load_config(name), encoder=args.encoder, width=args.width)
        model = SERSystem(cfg)
        teacher = None
        if cfg.teacher:
            tcfg = teacher_config(cfg)
            teacher = build_teacher(SERSystem(tcfg).state_dict(), tcfg)
        opt = torch.optim.Adam(model.parameters(), 1e-3)

        def step(model=model, teacher=teacher, cfg=cfg, opt=opt) -> None:  # bound now: called at once
            out = model(x, xe, lengths)
            h_s = teacher.embed(xs, lengths) if teacher is not None else None
            loss = compute_losses(out, y, xs, lengths, h_s, cfg, x=x, xe=xe, snr_db=snr_db)["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()

        with FlopCounterMode(display=False) as counter:
            step()
        flops = counter.get_total_flops()
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        t = min(times)
        print(
            f"{name:<15}{t:>8.2f}{B / t:>8.1f}{flops / 1e9:>12.1f}{flops / t / 1e9:>9.1f}"
            f"{100 * flops / t / peak:>7.1f}%"
        )


if __name__ == "__main__":
    main()
