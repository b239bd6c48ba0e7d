"""`trnet reproduce RECIPE`: a recipe's grid, end to end and resumable
(`trnet.experiments.reproduce`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from trnet.commands.args import add_device, add_jobs, add_threads, add_workers, number, refuse_invalid


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", type=Path, help="recipe TOML (see recipes/)")
    p.add_argument("--folds", help="comma-separated fold indices, or 'all' (default: the recipe's)")
    p.add_argument("--seeds", help="comma-separated seeds (default: the recipe's)")
    p.add_argument(
        "--systems",
        help="comma-separated systems, e.g. trnet,baseline-e (default: the recipe's; known: trnet train --help)",
    )
    p.add_argument("--epochs", type=int, help="maximum epochs (default: the recipe's)")
    p.add_argument("--work", type=Path, help="work directory (default: the recipe's)")
    add_workers(p, "the condition store (ray: the CPUs of the local Ray it starts)")
    add_device(
        p,
        help="torch device for training and evaluation (default: cuda if available, else cpu; "
        "ray: cuda if tasks have GPUs)",
    )
    add_threads(p)
    add_jobs(
        p,
        "local engine: train this many (fold, seed) groups in parallel, one thread each (CPU: try the core count)",
    )
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        help="where the work runs (default: the recipe's, else local): local processes, or Ray tasks",
    )
    p.add_argument(
        "--address",
        help="ray: a running cluster to join ('auto', 'ray://head:10001'); "
        "default: start a local Ray of --workers CPUs",
    )
    p.add_argument("--num-cpus", type=number("--num-cpus"), help="ray: CPUs per task (default: the recipe's, else 1)")
    p.add_argument(
        "--num-gpus",
        type=number("--num-gpus"),
        help="ray: GPUs per training/evaluation task; fractional shares a GPU, e.g. 0.25 (default 0)",
    )
    stack = p.add_mutually_exclusive_group()
    stack.add_argument(
        "--batch-runs",
        type=int,
        metavar="N",
        help="train up to N runs of one system as one stacked model (default: the recipe's "
        "[engine] batch_runs, else 0: auto = 32 on CUDA, 1 on the CPU); 1: one run at a time",
    )
    stack.add_argument(
        "--no-batch-runs",
        dest="batch_runs",
        action="store_const",
        const=1,
        help="train one run at a time (= --batch-runs 1)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no line per training epoch (the default prints one, with the validation UAR)",
    )
    p.add_argument("--no-report", action="store_true", help="write the results but not the report")
    p.add_argument(
        "--train-only",
        action="store_true",
        help="train the grid's runs and stop: evaluate nothing, write no results (e.g. to check c on "
        "validation speakers first: bench/c_check.py); rerun without it to evaluate",
    )


def run(args: argparse.Namespace) -> int:
    from trnet.device import torch_device
    from trnet.experiments.recipe import load_recipe, with_overrides
    from trnet.experiments.reproduce import reproduce

    refuse_invalid(args)
    recipe = with_overrides(
        load_recipe(args.recipe),
        args.folds,
        args.seeds,
        args.systems,
        args.epochs,
        args.work,
        args.engine,
        args.address,
        args.num_cpus,
        args.num_gpus,
        args.batch_runs,
    )
    device = torch_device(args.device) if args.device is not None else None  # None: the engine's default
    reproduce(
        recipe,
        workers=args.workers,
        device=device,
        verbose=not args.quiet,
        report=not args.no_report,
        threads=args.threads,
        jobs=args.jobs,
        train_only=args.train_only,
    )
    return 0
