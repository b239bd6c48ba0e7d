"""The house rules of docs/architecture.md, checked on the source itself: every import (at the
top of a file or inside a function) goes down the layers, there is no import cycle, deferred
imports are kept for heavy optional dependencies (and for a command's `run`), no source file
outgrows one job, and no package outgrows a fifth of the code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "trnet"

# bottom to top; the same table is drawn in docs/architecture.md
LAYERS: dict[str, int] = {
    "trnet.utils": 0,
    "trnet.audio": 1,
    "trnet.device": 1,
    "trnet.options": 1,
    "trnet.configs": 1,
    "trnet.features": 2,
    "trnet.corpora": 3,
    "trnet.enhance": 3,
    "trnet.models": 3,
    "trnet.vad": 3,  # speech or not: Silero VAD's ONNX model from its wheel
    "trnet.protocol": 4,
    "trnet.store": 5,
    "trnet.batches": 6,
    "trnet.runs": 6,
    "trnet.evaluation": 7,
    "trnet.pretrained": 7,  # the bundled models: where they are, and their SHA-256 check
    "trnet.training": 8,
    "trnet.predict": 8,
    "trnet.export": 8,
    "trnet.pipeline": 8,  # waveform-to-emotion as one ONNX graph (DFN3, LMFB, model, Silero VAD)
    "trnet.report": 9,
    "trnet.experiments": 10,
    "trnet.bundle": 10,  # building the bundled model: recipe, stages, leave-one-corpus-out, card
    "trnet.commands": 11,
    "trnet.cli": 12,
    "trnet": 13,  # the package root: `trnet.load`, the library's front door
}
# Imports allowed inside functions: heavy or optional dependencies that only one path needs.
DEFERRED_OK = ("matplotlib", "sklearn.manifold", "onnx", "onnxruntime", "ray", "trnet.predict")
# ... and a command's `run` imports the library it drives, so that `trnet COMMAND --help` stays light
DEFERRED_IN = ("trnet.commands",)
MAX_LINES = 400
MAX_SHARE = 0.20  # of all source lines, for one package or top-level module


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def unit(name: str) -> str:
    """The layer unit a module belongs to: the longest prefix in LAYERS."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in LAYERS:
            return ".".join(parts[:k])
    raise AssertionError(f"{name} is in no layer of LAYERS: add it (and to docs/architecture.md)")


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, deferred) for every import statement; `from a import b` counts
    as a.b where that is a module. Imports under `if TYPE_CHECKING:` are left out."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
        for child in node.body
        for n in ast.walk(child)
    }
    deferred = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for n in ast.walk(node)
    }
    out = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in deferred) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                target = full if node.module.startswith("trnet") and is_module(full) else node.module
                out.append((target, node.lineno, id(node) in deferred))
    return out


SOURCES = sorted(PACKAGE.rglob("*.py"))
GRAPH = {module_name(p): imports(p) for p in SOURCES}


def test_every_module_has_a_layer() -> None:
    for name in GRAPH:
        unit(name)


def test_imports_only_go_down_the_layers() -> None:
    wrong = []
    for source, targets in GRAPH.items():
        for target, line, _ in targets:
            if not target.startswith("trnet"):
                continue
            a, b = unit(source), unit(target)
            if a != b and LAYERS[b] >= LAYERS[a]:
                wrong.append(f"{source}:{line} imports {target} (layer {LAYERS[b]} >= {LAYERS[a]})")
    assert not wrong, "imports that go up or sideways:\n" + "\n".join(wrong)


def test_no_import_cycle() -> None:
    edges = {m: {t for t, _, _ in ts if t in GRAPH and t != m} for m, ts in GRAPH.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(t) :], t]))
            if t not in state:
                visit(t, [*path, t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])


def test_deferred_imports_are_heavy_optional_dependencies_only() -> None:
    hidden = [
        f"{source}:{line} imports {target} inside a function"
        for source, targets in GRAPH.items()
        for target, line, deferred in targets
        if deferred
        and not any(target == ok or target.startswith(ok + ".") for ok in DEFERRED_OK)
        and not source.startswith(DEFERRED_IN)
    ]
    assert not hidden, "move these to the top of their file:\n" + "\n".join(hidden)


def test_no_source_file_over_400_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them by job): {long}"


def test_no_package_or_module_over_a_fifth_of_the_code() -> None:
    lines: dict[str, int] = {}
    for p in SOURCES:
        top = p.relative_to(PACKAGE).parts[0].removesuffix(".py")
        lines[top] = lines.get(top, 0) + len(p.read_text().splitlines())
    total = sum(lines.values())
    big = {k: f"{v / total:.0%}" for k, v in lines.items() if v > MAX_SHARE * total}
    assert not big, f"packages or modules over {MAX_SHARE:.0%} of the {total} source lines (split them): {big}"


def test_the_checker_sees_a_wrong_way_import(tmp_path: Path) -> None:
    """The rules above can fail: an upward import in a lower layer is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from trnet.experiments import reproduce\n")
    ((target, _, deferred),) = imports(bad)
    assert target == "trnet.experiments.reproduce" and deferred
    assert LAYERS[unit(target)] > LAYERS[unit("trnet.store.builder")]
