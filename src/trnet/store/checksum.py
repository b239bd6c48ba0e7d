"""Content checksums of a store's chunks (docs/design.md §9.1).

When the builder commits a chunk it records, in the chunk's marker, the SHA-256 of the rows
that chunk wrote in every feature array (`chunks/<i>.json`: "checksums": {array: hex}). When a
store is opened for training or evaluation, `open_store` checks that every array has its full
size and that frames.npy says what the markers say, and each array is compared with its
checksums when it is first read (`verify_array`): a training run checks its training
conditions only, an evaluation all of them. An array is verified once per state of its file:
`verified.json` records the size, times and inode each array had when it last verified, and an
array found as recorded is not read again (a write, a copy or a replacement changes the state). A damaged, truncated or
replaced file is a StoreError naming it. Stores built before checksums existed (markers
without them) are accepted: their checksums are computed once from the arrays as they are,
under the store lock, and written into the markers (an upgrade; nothing is recomputed from
audio). If the store cannot be written (read-only), it is used with its sizes checked, and a
warning says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from trnet.store.layout import (
    CHUNK,
    CHUNKS,
    DTYPE,
    FRAMES,
    LOCK,
    SHAPE,
    VERIFIED,
    StoreError,
    array_paths,
    is_complete,
    store_path,
)
from trnet.utils import exclusive_lock, write_json_atomic

ALGORITHM = "sha256"  # hardware-accelerated on current CPUs: faster here than blake2b (docs/design.md)
ROW_BYTES = int(np.prod(SHAPE)) * np.dtype(DTYPE).itemsize
BLOCK_ROWS = 64 * CHUNK  # rows read and hashed per step when verifying (40 MiB)
THREADS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))
REBUILD = "rebuild it with `trnet conditions ... --rebuild` (or into another --out)"

_checked: dict[str, tuple] = {}  # real path of an array -> the state this process verified it in
_opened: dict[str, tuple] = {}  # real path of a store -> (the state it was opened in, its chunk markers)


def chunk_checksums(arrays: dict[str, np.ndarray], index: Sequence[int]) -> dict[str, str]:
    """SHA-256 of the rows `index` (contiguous, ascending) of every array, as written."""
    start, stop = int(index[0]), int(index[-1]) + 1
    return {
        rel: hashlib.sha256(memoryview(np.ascontiguousarray(arr[start:stop])).cast("B")).hexdigest()
        for rel, arr in sorted(arrays.items())
    }


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
            raise StoreError(
                f"{path}: {size} bytes, but a store of {n} utterances has {array_size(n)} "
                f"(the file was truncated or replaced); {REBUILD}"
            )


def _markers(root: Path, n_chunks: int) -> list[dict]:
    out = []
    for i in range(n_chunks):
        path = Path(root) / CHUNKS / f"{i}.json"
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            raise StoreError(f"{path}: unreadable chunk marker of a complete store ({err}); {REBUILD}") from None
    return out


def _state(*paths: Path) -> tuple:
    """What files look like now (size, modification and change times, inode): any write, copy
    or replacement changes it, and the file is verified again."""
    return tuple((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) for st in map(os.stat, paths))


def _stamp(root: Path, key_hash: str) -> dict[str, list]:
    """verified.json: array -> the state it was last verified in, by any process (empty if absent,
    damaged or of another key)."""
    try:
        stamp = json.loads((Path(root) / VERIFIED).read_text())
        return stamp["arrays"] if stamp.get("key") == key_hash and isinstance(stamp.get("arrays"), dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def _record(root: Path, key_hash: str, states: dict[str, tuple]) -> None:
    """Add arrays, in the states they verified in, to verified.json (nothing if the store is
    read-only: it is then verified once per process)."""
    arrays = {**_stamp(root, key_hash), **{rel: list(state[0]) for rel, state in states.items()}}
    with contextlib.suppress(OSError):
        write_json_atomic(store_path(root, VERIFIED), {"key": key_hash, "arrays": arrays})


def open_store(root: Path, key: dict, n: int, frames: np.ndarray, n_chunks: int) -> list[dict]:
    """What opening a complete store checks: every array of its full size, chunk markers
    readable, frames.npy as the markers say (once per process and state of frames.npy and the
    chunks folder); a store whose markers lack checksums is upgraded (`_upgrade`). Returns the
    chunk markers."""
    root = Path(root)
    rels = array_paths(list(key["noise"]), key["snrs"])
    check_sizes(root, rels, n)
    real, state = os.path.realpath(root), (key["hash"], n_chunks, _state(root / FRAMES, root / CHUNKS))
    if real in _opened and _opened[real][0] == state:
        return _opened[real][1]
    markers = _markers(root, n_chunks)
    _check_frames(root, markers, frames)
    if any("checksums" not in m for m in markers):
        markers = _upgrade(root, key, rels, n, n_chunks) or markers
    _opened[real] = ((key["hash"], n_chunks, _state(root / FRAMES, root / CHUNKS)), markers)
    return markers


def verify_array(root: Path, rel: str, markers: list[dict], n: int, key_hash: str) -> None:
    """Compare every chunk of one array with its recorded checksum (StoreError naming the file
    and the utterances that differ), once per state of the file: skipped when this process, or
    any process (verified.json), verified it as it is now. Blocks of chunks are read and hashed
    by a few threads (both release the GIL)."""
    path = Path(root) / rel
    real, state = os.path.realpath(path), _state(path)
    if _checked.get(real) == state or any("checksums" not in m for m in markers):  # read-only legacy store
        return
    if _stamp(root, key_hash).get(rel) == list(state[0]):
        _checked[real] = state
        return
    blocks = [markers[i : i + BLOCK_ROWS // CHUNK] for i in range(0, len(markers), BLOCK_ROWS // CHUNK)]
    fd = os.open(path, os.O_RDONLY)
    try:
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            for bad in pool.map(lambda block: _first_mismatch(fd, rel, block), blocks):
                if bad is not None:
                    i, m = bad
                    raise StoreError(
                        f"{path}: utterances {m['index'][0]}-{m['index'][-1]} (chunk {i}) differ from "
                        "the checksum recorded when the store was built (the file was damaged or "
                        f"overwritten); {REBUILD}"
                    )
    finally:
        os.close(fd)
    _checked[real] = state
    _record(root, key_hash, {rel: state})


def _first_mismatch(fd: int, rel: str, block: list[dict]) -> tuple[int, dict] | None:
    """The first chunk of `block` (consecutive markers) whose rows differ from its checksum."""
    start, stop = block[0]["index"][0], block[-1]["index"][-1] + 1
    data = os.pread(fd, (stop - start) * ROW_BYTES, start * ROW_BYTES)
    view = memoryview(data)
    for m in block:
        a, b = m["index"][0] - start, m["index"][-1] + 1 - start
        recorded = m["checksums"].get(rel) if isinstance(m["checksums"], dict) else None
        if len(data) < b * ROW_BYTES or hashlib.sha256(view[a * ROW_BYTES : b * ROW_BYTES]).hexdigest() != recorded:
            return m["index"][0] // CHUNK, m
    return None


def _check_frames(root: Path, markers: list[dict], frames: np.ndarray) -> None:
    for i, m in enumerate(markers):
        try:
            recorded = [int(f) for f in m["frames"]]
            same = frames[m["index"]].tolist() == recorded
        except (KeyError, TypeError, ValueError, IndexError):
            same = False
        if not same:
            raise StoreError(
                f"{root / FRAMES} disagrees with chunk marker {i} (frames.npy was damaged or replaced); {REBUILD}"
            )


def _upgrade(root: Path, key: dict, rels: Sequence[str], n: int, n_chunks: int) -> list[dict] | None:
    """Record the checksums a store built before they existed lacks, from its arrays as they
    are, under the store lock; the markers with them, or None if the store cannot be written
    (a warning: its content is then used with sizes checked only)."""
    try:
        holder = f"another process building the store {root} or recording its chunk checksums (once, on first use)"
        with exclusive_lock(root / LOCK, holder, wait=True):
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
            states = {rel: _state(root / rel) for rel in rels}  # just hashed: nothing to compare
            _checked.update({os.path.realpath(root / rel): state for rel, state in states.items()})
            _record(root, key["hash"], states)
            return markers
    except OSError as err:  # a read-only store: use it as it is
        print(
            f"warning: store {root} has no chunk checksums and cannot record them ({err.strerror}); "
            "its content is used unverified (sizes checked)",
            file=sys.stderr,
        )
        return None
