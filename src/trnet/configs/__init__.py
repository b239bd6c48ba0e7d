"""The registry of systems: one TOML file per system, and nothing else to edit to add one.

A system's file holds the model and loss settings (`trnet.models.SystemConfig`), an optional
[training] table (`TrainingConfig` overrides) and an [about] table that every list of systems
in trnet reads (recipe validation, `trnet train`'s "known systems", the report's tables,
figures and model selection, the demo):

    [about]
    display = "TRNet-std"      # the name in tables and figures
    family = "variant"         # baseline | trnet | ablation (the paper's Table 1) | variant
    order = 80                 # position in tables (default: after the others, by name)
    candidate = true           # validation may recommend it (`trnet select`); default false
    ablates = ""               # ablations: what the system leaves out
    figure3 = false            # its representations h are kept for Figure 3 (t-SNE)
    teaches = false            # the frozen teacher of every system with `teacher = true`
                               # (paper §3.3: Baseline-c); exactly one system says true

The files are found in this package's folder, then in every folder of the environment
variable TRNET_CONFIG_PATH (separated like PATH), so a new system is one new file in one of
them. A name may not be defined twice. Whether a system has an SNR-aware module follows from
its settings (`input = "trnet"`).

Aliases (`trnet-robust`) are not files: `selection.json` beside this module maps each alias to
the system a validation-only selection chose, with its evidence; `trnet select` writes it
(docs/design.md §6.3). This module imports no torch, so command-line help can list systems.
"""

from __future__ import annotations

import functools
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trnet.utils import UserError

PACKAGE_DIR = Path(__file__).resolve().parent
SELECTION = PACKAGE_DIR / "selection.json"
ENV = "TRNET_CONFIG_PATH"
FAMILIES = ("baseline", "trnet", "ablation", "variant")
ABOUT_KEYS = ("display", "family", "order", "candidate", "ablates", "figure3", "teaches")


class ConfigError(UserError):
    """A system name or file that cannot be used; the message names it and what is known."""


@dataclass(frozen=True)
class SystemInfo:
    """What the rest of trnet may know about a system without building it."""

    name: str
    path: Path
    display: str
    family: str
    order: int
    candidate: bool
    ablates: str
    figure3: bool
    teaches: bool  # the teacher of the systems with `teacher = true` (`teacher()`)
    snr_aware: bool  # input = "trnet": an SNR-aware module estimates c

    @property
    def paper(self) -> bool:
        """One of the paper's Table 1 systems (what a recipe runs by default)."""
        return self.family != "variant"


def search_path() -> list[Path]:
    """This package's folder, then the folders of TRNET_CONFIG_PATH."""
    extra = [Path(p) for p in os.environ.get(ENV, "").split(os.pathsep) if p.strip()]
    return [PACKAGE_DIR, *extra]


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None


def info(path: Path) -> SystemInfo:
    """A system file's [about] table, checked (defaults where a key is absent)."""
    table = read_toml(path)
    about = table.get("about", {})
    unknown = sorted(set(about) - set(ABOUT_KEYS))
    if unknown:
        raise ConfigError(f"{path} [about]: unknown key(s) {unknown}; it takes {', '.join(ABOUT_KEYS)}")
    family = about.get("family", "variant")
    if family not in FAMILIES:
        raise ConfigError(f"{path} [about] family {family!r}: expected one of {', '.join(FAMILIES)}")
    return SystemInfo(
        name=path.stem,
        path=path,
        display=str(about.get("display", path.stem)),
        family=family,
        order=int(about.get("order", 10_000)),
        candidate=bool(about.get("candidate", False)),
        ablates=str(about.get("ablates", "")),
        figure3=bool(about.get("figure3", False)),
        teaches=bool(about.get("teaches", False)),
        snr_aware=table.get("input") == "trnet",
    )


def systems() -> dict[str, SystemInfo]:
    """Every system on the search path, in table order (`order`, then name)."""
    files = tuple(
        (path, path.stat().st_mtime_ns)
        for folder in search_path()
        if folder.is_dir()
        for path in sorted(folder.glob("*.toml"))
    )
    return dict(_systems(files))


@functools.lru_cache(maxsize=8)
def _systems(files: tuple[tuple[Path, int], ...]) -> tuple[tuple[str, SystemInfo], ...]:
    """Parsed once per set of files and modification times (reports ask for names often)."""
    found: dict[str, SystemInfo] = {}
    for path, _ in files:
        if path.stem in found:
            raise ConfigError(f"system {path.stem!r} is defined twice: {found[path.stem].path} and {path}")
        found[path.stem] = info(path)
    return tuple(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))


def names(paper_only: bool = False) -> tuple[str, ...]:
    """System names in table order (`paper_only`: the paper's Table 1 systems)."""
    return tuple(n for n, s in systems().items() if s.paper or not paper_only)


def teacher() -> str:
    """The name of the one system whose [about] says `teaches = true`: the frozen teacher of
    every system with `teacher = true` (paper §3.3), trained first by every engine. The registry
    is its one definition, so no module names it."""
    found = [n for n, s in systems().items() if s.teaches]
    if len(found) != 1:
        raise ConfigError(
            f"expected exactly one system with [about] teaches = true (the frozen teacher), found {found or 'none'}"
        )
    return found[0]


def aliases() -> dict[str, str]:
    """alias -> system, from the committed selection file (empty if there is none)."""
    if not SELECTION.is_file():
        return {}
    return {alias: entry["system"] for alias, entry in json.loads(SELECTION.read_text())["aliases"].items()}


def resolve(name: str) -> str:
    """A system's name for an alias (`trnet-robust` -> the system selection chose); other names
    unchanged."""
    return aliases().get(name, name)


def known() -> str:
    """The known names, for messages and help: systems, then aliases with their target."""
    return ", ".join([*names(), *(f"{a} (= {s})" for a, s in aliases().items())])


def find(name: str) -> Path:
    """The file of a system (an alias resolves first); ConfigError listing the known names."""
    system = resolve(name)
    entry = systems().get(system)
    if entry is None:
        raise ConfigError(f"no system {name!r}; known systems: {known()}, or a .toml path")
    return entry.path


def display_name(system: str) -> str:
    """A system's display name; "<system>@<tag>" (another results directory) keeps its tag."""
    base, sep, tag = system.partition("@")
    entry = systems().get(base)
    shown = entry.display if entry else base
    return f"{shown} @{tag}" if sep else shown
