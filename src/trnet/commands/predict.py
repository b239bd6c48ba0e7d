"""`trnet predict`: emotions of your own audio files, as a table, CSV or JSON.

trnet predict talk.wav clips/ "more/*.flac" --model runs/trnet/fold0-seed1 [--json|--csv]
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import sys
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from trnet.commands.args import add_device, add_opt, add_window_hop, refuse_invalid
from trnet.options import parse_items
from trnet.utils import printable

if TYPE_CHECKING:
    from trnet.predict import Prediction

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
SILENT = "digitally silent"  # a window's note (table, CSV); JSON windows carry "silent": true
NO_SPEECH_NOTE = "no speech"  # a window's note (table, CSV); JSON windows carry "reliable": false


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs", nargs="+", metavar="AUDIO", help="audio files, directories (searched recursively) or glob patterns"
    )
    p.add_argument(
        "--model",
        help="run directory (best.safetensors + config.json), a .safetensors file, or a bundled model's "
        "name (default: the model bundled with trnet, see `trnet models`)",
    )
    p.add_argument("--se", help="SE back-end (default: the one the model was trained with)")
    add_opt(p, "SE back-end option (repeatable; trnet enhance --list)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="write one JSON document")
    fmt.add_argument("--csv", action="store_true", help="write CSV: one row per window and per file")
    add_window_hop(p)
    add_device(p, "cpu", "torch device for features and model (SE runs where its back-end runs)")
    p.add_argument(
        "--allow-unfinished",
        action="store_true",
        help="use a run that has not finished training (no done.json): its last checkpoint",
    )


def expand_inputs(items: list[str]) -> tuple[list[Path], list[str]]:
    """Files from files, directories (recursive, audio extensions only) and glob patterns,
    in order, without duplicates; plus one error per argument that names nothing."""
    files: dict[Path, None] = {}
    errors = []
    for item in items:
        path = Path(item)
        if path.exists():
            matches = [path]
        elif any(ch in item for ch in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(item, recursive=True))]
        else:
            errors.append(f"{item}: no such file or directory")
            continue
        found = []
        for match in matches:
            if match.is_dir():
                found += sorted(f for f in match.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
            else:
                found.append(match)
        if not found:
            errors.append(f"{item}: no audio files ({'/'.join(e[1:] for e in AUDIO_EXTENSIONS)}) found")
        files.update(dict.fromkeys(found))
    return list(files), errors


def run(args: argparse.Namespace) -> int:
    from trnet.audio import AudioError
    from trnet.device import torch_device
    from trnet.predict import HOP_SECONDS, WINDOW_SECONDS, check_windows, load
    from trnet.pretrained import c_note, describe
    from trnet.runs import RunError

    def err(message: str) -> None:
        print(f"trnet predict: {message}", file=sys.stderr)

    refuse_invalid(args)
    device = torch_device(args.device)
    window = WINDOW_SECONDS if args.window is None else args.window
    hop = HOP_SECONDS if args.hop is None else args.hop
    check_windows(window, hop)
    options = parse_items(args.opt) if args.opt else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # no --model: the bundled model, checked against its SHA-256
        predictor = load(
            args.model,
            se=args.se,
            device=device,
            se_options=options,
            window=window,
            hop=hop,
            allow_unfinished=args.allow_unfinished,
        )
    for w in caught:
        err(f"warning: {w.message}")
    se = predictor.se_name or "none (reads the noisy input only)"
    err(f"model {describe(predictor.path)} ({predictor.system}), SE {se}")
    # what c is worth, measured on held-out corpora (bundled models): in the JSON document, not on
    # stderr, where a first run would show a correlation on corpora its reader has not met
    note = c_note(predictor.path)
    files, errors = expand_inputs(args.inputs)
    fmt = "json" if args.json else "csv" if args.csv else "table"
    writer = _Writer(fmt, predictor.labels, files)
    for message in errors:
        err(message)
        writer.error(message)
    with predictor:
        for path in files:
            try:
                result = predictor.predict_file(path)
            except RunError as e:  # the model, not the file: no other file will fare better
                raise RunError(f"{printable(path)}: {e}") from None
            except (OSError, RuntimeError, ValueError) as e:  # AudioError too; one bad file must not stop a batch
                if args.debug:  # the traceback, as for every error under --debug (it may be a bug)
                    raise
                message = str(e) if isinstance(e, AudioError) else f"{path}: {type(e).__name__}: {e}"
                message = printable(message)
                err(f"skipped: {message}")
                writer.error(message)
                errors.append(message)
                continue
            for warning in result.warnings:
                err(f"{printable(path)}: warning: {warning}")
            writer.result(path, result)
    if fmt == "json":
        doc = {
            "model": describe(predictor.path),
            "system": predictor.system,
            "se": predictor.se_name,
            "labels": predictor.labels,
            "c_note": note,
        }
        print(json.dumps({**doc, "warnings": predictor.warnings, **writer.doc}, indent=2))
    return 1 if errors else 0


class _Writer:
    """Streams table or CSV rows as files finish; collects JSON for one document at the end."""

    def __init__(self, fmt: str, labels: list[str], files: list[Path]) -> None:
        self.fmt, self.labels = fmt, labels
        self.doc: dict[str, list] = {"results": [], "errors": []}
        self.name_width = max([len("file"), *(len(printable(f)) for f in files)])
        if fmt == "csv":
            self.csv = csv.writer(sys.stdout, lineterminator="\n")
            self.csv.writerow(
                [
                    "file",
                    "window",
                    "start",
                    "end",
                    "label",
                    *(f"p_{k}" for k in labels),
                    "c",
                    "speech",
                    "reliable",
                    "warnings",
                ]  # fmt: skip
            )
        elif fmt == "table":
            probs = "".join(f"{k[:7]:>8}" for k in labels)
            print(f"{'file':<{self.name_width}}  {'window (s)':<13}{'label':<9}{probs}{'c':>7}  notes")

    def result(self, path: Path, p: Prediction) -> None:
        name = printable(path)  # a non-UTF-8 file name, printable
        if self.fmt == "json":
            self.doc["results"].append({"file": name, **asdict(p)})
            return
        rows = [
            (
                str(k),
                w.start,
                w.end,
                w.label,
                w.probabilities,
                w.c,
                w.speech,
                w.reliable,
                SILENT if w.silent else "" if w.reliable else NO_SPEECH_NOTE,
            )
            for k, w in enumerate(p.windows)
        ]
        notes = "unreliable" if not p.reliable else ""
        rows.append(("all", 0.0, p.duration, p.label, p.probabilities, p.c, p.speech, p.reliable, notes))
        for window, start, end, label, probs, c, speech, reliable, note in rows:
            c_text = "n/a" if c is None else f"{c:.6f}" if self.fmt == "csv" else f"{c:.3f}"
            if self.fmt == "csv":
                values = [f"{probs[k]:.6f}" for k in self.labels]
                extra = "; ".join(p.warnings) if window == "all" else note
                row = [name, window, f"{start:.3f}", f"{end:.3f}", label, *values, c_text, f"{speech:.3f}"]
                self.csv.writerow([*row, str(reliable).lower(), extra])
            else:
                span = f"{start:.1f}-{end:.1f}" if window != "all" or not p.windows else "all"
                values = "".join(f"{probs[k]:>8.3f}" for k in self.labels)
                print(f"{name:<{self.name_width}}  {span:<13}{label:<9}{values}{c_text:>7}  {note}".rstrip())
        sys.stdout.flush()

    def error(self, message: str) -> None:
        self.doc["errors"].append(message)
