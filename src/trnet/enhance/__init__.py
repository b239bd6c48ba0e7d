"""Speech-enhancement front-ends (docs/design.md §4): the frozen SE model is a plug-in.

    se = trnet.enhance.load("dfn3")              # default back-end
    xe = se.enhance(wave, lengths)               # [B, N] -> [B, N], 16 kHz, sample-aligned
    se.name, se.version                          # version keys caches of x_e

Back-ends: `dfn3` (DeepFilterNet3, default: its ONNX graphs on whole utterances, batched),
`dfn3-libdf` (the same model through libDF's frame loop: the reference `dfn3` matches),
`cmgan` (the paper's SE model; needs the authors' generator checkpoint), `spectral`
(classical Wiener filter, no model), `identity` (x_e = x). Modules are imported only when used, so a broken optional
dependency only disables its own back-end.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trnet.enhance.base import Enhancer
from trnet.options import OptionError, describe

DEFAULT = "dfn3"

# name -> "module:class"
BACKENDS: dict[str, str] = {
    "dfn3": "trnet.enhance.dfn3.batched:DFN3",
    "dfn3-libdf": "trnet.enhance.dfn3.libdf:DFN3LibDF",
    "cmgan": "trnet.enhance.cmgan:CMGAN",
    "spectral": "trnet.enhance.spectral:Spectral",
    "identity": "trnet.enhance.identity:Identity",
}

__all__ = [
    "BACKENDS",
    "DEFAULT",
    "Enhancer",
    "Spec",
    "available",
    "describe_options",
    "load",
    "spec",
    "unavailable_reason",
]


@dataclass(frozen=True)
class Spec:
    """A back-end and its options as the user gave them (checked against the back-end's
    `Options` by `spec()`): what a recipe, a bundle recipe, `trnet conditions`, the store key
    and a run's config carry, in one piece, so that no two places can disagree on it."""

    name: str = DEFAULT
    options: dict[str, Any] = field(default_factory=dict)

    def to_fields(self) -> dict[str, Any]:
        """`{"se": name, "se_options": options}`: the one shape in which every file records the
        setting (a store's key.json, a run's config.json, a bundle's manifest.json, results'
        meta.json, ONNX metadata), as two keys of the enclosing object; the hundreds of
        existing config.json files already hold it so."""
        return {"se": self.name, "se_options": dict(self.options)}

    @classmethod
    def from_fields(cls, record: Mapping[str, Any]) -> Spec | None:
        """The setting `record` holds (None if it names no back-end), as `to_fields` writes it
        or in the nested `"se": {"name", "options"}` that results' meta.json and ONNX metadata
        held before. Not checked: a file may name a back-end this machine cannot run."""
        se = record.get("se")
        if isinstance(se, Mapping):
            se, options = se.get("name"), se.get("options")
        else:
            options = record.get("se_options")
        if se is None:
            return None
        if not isinstance(se, str) or not isinstance(options, Mapping | None):
            raise ValueError(f"SE setting: expected a back-end name and a table of options, got {se!r} {options!r}")
        return cls(se, dict(options or {}))


def _backend_class(name: str) -> type[Enhancer]:
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def unavailable_reason(name: str) -> str | None:
    """None if back-end `name` can run on this machine, else why not (one line)."""
    try:
        _backend_class(name).check()
    except Exception as err:  # noqa: BLE001 - any import/asset failure means "not usable here"
        return f"{type(err).__name__}: {err}"
    return None


def available() -> list[str]:
    """Names of the back-ends usable here (missing packages or assets are left out)."""
    return [name for name in BACKENDS if unavailable_reason(name) is None]


def spec(name: str | None = None, options: Mapping[str, Any] | None = None) -> Spec:
    """Back-end `name` (default: DEFAULT) with `options`, checked against its `Options`
    dataclass without building it; OptionError names what is wrong. The one check of an SE
    setting: recipes, bundle recipes and `trnet conditions` all go through it."""
    name = name or DEFAULT
    options = dict(options or {})
    if name not in BACKENDS:
        raise OptionError(f"unknown SE back-end {name!r}; known: {', '.join(BACKENDS)} (trnet enhance --list)")
    try:
        cls = _backend_class(name)
    except ImportError as err:
        raise OptionError(f"SE back-end {name!r} cannot run here: {err}") from None
    cls.configure(options)
    return Spec(name, options)


def describe_options(name: str) -> str:
    """`key=default, ...` of back-end `name`'s options (for `trnet enhance --list`)."""
    return describe(_backend_class(name).Options)


def load(name: str = DEFAULT, **options: object) -> Enhancer:
    """Build back-end `name` with its options (e.g. `load("cmgan", checkpoint=path)`)."""
    checked = spec(name, options)
    return _backend_class(checked.name)(**checked.options)
