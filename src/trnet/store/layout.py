"""What a condition store is on disk: its conditions and their names, its arrays, its key.
This module is the one owner of the layout; the builder writes it, the reader reads it.

Layout of a store directory:
    .lock                    held by the build working on it (an OS lock; see `trnet.utils`)
    key.json                 settings and their hash (written first)
    utterances.csv           the corpus manifest, in store order
    frames.npy               valid frames per utterance (int16)
    clean/xs.f16, clean/xe.f16              [U, 500, 80] float16
    <noise>/<snr>/x.f16, <noise>/<snr>/xe.f16
    <noise>/assignment.csv   utterance -> noise clip
    chunks/<i>.json          per-chunk completion markers (key hash, timings, achieved SNRs, and
                             the SHA-256 of the rows the chunk wrote in every array: checksum.py)
    summary.json             written when the build is complete (with the key hash)
    verified.json            the state (size, times, inode) each array had when its checksums last
                             verified (checksum.py): an array found so is not read again
    audio/<condition>/<utterance>.wav   enhanced waveforms, with --keep-audio only

A store is complete when summary.json carries the hash of key.json, which `build` writes only
after checking that every chunk marker carries it. A store removes only the files above. Noise
names and (with --keep-audio) utterance ids become folder and file names: each must be one safe
path component (`trnet.utils.safe_component`), and every write and delete is proven to stay
inside the store (`store_path`).

A condition is "clean" or (noise corpus, SNR in dB); its name is "clean" or "<noise>@<snr>"
(`condition_name` / `parse_condition`), in results, predictions and reports alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from trnet import features as feat
from trnet.audio import SAMPLE_RATE, SEGMENT_SAMPLES
from trnet.corpora import CorpusError, read_manifest
from trnet.enhance import Spec
from trnet.utils import UserError, inside, remove_temp_files, safe_component, sha256_file

FORMAT_VERSION = 2  # 2: SNR powers over the valid samples (docs/design.md §2), not the padded 5 s
SNRS: tuple[int, ...] = (20, 15, 10, 5, 0)  # docs/design.md §2
SNR_RANGE = (-20, 60)  # dB, the SNRs a store accepts (docs/design.md §9.4): negative ones too (nEMO -5 dB)
SHAPE = (feat.T_MAX, feat.N_MELS)
CHUNK = 8  # utterances per committed chunk (chunks/<i>.json covers rows i*CHUNK ..)
DTYPE = "float16"

LOCK, KEY, SUMMARY, UTTERANCES, FRAMES, CHUNKS, AUDIO, VERIFIED = (
    ".lock",
    "key.json",
    "summary.json",
    "utterances.csv",
    "frames.npy",
    "chunks",
    "audio",
    "verified.json",
)

Condition = str | tuple[str, int]  # "clean" or (noise corpus, SNR in dB)
RESERVED = ("clean", CHUNKS, AUDIO)  # folders of the store itself: not noise names


class StoreError(UserError):
    """A store that cannot be used or built as asked; the message says what to do."""


class SettingsChanged(StoreError):
    """The store at `root` was built with other settings (`differences`, one line)."""

    def __init__(self, root: Path, differences: str) -> None:
        self.root, self.differences = Path(root), differences
        super().__init__(
            f"store {root} was built with other settings ({differences}); pass --rebuild to replace "
            "its files (nothing else is removed), or choose another --out"
        )


def check_noise_name(name: object) -> str:
    """`name` if it can name a noise corpus (it becomes the store folder `<name>/`), else
    StoreError: one safe path component, not a folder of the store itself."""
    try:
        safe_component(name, "noise name")
    except UserError as err:
        raise StoreError(str(err)) from None
    if name in RESERVED or "@" in name:
        raise StoreError(
            f"noise name {name!r}: {', '.join(RESERVED)} are the store's own folders, and '@' "
            "separates noise and SNR in condition names; choose another name"
        )
    return name


def check_snrs(snrs: object, what: str = "snrs") -> tuple[int, ...]:
    """SNRs as a tuple, or StoreError: integers in SNR_RANGE dB, each once, at least one."""
    values = list(snrs) if isinstance(snrs, list | tuple) else None
    if not values or not all(isinstance(s, int) and not isinstance(s, bool) for s in values):
        raise StoreError(f"{what}: expected one or more integer SNRs in dB, got {snrs!r}")
    low, high = SNR_RANGE
    out = [s for s in values if not low <= s <= high]
    if out:
        raise StoreError(f"{what}: {out[0]} dB is outside {low}..{high} dB")
    if len(set(values)) != len(values):
        twice = sorted({s for s in values if values.count(s) > 1})
        raise StoreError(f"{what}: each SNR once; {', '.join(map(str, twice))} dB given more than once")
    return tuple(values)


def store_path(root: Path, rel: str) -> Path:
    """root/rel, proven to stay inside the store (StoreError otherwise): every write and delete
    of a store goes through here."""
    try:
        return inside(root, Path(root) / rel)
    except UserError as err:
        raise StoreError(str(err)) from None


def condition_name(cond: Condition) -> str:
    """ "clean" or "<noise>@<snr>"."""
    return cond if isinstance(cond, str) else f"{cond[0]}@{cond[1]}"


def parse_condition(name: str) -> Condition:
    """The inverse of `condition_name`."""
    if name == "clean":
        return name
    noise, sep, snr = name.rpartition("@")
    if not sep or not noise:
        raise ValueError(f"{name!r} is not a condition name ('clean' or '<noise>@<snr>')")
    return noise, int(snr)


def condition_snr(cond: Condition) -> float:
    """The SNR of a condition in dB; +inf for clean (so that clean ranks above every SNR)."""
    return float("inf") if cond == "clean" else float(cond[1])


def conditions(noises: Sequence[str], snrs: Sequence[int]) -> list[Condition]:
    """Store order: clean, then each noise corpus with its SNRs high to low as given."""
    return ["clean", *[(n, s) for n in noises for s in snrs]]


def array_path(cond: Condition, which: str) -> str:
    """Relative path of a feature array: which = "x" (noisy; X_s for clean) or "xe" (enhanced)."""
    if which not in ("x", "xe"):
        raise ValueError(f"which must be 'x' or 'xe', got {which!r}")
    if cond == "clean":
        return "clean/xs.f16" if which == "x" else "clean/xe.f16"
    return f"{cond[0]}/{cond[1]}/{which}.f16"


def array_paths(noises: Sequence[str], snrs: Sequence[int]) -> list[str]:
    return [array_path(c, w) for c in conditions(noises, snrs) for w in ("x", "xe")]


def store_key(corpus: Path, noise: dict[str, Path], se: Spec, se_version: str, seed: int, snrs: Sequence[int]) -> dict:
    """Everything that changes the store's content, and its hash (the SE setting as the two
    keys `Spec.to_fields` writes, so that keys of existing stores stay what they were)."""
    settings = {
        "format": FORMAT_VERSION,
        "corpus": str(corpus),
        "corpus_sha256": sha256_file(corpus),
        "noise": {name: {"manifest": str(p), "sha256": sha256_file(p)} for name, p in sorted(noise.items())},
        **se.to_fields(),
        "se_version": se_version,
        "seed": seed,
        "snrs": list(snrs),
        "features": {
            "sample_rate": SAMPLE_RATE,
            "segment_samples": SEGMENT_SAMPLES,
            "frame_length": feat.FRAME_LENGTH,
            "frame_shift": feat.FRAME_SHIFT,
            "n_fft": feat.N_FFT,
            "n_mels": feat.N_MELS,
            "t_max": feat.T_MAX,
            "dtype": DTYPE,
        },
    }
    # Manifest locations are recorded but not hashed: moving a manifest changes no content.
    content = {k: v for k, v in settings.items() if k != "corpus"}
    content["noise"] = {name: v["sha256"] for name, v in settings["noise"].items()}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return {**settings, "hash": digest}


def read_key(root: Path) -> dict | None:
    """The store's key.json, or None if there is none (StoreError if it is unreadable)."""
    path = Path(root) / KEY
    if not path.exists():
        return None
    try:
        key = json.loads(path.read_text())
    except ValueError as err:
        raise StoreError(f"{path} is damaged ({err}); build the store in another folder") from None
    if not isinstance(key, dict) or not all(k in key for k in ("hash", "noise", "snrs")):
        raise StoreError(f"{path} lacks the store's settings; build the store in another folder")
    if not isinstance(key["noise"], dict) or not isinstance(key["snrs"], list):
        raise StoreError(f"{path}: its noise or SNR settings are damaged; build the store in another folder")
    for name in key["noise"]:  # they become paths: a tampered key.json must not lead outside
        try:
            safe_component(name, "noise name")
        except UserError as err:
            raise StoreError(f"{path}: {err}; build the store in another folder") from None
    return key


def is_complete(root: Path, key_hash: str) -> bool:
    """True if the build under key `key_hash` finished (summary.json carries the hash)."""
    try:
        return json.loads((Path(root) / SUMMARY).read_text()).get("key") == key_hash
    except (OSError, ValueError, AttributeError):
        return False


def folders(noises: Sequence[str], snrs: Sequence[int]) -> list[str]:
    """The store's folders (relative), deepest first."""
    conds = conditions(noises, snrs)
    deep = [f"{n}/{s}" for n in noises for s in snrs] + [f"{AUDIO}/{condition_name(c)}" for c in conds]
    return [*deep, *noises, "clean", CHUNKS, AUDIO]


def remove_temp_files_of(root: Path, noises: Sequence[str], snrs: Sequence[int]) -> None:
    """The temp files that writes of a killed build left (only in the store's own folders)."""
    remove_temp_files(root, [KEY, UTTERANCES, FRAMES, SUMMARY, VERIFIED])
    for rel in folders(noises, snrs):
        if (Path(root) / rel).is_dir():
            remove_temp_files(store_path(root, rel))


def remove_store_files(root: Path, key: dict) -> None:
    """Delete the files a store with this key wrote in `root` (summary.json first, key.json
    last, so that an interrupted removal is refused, not mistaken for a store) and the folders
    they leave empty; nothing else, and not the lock."""
    root = Path(root)
    noises, snrs = list(key["noise"]), key["snrs"]
    try:
        ids = [row["id"] for row in read_manifest(root / UTTERANCES)] if (root / UTTERANCES).exists() else []
    except CorpusError:
        ids = []
    files = [SUMMARY, VERIFIED, *array_paths(noises, snrs), *(f"{n}/assignment.csv" for n in noises), FRAMES]
    files += [f"{CHUNKS}/{p.name}" for p in (root / CHUNKS).glob("*.json") if p.stem.isdigit()]
    files += [f"{AUDIO}/{condition_name(c)}/{i}.wav" for c in conditions(noises, snrs) for i in ids if _safe_id(i)]
    for rel in [*files, UTTERANCES]:
        path = root / rel
        if path.exists() or path.is_symlink():
            store_path(root, rel).unlink(missing_ok=True)
    remove_temp_files_of(root, noises, snrs)
    for rel in folders(noises, snrs):
        folder = root / rel
        if folder.is_dir() and not any(folder.iterdir()):
            store_path(root, rel).rmdir()
    (root / KEY).unlink()


def _safe_id(utt_id: str) -> bool:
    """Whether an utterance id can have been a file name of the store (only those are removed)."""
    try:
        safe_component(utt_id, "utterance id")
    except UserError:
        return False
    return True
