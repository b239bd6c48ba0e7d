"""Throughput of trnet.features.fbank (batched PyTorch) vs kaldi-native-fbank, same run.

    python bench/features.py [--utts 64] [--threads N]

Both compute the same 80-dim Kaldi LMFB on 5 s utterances; the ratio is ours / reference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from trnet.features import fbank


def kaldi_native(waves: np.ndarray) -> None:
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = "hamming"
    opts.mel_opts.num_bins = 80
    opts.mel_opts.low_freq = 0.0
    opts.mel_opts.high_freq = 8000.0
    for w in waves:
        f = knf.OnlineFbank(opts)
        f.accept_waveform(16000, (w * 32768.0).tolist())
        f.input_finished()
        np.stack([f.get_frame(i) for i in range(f.num_frames_ready)])


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--utts", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    waves = (0.1 * rng.standard_normal((args.utts, 80_000))).astype(np.float32)
    audio_s = args.utts * 5.0
    batch = torch.from_numpy(waves)

    def ours() -> None:
        for i in range(0, args.utts, args.batch):
            fbank(batch[i : i + args.batch])

    t_ours, t_ref = best_of(ours), best_of(lambda: kaldi_native(waves))
    print(f"{args.utts} utterances x 5 s, {args.threads} thread(s), best of 3")
    print(f"{'implementation':<28}{'seconds':>9}{'x real time':>13}")
    print(f"{'trnet.features.fbank':<28}{t_ours:>9.3f}{audio_s / t_ours:>13.0f}")
    print(f"{'kaldi-native-fbank':<28}{t_ref:>9.3f}{audio_s / t_ref:>13.0f}")
    print(f"speed ratio (ours / kaldi-native-fbank): {t_ref / t_ours:.2f}x")
    if torch.cuda.is_available():
        gpu = batch.cuda()
        fbank(gpu[: args.batch])
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(0, args.utts, args.batch):
            fbank(gpu[i : i + args.batch])
        torch.cuda.synchronize()
        t_gpu = time.perf_counter() - t0
        print(f"{'trnet.features.fbank (CUDA)':<28}{t_gpu:>9.3f}{audio_s / t_gpu:>13.0f}")


if __name__ == "__main__":
    main()
