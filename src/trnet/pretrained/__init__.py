"""The models that ship inside the package (docs/design.md §11), so that
`trnet predict clip.wav` works on a fresh install: no training, no download.

A bundle is a folder of package data, `trnet/pretrained/<name>/`, laid out as a finished
run directory (`trnet.runs`: best.safetensors, config.json, done.json), so everything that
reads a run (predict, export, `trnet.load`) reads a bundle unchanged, plus

    manifest.json   name, system, classes, training data with their licences, the recipe,
                    the commit, metrics, and the SHA-256 and size of every file above

Every file is checked against the manifest's SHA-256 before a bundle is used: a damaged or
half-copied install is one line naming the file, never a model that silently predicts
nonsense. The folder searched is the package's own, or `$TRNET_MODELS` when set (a site-wide
folder of bundles, or a test's temporary one). `trnet bundle` writes a bundle;
`trnet models` lists them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trnet.utils import BEST, CONFIG, DONE, UserError, sha256_file

MANIFEST = "manifest.json"
FORMAT = 1
FILES = (BEST, CONFIG, DONE)  # what a manifest vouches for
ENV = "TRNET_MODELS"
PACKAGE_DIR = Path(__file__).resolve().parent


class BundleError(UserError):
    """A bundled model that is missing, damaged or unknown; the message says what to do."""


def check_name(name: object, what: str = "bundle name") -> str:
    """`name` if it can name a bundle folder inside the package: letters, digits, '-', '_' and
    '.', starting with a letter or digit and not ending in '.py', so that it is one path
    component that can never be a module of the package (`__init__.py`), its cache
    (`__pycache__`), a hidden file or a temporary one (docs/design.md §9)."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 100
        or not all(ch.isascii() and (ch.isalnum() or ch in "-_.") for ch in name)
        or not name[0].isalnum()
        or name.lower().endswith((".py", ".pyc"))
    ):
        raise BundleError(
            f"{what} {name!r}: expected letters, digits, '-', '_' or '.', starting with a letter or digit "
            "and not ending in .py (it names a folder inside the package)"
        )
    return name


@dataclass(frozen=True)
class Bundle:
    """A bundled model: its folder and its manifest."""

    path: Path
    manifest: dict[str, Any]

    damage: str | None = None  # why the manifest could not be read (`trnet models` shows it)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.path.name))

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.get("labels", []))

    def verify(self) -> Bundle:
        """Self, after checking every file against the manifest (BundleError if one differs),
        and the manifest's labels against config.json's, which its checksum covers: the labels
        `trnet models` lists are then as trustworthy as the weights."""
        if self.damage:
            raise BundleError(self.damage)
        files = self.manifest.get("files")
        if (
            not isinstance(files, dict)
            or set(files) != set(FILES)
            or not all(isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in files.values())
        ):
            listed = sorted(map(str, files)) if isinstance(files, dict | list) else files
            raise BundleError(
                f"{self.path / MANIFEST}: lists files {listed}, expected {list(FILES)} each with its sha256; "
                "reinstall trnet (or rebuild the bundle)"
            )
        for name in FILES:
            path = self.path / name
            if not path.is_file():
                raise BundleError(f"bundled model {self.name}: {path} is missing; reinstall trnet")
            if sha256_file(path) != files[name]["sha256"]:
                raise BundleError(
                    f"bundled model {self.name}: {path} does not match its SHA-256 in {MANIFEST} "
                    "(damaged or replaced); reinstall trnet"
                )
        try:
            labels = json.loads((self.path / CONFIG).read_text()).get("labels")
        except (OSError, ValueError, AttributeError):
            labels = None
        if "labels" in self.manifest and self.manifest["labels"] != labels:
            raise BundleError(
                f"bundled model {self.name}: the labels in {self.path / MANIFEST} differ from its {CONFIG} "
                f"({labels}); reinstall trnet"
            )
        return self


def root() -> Path:
    """The folder searched for bundles: $TRNET_MODELS, else the package's own."""
    env = os.environ.get(ENV)
    return Path(env).expanduser() if env else PACKAGE_DIR


def read_manifest(folder: Path) -> dict[str, Any]:
    """A bundle folder's manifest (BundleError if unreadable or of an unknown format)."""
    file = Path(folder) / MANIFEST
    try:
        manifest = json.loads(file.read_text())
    except OSError as err:
        raise BundleError(f"{file}: cannot read it ({err.strerror})") from None
    except ValueError as err:
        raise BundleError(f"{file} is not valid JSON ({err}); reinstall trnet (or rebuild the bundle)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "name" not in manifest:
        raise BundleError(f"{file}: not a bundle manifest of format {FORMAT}; reinstall trnet")
    try:
        check_name(manifest["name"], f"{file}: name")
    except BundleError as err:
        raise BundleError(f"{err}; reinstall trnet") from None
    return manifest


def is_bundle(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def bundles(folder: str | Path | None = None) -> list[Bundle]:
    """The bundles in `folder` (default: `root()`): the default one first (its manifest says
    `"default": true`), then by name. Unverified: `Bundle.verify` before use. A bundle whose
    manifest cannot be read is listed with its `damage` (it never becomes the default), so that
    one damaged bundle does not hide the good ones beside it."""
    base = Path(folder) if folder is not None else root()
    if not base.is_dir():
        return []
    found = []
    for p in sorted(base.iterdir()):
        if p.is_dir() and is_bundle(p):
            try:
                found.append(Bundle(p, read_manifest(p)))
            except BundleError as err:
                found.append(Bundle(p, {}, damage=str(err)))
    return sorted(found, key=lambda b: (b.damage is not None, not b.manifest.get("default", False), b.name))


def default() -> Bundle:
    """The bundled model `trnet predict` and `trnet.load()` use without a model, verified."""
    found = bundles()
    if found and found[0].damage:
        found[0].verify()  # none readable: the first one's damage is the message
    if not found:
        raise BundleError(
            f"no bundled model in {root()} (this install ships none); pass a trained run with "
            "--model RUN (trnet.load(RUN))"
        )
    return found[0].verify()


def find(name: str) -> Bundle | None:
    """The bundle called `name`, verified, or None."""
    match = next((b for b in bundles() if b.name == name), None)
    return None if match is None else match.verify()


def resolve(model: str | Path | None) -> Path:
    """The run directory to load for `model`: None is the default bundle; a bundle folder or a
    bundle's name is that bundle (verified); anything else is returned as given (a run
    directory or a .safetensors file, which `trnet.runs.load_run` checks)."""
    if model is None:
        return default().path
    path = Path(model)
    if path.is_dir() and is_bundle(path):
        return Bundle(path, read_manifest(path)).verify().path
    if not path.exists():
        match = find(str(model))
        if match is not None:
            return match.path
        if len(path.parts) == 1 and path.suffix != ".safetensors":  # a bare name: a bundle's, misspelled?
            names = ", ".join(b.name for b in bundles()) or "none installed"
            raise BundleError(
                f"--model {model}: no such run directory, and no bundled model of that name (bundled: {names}; "
                "trnet models lists them)"
            )
    return path


def describe(path: str | Path) -> str:
    """How `trnet predict` names a resolved model: 'NAME (bundled with trnet)' or the path."""
    if not is_bundle(path):
        return str(path)
    manifest = read_manifest(Path(path))
    return f"{manifest['name']} (bundled with trnet{'; PLACEHOLDER test build' if manifest.get('placeholder') else ''})"


C_MEANING = {
    "snr": "its c is trained towards clip(SNR / 25 dB, 0, 1) (clean: 1) by an auxiliary loss, so c following "
    "the SNR is what training asked for, not a finding",
    "oracle": "its c is trained towards the least-squares c of eq. (5) by an auxiliary loss",
    "unsupervised": "its c has no target of its own: it learns only through the classification and "
    "refinement losses, so any tracking of the SNR is a finding",
}


NO_C = (
    "This model has no c: it does not weigh an enhanced against the unenhanced input (eq. (1)), so c is "
    "left empty (n/a in tables, null in JSON)"
)


def says_no_c(record: dict[str, Any]) -> bool:
    """Whether a bundle's record (results/summary.json, or the manifest's metrics copied from it)
    states that its system has no c: `c_training` present and null (results.c_training). An
    older record without the key says nothing either way."""
    return "c_training" in record and record["c_training"] is None


def c_words(c_training: str | None) -> str:
    """What c is, in one set of words for the model card and `trnet predict` (c_training: how the
    system's c learns, trnet.bundle.results.c_training)."""
    base = "c is eq. (1)'s weight on the unenhanced input, not a calibrated noise meter"
    return f"{base}; {C_MEANING[c_training]}." if c_training in C_MEANING else f"{base}."


def _mean(stat: Any) -> float | None:
    ok = isinstance(stat, dict) and isinstance(stat.get("mean"), int | float) and not isinstance(stat["mean"], bool)
    return float(stat["mean"]) if ok else None


def c_note(path: str | Path) -> str | None:
    """What a bundled model's c is worth, measured on the held-out corpus of each leave-one-
    corpus-out run of its system (docs/model-card.md): its words on c, the Spearman rho between c
    and the SNR, and c on input without speech, so that nobody reads c as a calibrated noise
    meter on the model's word alone."""
    if not is_bundle(path):
        return None
    manifest = read_manifest(Path(path))
    metrics = manifest.get("metrics")
    metrics = metrics if isinstance(metrics, dict) else {}
    if says_no_c(metrics):  # a system without c (Baseline-e, -n)
        return f"{NO_C}."
    loco = metrics.get("leave_one_corpus_out")
    rows = [
        r
        for r in (loco if isinstance(loco, list) else [])
        if isinstance(r, dict) and r.get("system") == manifest.get("system") and _mean(r.get("rho")) is not None
    ]
    if not rows:
        return None
    parts = []
    for r in rows:
        ns = r.get("nonspeech") if isinstance(r.get("nonspeech"), dict) else {}
        quiet = [f"{k} {_mean(ns.get(k)):.2f}" for k in ("silence", "noise") if _mean(ns.get(k)) is not None]
        parts.append(
            f"{r['train']}->{r['test']}: rho {_mean(r['rho']):.2f}"
            + (f", mean c on {', '.join(quiet)}" if quiet else "")
        )
    c_training = metrics.get("c_training")
    return (
        f"{c_words(c_training if isinstance(c_training, str) else None)} Measured on held-out corpora "
        f"(Spearman rho of c with the SNR; mean c without speech: silence, the test noise alone; model card): "
        + "; ".join(parts)
    )
