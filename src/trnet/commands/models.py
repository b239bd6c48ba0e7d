"""`trnet models`: what is bundled with this install (`trnet.pretrained`): name, system,
classes, training data, licence, and whether every file matches its SHA-256.

    trnet models            # one block per bundle, the default first
    trnet models --json     # the manifests, with a `verified` field each
    trnet models --dir DIR  # the bundles in another folder
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the manifests as one JSON document")
    p.add_argument(
        "--dir",
        type=Path,
        help="list the bundles in this folder instead (default: $TRNET_MODELS, else the package's own)",
    )


def _status(bundle: Any) -> str:
    from trnet.pretrained import BundleError

    try:
        bundle.verify()
    except BundleError as err:
        return f"DAMAGED: {err}"
    return "ok"


def _sources(parts: list[dict[str, Any]], extra: tuple[str, ...]) -> str:
    """'EmoDB (German, CC BY 4.0) + nEMO (Polish, CC BY-NC-SA 4.0)'."""
    out = []
    for part in parts:
        more = ", ".join(str(part[k]) for k in extra if part.get(k))
        out.append(f"{part.get('title', part.get('name'))}" + (f" ({more})" if more else ""))
    return " + ".join(out) or "?"


def run(args: argparse.Namespace) -> int:
    from trnet.pretrained import BundleError, bundles, root

    if args.dir is not None and not args.dir.is_dir():
        raise BundleError(f"--dir {args.dir}: no such folder")
    folder = args.dir or root()
    found = bundles(folder)
    if args.json:
        doc = [{"name": b.name, **b.manifest, "path": str(b.path), "verified": _status(b)} for b in found]
        print(json.dumps({"folder": str(folder), "models": doc}, indent=2))
        return 0
    if not found:
        print(
            f"no bundled model in {folder}: this install ships none (train one with trnet train or trnet "
            "reproduce, or build one with trnet bundle)",
            file=sys.stderr,
        )
        return 0
    for k, b in enumerate(found):
        m = b.manifest
        lines = [
            ("name", b.name + ("  (the default: trnet predict without --model)" if k == 0 else "")),
            (
                "system",
                f"{m.get('system', '?')} ({m.get('encoder', '?')} width {m.get('width', '?')}), SE {m.get('se', '?')}",
            ),
            ("classes", ", ".join(b.labels)),
            ("trained on", _sources(m.get("training_data", []), ("language", "licence"))),
            ("noise", _sources(m.get("noise", []), ("licence",))),
            (
                "licence",
                f"weights: {m.get('licence', {}).get('weights', '?')}; code: {m.get('licence', {}).get('code', '?')}",
            ),
            ("files", f"{b.path} ({_status(b)})"),
        ]
        if m.get("placeholder"):
            lines.insert(1, ("note", "PLACEHOLDER: built by a small test run, not the released model"))
        if k:
            print()
        width = max(len(key) for key, _ in lines)
        for key, value in lines:
            print(f"{key:<{width}}  {value}")
    return 0
