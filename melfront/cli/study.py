"""Commands of the few-data study: ``compare`` (run the grid, then the report) and ``report``.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> sub = parser.add_subparsers()
>>> for name, add, run in COMMANDS:
...     add(sub)
>>> args = parser.parse_args(["compare", "--n", "1,2", "--frontends", "db,pcen(trainable=True)", "--epochs", "3"])
>>> config = study_config_from_args(args)
>>> config.n_per_class, config.frontends, config.train["epochs"], config.compare
([1, 2], ['db', 'pcen(trainable=True)'], 3, [['db', 'pcen(trainable=True)']])
"""
from __future__ import annotations

from pathlib import Path

from ..checks import positive_int
from ..fileio import write_json
from .options import add_settings_args, add_split_args, int_list, settings_from_args, split_settings, split_specs

__all__ = ["COMMANDS", "study_config_from_args", "study_setup"]


def _add_compare(sub):
    p = sub.add_parser("compare", help="run the few-data study: frontends x models x n x runs x folds, then the report",
                       description="Train every frontend x model on n clips per class (m runs each, the data set's "
                                   "official folds), store each finished run in OUTPUT/study.db (re-running resumes), "
                                   "and write the report to OUTPUT/report. With no arguments: the quick profile on "
                                   "the built-in synthetic field-recording set.")
    p.add_argument("-o", "--output", default=None,
                   help="study folder (default studies/quick, or studies/NAME with --preset NAME)")
    p.add_argument("--preset", metavar="NAME",
                   help="a published protocol (see `melfront presets`): its settings, checked against the data; "
                        "every other option given here is a declared override")
    p.add_argument("--dry-run", action="store_true",
                   help="print the grid (trials per model, frontend, n, fold, run) and an estimate of its CPU time "
                        "from one timed training epoch per model; train nothing")
    p.add_argument("--no-estimate", action="store_true", help="with --dry-run: skip the timing and the estimate")
    p.add_argument("--config", help="YAML or TOML file with study settings (saved with the results)")
    p.add_argument("--profile", choices=["quick", "paper", "fitted"], default=None,
                   help="quick: the quick grid on the synthetic set; paper: melfront's earlier approximation "
                        "(use --preset pons2019-us8k for the published protocol); fitted: the quick grid with "
                        "settings fitted to --dataset (default: fitted for a real data set without --config, "
                        "else quick)")
    p.add_argument("--dataset", help="synth, esc50, esc10, urbansound8k, tut2017, fsdd or folder")
    p.add_argument("--root", help="data set folder")
    p.add_argument("--frontends", help="comma-separated frontend specs, e.g. \"logeps,loglearn\"")
    p.add_argument("--models", help="comma-separated model names, e.g. sbcnn,vgg,timbre,protonet")
    p.add_argument("--n", dest="n_per_class", help="comma-separated clips per class, e.g. 1,2,5")
    p.add_argument("--runs", type=int, help="runs per n (default: Pons et al.: 20 for n<=2, 10 for n<=10, 5 above)")
    p.add_argument("--test-folds", help="'all', 'first' or comma-separated folds")
    add_split_args(p)
    p.add_argument("--seed", type=int, help="base seed (default 0)")
    p.add_argument("--compare", action="append", metavar="A,B",
                   help="two frontends whose difference the report tests (repeatable)")
    p.add_argument("--jobs", type=int, default=None, help="trials run side by side (default: one per CPU core)")
    p.add_argument("--ray", metavar="auto|local|ADDRESS",
                   help="run every trial as a Ray task: 'auto' attaches to the running cluster (ray start --head) "
                        "or starts a local one when none runs; 'local' always starts one; or HOST:6379")
    p.add_argument("--ray-gpus", type=float, default=0.0, help="GPUs per Ray task (default 0)")
    p.add_argument("--ray-timeout", type=float, default=None, metavar="S",
                   help="seconds connecting to Ray may take before it ends in an error naming the cause (default 30)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-run lines")
    p.add_argument("--retry-failed", action="store_true",
                   help="run again the trials stored as failed (by default a rerun skips them)")
    p.add_argument("--until-decided", action="store_true",
                   help="sequential study: 3 runs per cell (model, n), then 3 more per round only to the cells "
                        "still undecided, until each other frontend is significantly worse than the best or within "
                        "±DELTA points (alpha spending over the looks: see the report), or --max-runs")
    p.add_argument("--delta", type=float, default=None,
                   help="points: the equivalence margin of --until-decided and the report's runs-needed (default 2)")
    p.add_argument("--max-runs", type=int, default=None, help="with --until-decided: runs per cell at most (default 20)")
    add_settings_args(p)


def _overrides(args) -> dict:
    """The study settings given as ``compare`` options."""
    overrides = {}
    if args.dataset:
        overrides["dataset"] = args.dataset
        overrides.setdefault("dataset_options", {})
    if args.root:
        overrides["root"] = args.root
    if args.frontends:
        overrides["frontends"] = split_specs(args.frontends)
    if args.models:
        overrides["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.n_per_class:
        overrides["n_per_class"] = int_list(args.n_per_class, "--n")
    if args.runs is not None:  # 0 is refused by the config check, never ignored
        overrides["runs"] = {"default": args.runs}
    if args.test_folds:
        tf = args.test_folds
        overrides["test_folds"] = tf if tf in ("all", "first") else [int(f) if f.strip().isdigit() else f.strip()
                                                                      for f in tf.split(",")]
    if args.seed is not None:
        overrides["seed"] = args.seed
    for name in ("split", "group_by"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    if args.compare:
        overrides["compare"] = [split_specs(c) for c in args.compare]
    return overrides


def study_config_from_args(args):
    """The :class:`~melfront.study.StudyConfig` of a ``compare`` command line: ``--config`` or ``--profile``
    (default: fitted to a real ``--dataset``, else quick), then the options given (see :func:`study_setup`).

    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> _add_compare(parser.add_subparsers())
    >>> study_config_from_args(parser.parse_args(["compare", "--profile", "paper", "--models", "vgg"])).models
    ['vgg']
    """
    return study_setup(args)[0]


def study_setup(args):
    """``(config, fitted)``: the study's config and, with the fitted profile, the
    :class:`~melfront.train.FittedSettings` it took its mel and training settings from (else None).

    The settings options and ``--set`` win over the config file and the profile, for every model.

    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> _add_compare(parser.add_subparsers())
    >>> config, fitted = study_setup(parser.parse_args(["compare", "--hop", "256", "--set", "patience=4"]))
    >>> config.mel["hop_length"], config.train["patience"], fitted
    (256, 4, None)
    """
    from ..study import StudyConfig, load_clips
    from ..train import fit_settings
    overrides = _overrides(args)
    given = settings_from_args(args)
    profile = args.profile or ("fitted" if args.dataset not in (None, "synth") and not args.config else "quick")
    fitted = None
    if args.config:
        config = StudyConfig.from_file(args.config, profile=args.profile if args.profile != "fitted" else None)
        for k, v in overrides.items():
            setattr(config, k, v)
    else:
        config = StudyConfig.from_profile("quick" if profile == "fitted" else profile, **overrides)
    if profile == "fitted":
        clips = load_clips(config)
        fitted = fit_settings(clips, models=config.models, frontends=config.frontends, given=given,
                              n_train=max(int(n) for n in config.n_per_class) * len(clips.classes))
        config.mel, config.train = dict(fitted.mel), fitted.study_train()
    else:  # given settings win over the file's or profile's, per-model ones included
        mel, train = split_settings(given)
        config.mel = {**config.mel, **mel}
        config.train = _given_win(config.train, train)
    if "compare" not in overrides and not args.config:
        config.compare = [p for p in config.compare if all(f in config.frontends for f in p)]
    return config, fitted


def _given_win(train: dict, given: dict) -> dict:
    """``train`` with the ``given`` settings for every model: per-model values of those keys are dropped,
    except ``model_options``, merged (the given options win)."""
    per_model = {}
    for m, t in (train.get("models") or {}).items():
        t = {k: v for k, v in t.items() if k not in given or k == "model_options"}
        if "model_options" in given and "model_options" in t:
            t["model_options"] = {**t["model_options"], **given["model_options"]}
        per_model[m] = t
    return {**train, **given, **({"models": per_model} if per_model else {})}


def preset_overrides(args, preset=None) -> dict:
    """The ``compare`` options given with ``--preset``: study fields and mel/training settings, flat (``runs``,
    ``n_per_class``, ``epochs``, ``hop_length`` ...), each a declared override of the preset.

    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> _add_compare(parser.add_subparsers())
    >>> preset_overrides(parser.parse_args(["compare", "--preset", "merlin", "--runs", "2", "--epochs", "3"]))
    {'runs': {'default': 2}, 'epochs': 3}
    """
    from ..presets import get_preset
    preset = preset or get_preset(args.preset)
    overrides = {k: v for k, v in _overrides(args).items() if k not in ("dataset", "root", "dataset_options")}
    overrides.update(settings_from_args(args, getattr(preset, "override_keys", ())))
    return overrides


def _run_preset(args):
    from ..errors import ParameterError
    from ..presets import get_preset
    if args.config or args.profile:
        raise ParameterError("--preset cannot be combined with --config or --profile: the preset is the study's "
                             "settings (override single settings with the other options)")
    preset = get_preset(args.preset)
    plan = preset.plan(root=args.root, dataset=args.dataset, overrides=preset_overrides(args, preset))
    if args.dry_run:
        print(preset.dry_run(plan, time_one=not args.no_estimate))
        return 0
    for line in plan.reduced:
        print(f"reduced: {line}")
    for line in plan.overrides:
        print(f"override: {line}")
    from ..presets.compare import ComparePreset
    if isinstance(preset, ComparePreset):
        _connect_ray(args)
    return preset.run(plan, args.output or f"studies/{preset.name}", jobs=args.jobs, ray=args.ray, quiet=args.quiet,
                      retry_failed=args.retry_failed, ray_num_gpus=args.ray_gpus)


def _dry_run(config, estimate: bool = True) -> int:
    from ..study import load_clips, plan
    from ..presets.compare import grid_lines
    from ..study.preflight import preflight
    config.validate()  # the real run's checks (run_study), before the grid is shown
    preflight(config)
    from ..study.splits import check_study
    clips = load_clips(config)
    trials = plan(config, clips)
    for line in check_study(config, clips, trials)["lines"]:  # the real run's start: split, skipped, shortfalls
        print(line)
    print("\n".join(grid_lines([dict(model=t.model, frontend=t.frontend, n=t.n, fold=t.fold, run=t.run)
                                for t in trials])))
    if estimate and trials:  # step costs timed here, priced per trial (melfront.study.estimate)
        from ..study.estimate import estimate_lines, estimate_study
        print("\n".join(estimate_lines(estimate_study(config, clips, trials))))
    return 0


def _sequential_rule(args):
    """The :class:`~melfront.study.sequential.SequentialRule` of ``--until-decided`` (None without it); the
    options that contradict it are refused, never ignored."""
    from ..errors import ParameterError
    from ..study.sequential import DELTA, MAX_RUNS, SequentialRule
    if args.delta is not None:
        SequentialRule(delta=args.delta)  # a positive number of points, else a ParameterError naming --delta
    if not args.until_decided:
        if args.max_runs is not None:
            raise ParameterError("--max-runs only applies to --until-decided (use --runs for a fixed number of runs)")
        return None
    if args.runs is not None:
        raise ParameterError("--runs and --until-decided: the sequential rule sets the runs (3, then +3 per round "
                             "while undecided); give --max-runs instead")
    if args.preset:
        raise ParameterError("--until-decided cannot be combined with --preset: a preset's runs are its paper's")
    return SequentialRule(delta=DELTA if args.delta is None else args.delta,
                          max_runs=MAX_RUNS if args.max_runs is None else args.max_runs)


def _run_compare(args):
    from ..report import study_to_report
    if args.jobs is not None:
        positive_int("--jobs", args.jobs)
    rule = _sequential_rule(args)
    if args.preset:
        return _run_preset(args)
    config, fitted = study_setup(args)
    if args.dry_run:
        return _dry_run(config, estimate=not args.no_estimate)
    if fitted is not None:
        print(fitted.summary())
    out = Path(args.output or "studies/quick")
    _connect_ray(args)
    # config.json is written once the study folder is locked and the config accepted (same or extended study)
    return study_to_report(config, out, accepted=lambda stored: _accepted(out, stored, fitted), ray_address=args.ray,
                           jobs=args.jobs, quiet=args.quiet, ray_num_gpus=args.ray_gpus,
                           retry_failed=args.retry_failed, rule=rule, delta=args.delta)


def _connect_ray(args) -> None:
    """With ``--ray``: connect now, within ``--ray-timeout`` seconds (a StudyError naming the cause otherwise),
    so that the study's Ray tasks use this connection."""
    if args.ray:
        from ..study.ray_connect import RAY_TIMEOUT, connect_ray
        connect_ray(args.ray, say=lambda line: None if args.quiet else print(line),
                    timeout=RAY_TIMEOUT if args.ray_timeout is None else args.ray_timeout)


def _accepted(out: Path, stored, fitted) -> None:
    """Once the study folder is locked and the config accepted: ``config.json`` and the derived settings."""
    from ..study import ResultStore
    write_json(out / "config.json", stored.to_dict())
    if fitted is not None:
        ResultStore(out / "study.db").set_meta("derived_settings", fitted.as_dict())


def _add_report(sub):
    p = sub.add_parser("report", help="write the Markdown + HTML report of a study",
                       description="Tables (mean ± std, paired differences with significance) and plots for a study.db.")
    p.add_argument("study", help="study.db written by melfront compare (or its folder)")
    p.add_argument("-o", "--output", help="report folder (default: report/ next to the study)")
    p.add_argument("--compare", action="append", metavar="A,B", help="two frontends to difference (repeatable)")
    p.add_argument("--delta", type=float, default=2.0,
                   help="points: the runs needed for a ±DELTA 95 %% interval, and for 80 %% power at DELTA (default 2)")


def _run_report(args):
    from ..errors import DataNotFoundError
    from ..report import write_report
    path = Path(args.study)
    if path.is_dir():
        path = path / "study.db"
    if not path.exists():
        raise DataNotFoundError(f"{path}: no such study (run melfront compare first)")
    out = Path(args.output) if args.output else path.parent / "report"
    from ..report.verdict import store_verdict
    from ..study import ResultStore
    from ..study.sequential import SequentialRule
    delta = SequentialRule(delta=args.delta).delta  # checked: a positive number of points
    page = write_report(path, out, compare=[split_specs(c) for c in args.compare] if args.compare else None,
                        delta=delta)
    print("\n".join(store_verdict(ResultStore.open_readonly(path), delta)))
    print(f"report: {page} (and report.md)")


#: ``(name, add_parser, run)`` of this module's commands, in ``melfront --help`` order.
COMMANDS = [("compare", _add_compare, _run_compare), ("report", _add_report, _run_report)]
