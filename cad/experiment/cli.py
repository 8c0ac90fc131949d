"""``./reproduce.sh <experiment> [--scale smoke|cpu|paper] [--datasets ...] [key=value ...]``

Runs every (dataset, method) pair an experiment needs through train -> sample -> evaluate, then renders its table or
figure. Finished stages are skipped, so the command resumes where a killed run stopped.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import NamedTuple

import torch

from cad.experiment import report
from cad.experiment.config import (ConfigError, experiment_choices, load_experiment, resolve, scale_datasets,
                                   _choices)
from cad.experiment.runs import RUN_PREFIX, VARIANT_PREFIX, is_done, read_metrics, run_dirs, run_name
from cad.data.errors import DatasetNotFoundError
from cad.data.paper_classifiers import ClassifierWeightsNotFoundError
from cad.experiment.park import park_list
from cad.experiment.status import status_lines
from cad.experiment.stages import ema_weights, is_global_zero, run, train, train_until
from cad.tasks.base import NonFiniteLossError

# Errors whose message already tells the user what is wrong and what to do: printed without a traceback.
USER_ERRORS = (DatasetNotFoundError, ClassifierWeightsNotFoundError, NonFiniteLossError)
from cad.paths import results_dir

SCALES = ("smoke", "cpu", "paper")


def _sweep_value(text: str) -> float | str:
    """A number where the text is one (a learning curve's steps), else the name itself (fig6a's ``canny``)."""
    try:
        return float(text)
    except ValueError:
        return text


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="./reproduce.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help=f"one of: {', '.join(experiment_choices())}")
    parser.add_argument("--scale", default="cpu", help="smoke (CI), cpu (offline reproduction, default) or paper")
    parser.add_argument("--datasets", nargs="+", help="subset of the scale's datasets (default: all of them)")
    parser.add_argument("--methods", nargs="+", help="subset of the experiment's methods (default: all of them)")
    parser.add_argument("--values", nargs="+", type=_sweep_value,
                        help="subset of a sweep's values (default: all of them), e.g. a learning curve's first points "
                             "or fig6a's coherence-map kinds")
    parser.add_argument("--variants", nargs="+",
                        help="subset of an ablation's variants (default: all of them), e.g. one per core or session")
    parser.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "gpu"),
                        help="Lightning accelerator (auto: the GPU if there is one); precision 'auto' follows it")
    parser.add_argument("--devices", type=int, default=1, help="devices per node (DDP when more than one)")
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (CI logs)")
    parser.add_argument("--render-only", action="store_true",
                        help="run nothing: write the table or figure from the runs already finished")
    parser.add_argument("--park", action="store_true",
                        help="run nothing: list the files the unfinished runs need to go on on another machine "
                             "(e.g. git add -f $(./reproduce.sh <experiment> --park)); see cad/experiment/park.py")
    parser.add_argument("--status", action="store_true",
                        help="run nothing: say where each planned run stands (training step, time so far and left, "
                             "sampled, evaluated); see cad/experiment/status.py")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.total_steps=500")
    # key=value tokens are overrides wherever they stand (a greedy --datasets/--methods list would swallow them)
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    args = parser.parse_intermixed_args([a for a in argv if a not in overrides])
    args.overrides = overrides
    if args.experiment not in experiment_choices():
        parser.error(f"unknown experiment '{args.experiment}'; valid: {', '.join(experiment_choices())}")
    if args.scale not in SCALES:
        parser.error(f"unknown scale '{args.scale}'; valid: {', '.join(SCALES)}")
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        parser.error("--accelerator gpu: this machine has no CUDA device; valid: --accelerator cpu or auto")
    return args


class Planned(NamedTuple):
    """One run an experiment needs: its dataset, method, sweep value and variant (None where it has none)."""
    dataset: str
    method: str
    value: float | None
    cfg: object
    variant: str | None = None
    source: object = None  # the config of the run this one starts from (train.init_from=variant:<name>), trained first


def _configs(experiment, scale: str, datasets: list[str], methods: list[str], overrides: list[str],
             args: argparse.Namespace, values: list[float | str] | None = None,
             chosen: list[str] | None = None) -> list[Planned]:
    """Every run (of ``values`` and of the ``chosen`` variants only, when given); a user override of the swept key is
    refused. The experiment's own overrides for the scale (a learning curve's length) come first, then its variant's
    (an ablation), then the user's."""
    sweep = experiment.values_at(scale) if experiment.sweep_key else [None]
    if values:
        unknown = [v for v in values if v not in sweep]
        if unknown or not experiment.sweep_key:
            shown = unknown[0] if unknown else values[0]
            shown = f"{shown:g}" if isinstance(shown, float) else shown
            raise ConfigError(f"--values {shown}: {experiment.name} sweeps "
                              + (f"{experiment.sweep_key} over {sweep}" if experiment.sweep_key else "nothing")
                              + "; valid: a subset of those values" + ("" if experiment.sweep_key else " (none)"))
        sweep = [v for v in sweep if v in values]
    swept = [o for o in overrides if o.split("=", 1)[0] == experiment.sweep_key]
    if swept:
        raise ConfigError(f"{swept[0]}: {experiment.name} sweeps {experiment.sweep_key} over {sweep}; "
                          f"valid: leave {experiment.sweep_key} out of the overrides")
    fixed = experiment.overrides_at(scale)
    variants = experiment.variants or {None: []}
    if chosen:
        unknown = [v for v in chosen if v not in variants]
        if unknown:
            raise ConfigError(f"--variants {unknown[0]}: {experiment.name} has "
                              + (f"the variants {', '.join(variants)}" if experiment.variants else "no variants")
                              + "; valid: a subset of those" + ("" if experiment.variants else " (none)"))
        variants = {n: variants[n] for n in chosen}
    def config(d, m, variant_overrides, v=None):
        return resolve(scale, d, m, fixed + list(variant_overrides) + overrides
                       + ([f"{experiment.sweep_key}={v}"] if v is not None else []),
                       task=experiment.task, accelerator=args.accelerator, devices=args.devices)

    planned = []
    for d in datasets:
        for m in methods:
            for n in variants:
                own, source = list(variants[n]), None
                named = [o for o in own if o.startswith(f"train.init_from={VARIANT_PREFIX}")]
                if named:  # another variant's training run, by its name: the same on every machine
                    origin = named[0].split("=", 1)[1][len(VARIANT_PREFIX):]
                    if origin not in experiment.variants or origin == n:
                        raise ConfigError(f"variant {n}: {named[0]} names no other variant of {experiment.name}; "
                                          f"valid: {', '.join(v for v in experiment.variants if v != n)}")
                    source = config(d, m, experiment.variants[origin])
                    own = [o for o in own if o not in named] + [f"train.init_from={RUN_PREFIX}{run_name(source)}"]
                planned += [Planned(d, m, v, config(d, m, own, v), n, source) for v in sweep]
    return planned


def shown_configs(experiment, args: argparse.Namespace, datasets: list[str]) -> list[Planned]:
    """The runs the table or figure shows: every method of the experiment (so it can be completed one method at a time)
    at every sweep value that the command's overrides make a valid run of. A method or value they refuse has none: a
    label-coherence mix for a method without coherence, the null label (the unconditional model) with guidance."""
    values = experiment.values_at(args.scale) if experiment.sweep_key else [None]
    shown = []
    for method in experiment.methods:
        for value in values:
            try:
                shown += _configs(experiment, args.scale, datasets, [method], list(args.overrides), args,
                                  None if value is None else [value])
            except ConfigError:
                continue
    variants = list(experiment.variants or {None: []})  # in _configs' order: dataset, method, variant, value
    return sorted(shown, key=lambda r: (datasets.index(r.dataset), experiment.methods.index(r.method),
                                        variants.index(r.variant), values.index(r.value)))


def experiment_datasets(experiment, scale: str, requested: list[str] | None) -> tuple[list[str], list[str]]:
    """(datasets to run, datasets the table or figure shows). By default an experiment runs on the paper's datasets
    it covers (the figures: ImageNet or its stand-in), or on those its file names (``datasets``); ``--datasets`` may
    name any dataset of the scale, which the output then shows as well."""
    every = scale_datasets(scale)
    default = ([d for d in experiment.datasets if d in every] if experiment.datasets
               else scale_datasets(scale, experiment.paper_datasets))
    unknown = [d for d in requested or [] if d not in every]
    if unknown:
        raise ConfigError(f"dataset '{unknown[0]}' is not part of scale '{scale}'; valid: {', '.join(every)}")
    shown = default + [d for d in every if d in (requested or []) and d not in default]
    return list(requested or default), shown


def _parking(cfg, experiment: str, root) -> tuple:
    """(run dirs, EMA weights path, step the sampling reads at) of one planned run, for ``park_list``."""
    dirs, until = run_dirs(cfg, experiment, root / "raw"), train_until(cfg)
    return dirs, ema_weights(dirs, until, cfg.train.total_steps), until


def _print_park_list(experiment, scale: str, configs: list[Planned], root) -> None:
    """``--park``: the files to carry, one per line on stdout; their count and size on stderr."""
    files = park_list(experiment.task, scale, [_parking(p.cfg, experiment.name, root) for p in configs])
    # a variant not yet trained needs the finished weights of the run it starts from as well
    sources = [run_dirs(p.source, experiment.name, root / "raw").train / "model_ema.pt" for p in configs
               if p.source is not None and not is_done(run_dirs(p.cfg, experiment.name, root / "raw").train, "train")]
    parked = list(dict.fromkeys(files + [s for s in sources if s.is_file()]))
    for path in parked:
        print(path)
    size = sum(p.stat().st_size for p in parked) / 2**20
    print(f"[{experiment.name}] {len(parked)} files to park, {size:.1f} MiB", file=sys.stderr)


def finished_results(experiment, configs: list, root) -> list:
    """The finished runs among ``configs`` (from their files alone: a table renders without weights or samples)."""
    results = []
    for run in configs:
        dirs = run_dirs(run.cfg, experiment.name, root / "raw")
        if is_done(dirs.evaluate, "evaluate"):
            results.append(report.RunResult(dataset=run.dataset, method=run.method, sweep_value=run.value, cfg=run.cfg,
                                            dirs=dirs, metrics=read_metrics(dirs.evaluate / "metrics.json"),
                                            variant=run.variant))
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        experiment = load_experiment(args.experiment)
        methods = args.methods or experiment.methods
        for method in methods:
            if method not in _choices("method"):
                raise ConfigError(f"unknown method '{method}'; valid: {', '.join(_choices('method'))}")
        run_datasets, shown_datasets = experiment_datasets(experiment, args.scale, args.datasets)
        configs = _configs(experiment, args.scale, run_datasets, methods, list(args.overrides), args, args.values,
                           args.variants)
        shown = shown_configs(experiment, args, shown_datasets)  # every finished one of them is in the table
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    root = results_dir() / "smoke" if args.scale == "smoke" else results_dir()
    if args.park:
        _print_park_list(experiment, args.scale, configs, root)
        return 0
    if args.status:
        print("\n".join(status_lines(experiment.name, configs, root / "raw")))
        return 0
    start = time.time()
    for planned in [] if args.render_only else configs:
        cfg, value = planned.cfg, planned.value
        dirs = run_dirs(cfg, experiment.name, root / "raw")
        print(f"== {experiment.name} | {args.scale} | {planned.dataset} | {planned.method}"
              + (f" ({planned.variant})" if planned.variant else "")
              + (f" | {experiment.sweep_key}={value}" if value is not None else "") + f" -> {dirs.evaluate}")
        try:
            if planned.source is not None:  # the run it starts from is trained first (a no-op once it is)
                train(planned.source, run_dirs(planned.source, experiment.name, root / "raw"),
                      accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes,
                      progress=not args.no_progress)
            run(cfg, dirs, accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes,
                progress=not args.no_progress)
        except USER_ERRORS as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    if not is_global_zero():
        return 0
    results = finished_results(experiment, shown, root)
    if not results:
        print(f"[{experiment.name}] no finished run to show yet"
              + ("; --render-only runs nothing: leave it out to run them" if args.render_only else ""))
        return 0
    text = report.write(experiment, args.scale, results, root)
    print(text)
    print(f"[{experiment.name}] finished in {time.time() - start:.0f} s")
    return 0
