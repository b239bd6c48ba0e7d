"""The Ray engine (`--engine ray`, `pip install 'trnet[ray]'`): the work of the local engine
as Ray tasks, on a cluster (`address = "auto"` or `"ray://head:10001"`) or on a local Ray
that `ray.init()` starts on this machine.

    store chunks   a task per chunk, at most a few per CPU in flight; results come back in
                   job order and the builder commits them here, exactly as with local workers
    training       a task per (fold, seed) group (`engine.train_runs`: Baseline-c first), or
                   when runs are stacked (`engine.stack_size`) a task per stack of runs of one
                   system (`engine.stacks`, `train_stack`), Baseline-c's stacks first
    evaluation     a task per run, sent as soon as its group has trained

Every task declares `num_cpus` and `num_gpus` (fractional: 0.25 lets four share one GPU).
Tasks read and write the work directory (and read the corpora) by path: on a cluster that is
a shared file system mounted at the same path on every node. Before any work, a probe on
every node checks that it sees this driver's work directory and can write to it.

When the driver dies (even by kill -9), Ray stops the job's workers (a local Ray goes down
with its driver; a cluster's raylets end a dead job's workers, within seconds). A rerun that
starts before they are gone waits on the run lock of a run they still train (`trnet.runs.lock`).
Ray is imported inside functions only: the local engine never needs it.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from trnet import configs
from trnet.experiments.engine import (
    Engine,
    EngineError,
    Grid,
    Log,
    RunResult,
    evaluated_line,
    stack_lines,
    stack_size,
    stacks,
    train_runs,
    train_stack,
    trained_lines,
)
from trnet.experiments.evalcache import evaluate_run
from trnet.experiments.recipe import EngineSettings
from trnet.store import ChunkMap, ConditionStore
from trnet.store.builder import process_chunk
from trnet.utils import write_text_atomic

INSTALL = "pip install 'trnet[ray]'"
PROBE = ".ray-probe"  # WORK/.ray-probe: a token the driver writes and every node must read back
SRC = Path(__file__).resolve().parents[2]  # where this trnet is imported from
SHARED_FS = "on a cluster it must be a shared file system mounted at the same path on every node"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise EngineError(f"--engine ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def start_local(num_cpus: int, verbose: bool = False, **kwargs: Any) -> None:
    """Start a local Ray of `num_cpus` CPUs whose workers import this trnet (its source
    folder goes first on their PYTHONPATH)."""
    ray = import_ray()
    paths = [str(SRC)] + [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    # address="local": a new Ray, even beside one that `ray start` left running on this machine
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=verbose,
        logging_level=logging.WARNING,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}},
        **kwargs,
    )


def _trnet_version() -> str | None:
    try:
        return version("trnet")
    except PackageNotFoundError:
        return None


def _require(path: Path, what: str = "work directory") -> None:
    if not Path(path).is_dir():
        raise EngineError(f"a Ray worker on {socket.gethostname()} cannot see the {what} {path}: {SHARED_FS}")


def _threads(num_cpus: float) -> int:
    return max(1, int(num_cpus))


# --------------------------------------------------------------------------- tasks (run on the workers)


def _probe(work: str, token: str, read: list[str]) -> dict[str, Any]:
    """On one node: can it see the driver's work directory (the token is there), write to it,
    and read the corpora? And which trnet does it run?"""
    host = socket.gethostname()
    out = {"host": host, "src": str(SRC), "version": _trnet_version(), "error": None}
    try:
        seen = (Path(work) / PROBE).read_text()
    except OSError as err:
        seen = f"unreadable ({err.strerror})"
    if not Path(work).is_dir():
        out["error"] = f"cannot see the work directory {work}"
    elif seen != token:
        out["error"] = f"sees another folder at {work} (not the driver's: its {PROBE} is {seen!r})"
    else:
        mine = Path(work) / f"{PROBE}-{host}-{os.getpid()}"
        try:
            mine.write_text(token)
            mine.unlink()
        except OSError as err:
            out["error"] = f"cannot write to the work directory {work} ({err.strerror})"
    missing = [p for p in read if not Path(p).exists()]
    if out["error"] is None and missing:
        out["error"] = f"cannot see {', '.join(missing)}"
    return out


def _chunk_task(job: dict, threads: int) -> dict:
    """A store chunk (the job names its SE back-end, which each worker process builds once)."""
    _require(Path(job["utts"][0]["path"]).parent, "corpus folder")
    torch.set_num_threads(threads)
    return process_chunk(job)


def _train_task(grid: Grid, fold: int, seed: int, threads: int) -> list[tuple[str, float | None, dict]]:
    _require(grid.recipe.work)
    torch.set_num_threads(threads)
    return train_runs(grid, fold, seed)


def _stack_task(grid: Grid, system: str, pairs: list[tuple[int, int]], threads: int) -> dict:
    _require(grid.recipe.work)
    return train_stack(grid, system, pairs, threads)


def _evaluate_task(grid: Grid, system: str, fold: int, seed: int, threads: int) -> tuple[Any, float]:
    _require(grid.recipe.work)
    torch.set_num_threads(threads)
    spec = grid.spec(system, fold, seed)
    t0 = time.time()
    ev = evaluate_run(spec.dir, ConditionStore(grid.stores[seed]), fold, system, grid.recipe.train_noise, grid.device)
    return ev, time.time() - t0


# --------------------------------------------------------------------------- the driver's side


def _get(ray: Any, ref: Any) -> Any:
    """ray.get, with a worker's EngineError re-raised as itself (one line, not a traceback)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, EngineError):
            raise EngineError(str(err.cause)) from None
        raise


def check_nodes(work: Path, read: list[Path] = (), timeout: float = 300) -> list[dict[str, Any]]:
    """Probe every live node with CPUs: it must see `work` (the driver's, shown by a token the
    driver writes there), write to it, see the `read` paths that exist here, and run this trnet's version
    (on a local Ray: this very source folder). Raises EngineError naming each node that fails."""
    ray = import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = secrets.token_hex(8)
    write_text_atomic(work / PROBE, token)
    readable = [str(p) for p in read if Path(p).exists()]  # a synthetic corpus appears later (chunk tasks check)
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    probe = ray.remote(_probe)
    refs = [
        probe.options(
            num_cpus=0, name="trnet-probe", scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(str(work), token, readable)
        for n in nodes
    ]
    try:
        answers = ray.get(refs, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise EngineError(f"Ray workers did not answer the work-directory probe within {timeout:.0f} s") from None
    except ray.exceptions.RayError as err:  # e.g. trnet is not importable there
        first = str(err).strip().splitlines()[-1]
        raise EngineError(
            f"a Ray worker could not run trnet ({first}): install the same trnet on every node ({INSTALL})"
        ) from None
    mine, local = _trnet_version(), all(a["host"] == socket.gethostname() for a in answers)
    errors = [f"{a['host']}: {a['error']}" for a in answers if a["error"]]
    errors += [
        f"{a['host']}: runs trnet {a['version']}, this driver {mine}"
        for a in answers
        if a["version"] and mine and a["version"] != mine
    ]
    if local:  # one machine: the workers must run exactly this source tree
        errors += [
            f"{a['host']}: workers import trnet from {a['src']}, this driver from {SRC}"
            for a in answers
            if a["src"] != str(SRC)
        ]
    if errors:
        raise EngineError(
            f"Ray workers cannot run this recipe ({'; '.join(errors)}). Tasks read and write the work "
            f"directory {work}: {SHARED_FS}"
        )
    return answers


class RayEngine(Engine):
    """A recipe's work as Ray tasks (see the module docstring). Joins the Ray this process
    is already connected to, else the settings' address, else starts a local Ray of
    `workers` CPUs; shuts down only what it started."""

    name = "ray"

    def __init__(
        self, settings: EngineSettings, work: Path, workers: int, verbose: bool = False, read: list[Path] = ()
    ):
        self.settings, self.work, self.workers, self.verbose = settings, Path(work), workers, verbose
        self.read = list(read)
        self.ray = import_ray()  # fails here, with the install hint, when Ray is missing
        self.started = False
        self.nodes: list[dict[str, Any]] = []

    def __enter__(self) -> RayEngine:
        ray = self.ray
        if not ray.is_initialized():
            if self.settings.address is None:
                start_local(self.workers, self.verbose)
            else:
                try:
                    ray.init(address=self.settings.address, log_to_driver=self.verbose, logging_level=logging.WARNING)
                except (ConnectionError, RuntimeError, ValueError) as err:
                    raise EngineError(f"cannot join the Ray cluster at {self.settings.address}: {err}") from None
            self.started = True
        try:
            self.nodes = check_nodes(self.work, self.read)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {
            "kind": self.name,
            "address": s.address,
            "num_cpus": s.num_cpus,
            "num_gpus": s.num_gpus,
            "store_num_gpus": s.store_num_gpus,
            "nodes": sorted({n["host"] for n in self.nodes}),
            "cluster": {k: v for k, v in self.ray.cluster_resources().items() if k in ("CPU", "GPU")},
        }

    def default_device(self) -> str:
        return "cuda" if self.settings.num_gpus > 0 else "cpu"

    def chunk_map(self) -> ChunkMap:
        ray, s = self.ray, self.settings
        task = ray.remote(_chunk_task).options(num_cpus=s.num_cpus, num_gpus=s.store_num_gpus, name="trnet-chunk")
        window = max(2, 2 * int(ray.cluster_resources().get("CPU", 1) // s.num_cpus))
        threads = _threads(s.num_cpus)

        def run(jobs: list[dict]) -> Iterator[dict]:
            todo = iter(jobs)
            refs = deque(task.remote(job, threads) for job in itertools.islice(todo, window))
            try:
                while refs:
                    result = _get(ray, refs.popleft())
                    job = next(todo, None)
                    if job is not None:
                        refs.append(task.remote(job, threads))
                    yield result  # in job order: the builder commits chunks exactly as from local workers
            finally:
                for ref in refs:
                    ray.cancel(ref)

        return run

    def run_grid(self, grid: Grid, verbose: bool, log: Log) -> dict[tuple[str, int, int], RunResult]:
        ray, s = self.ray, self.settings
        train = ray.remote(_train_task).options(num_cpus=s.num_cpus, num_gpus=s.num_gpus, name="trnet-train")
        evaluate = ray.remote(_evaluate_task).options(num_cpus=s.num_cpus, num_gpus=s.num_gpus, name="trnet-evaluate")
        threads = _threads(s.num_cpus)
        cpus, gpus = (ray.cluster_resources().get(k, 0) for k in ("CPU", "GPU"))
        evaluating = f"and evaluating {grid.total} runs" if grid.evaluate else "(training only)"
        log(
            f"training {len(grid.groups)} (fold, seed) groups {evaluating} as Ray tasks "
            f"({s.num_cpus:g} CPU, {s.num_gpus:g} GPU each) on {cpus:g} CPUs, {gpus:g} GPUs"
        )
        shared = ray.put(grid)
        trained: dict[tuple[str, int, int], tuple[float | None, dict]] = {}
        out: dict[tuple[str, int, int], RunResult] = {}
        later: list[tuple[str, list[tuple[int, int]]]] = []
        if stack_size(grid) > 1:
            stack = ray.remote(_stack_task).options(num_cpus=s.num_cpus, num_gpus=s.num_gpus, name="trnet-train")
            tasks = stacks(grid)
            teacher = configs.teacher()
            first = [t for t in tasks if t[0] == teacher]
            later = [t for t in tasks if t[0] != teacher]  # sent once the teachers' stacks are done
            pending = {stack.remote(shared, system, pairs, threads): ("stack", 0, 0, system) for system, pairs in first}
        else:
            pending = {
                train.remote(shared, fold, seed, threads): ("train", fold, seed, "") for fold, seed in grid.groups
            }
        try:
            while pending or later:
                if later and not any(kind == "stack" and name == teacher for kind, _, _, name in pending.values()):
                    pending.update(
                        {
                            stack.remote(shared, system, pairs, threads): ("stack", 0, 0, system)
                            for system, pairs in later
                        }
                    )
                    later = []
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                kind, fold, seed, system = pending.pop(ref)
                value = _get(ray, ref)
                if kind == "stack":
                    for line in stack_lines(value):
                        log(line)
                    for (name, f, sd), (seconds, best) in value.items():
                        trained[(name, f, sd)] = (seconds, best)
                        if grid.evaluate and name in grid.recipe.systems:
                            pending[evaluate.remote(shared, name, f, sd, threads)] = ("eval", f, sd, name)
                elif kind == "train":
                    for line in trained_lines(fold, seed, value):
                        log(line)
                    for name, seconds, best in value:
                        trained[(name, fold, seed)] = (seconds, best)
                        if grid.evaluate and name in grid.recipe.systems:  # a teacher-only run is not evaluated
                            pending[evaluate.remote(shared, name, fold, seed, threads)] = ("eval", fold, seed, name)
                else:
                    ev, seconds = value
                    took, best = trained[(system, fold, seed)]
                    result = RunResult(system, fold, seed, grid.spec(system, fold, seed).dir, best, ev)
                    out[(system, fold, seed)] = result
                    log(evaluated_line(len(out), grid.total, result, took, seconds))
        finally:
            for ref in pending:  # an error or Ctrl-C: stop the rest (their writes are atomic)
                ray.cancel(ref, force=True)
        return out
