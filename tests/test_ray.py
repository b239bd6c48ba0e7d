"""The Ray engine (`--engine ray`) on a local Ray of 2 CPUs, started once for this module:
its results equal the local engine's bit for bit, a driver killed by kill -9 and rerun
continues without training anything twice, a worker that cannot see the work directory is
named, and a missing Ray is one line and exit 2. Tiny on purpose: the tone corpus of
test_reproduce, identity SE, 2 folds x (Baseline-c, TRNet), width 4, 6 epochs.

The tests that start Ray need the `ray` extra (`pip install -e ".[test,ray]"`) and skip, saying
so, without it; the rest (recipe settings, the run lock, the missing-Ray message, the default
engine importing no Ray) run on every install."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.test_reproduce import MINIMAL_RECIPE, make_tree, read_csv
from trnet.cli import main
from trnet.experiments.recipe import EngineSettings, RecipeError, load_recipe, recipe_from_dict, with_overrides

try:
    import ray
except ImportError:  # the `ray` extra is not installed
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="needs Ray: pip install -e '.[test,ray]'")

SRC = Path(__file__).resolve().parents[1] / "src"
RUNS = [(system, fold) for fold in (0, 1) for system in ("baseline-c", "trnet")]
ARGS = ["--workers", "2", "--threads", "1", "--no-report"]


def tree(root: Path) -> Path:
    """test_reproduce's tone corpus, with a recipe of 2 folds, width 4 and 6 epochs."""
    recipe = make_tree(root)
    text = recipe.read_text().replace("folds = [0]", "folds = [0, 1]").replace("epochs = 1", "epochs = 6")
    recipe.write_text(text.replace("width = 2", "width = 4"))
    return recipe


def reproduce(recipe: Path, *extra: str) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["reproduce", str(recipe), *ARGS, *extra]) == 0
    return buf.getvalue()


def run_dirs(recipe: Path) -> dict[tuple[str, int], Path]:
    """(system, fold) -> run directory; empty until the runs folder exists."""
    roots = list((recipe.parent / "work" / "runs" / "seed1").glob("*"))
    return {(system, fold): roots[0] / system / f"fold{fold}-seed1" for system, fold in RUNS} if roots else {}


@pytest.fixture(scope="module")
def local_ray():
    from trnet.experiments.engine_ray import start_local

    start_local(2, object_store_memory=200 * 2**20)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_results(tmp_path_factory, one_thread) -> Path:
    """The recipe on the local engine, sequential and one thread: the reference."""
    recipe = tree(tmp_path_factory.mktemp("local"))
    reproduce(recipe, "--engine", "local")
    return recipe


@needs_ray
def test_workers_import_this_source_tree(local_ray, tmp_path) -> None:
    from trnet.experiments.engine_ray import check_nodes

    (answer,) = check_nodes(tmp_path)
    assert answer["error"] is None and answer["src"] == str(SRC)  # not another checkout's editable install


@pytest.mark.slow
@needs_ray
def test_ray_results_equal_local_bit_for_bit(local_ray, local_results, tmp_path) -> None:
    recipe = tree(tmp_path)
    out = reproduce(recipe, "--engine", "ray")
    assert (recipe.parent / "work" / "results" / "results.csv").read_bytes() == (
        local_results.parent / "work" / "results" / "results.csv"
    ).read_bytes()
    mine, theirs = run_dirs(recipe), run_dirs(local_results)
    for run in RUNS:
        assert (mine[run] / "best.safetensors").read_bytes() == (theirs[run] / "best.safetensors").read_bytes()
    store, reference = (r.parent / "work" / "stores" / "seed1" for r in (recipe, local_results))
    arrays = sorted(p.relative_to(reference) for p in reference.rglob("*.f16"))
    assert len(arrays) == 10  # clean xs, xe; 2 noises x 2 SNRs x (x, xe): chunks computed by Ray tasks
    for name in arrays:
        assert (store / name).read_bytes() == (reference / name).read_bytes()
    progress = [line for line in out.splitlines() if line.startswith("[")]
    assert len(progress) == 4 and all("val UAR" in line and "test UAR" in line for line in progress)
    assert "as Ray tasks (1 CPU, 0 GPU each) on 2 CPUs" in out


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        children = [c for c, p in parents.items() if p == parent]
        found += children
        todo += children
    return found


def _log_rows(run: Path) -> list[dict[str, str]]:
    """log.csv, numbers written one way (a resumed run rewrites the rows it read back: 1 becomes 1.0)."""
    rows = read_csv(run / "log.csv") if (run / "log.csv").exists() else []
    return [{k: repr(float(v)) for k, v in row.items()} for row in rows]


def _resumable_epoch(run: Path) -> int:
    """The epochs a rerun resumes after (last.safetensors), or all of a finished run's."""
    from safetensors import safe_open

    if (run / "done.json").exists():
        return len(_log_rows(run))
    if not (run / "last.safetensors").exists():
        return 0
    with safe_open(str(run / "last.safetensors"), framework="pt") as f:
        return int(f.metadata()["epoch"])


@pytest.mark.slow
@needs_ray
def test_ray_stacks_equal_local_stacks_bit_for_bit(local_ray, tmp_path) -> None:
    """--batch-runs 2: a Ray task per stack (the teachers' first), the local engine's weights."""
    local, remote = tree(tmp_path / "local"), tree(tmp_path / "ray")
    reproduce(local, "--engine", "local", "--batch-runs", "2")
    out = reproduce(remote, "--engine", "ray", "--batch-runs", "2")
    assert "(stacked)" in out
    mine, theirs = run_dirs(remote), run_dirs(local)
    for run in RUNS:
        assert (mine[run] / "best.safetensors").read_bytes() == (theirs[run] / "best.safetensors").read_bytes()
    assert (remote.parent / "work" / "results" / "results.csv").read_bytes() == (
        local.parent / "work" / "results" / "results.csv"
    ).read_bytes()


@pytest.mark.slow
@needs_ray
def test_killed_driver_resumes_and_trains_nothing_twice(local_ray, local_results, tmp_path) -> None:
    """kill -9 the driver while it trains; rerun at once (its Ray workers may still be dying):
    finished runs are not touched, every epoch recorded before the kill is kept, not trained
    again, and the results equal the uninterrupted local run's."""
    recipe = tree(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "trnet.cli", "reproduce", str(recipe), "--engine", "ray", *ARGS]
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    started: list[int] = []
    try:
        deadline = time.time() + 240
        while time.time() < deadline and driver.poll() is None:  # kill once a TRNet run is part-trained
            if any(
                _log_rows(d) and not (d / "done.json").exists()
                for (s, _), d in run_dirs(recipe).items()
                if s == "trnet"
            ):
                break
            time.sleep(0.02)
        assert driver.poll() is None, "the driver ended before the kill: " + (tmp_path / "driver.log").read_text()
        started = _descendants(driver.pid)  # its Ray: to tidy up at the end, by PID
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        runs = run_dirs(recipe)
        snapshot = {
            r: {
                "done": (d / "done.json").exists(),
                "rows": _log_rows(d),
                "epoch": _resumable_epoch(d),
                "mtimes": {p.name: p.stat().st_mtime_ns for p in d.glob("*") if p.is_file()},
            }
            for r, d in runs.items()
        }
        assert not all(s["done"] for s in snapshot.values())  # killed with work left

        print("SNAP", {r: (s["done"], len(s["rows"]), s["epoch"]) for r, s in snapshot.items()}, time.time())
        out = reproduce(recipe, "--engine", "ray")  # at once: the killed driver's workers may still run
    finally:
        if driver.poll() is None:
            driver.kill()
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    for run, d in runs.items():
        before, rows = snapshot[run], _log_rows(d)
        assert [float(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1)), run
        if before["done"]:  # finished before the kill: not touched again
            assert {
                p.name: p.stat().st_mtime_ns for p in d.glob("*") if p.is_file() and p.name in before["mtimes"]
            } == before["mtimes"], run
            assert rows == before["rows"]
            assert not [
                line
                for line in out.splitlines()
                if line.startswith(f"{run[0]:<14} fold {run[1]:>2} seed 1") and " trained " in line
            ], run  # the rerun's training lines name only what it trained
        else:  # resumed after the last epoch it had saved: those epochs are the same rows, not retrained
            kept = before["epoch"]
            assert rows[:kept] == before["rows"][:kept], run
    assert "trained before" in out
    assert (recipe.parent / "work" / "results" / "results.csv").read_bytes() == (
        local_results.parent / "work" / "results" / "results.csv"
    ).read_bytes()


def test_the_run_lock_waits_for_a_process_still_training(tmp_path, monkeypatch) -> None:
    """A worker of a killed driver still holds a run: the rerun waits, and when that worker
    finishes the run, the rerun does not train it again."""
    import trnet.experiments.engine as engine

    run = tmp_path / "runs" / "trnet" / "fold0-seed1"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, pathlib, sys, time\n"
                f"run = pathlib.Path({str(run)!r}); run.mkdir(parents=True)\n"
                "f = open(run / '.lock', 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True)\n"
                "time.sleep(1.0); (run / 'done.json').write_text('{}')\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    monkeypatch.setattr(engine, "train", lambda *a, **k: pytest.fail("trained a run another process finished"))
    t0 = time.time()
    assert engine.train_locked(SimpleNamespace(dir=run)) is None
    assert time.time() - t0 > 0.5 and holder.wait() == 0


@needs_ray
def test_a_worker_that_cannot_see_the_work_directory_is_named(local_ray, tmp_path) -> None:
    """The probe that runs on every node before any work, and the check in every task: on a
    cluster without a shared work directory the run stops with one line naming the node."""
    import socket

    from trnet.experiments.engine import EngineError, Grid
    from trnet.experiments.engine_ray import PROBE, _get, _probe, _train_task

    probe = ray.remote(_probe)
    assert "cannot see the work directory" in ray.get(probe.remote(str(tmp_path / "absent"), "t", []))["error"]
    (tmp_path / PROBE).write_text("the driver's")
    assert "sees another folder" in ray.get(probe.remote(str(tmp_path), "another", []))["error"]
    assert "cannot see /no/corpus" in ray.get(probe.remote(str(tmp_path), "the driver's", ["/no/corpus"]))["error"]
    assert ray.get(probe.remote(str(tmp_path), "the driver's", [str(tmp_path)]))["error"] is None

    recipe = with_overrides(load_recipe(make_tree(tmp_path)), work=tmp_path / "not-shared")
    with pytest.raises(EngineError) as err:
        _get(ray, ray.remote(_train_task).remote(Grid(recipe, {}, (0,), [], "cpu"), 0, 1, 1))
    message = str(err.value)
    assert "\n" not in message and socket.gethostname() in message and "shared file system" in message


def test_missing_ray_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys) -> None:
    recipe = make_tree(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["reproduce", str(recipe), "--engine", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'trnet[ray]'" in err


def test_the_default_engine_imports_no_ray() -> None:
    code = (
        "import sys; import trnet.experiments.reproduce, trnet.experiments.demo, trnet.cli; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(SRC)})


def test_engine_settings_in_a_recipe_and_on_the_command_line(tmp_path) -> None:
    base = dict(MINIMAL_RECIPE)
    assert recipe_from_dict(base, tmp_path, "t").engine == EngineSettings()  # local by default
    assert recipe_from_dict({**base, "engine": "ray"}, tmp_path, "t").engine.kind == "ray"
    r = recipe_from_dict({**base, "engine": {"kind": "ray", "address": "auto", "num_gpus": 0.25}}, tmp_path, "t")
    assert r.engine == EngineSettings("ray", "auto", 1, 0.25)
    assert with_overrides(r, num_gpus=0.5, num_cpus=2).engine == EngineSettings("ray", "auto", 2, 0.5)
    assert with_overrides(r, engine="local").engine.kind == "local"  # the command line wins
    assert with_overrides(recipe_from_dict(base, tmp_path, "t"), engine="ray", address="ray://h:10001").engine == (
        EngineSettings("ray", "ray://h:10001")
    )
    bad = [
        ({"engine": "slurm"}, "engine 'slurm'"),
        ({"engine": {"kind": "ray", "gpus": 1}}, "unknown key"),
        ({"engine": {"kind": "ray", "num_gpus": 1.5}}, "at most 1"),
        ({"engine": {"kind": "ray", "num_cpus": 0}}, "positive"),
    ]
    for change, message in bad:
        with pytest.raises(RecipeError, match=message):
            recipe_from_dict({**base, **change}, tmp_path, "t")
    with pytest.raises(RecipeError, match="--address: Ray settings"):
        with_overrides(recipe_from_dict(base, tmp_path, "t"), address="auto")
    assert load_recipe(make_tree(tmp_path)).engine.kind == "local"


def test_demo_takes_the_engine(tmp_path, monkeypatch) -> None:
    """`trnet demo --engine ray` runs its built-in recipe on Ray (the same reproduce() as above)."""
    import trnet.experiments.reproduce as reproduce

    seen = {}
    monkeypatch.setattr(reproduce, "reproduce", lambda recipe, **kw: seen.setdefault("recipe", recipe) and tmp_path)
    assert main(["demo", "--quick", "--se", "identity", "--out", str(tmp_path), "--engine", "ray"]) == 0
    assert seen["recipe"].engine == EngineSettings("ray")
    assert main(["demo", "--quick", "--se", "identity", "--out", str(tmp_path), "--address", "auto"]) == 2


@pytest.mark.slow
@needs_ray
def test_ray_train_only_then_evaluation_equals_local(local_ray, local_results, tmp_path) -> None:
    """--train-only on Ray trains every run and evaluates none; the rerun without it (here on
    the local engine) evaluates them into the local engine's results, bit for bit."""
    recipe = tree(tmp_path)
    out = reproduce(recipe, "--engine", "ray", "--train-only")
    work = recipe.parent / "work"
    assert "(training only) as Ray tasks" in out and "nothing was evaluated" in out
    assert all((run / "done.json").is_file() for run in run_dirs(recipe).values())
    assert not list((work / "runs").rglob("eval")) and not (work / "results").exists()
    out = reproduce(recipe, "--engine", "local")
    assert out.count("trained before, evaluated ") == 4
    assert (work / "results" / "results.csv").read_bytes() == (
        local_results.parent / "work" / "results" / "results.csv"
    ).read_bytes()
