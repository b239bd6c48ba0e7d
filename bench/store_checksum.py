"""What the store's chunk checksums cost (docs/design.md §9.1): the time to
open a store and verify its arrays, from disk (the store's pages evicted from the page cache
first) and from memory, beside the time of a training run on the same store.

    python bench/store_checksum.py emodb --work /tmp/ck          # EmoDB + ESC-50 + DEMAND, 5 SNRs
    python bench/store_checksum.py simulate --utts 5531 --work /tmp/ck   # IEMOCAP's size, 11 conditions
    ... --train-epochs 1 --device cuda                                    # the training run beside it

`emodb` builds the store of recipes/emodb.toml (339 utterances, clean + 2 noise corpora x 5
SNRs = 11 conditions) with the identity SE (verification reads bytes: an SE changes no size).
`simulate` writes a store of `--utts` utterances with random features and real chunk markers
(5531: IEMOCAP after merging excited into happy), 10 speakers in 5 sessions. The training run
is Baseline-c (no teacher) at the recipe's width and batch, for `--train-epochs` epochs; its
time includes opening the store (verified.json removed first: the worst case, the first run
after a build or a change), so the verification share is measured, not assumed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from trnet.corpora import LABELS, emodb, esc50, noisefolder, write_manifest
from trnet.enhance import Spec
from trnet.store import BuildSpec, ConditionStore, build, checksum
from trnet.store.layout import CHUNK, DTYPE, SHAPE, array_path, array_paths, conditions, store_key
from trnet.training.trainer import spec_from_names, train

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SNRS = (20, 15, 10, 5, 0)


def evict(paths: list[Path]) -> None:
    """Drop these files' pages from the page cache (theirs only), so the next read is from disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def forget(root: Path) -> None:
    """Make the next open verify again: this process's memory of it, and verified.json."""
    checksum._checked.clear()
    checksum._opened.clear()
    (root / "verified.json").unlink(missing_ok=True)


def emodb_store(work: Path, workers: int) -> Path:
    corpus = write_manifest(work / "emodb.csv", emodb.load(DATA / "emodb").rows, "utterances")
    noise = {
        "esc50": write_manifest(work / "esc50.csv", esc50.load(DATA / "esc50").rows, "noise"),
        "demand": write_manifest(work / "demand.csv", noisefolder.load(DATA / "noise" / "demand-vbd").rows, "noise"),
    }
    spec = BuildSpec(corpus.resolve(), {k: v.resolve() for k, v in noise.items()}, Spec("identity"), 1, SNRS)
    return build(spec, work / "store-emodb", workers=workers, quiet=True)


def simulated_store(work: Path, n: int) -> Path:
    """A complete store of n utterances with random features, written the way the builder does."""
    root = work / f"store-sim{n}"
    if (root / "summary.json").exists():
        return root
    rng = np.random.default_rng(0)
    rows = [
        {
            "id": f"u{i:05d}",
            "path": str(work / "none.wav"),
            "label": LABELS[i % 4],
            "speaker": f"s{i % 10}",
            "session": str(i % 10 // 2 + 1),
            "gender": "FM"[i % 2],
            "duration": 4.0,
        }
        for i in range(n)
    ]
    corpus = write_manifest(work / "sim.csv", rows, "utterances")
    noise_rows = [
        {"id": f"n{j}", "path": str(work / "none.wav"), "source": f"n{j}", "category": "x", "offset": 0, "duration": 5}
        for j in range(4)
    ]
    noise = {name: write_manifest(work / f"{name}.csv", noise_rows, "noise") for name in ("esc50", "musan")}
    key = store_key(corpus, noise, Spec("identity"), "simulated", 1, SNRS)
    root.mkdir(parents=True, exist_ok=True)
    (root / "key.json").write_text(json.dumps(key))
    write_manifest(root / "utterances.csv", rows, "utterances")
    frames = rng.integers(100, 501, n).astype(np.int16)
    np.save(root / "frames.npy", frames)
    rels = array_paths(sorted(noise), SNRS)
    arrays: dict[str, np.memmap] = {}
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        arrays[rel] = np.memmap(root / rel, dtype=DTYPE, mode="w+", shape=(n, *SHAPE))
        for start in range(0, n, 512):
            stop = min(n, start + 512)
            arrays[rel][start:stop] = rng.standard_normal((stop - start, *SHAPE), dtype=np.float32)
        arrays[rel].flush()
    (root / "chunks").mkdir(exist_ok=True)
    for i, start in enumerate(range(0, n, CHUNK)):
        index = list(range(start, min(n, start + CHUNK)))
        marker = {
            "key": key["hash"],
            "index": index,
            "frames": frames[index].tolist(),
            "snr": [],
            "t_se": 0.0,
            "checksums": checksum.chunk_checksums(arrays, index),
        }
        (root / "chunks" / f"{i}.json").write_text(json.dumps(marker))
    del arrays
    (root / "summary.json").write_text(
        json.dumps(
            {
                "key": key["hash"],
                "utterances": n,
                "conditions": [],
                "achieved_snr_db": {},
                "se_seconds": 0.0,
                "bytes": 0,
            }
        )
    )
    return root


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(root: Path) -> dict:
    """Seconds to open the store and verify: the training arrays (clean + the first noise's
    SNRs, x and xe), then all arrays; from disk and from memory."""
    store = ConditionStore(root, verify=False)
    train_conds = ["clean", *[(store.noises[0], s) for s in store.snrs]]
    train_rels = sorted({array_path(c, w) for c in train_conds for w in ("x", "xe")})
    all_rels = array_paths(store.noises, store.snrs)
    paths = [root / rel for rel in all_rels]
    out = {
        "utterances": len(store),
        "conditions": len(conditions(store.noises, store.snrs)),
        "bytes": sum(p.stat().st_size for p in paths),
        "threads": checksum.THREADS,
    }
    for cache in ("disk", "memory"):
        for what, rels in (("train", train_rels), ("all", all_rels)):
            forget(root)
            if cache == "disk":
                evict(paths)
            else:
                for rel in rels:  # read once so that the pages are in memory
                    with open(root / rel, "rb") as f:
                        while f.read(1 << 24):
                            pass
            t0 = time.perf_counter()
            s = ConditionStore(root)
            t_open = time.perf_counter() - t0
            for rel in rels:
                s._array(rel)
            out[f"{what}_{cache}_s"] = round(time.perf_counter() - t0, 2)
            out[f"open_{cache}_s"] = round(t_open, 3)
            out[f"{what}_bytes"] = sum((root / rel).stat().st_size for rel in rels)
    checksum._checked.clear()  # another process: verified.json (written just now) says all is verified
    checksum._opened.clear()
    t0 = time.perf_counter()
    s = ConditionStore(root)
    for rel in all_rels:
        s._array(rel)
    out["all_recorded_s"] = round(time.perf_counter() - t0, 3)
    return out


def training(root: Path, work: Path, epochs: int, width: int, batch: int, device: str) -> float:
    spec = spec_from_names(
        "baseline-c",
        0,
        1,
        root,
        work / f"runs-{root.name}-{time.time_ns()}",
        system_overrides={"width": width},
        training_overrides={"epochs": epochs, "batch_size": batch, "patience": epochs},
        device=device,
    )
    forget(root)
    evict([root / rel for rel in array_paths(list(ConditionStore(root, verify=False).noises), SNRS)])
    return timed(lambda: train(spec, quiet=True))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("emodb", "simulate"))
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--utts", type=int, default=5531)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--train-epochs", type=int, default=0, help="also time a training run of this many epochs")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the training run")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    root = emodb_store(args.work, args.workers) if args.what == "emodb" else simulated_store(args.work, args.utts)
    result = {"store": str(root), "made_s": round(time.perf_counter() - t0, 1), **measure(root)}
    if args.train_epochs:
        result.update(
            train_epochs=args.train_epochs,
            width=args.width,
            batch=args.batch,
            device=args.device,
            train_s=round(training(root, args.work, args.train_epochs, args.width, args.batch, args.device), 1),
        )
        result["train_verify_share"] = round(result["train_disk_s"] / result["train_s"], 4)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
