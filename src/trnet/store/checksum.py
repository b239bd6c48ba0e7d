"""Content checksums of a store's chunks (docs/design.md, "Faults and bad input").

When the builder commits a chunk it records, in the chunk's marker, the SHA-256 of the rows
that chunk wrote in every feature array (`chunks/<i>.json`: "checksums": {array: hex}). When a
store is opened for training or evaluation, `verify` checks once per process that every array
has its full size and that every chunk still has the bytes it was committed with, and that
frames.npy says what the markers say; a damaged, truncated or replaced file is a StoreError
naming it. Stores built before checksums existed (markers without them) are accepted: their
checksums are computed once from the arrays as they are, under the store lock, and written into
the markers (an upgrade; nothing is recomputed from audio). If the store cannot be written
(read-only), it is used with its sizes checked, and a warning says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trnet.store.layout import (
    CHUNKS,
    DTYPE,
    FRAMES,
    LOCK,
    SHAPE,
    StoreError,
    array_paths,
    is_complete,
    store_path,
)
from trnet.utils import exclusive_lock, write_json_atomic

ALGORITHM = "sha256"  # hardware-accelerated on current CPUs: faster here than blake2b (docs/design.md)
ROW_BYTES = int(np.prod(SHAPE)) * np.dtype(DTYPE).itemsize
BLOCK_ROWS = 512  # rows read per step when verifying (40 MiB)
REBUILD = "rebuild it with `trnet conditions ... --rebuild` (or into another --out)"

_verified: dict[str, tuple] = {}  # store (real path) -> the state it was verified in, by this process


def chunk_checksums(arrays: dict[str, np.ndarray], index: Sequence[int]) -> dict[str, str]:
    """SHA-256 of the rows `index` (contiguous, ascending) of every array, as written."""
    start, stop = int(index[0]), int(index[-1]) + 1
    return {rel: hashlib.sha256(memoryview(np.ascontiguousarray(arr[start:stop])).cast("B")).hexdigest()
            for rel, arr in sorted(arrays.items())}


def array_size(n: int) -> int:
    """Bytes of one feature array of a store of n utterances."""
    return n * ROW_BYTES


def check_sizes(root: Path, rels: Sequence[str], n: int) -> None:
    """StoreError naming the first array that is missing or not of its full size."""
    for rel in rels:
        path = Path(root) / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise StoreError(f"{path} is missing from the complete store {root}; {REBUILD}") from None
        if size != array_size(n):
            raise StoreError(f"{path}: {size} bytes, but a store of {n} utterances has {array_size(n)} "
                             f"(the file was truncated or replaced); {REBUILD}")


def _markers(root: Path, n_chunks: int) -> list[dict]:
    out = []
    for i in range(n_chunks):
        path = Path(root) / CHUNKS / f"{i}.json"
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            raise StoreError(f"{path}: unreadable chunk marker of a complete store ({err}); {REBUILD}") from None
    return out


def _state(root: Path, rels: Sequence[str], key_hash: str) -> tuple:
    """What the store's files look like now (sizes, times, inodes): verified again if it changes."""
    stats = [os.stat(Path(root) / rel) for rel in [*rels, FRAMES, CHUNKS]]
    return key_hash, tuple((s.st_size, s.st_mtime_ns, s.st_ino) for s in stats)


def verify(root: Path, key: dict, n: int, frames: np.ndarray, n_chunks: int) -> None:
    """Check a complete store's arrays against its chunk checksums (once per process and state
    of the files); upgrade a store whose markers lack checksums. StoreError names what is wrong."""
    root = Path(root)
    rels = array_paths(list(key["noise"]), key["snrs"])
    check_sizes(root, rels, n)
    real, state = os.path.realpath(root), _state(root, rels, key["hash"])
    if _verified.get(real) == state:
        return
    markers = _markers(root, n_chunks)
    _check_frames(root, markers, frames)
    if any("checksums" not in m for m in markers):
        _upgrade(root, key, rels, n, n_chunks)  # computed from the arrays just now: nothing to compare
    else:
        _compare(root, rels, markers, n)
    _verified[real] = _state(root, rels, key["hash"])


def _check_frames(root: Path, markers: list[dict], frames: np.ndarray) -> None:
    for i, m in enumerate(markers):
        try:
            recorded = [int(f) for f in m["frames"]]
            same = frames[m["index"]].tolist() == recorded
        except (KeyError, TypeError, ValueError, IndexError):
            same = False
        if not same:
            raise StoreError(f"{root / FRAMES} disagrees with chunk marker {i} (frames.npy was damaged or "
                             f"replaced); {REBUILD}")


def _compare(root: Path, rels: Sequence[str], markers: list[dict], n: int) -> None:
    """Read every array once, block by block, and compare each chunk's rows with its checksum."""
    for rel in rels:
        with open(root / rel, "rb", buffering=0) as f:
            buf = bytearray(BLOCK_ROWS * ROW_BYTES)
            view = memoryview(buf)
            base, have = 0, 0  # rows [base, base + have) are in buf
            for i, m in enumerate(markers):
                start, stop = m["index"][0], m["index"][-1] + 1
                if stop > base + have:  # read from `start` on, a block at a time
                    base, have = start, 0
                    want = min(BLOCK_ROWS, n - start) * ROW_BYTES
                    f.seek(start * ROW_BYTES)
                    while have * ROW_BYTES < want:
                        got = f.readinto(view[have * ROW_BYTES : want])
                        if not got:
                            raise StoreError(f"{root / rel}: shorter than its size says; {REBUILD}")
                        have += got // ROW_BYTES
                rows = view[(start - base) * ROW_BYTES : (stop - base) * ROW_BYTES]
                recorded = m["checksums"].get(rel) if isinstance(m["checksums"], dict) else None
                if hashlib.sha256(rows).hexdigest() != recorded:
                    raise StoreError(f"{root / rel}: utterances {start}-{stop - 1} (chunk {i}) differ from the "
                                     f"checksum recorded when the store was built (the file was damaged or "
                                     f"overwritten); {REBUILD}")


def _upgrade(root: Path, key: dict, rels: Sequence[str], n: int, n_chunks: int) -> None:
    """Record the checksums a store built before they existed lacks, from its arrays as they
    are, under the store lock (if the store cannot be written: a warning, sizes checked only)."""
    try:
        with exclusive_lock(root / LOCK, f"a build of the store {root}", wait=True):
            if not is_complete(root, key["hash"]):
                raise StoreError(f"{root} stopped being a complete store while it was opened; open it again")
            markers = _markers(root, n_chunks)
            maps = {rel: np.memmap(root / rel, dtype=DTYPE, mode="r", shape=(n, *SHAPE)) for rel in rels}
            for i, m in enumerate(markers):
                if "checksums" not in m:
                    m["checksums"] = chunk_checksums(maps, m["index"])
                    m["checksums_added"] = "on first use (store built before chunk checksums)"
                    write_json_atomic(store_path(root, f"{CHUNKS}/{i}.json"), m)
            del maps
    except OSError as err:  # a read-only store: use it as it is
        print(f"warning: store {root} has no chunk checksums and cannot record them ({err.strerror}); "
              "its content is used unverified (sizes checked)", file=sys.stderr)
