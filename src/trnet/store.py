"""The condition store: for every utterance, the clean LMFB X_s and, for each condition
(clean; each noise corpus x SNR), the noisy X and the enhanced X_e (SPEC §2, §4).

The authors recompute noise mixing, SE and features inside every training step; here
they are computed once and kept as float16 memory-mapped arrays, so a training batch is
a few array reads. The store is keyed by everything that changes its content (corpus and
noise manifests, SE back-end and version, seed, SNRs, feature settings): a change rebuilds,
nothing stale is reused. Work is done in chunks, each committed by an atomic marker after
its arrays are flushed, so a build killed at any moment resumes with no corrupt entry.

Layout of a store directory:
    key.json                 settings and their hash (written first)
    utterances.csv           the corpus manifest, in store order
    frames.npy               valid frames per utterance (int16)
    clean/xs.f16, clean/xe.f16              [U, 500, 80] float16
    <noise>/<snr>/x.f16, <noise>/<snr>/xe.f16
    <noise>/assignment.csv   utterance -> noise clip, achieved SNRs
    chunks/<i>.json          per-chunk completion markers (timings, achieved SNRs)
    summary.json             written when the build is complete
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trnet import features as feat
from trnet.audio import SAMPLE_RATE, SEGMENT_SAMPLES, load_audio, pad_or_trim, save_audio
from trnet.utils import atomic_path, write_json_atomic

FORMAT_VERSION = 2  # 2: SNR powers over the valid samples (SPEC §2), not the padded 5 s
SNRS: tuple[int, ...] = (20, 15, 10, 5, 0)
SHAPE = (feat.T_MAX, feat.N_MELS)
CHUNK = 8

Condition = str | tuple[str, int]  # "clean" or (noise corpus, SNR in dB)


def condition_name(cond: Condition) -> str:
    return cond if isinstance(cond, str) else f"{cond[0]}@{cond[1]}"


def _file_sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- reading


class ConditionStore:
    """Read access to a finished store: memory-mapped features, labels, speakers, frames."""

    def __init__(self, root: str | Path):
        from trnet.corpora import read_manifest

        self.root = Path(root)
        if not (self.root / "summary.json").exists():
            raise FileNotFoundError(
                f"{self.root} is not a finished condition store (no summary.json); "
                "build it with `trnet conditions ... --out DIR` (it resumes if interrupted)"
            )
        self.key = json.loads((self.root / "key.json").read_text())
        self.rows = read_manifest(self.root / "utterances.csv")
        self.frames = np.load(self.root / "frames.npy").astype(np.int64)
        self.noises: list[str] = list(self.key["noise"])
        self.snrs: tuple[int, ...] = tuple(self.key["snrs"])
        self._maps: dict[str, np.memmap] = {}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def conditions(self) -> list[Condition]:
        return ["clean", *[(n, s) for n in self.noises for s in self.snrs]]

    def _array(self, rel: str) -> np.memmap:
        if rel not in self._maps:
            path = self.root / rel
            self._maps[rel] = np.memmap(path, dtype=np.float16, mode="r", shape=(len(self), *SHAPE))
        return self._maps[rel]

    def clean(self) -> np.memmap:
        """X_s for every utterance."""
        return self._array("clean/xs.f16")

    def noisy(self, cond: Condition) -> np.memmap:
        """X under a condition (the clean features for 'clean')."""
        return self.clean() if cond == "clean" else self._array(f"{cond[0]}/{cond[1]}/x.f16")

    def enhanced(self, cond: Condition) -> np.memmap:
        """X_e under a condition (SE applied to clean speech for 'clean')."""
        return self._array("clean/xe.f16" if cond == "clean" else f"{cond[0]}/{cond[1]}/xe.f16")

    def gather(self, index: np.ndarray, conds: Sequence[Condition]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, X_e, X_s) float32 [len(index), 500, 80] with a per-example condition."""
        x = np.empty((len(index), *SHAPE), np.float32)
        xe = np.empty_like(x)
        for j, (i, c) in enumerate(zip(index, conds)):
            x[j] = self.noisy(c)[i]
            xe[j] = self.enhanced(c)[i]
        return x, xe, self.clean()[index].astype(np.float32)


# --------------------------------------------------------------------------- building


@dataclass(frozen=True)
class BuildSpec:
    corpus: Path
    noise: dict[str, Path]
    se: str
    se_options: dict
    seed: int
    snrs: tuple[int, ...] = SNRS
    keep_audio: bool = False


def store_key(spec: BuildSpec, se_version: str) -> dict:
    """Everything that changes the store's content, and its hash."""
    settings = {
        "format": FORMAT_VERSION,
        "corpus": str(spec.corpus),
        "corpus_sha256": _file_sha(spec.corpus),
        "noise": {name: {"manifest": str(p), "sha256": _file_sha(p)} for name, p in sorted(spec.noise.items())},
        "se": spec.se,
        "se_options": spec.se_options,
        "se_version": se_version,
        "seed": spec.seed,
        "snrs": list(spec.snrs),
        "features": {
            "sample_rate": SAMPLE_RATE,
            "segment_samples": SEGMENT_SAMPLES,
            "frame_length": feat.FRAME_LENGTH,
            "frame_shift": feat.FRAME_SHIFT,
            "n_fft": feat.N_FFT,
            "n_mels": feat.N_MELS,
            "t_max": feat.T_MAX,
            "dtype": "float16",
        },
    }
    # Manifest locations are recorded but not hashed: moving a manifest changes no content.
    content = {k: v for k, v in settings.items() if k != "corpus"}
    content["noise"] = {name: v["sha256"] for name, v in settings["noise"].items()}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return {**settings, "hash": digest}


_worker_se = None


def _init_worker(se: str, se_options: dict) -> None:
    import torch

    from trnet import enhance

    global _worker_se
    torch.set_num_threads(1)
    _worker_se = enhance.load(se, **se_options)


def _process_chunk(job: dict) -> dict:
    """All conditions of a few utterances: returns float16 arrays and achieved SNRs."""
    import torch

    from trnet.protocol.mixing import mix_at_snr, snr_db

    se, snrs = _worker_se, job["snrs"]
    out: dict[str, list] = {"xs": [], "xe_clean": [], "x": [], "xe": [], "snr": [], "frames": []}
    t_se = 0.0
    audio: dict[str, np.ndarray] = {}
    for utt in job["utts"]:
        speech, n = pad_or_trim(load_audio(utt["path"]))
        waves = [speech]
        achieved = []
        for noise in utt["noise"]:
            clip = load_audio(noise["path"], offset=float(noise["offset"]), duration=float(noise["duration"]))
            for snr in snrs:
                mixed = mix_at_snr(speech, clip, snr, valid=n)
                waves.append(mixed.astype(np.float32))
                achieved.append(snr_db(speech, mixed.astype(np.float64) - speech, valid=n))
        batch = torch.from_numpy(np.stack(waves))
        # SE runs on the valid part only: the padded tail is masked downstream, and skipping
        # it saves (5 s - n) of SE time per condition. The tail of x_e is zero.
        n_se = max(n, feat.FRAME_LENGTH)
        t0 = time.perf_counter()
        enhanced = torch.zeros_like(batch)
        enhanced[:, :n_se] = se.enhance(batch[:, :n_se].contiguous(), torch.full((len(waves),), n_se))
        t_se += time.perf_counter() - t0
        feats, _ = feat.fbank(torch.cat([batch, enhanced]))
        feats = feat.pad_frames(feats).numpy().astype(np.float16)
        k = len(waves)
        out["xs"].append(feats[0])
        out["xe_clean"].append(feats[k])
        out["x"].append(feats[1:k])
        out["xe"].append(feats[k + 1 :])
        out["snr"].append(achieved)
        out["frames"].append(feat.num_frames(n))
        if job["keep_audio"]:
            audio[utt["id"]] = enhanced.numpy()
    return {"index": job["index"], "t_se": t_se, "audio": audio, **{k: np.asarray(v) for k, v in out.items()}}


def _open_arrays(root: Path, noises: list[str], snrs: Sequence[int], n: int) -> dict[str, np.memmap]:
    """The store's arrays, read-write; each is preallocated (then renamed into place) if missing."""
    rels = ["clean/xs.f16", "clean/xe.f16"] + [f"{m}/{s}/{k}.f16" for m in noises for s in snrs for k in ("x", "xe")]
    arrays = {}
    for rel in rels:
        path = root / rel
        if not path.exists():
            with atomic_path(path) as tmp:  # preallocate, then rename: never a short file
                np.memmap(tmp, dtype=np.float16, mode="w+", shape=(n, *SHAPE)).flush()
        arrays[rel] = np.memmap(path, dtype=np.float16, mode="r+", shape=(n, *SHAPE))
    return arrays


def _chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def build(spec: BuildSpec, out: str | Path, workers: int = 1, quiet: bool = False) -> Path:
    """Build (or resume, or rebuild if its settings changed) the store at `out`."""
    from tqdm import tqdm

    from trnet import enhance
    from trnet.corpora import read_manifest, write_manifest
    from trnet.protocol.noise import assign_noise

    root = Path(out)
    se = enhance.load(spec.se, **spec.se_options)
    key = store_key(spec, se.version)
    del se
    key_path = root / "key.json"
    if key_path.exists():
        old = json.loads(key_path.read_text())
        if old.get("hash") != key["hash"]:
            changed = sorted(k for k in key if k not in ("hash", "corpus") and old.get(k) != key[k])
            print(f"store {root}: settings changed ({', '.join(changed)}); rebuilding", file=sys.stderr)
            shutil.rmtree(root)
        elif (root / "summary.json").exists():
            if not quiet:
                print(f"store {root} is complete and up to date")
            return root
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(key_path, key)

    utts = read_manifest(spec.corpus)
    if not utts:
        raise ValueError(f"{spec.corpus}: manifest has no utterances")
    write_manifest(root / "utterances.csv", utts, "utterances")
    noises = sorted(spec.noise)
    assignments = {}
    for name in noises:
        assignments[name] = assign_noise(utts, read_manifest(spec.noise[name]), spec.seed, name)
    arrays = _open_arrays(root, noises, spec.snrs, len(utts))
    (root / "chunks").mkdir(exist_ok=True)

    jobs = []
    for i, idx in enumerate(_chunks(len(utts), CHUNK)):
        if (root / "chunks" / f"{i}.json").exists():
            continue
        job_utts = [
            {"id": utts[j]["id"], "path": utts[j]["path"], "noise": [assignments[m][utts[j]["id"]] for m in noises]}
            for j in idx
        ]
        jobs.append({"chunk": i, "index": list(idx), "utts": job_utts, "snrs": list(spec.snrs), "keep_audio": spec.keep_audio})
    done_before = -(-len(utts) // CHUNK) - len(jobs)

    bar = tqdm(total=len(utts), initial=done_before * CHUNK, unit="utt", desc=f"conditions ({spec.se})", disable=quiet)
    if jobs:
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(spec.se, spec.se_options)) as pool:
            for job, res in zip(jobs, pool.map(_process_chunk, jobs)):
                _commit_chunk(root, arrays, noises, spec, job, res)
                bar.update(len(job["index"]))
    bar.close()
    for name in noises:
        _write_assignment(root, name, utts, assignments[name], spec.snrs)
    return _finish(root, utts, noises, spec)


def _commit_chunk(root: Path, arrays: dict, noises: list[str], spec: BuildSpec, job: dict, res: dict) -> None:
    idx = np.asarray(job["index"])
    arrays["clean/xs.f16"][idx] = res["xs"]
    arrays["clean/xe.f16"][idx] = res["xe_clean"]
    k = 0
    for m in noises:
        for s in spec.snrs:
            arrays[f"{m}/{s}/x.f16"][idx] = res["x"][:, k]
            arrays[f"{m}/{s}/xe.f16"][idx] = res["xe"][:, k]
            k += 1
    for arr in arrays.values():
        arr.flush()
    for utt_id, waves in res["audio"].items():
        conds = ["clean"] + [f"{m}@{s}" for m in noises for s in spec.snrs]
        for cond, wave in zip(conds, waves):
            save_audio(root / "audio" / cond / f"{utt_id}.wav", wave)
    marker = {"index": job["index"], "frames": res["frames"].tolist(), "snr": res["snr"].tolist(), "t_se": res["t_se"]}
    write_json_atomic(root / "chunks" / f"{job['chunk']}.json", marker)


def _write_assignment(root: Path, name: str, utts: list[dict], assignment: dict, snrs: Sequence[int]) -> None:
    lines = ["utterance,noise_id,noise_source"]
    lines += [f"{u['id']},{assignment[u['id']]['id']},{assignment[u['id']]['source']}" for u in utts]
    with atomic_path(root / name / "assignment.csv") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _finish(root: Path, utts: list[dict], noises: list[str], spec: BuildSpec) -> Path:
    frames = np.zeros(len(utts), np.int16)
    snr_sum: dict[str, list[float]] = {f"{m}@{s}": [] for m in noises for s in spec.snrs}
    t_se = 0.0
    for marker in (root / "chunks").glob("*.json"):
        m = json.loads(marker.read_text())
        frames[m["index"]] = m["frames"]
        t_se += m["t_se"]
        for row in m["snr"]:
            for cond, value in zip(snr_sum, row):
                snr_sum[cond].append(value)
    with atomic_path(root / "frames.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, frames)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    summary = {
        "utterances": len(utts),
        "conditions": ["clean"] + list(snr_sum),
        "achieved_snr_db": {c: float(np.mean(v)) for c, v in snr_sum.items()},
        "se_seconds": t_se,
        "bytes": size,
    }
    write_json_atomic(root / "summary.json", summary)
    return root


def print_summary(root: Path) -> None:
    s = json.loads((root / "summary.json").read_text())
    print(f"store: {root}")
    print(f"  utterances: {s['utterances']}   conditions: {len(s['conditions'])}   size: {s['bytes'] / 2**20:.1f} MiB")
    print(f"  SE time (sum over workers): {s['se_seconds']:.1f} s")
    for cond in s["conditions"][1:]:  # store order: noise corpus, then SNR high to low
        print(f"  {cond:<16} mean achieved SNR {s['achieved_snr_db'][cond]:6.2f} dB")


# --------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", type=Path, required=True, help="utterance manifest CSV (trnet prepare)")
    p.add_argument("--noise", action="append", default=[], metavar="NAME=MANIFEST", help="noise corpus manifest; repeat")
    p.add_argument("--se", default="dfn3", help="speech-enhancement back-end (trnet enhance --list)")
    p.add_argument("--se-checkpoint", type=Path, help="checkpoint for back-ends that need one (cmgan)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--snrs", default=",".join(map(str, SNRS)), help="comma-separated SNRs in dB")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--keep-audio", action="store_true", help="also write the enhanced waveforms (to listen to)")
    p.add_argument("--out", type=Path, required=True, help="store directory")


def parse_noise(items: list[str]) -> dict[str, Path]:
    noise = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--noise expects NAME=MANIFEST, got {item!r}")
        if not Path(path).is_file():
            raise SystemExit(f"--noise {name}: no manifest at {path} (run `trnet prepare` first)")
        noise[name] = Path(path).resolve()
    return noise


def spec_from_args(args: argparse.Namespace) -> BuildSpec:
    if not args.corpus.is_file():
        raise SystemExit(f"--corpus: no manifest at {args.corpus} (run `trnet prepare` first)")
    options = {"checkpoint": str(args.se_checkpoint)} if args.se_checkpoint else {}
    return BuildSpec(
        corpus=args.corpus.resolve(),
        noise=parse_noise(args.noise),
        se=args.se,
        se_options=options,
        seed=args.seed,
        snrs=tuple(int(s) for s in args.snrs.split(",")),
        keep_audio=args.keep_audio,
    )


def run(args: argparse.Namespace) -> int:
    root = build(spec_from_args(args), args.out, workers=args.workers)
    print_summary(root)
    return 0
