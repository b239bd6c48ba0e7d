"""Stage 6 of `trnet bundle`: the shipped run as a bundle (`trnet.pretrained`), and its
installation into the package's data.

A bundle is the run's best.safetensors, done.json and config.json (without the absolute
store path of the machine that trained it), plus manifest.json: the SHA-256 and size of
each of those files, and the provenance a model card needs (training data with licences,
noise, the recipe as written and its SHA-256, the commit, the metrics). The weights must fit
in MAX_BYTES: they ship inside the wheel.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from trnet import runs
from trnet.bundle.recipe import BundleRecipe, BundleRecipeError
from trnet.pretrained import FILES, FORMAT, MANIFEST, PACKAGE_DIR, Bundle, check_name, is_bundle, read_manifest
from trnet.store import ConditionStore
from trnet.utils import sha256_file, write_json_atomic

MAX_BYTES = 15_000_000  # the weights travel in the wheel


def git_commit(where: Path) -> str:
    """The commit of the checkout at `where` ("+dirty" with uncommitted changes)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def manifest(recipe: BundleRecipe, folder: Path, final: Path, summary: dict[str, Any]) -> dict[str, Any]:
    config = runs.read_config(final)
    store = ConditionStore(Path(config["store"]))
    corpora = [
        {
            "name": n,
            **s.provenance,
            "kind": s.kind,
            **summary["corpora"][n],
            "validation_speaker": next(
                (v for v in summary["final"]["val_speakers"] or [] if v.startswith(f"{n}-")), None
            ),
        }
        for n, s in recipe.corpora.items()
    ]
    noise = [
        {
            "name": n,
            **recipe.noise[n].provenance,
            "kind": recipe.noise[n].kind,
            **summary["noise"][n],
            "snrs_db": list(recipe.train_snrs),
        }
        for n in recipe.train_noise
    ]
    return {
        "format": FORMAT,
        "name": recipe.name,
        "default": True,
        "placeholder": recipe.placeholder,
        "system": recipe.system,
        "encoder": recipe.encoder,
        "width": recipe.width,
        "labels": config["labels"],
        **store.se.to_fields(),  # the setting its features were made with, as config.json holds it
        "se_version": store.key["se_version"],
        "files": {
            name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size} for name in FILES
        },
        "training_data": corpora,
        "noise": noise,
        "licence": {"weights": recipe.weights_licence, "code": "MIT"},
        "recipe": {"file": Path(recipe.origin).name, "sha256": recipe.sha256, "table": recipe.table},
        "commit": git_commit(Path(recipe.origin).parent),
        "trnet": version("trnet"),
        "torch": torch.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": {
            "validation": {k: summary["final"][k] for k in ("val_uar", "best_epoch", "epochs_run", "val_speakers")},
            "leave_one_corpus_out": [
                {k: r.get(k) for k in ("train", "test", "system", "noisy_uar_0_20", "rho", "monotone", "nonspeech")}
                for r in summary["loco"]
            ],
            "c_training": summary.get("c_training"),
        },
        "training_seconds": {
            "model": summary["final"]["train_seconds"],
            "teacher": summary["final"]["teacher_seconds"],
        },
    }


def write_bundle(recipe: BundleRecipe, final: Path, summary: dict[str, Any]) -> Path:
    """WORK/bundle/<name>/ from the shipped run; replaced whole, never half-written."""
    size = (final / runs.BEST).stat().st_size
    if size > MAX_BYTES:
        raise BundleRecipeError(
            f"{final / runs.BEST} is {size / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB "
            "a bundle may ship: lower `width` in the recipe"
        )
    runs.verify_best(final)
    target = recipe.work / "bundle" / recipe.name
    tmp = target.with_name(f".{recipe.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(final / runs.BEST, tmp / runs.BEST)
    shutil.copyfile(final / runs.DONE, tmp / runs.DONE)
    config = runs.read_config(final)
    store = f"stores/{final.parents[2].name} (trnet bundle work folder)"  # RUNS/<store>/<tag>/<system>/<run>
    write_json_atomic(tmp / runs.CONFIG, {**config, "store": store})
    write_json_atomic(tmp / MANIFEST, manifest(recipe, tmp, final, summary))
    Bundle(tmp, read_manifest(tmp)).verify()
    _replace(tmp, target)
    return target


def _replace(new: Path, target: Path) -> None:
    """Put folder `new` at `target`, replacing what is there (the old one is removed after
    the rename, so a crash leaves one complete bundle or the other)."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def install(bundle: Path, into: Path = PACKAGE_DIR) -> Path:
    """Copy a verified bundle into the package's data (`trnet/pretrained/<name>/`); with an
    editable install that is the checkout's src/trnet/pretrained/, ready to commit."""
    b = Bundle(bundle, read_manifest(bundle)).verify()
    if b.manifest.get("placeholder") and Path(into).resolve() == PACKAGE_DIR:
        raise BundleRecipeError(
            f"{bundle} is a placeholder (a test build, `placeholder = true` in its recipe): "
            "it is not installed into the package"
        )
    target = Path(into) / check_name(b.name)
    if target.exists() and not (target.is_dir() and not target.is_symlink() and is_bundle(target)):
        raise BundleRecipeError(f"{target} exists and is not a bundle: refusing to replace it")
    tmp = target.with_name(f".{b.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(bundle, tmp)
    Bundle(tmp, read_manifest(tmp)).verify()
    _replace(tmp, target)
    return target
