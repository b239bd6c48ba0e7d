"""What a condition store is built from (`BuildSpec`: corpus and noise manifests, SE back-end
and options, seed, SNRs) and the checks a spec passes before anything is written
(docs/design.md §9.1); `trnet.store.builder` builds it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trnet.corpora import LABELS, read_manifest
from trnet.enhance import Spec
from trnet.store.layout import SNRS, StoreError, check_noise_name, check_snrs, store_key
from trnet.utils import UserError, check_seed, safe_component


@dataclass(frozen=True)
class BuildSpec:
    corpus: Path
    noise: dict[str, Path]
    se: Spec  # checked by trnet.enhance.spec() where it is made (recipe, `trnet conditions`)
    seed: int
    snrs: tuple[int, ...] = SNRS
    keep_audio: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.se, Spec):  # a caller's bug (the name alone, say), not a user's
            raise TypeError(f"BuildSpec.se: expected a trnet.enhance.Spec (from enhance.spec()), got {self.se!r}")

    def key(self, se_version: str) -> dict:
        return store_key(self.corpus, self.noise, self.se, se_version, self.seed, self.snrs)


def check_spec(spec: BuildSpec) -> None:
    """StoreError (or CorpusError) for settings no store can be built with, before anything is
    written: noise names that cannot be folder names, SNRs outside the range or repeated, a
    negative seed, manifests of the wrong kind or empty, labels outside LABELS, and (with
    keep_audio) utterance ids that cannot be file names."""
    for name in spec.noise:
        check_noise_name(name)
    check_snrs(spec.snrs)
    try:
        check_seed(spec.seed, "seed")
    except UserError as err:
        raise StoreError(str(err)) from None
    utts = read_manifest(spec.corpus, "utterances")
    if not utts:
        raise StoreError(f"{spec.corpus}: manifest has no utterances")
    check_utterances(spec, utts)
    for name in sorted(spec.noise):
        if not read_manifest(spec.noise[name], "noise"):
            raise StoreError(f"noise {name}: {spec.noise[name]} has no clips")


def check_utterances(spec: BuildSpec, utts: list[dict]) -> None:
    """Labels in the class set (training indexes LABELS); with keep_audio, ids that can be
    file names (audio/<condition>/<id>.wav)."""
    for row in utts:
        if row["label"] not in LABELS:
            raise StoreError(
                f"{spec.corpus}: utterance {row['id']} has label {row['label']!r}, not one of "
                f"{', '.join(LABELS)} (the classes trnet trains)"
            )
        if spec.keep_audio:
            try:
                safe_component(row["id"], "utterance id")
            except UserError as err:
                raise StoreError(f"{spec.corpus}: {err} (--keep-audio writes audio/<condition>/<id>.wav)") from None


def differences(old: dict, new: dict) -> str:
    """'seed 1 -> 2, se_version' : the settings that differ, with short values."""
    out = []
    for k in new:
        if k not in ("hash", "corpus") and old.get(k) != new[k]:
            a, b = old.get(k), new[k]
            short = all(isinstance(v, int | str) and len(str(v)) <= 24 for v in (a, b))
            out.append(f"{k} {a} -> {b}" if short else k)
    return ", ".join(out) or "format"
