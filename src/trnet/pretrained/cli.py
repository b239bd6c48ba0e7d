"""`trnet models`: what is bundled with this install: name, system, classes, training data,
licence, and whether every file matches its SHA-256.

    trnet models            # a table
    trnet models --json     # the manifests, with a `verified` field each
"""

from __future__ import annotations

import argparse
import json
import sys

from trnet.pretrained import BundleError, bundles, root


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the manifests as one JSON document")


def status(bundle) -> str:
    try:
        bundle.verify()
    except BundleError as err:
        return f"DAMAGED: {err}"
    return "ok"


def training_data(manifest: dict) -> str:
    """'EmoDB (German, CC BY 4.0) + nEMO (Polish, CC BY-NC-SA 4.0)'."""
    parts = []
    for part in manifest.get("training_data", []):
        extra = ", ".join(x for x in (part.get("language"), part.get("licence")) if x)
        parts.append(f"{part.get('title', part.get('name'))}" + (f" ({extra})" if extra else ""))
    return " + ".join(parts) or "?"


def run(args: argparse.Namespace) -> int:
    found = bundles()
    if args.json:
        doc = [{**b.manifest, "path": str(b.path), "verified": status(b)} for b in found]
        print(json.dumps({"folder": str(root()), "models": doc}, indent=2))
        return 0
    if not found:
        print(f"no bundled model in {root()}: this install ships none (train one: trnet train, trnet reproduce, "
              "or build one: trnet bundle)", file=sys.stderr)
        return 0
    for k, b in enumerate(found):
        m = b.manifest
        lines = [
            ("name", b.name + ("  (default: trnet predict without --model)" if k == 0 else "")),
            ("system", f"{m.get('system', '?')} (width {m.get('width', '?')}), SE {m.get('se', '?')}"),
            ("classes", ", ".join(b.labels)),
            ("trained on", training_data(m)),
            ("noise", " + ".join(f"{n.get('title', n.get('name'))} ({n.get('licence', '?')})"
                                 for n in m.get("noise", [])) or "?"),
            ("licence", str(m.get("licence", {}).get("weights", "?"))),
            ("files", f"{b.path} ({status(b)})"),
        ]
        if m.get("placeholder"):
            lines.insert(1, ("note", "PLACEHOLDER: built by a small test run, not the released model"))
        if k:
            print()
        width = max(len(k_) for k_, _ in lines)
        for key, value in lines:
            print(f"{key:<{width}}  {value}")
    return 0
