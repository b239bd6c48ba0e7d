"""Building a condition store: for every utterance, the clean LMFB X_s and, for each
condition (clean; each noise corpus x SNR), the noisy X and the enhanced X_e (docs/design.md §2, §4).

The authors recompute noise mixing, SE and features inside every training step; here they
are computed once and kept as float16 memory-mapped arrays (`trnet.store.layout`), so a
training batch is a few array reads. The store is keyed by everything that changes its
content (corpus and noise manifests, SE back-end and version, seed, SNRs, feature settings):
a store built with other settings is refused (one line naming what differs) unless
`rebuild=True`, which removes the store's own files and nothing else. A build holds the
store's lock (`.lock`, an OS lock that dies with its holder), so two builds never write one
store. Work is done in chunks of utterances, each committed by an atomic marker carrying the
key's hash after its arrays are flushed, so a build killed at any moment resumes with no
corrupt entry, and only chunks written under the current key count. Chunks are computed by
`process_chunk` in worker processes (or by any engine passed as `map_chunks`), committed by
the builder alone; workers exit when the builder dies.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from trnet import enhance
from trnet import features as feat
from trnet.audio import load_audio, pad_or_trim, save_audio
from trnet.corpora import read_manifest, write_manifest
from trnet.protocol.mixing import mix_at_snr, snr_db
from trnet.protocol.noise import assign_noise
from trnet.store.checksum import chunk_checksums
from trnet.store.layout import (
    AUDIO,
    CHUNK,
    CHUNKS,
    DTYPE,
    FRAMES,
    KEY,
    LOCK,
    SHAPE,
    SUMMARY,
    UTTERANCES,
    SettingsChanged,
    StoreError,
    array_path,
    array_paths,
    condition_name,
    conditions,
    is_complete,
    read_key,
    remove_store_files,
    remove_temp_files_of,
    store_path,
)
from trnet.store.spec import BuildSpec, check_spec, differences
from trnet.utils import (
    UserError,
    atomic_path,
    check_folder_path,
    die_with_parent,
    exclusive_lock,
    stopping,
    write_json_atomic,
)

ChunkMap = Callable[[list[dict]], Iterable[dict]]  # jobs -> results, in job order


_worker_se: dict[str, enhance.Enhancer] = {}  # this process's back-end, by its spec (at most one)


def load_enhancer(se: enhance.Spec) -> enhance.Enhancer:
    """The SE back-end, or StoreError naming the back-end when the name or options are wrong."""
    try:
        return enhance.load(se.name, **se.options)
    except (ValueError, TypeError) as err:
        raise StoreError(f"SE back-end {se.name!r} with options {se.options}: {err}") from None


def init_worker(parent: int | None = None) -> None:
    """Per worker process: exit with the parent, one thread."""
    if parent is not None:
        die_with_parent(parent)
    torch.set_num_threads(1)


def worker_enhancer(se: enhance.Spec) -> enhance.Enhancer:
    """The back-end a job names, built once per process: pool workers and Ray's reused
    worker processes compute many chunks with one back-end."""
    key = json.dumps(se.to_fields(), sort_keys=True, default=str)
    if key not in _worker_se:
        _worker_se.clear()
        _worker_se[key] = load_enhancer(se)
    return _worker_se[key]


def process_chunk(job: dict) -> dict:
    """All conditions of a few utterances: float16 features and achieved SNRs (no I/O but
    reading the audio, so that any engine can run it; the builder commits the result). The
    job carries everything, the SE back-end and its options included."""
    se, snrs = worker_enhancer(enhance.Spec.from_fields(job)), job["snrs"]
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
                mixed = mix_at_snr(speech, clip, snr, valid=n)  # powers over the true length (docs/design.md §2)
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
        feats = feat.pad_frames(feats).numpy().astype(DTYPE)
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


def local_map(workers: int) -> ChunkMap:
    """Chunks in `workers` local processes (the default engine)."""

    def run(jobs: list[dict]) -> Iterator[dict]:
        # A process that has initialised CUDA (an SE back-end on the GPU, checked before the build)
        # cannot fork workers that use it: they start fresh ("spawn") then; on the CPU, fork as before.
        context = multiprocessing.get_context("spawn") if torch.cuda.is_initialized() else None
        with (
            ProcessPoolExecutor(
                max_workers=workers, initializer=init_worker, initargs=(os.getpid(),), mp_context=context
            ) as pool,
            stopping(pool),
        ):
            yield from pool.map(process_chunk, jobs)

    return run


def _open_arrays(root: Path, noises: list[str], snrs: Sequence[int], n: int) -> dict[str, np.memmap]:
    """The store's arrays, read-write; each is allocated on disk (then renamed into place) if
    missing or of another size. The blocks are really allocated (posix_fallocate), so a full
    disk is an OSError here, not a SIGBUS when the memory map is written later."""
    arrays = {}
    size = n * int(np.prod(SHAPE)) * np.dtype(DTYPE).itemsize
    for rel in array_paths(noises, snrs):
        path = store_path(root, rel)
        if not path.exists() or path.stat().st_size != size:
            with atomic_path(path) as tmp, open(tmp, "r+b") as f:  # allocate, then rename: never a short file
                os.posix_fallocate(f.fileno(), 0, size)
        arrays[rel] = np.memmap(path, dtype=DTYPE, mode="r+", shape=(n, *SHAPE))
    return arrays


def _chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def build(
    spec: BuildSpec,
    out: str | Path,
    workers: int = 1,
    quiet: bool = False,
    map_chunks: ChunkMap | None = None,
    rebuild: bool = False,
) -> Path:
    """Build (or resume) the store at `out`. A store there with other settings is a
    StoreError unless `rebuild`, which removes its files first. Chunks are computed by
    `map_chunks` (default: `workers` local processes) and committed here."""
    root = Path(out)
    check_folder_path(root, "store folder")
    if workers < 1:
        raise StoreError(f"workers must be at least 1, got {workers}")
    check_spec(spec)
    se = load_enhancer(spec.se)
    key = spec.key(se.version)
    del se
    root.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(root / LOCK, f"another build of the store {root}"):
        old = read_key(root)
        if old is not None and (rebuild or old["hash"] != key["hash"]):
            if not rebuild and any((root / CHUNKS).glob("*.json")):
                raise SettingsChanged(root, differences(old, key))
            # nothing was computed under the old settings (a build that failed before its first
            # chunk): its settings are replaced, so that a corrected rerun goes ahead
            if not quiet:
                print(f"store {root}: removing the store's files to rebuild it")
            remove_store_files(root, old)
        elif old is not None and is_complete(root, key["hash"]):
            if not quiet:
                print(f"store {root} is complete and up to date")
            return root
        return _build(spec, root, key, workers, quiet, map_chunks)


def _build(spec: BuildSpec, root: Path, key: dict, workers: int, quiet: bool, map_chunks: ChunkMap | None) -> Path:
    remove_temp_files_of(root, list(spec.noise), spec.snrs)  # what a killed build was writing
    utts = read_manifest(spec.corpus, "utterances")  # as check_spec found it
    noises = sorted(spec.noise)
    assignments = {}
    for name in noises:  # before the key is written: a noise corpus too small for the sessions writes nothing
        try:
            assignments[name] = assign_noise(utts, read_manifest(spec.noise[name], "noise"), spec.seed, name)
        except UserError:
            raise
        except ValueError as err:
            raise StoreError(f"noise {name}: {err}; give a noise corpus with more recordings") from None
    write_json_atomic(root / KEY, key)
    write_manifest(root / UTTERANCES, utts, "utterances")
    arrays = _open_arrays(root, noises, spec.snrs, len(utts))
    (root / CHUNKS).mkdir(exist_ok=True)

    jobs = []
    for i, idx in enumerate(_chunks(len(utts), CHUNK)):
        if _committed(root, i, key["hash"]):
            continue
        job_utts = [
            {"id": utts[j]["id"], "path": utts[j]["path"], "noise": [assignments[m][utts[j]["id"]] for m in noises]}
            for j in idx
        ]
        jobs.append(
            {
                "chunk": i,
                "index": list(idx),
                "utts": job_utts,
                "snrs": list(spec.snrs),
                **spec.se.to_fields(),
                "keep_audio": spec.keep_audio,
                "key": key["hash"],
            }
        )
    done_before = -(-len(utts) // CHUNK) - len(jobs)

    bar = tqdm(
        total=len(utts), initial=done_before * CHUNK, unit="utt", desc=f"conditions ({spec.se.name})", disable=quiet
    )
    if jobs:
        mapper = map_chunks or local_map(workers)
        for job, res in zip(jobs, mapper(jobs), strict=False):
            _commit_chunk(root, arrays, noises, spec, job, res)
            bar.update(len(job["index"]))
    bar.close()
    for name in noises:
        _write_assignment(root, name, utts, assignments[name])
    return _finish(root, utts, noises, spec, key["hash"])


def _committed(root: Path, chunk: int, key_hash: str) -> bool:
    """True if chunk `chunk` was committed under this key (a marker of other settings is not)."""
    try:
        return json.loads((root / CHUNKS / f"{chunk}.json").read_text()).get("key") == key_hash
    except (OSError, ValueError, AttributeError):
        return False


def _commit_chunk(root: Path, arrays: dict, noises: list[str], spec: BuildSpec, job: dict, res: dict) -> None:
    idx = np.asarray(job["index"])
    arrays[array_path("clean", "x")][idx] = res["xs"]
    arrays[array_path("clean", "xe")][idx] = res["xe_clean"]
    for k, cond in enumerate(conditions(noises, spec.snrs)[1:]):
        arrays[array_path(cond, "x")][idx] = res["x"][:, k]
        arrays[array_path(cond, "xe")][idx] = res["xe"][:, k]
    for arr in arrays.values():
        arr.flush()
    for utt_id, waves in res["audio"].items():
        for cond, wave in zip(conditions(noises, spec.snrs), waves, strict=False):
            save_audio(store_path(root, f"{AUDIO}/{condition_name(cond)}/{utt_id}.wav"), wave)
    marker = {
        "key": job["key"],
        "index": job["index"],
        "frames": res["frames"].tolist(),
        "snr": res["snr"].tolist(),
        "t_se": res["t_se"],
        "checksums": chunk_checksums(arrays, job["index"]),
    }
    write_json_atomic(store_path(root, f"{CHUNKS}/{job['chunk']}.json"), marker)


def _write_assignment(root: Path, name: str, utts: list[dict], assignment: dict) -> None:
    with atomic_path(store_path(root, f"{name}/assignment.csv")) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["utterance", "noise_id", "noise_source"])
        writer.writerows([u["id"], assignment[u["id"]]["id"], assignment[u["id"]]["source"]] for u in utts)


def _finish(root: Path, utts: list[dict], noises: list[str], spec: BuildSpec, key_hash: str) -> Path:
    n_chunks = -(-len(utts) // CHUNK)
    missing = [i for i in range(n_chunks) if not _committed(root, i, key_hash)]
    if missing:
        raise RuntimeError(f"store {root}: chunks {missing[:5]} were not written under the current key")
    frames = np.zeros(len(utts), np.int16)
    snr_sum: dict[str, list[float]] = {condition_name(c): [] for c in conditions(noises, spec.snrs)[1:]}
    t_se = 0.0
    for i in range(n_chunks):
        m = json.loads((root / CHUNKS / f"{i}.json").read_text())
        frames[m["index"]] = m["frames"]
        t_se += m["t_se"]
        for row in m["snr"]:
            for cond, value in zip(snr_sum, row, strict=False):
                snr_sum[cond].append(value)
    with atomic_path(store_path(root, FRAMES)) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, frames)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    summary = {
        "key": key_hash,
        "utterances": len(utts),
        "conditions": ["clean"] + list(snr_sum),
        "achieved_snr_db": {c: float(np.mean(v)) for c, v in snr_sum.items()},
        "se_seconds": t_se,
        "bytes": size,
    }
    write_json_atomic(root / SUMMARY, summary)
    return root


def print_summary(root: Path) -> None:
    s = json.loads((root / "summary.json").read_text())
    print(f"store: {root}")
    print(f"  utterances: {s['utterances']}   conditions: {len(s['conditions'])}   size: {s['bytes'] / 2**20:.1f} MiB")
    print(f"  SE time (sum over workers): {s['se_seconds']:.1f} s")
    for cond in s["conditions"][1:]:  # store order: noise corpus, then SNR high to low
        print(f"  {cond:<16} mean achieved SNR {s['achieved_snr_db'][cond]:6.2f} dB")
