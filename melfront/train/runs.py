"""Run folders of the ``melfront train / evaluate / predict`` commands: :func:`split_folds`, :func:`run_split`
(folds, or a stratified grouped holdout of a single-fold data set), :func:`train_run` (writes
``checkpoint.pt``, ``config.json``, ``metrics.json``) and :func:`evaluate_run`.

The examples use a tiny synthetic data set (2 classes x 4 clips of 0.5 s at 8 kHz, folds 1 and 2).
"""
from __future__ import annotations

from pathlib import Path

from ..checks import one_of
from ..data import dataset as load_dataset
from ..data.base import check_clips, class_counts, with_groups
from ..data.sampling import few_shot_subset, grouped_holdout, without_groups_of
from ..errors import DataError, ParameterError
from ..fileio import write_json
from .build import learned_parameters
from .checkpoint import load_classifier
from .trial import clip_features, train_classifier, trainer_for

__all__ = ["fold_value", "split_folds", "run_clips", "run_split", "train_run", "evaluate_run"]


def fold_value(fold):
    """A fold as the data sets store it: digit strings become ints (``"4"`` -> ``4``), anything else is kept.

    >>> fold_value("4"), fold_value("-1"), fold_value("dev"), fold_value(None)
    (4, -1, 'dev', None)
    """
    if fold is None:
        return None
    if isinstance(fold, str) and fold.strip().lstrip("-").isdigit():
        return int(fold)
    return fold


def split_folds(clips, test_fold, val_fold=None):
    """``(train, val, test)`` clips: ``test_fold`` for test, ``val_fold`` (optional) for validation, the rest train.

    Folds are compared after reading digit strings as ints (``"4"`` == ``4``). An unknown fold raises
    ``DataError`` (a ``ValueError``) listing those present.

    >>> import tempfile
    >>> from melfront.data import dataset
    >>> root = tempfile.mkdtemp()
    >>> SYNTH = dict(n_classes=2, clips_per_class=4, duration=0.5, sample_rate=8000, n_folds=2)
    >>> clips = dataset("synth", root=root, **SYNTH)
    >>> train, val, test = split_folds(clips, test_fold="2")
    >>> len(train), len(val), len(test), {c.fold for c in test}
    (4, 0, 4, {2})
    """
    test_fold, val_fold = fold_value(test_fold), fold_value(val_fold)
    present = list(getattr(clips, "folds", sorted({c.fold for c in clips}, key=str)))
    for name, f in (("test fold", test_fold), ("validation fold", val_fold)):
        if f is not None and f not in present:
            raise DataError(f"{name} {f!r} is not in the data set; folds present: {present}")
    if val_fold is not None and val_fold == test_fold:
        raise ParameterError(f"the validation fold must differ from the test fold ({test_fold!r})")
    test = [c for c in clips if c.fold == test_fold]
    val = [c for c in clips if val_fold is not None and c.fold == val_fold]
    train = [c for c in clips if c.fold != test_fold and (val_fold is None or c.fold != val_fold)]
    if not train:
        raise DataError(f"no training clips left after taking fold {test_fold!r} for test: the data set has "
                        f"folds {present}; hold out part of it instead (split='holdout', --split holdout)")
    sub = getattr(clips, "subset", None)
    return tuple(sub(x) if callable(sub) else x for x in (train, val, test))


def run_clips(dataset: str, root=None, dataset_options: dict | None = None, group_by: str | None = None, log=print):
    """A data set's readable clips, with groups from ``group_by`` (a regex on file names, see
    :func:`melfront.data.base.with_groups`); unreadable clips are left out (header check) and said once
    through ``log``; fewer than two classes is a DataError.

    >>> import tempfile
    >>> clips = run_clips("synth", tempfile.mkdtemp(), dict(n_classes=2, clips_per_class=2, duration=0.25,
    ...                   sample_rate=4000, n_folds=1))
    >>> len(clips), clips.skipped
    (4, [])
    """
    clips = with_groups(load_dataset(dataset, root, **(dataset_options or {})), group_by)
    readable, skipped = check_clips(clips)
    if skipped:
        causes = "; ".join(f"{Path(p).name}: {c}" for p, c in skipped[:3])
        log(f"{len(skipped)} of {len(clips)} clips unreadable, skipped: first causes: {causes}")
    present = [n for n, m in zip(readable.classes, class_counts(readable, len(readable.classes))) if m]
    if len(present) < 2:
        raise DataError(f"{dataset}: training needs at least two classes with readable clips; found {len(present)} "
                        f"({', '.join(present) or 'none'})")
    return readable


def run_split(clips, test_fold=None, val_fold=None, split: str | None = None, seed: int = 0, grouped: bool = False,
              log=print):
    """``(train, val, test, note)`` of a training run.

    ``split`` "folds" (default with two folds or more): :func:`split_folds`; "holdout" (default for a single
    fold, e.g. a flat folder): a stratified part of ``test_fold`` (default: every clip) is held out with no
    group on both sides (:func:`melfront.data.sampling.grouped_holdout`, a third of each class), said through
    ``log``. With ``grouped`` (groups given by the user, ``--group-by``) clips sharing a group with the test
    fold never train either; otherwise official folds are kept as published.

    >>> from melfront.data import Clip, ClipList
    >>> clips = ClipList([Clip(f"{s}_{w}.wav", w, "ab"[w], 1, s) for s in "pqrstu" for w in range(2)],
    ...                  classes=["a", "b"])
    >>> train, val, test, note = run_split(clips, log=lambda *a: None)
    >>> len(train), len(test), {c.source_id for c in train} & {c.source_id for c in test}, note.split(":")[0]
    (8, 4, set(), 'holdout')
    """
    folds = list(clips.folds)
    split = one_of("split", split if split is not None else "folds" if len(folds) >= 2 else "holdout",
                   ("folds", "holdout"))
    if split == "folds":
        if test_fold is None:
            raise ParameterError(f"give a test fold; folds of the data set: {folds}")
        train, val, test = split_folds(clips, test_fold, val_fold)
        train, dropped = without_groups_of(train, test) if grouped else (train, 0)
        note = "official folds" + (f"; {dropped} training clips sharing a group with the test fold left out"
                                   if dropped else "")
        return train, val, test, note
    if val_fold is not None:
        raise ParameterError("a validation fold needs split 'folds'; the holdout split has none")
    test_fold = fold_value(test_fold)
    if test_fold is not None and test_fold not in folds:
        raise DataError(f"test fold {test_fold!r} is not in the data set; folds present: {folds}")
    part = clips if test_fold is None else clips.subset(c for c in clips if c.fold == test_fold)
    kept, test = grouped_holdout(part, seed=seed, fold="all" if test_fold is None else test_fold)
    others, _ = without_groups_of([c for c in clips if c not in set(part)], test)
    train = clips.subset(list(kept) + list(others))
    why = "the data set has a single fold" if len(folds) < 2 else "split 'holdout' was asked for"
    note = (f"holdout: {len(test)} of {len(clips)} clips held out for test (stratified, no group on both sides), "
            f"{len(train)} for training ({why})")
    log(note)
    return train, clips.subset([]), clips.subset(test), note


def train_run(out_dir, *, dataset: str, root=None, dataset_options: dict | None = None, frontend: str = "db",
              model: str = "sbcnn", test_fold=None, val_fold=None, n_per_class: int | None = None,
              mel: dict | None = None, train: dict | None = None, seed: int = 0, cache=None,
              device: str | None = None, progress: bool = True, resume: bool = False, split: str | None = None,
              group_by: str | None = None, log=print) -> dict:
    """Train on a data set's folds and write ``out_dir/checkpoint.pt``, ``config.json`` and ``metrics.json``.

    Unreadable clips are left out first and said once (:func:`run_clips`, listed as ``unreadable`` in the
    metrics); ``group_by`` (a regex on file names) gives the clips' groups; ``split`` (default: "folds", or
    "holdout" for a single-fold data set such as a flat folder, said through ``log``) is applied by
    :func:`run_split`. The test fold is held out; ``val_fold`` (optional) is reported each epoch and used for early
    stopping when ``train['patience']`` is set; ``n_per_class`` draws a class-balanced few-shot subset of
    the training clips (:func:`melfront.data.sampling.few_shot_subset` with ``run=0``). The checkpoint is
    rewritten after every epoch; ``resume=True`` continues from it. Returns the metrics dict.

    >>> import tempfile
    >>> from melfront.data import dataset
    >>> root = tempfile.mkdtemp()
    >>> SYNTH = dict(n_classes=2, clips_per_class=4, duration=0.5, sample_rate=8000, n_folds=2)
    >>> out = tempfile.mkdtemp()
    >>> m = train_run(out, dataset="synth", root=root, dataset_options=SYNTH, frontend="db", model="vgg",
    ...               test_fold=2, mel=dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32),
    ...               train=dict(epochs=1, batch_size=2, patch_frames=32, model_options={"width": 4}),
    ...               cache=False, device="cpu", progress=False)
    >>> m["n_train"], m["n_test"], m["fold"], sorted(p.name for p in Path(out).iterdir())
    (4, 4, 2, ['checkpoint.pt', 'config.json', 'metrics.json'])
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clips = run_clips(dataset, root, dataset_options, group_by, log)
    train_clips, val_clips, test_clips, note = run_split(clips, test_fold, val_fold, split, seed, group_by is not None,
                                                         log)
    if n_per_class is not None:
        train_clips = few_shot_subset(train_clips, n_per_class, seed=seed, run=0, fold=fold_value(test_fold))
    ckpt = out / "checkpoint.pt"
    if ckpt.exists() and not resume:
        log(f"note: {ckpt} exists and is overwritten (use --resume to continue it)")
    extra = dict(dataset=dataset, root=None if root is None else str(Path(root).resolve()),
                 dataset_options=dict(dataset_options or {}), test_fold=fold_value(test_fold),
                 val_fold=fold_value(val_fold), n_per_class=n_per_class, split="holdout" if note.startswith("holdout")
                 else "folds", group_by=group_by, split_note=note)
    trainer, info = train_classifier(clips, frontend=frontend, model=model, train_clips=train_clips,
                                     val_clips=val_clips, mel=mel, train=train, seed=seed, cache=cache,
                                     device=device, progress=progress, checkpoint=ckpt, resume=resume,
                                     extra_config=extra)
    write_json(out / "config.json", info["config"])
    cfg = info["config"]
    feats, kept, skipped = clip_features(list(test_clips), cfg["mel"], cfg["input_kind"], cache, progress)
    if not feats:
        raise DataError(f"no usable test clips in fold {test_fold!r} ({len(skipped)} skipped)")
    metrics = trainer.evaluate(feats, [c.label for c in kept], cfg["classes"])
    result = dict(metrics, fold=fold_value(test_fold), n_train=info["n_train"], n_val=info["n_val"],
                  n_test=len(feats), epochs=info["epochs"], train_seconds=info["train_seconds"],
                  device=str(trainer.device), learned=learned_parameters(trainer.model), history=trainer.history,
                  skipped=info["skipped"] + skipped, unreadable=clips.skipped, split=note)
    write_json(out / "metrics.json", result)
    return result


def evaluate_run(run_dir, *, dataset: str | None = None, root=None, dataset_options: dict | None = None, fold=None,
                 cache=None, device: str | None = None, progress: bool = False) -> dict:
    """Metrics of a trained run (a folder with ``checkpoint.pt``, or the file) on a fold of a data set.

    The data set, root, options and fold default to those the run was trained with (its test fold, or the
    clips it held out when it used the holdout split).

    >>> import tempfile
    >>> from melfront.data import dataset
    >>> root = tempfile.mkdtemp()
    >>> SYNTH = dict(n_classes=2, clips_per_class=4, duration=0.5, sample_rate=8000, n_folds=2)
    >>> clips = dataset("synth", root=root, **SYNTH)
    >>> out = tempfile.mkdtemp()
    >>> m = train_run(out, dataset="synth", root=root, dataset_options=SYNTH, frontend="db", model="vgg",
    ...               test_fold=2, mel=dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32),
    ...               train=dict(epochs=1, batch_size=2, patch_frames=32, model_options={"width": 4}),
    ...               cache=False, device="cpu", progress=False)
    >>> m = evaluate_run(out, cache=False, device="cpu")
    >>> m["fold"], m["dataset"], m["n"]
    (2, 'synth', 4)
    """
    clf, cfg = load_classifier(run_dir)
    name = dataset or cfg.get("dataset")
    if name is None:
        raise ParameterError("give --dataset: the checkpoint does not say which data set it was trained on")
    if dataset is None:
        root = root if root is not None else cfg.get("root")
        dataset_options = dataset_options if dataset_options is not None else cfg.get("dataset_options")
    fold = fold_value(fold) if fold is not None else cfg.get("test_fold")
    clips = load_dataset(name, root, **(dataset_options or {}))
    if list(clips.classes) != list(cfg["classes"]):
        raise DataError(f"the data set's classes {clips.classes[:5]}... differ from the checkpoint's "
                        f"{cfg['classes'][:5]}...")
    if fold is None and dataset is None and cfg.get("split") == "holdout":  # the run's own held-out clips
        clips = run_clips(name, root, dataset_options, cfg.get("group_by"), log=lambda *a: None)
        test = run_split(clips, cfg.get("test_fold"), None, "holdout", cfg.get("seed", 0), log=lambda *a: None)[2]
    elif fold is None:
        test = clips
    else:
        if fold not in clips.folds:
            raise DataError(f"fold {fold!r} is not in the data set; folds present: {clips.folds}")
        test = clips.subset(c for c in clips if c.fold == fold)
    feats, kept, skipped = clip_features(list(test), cfg["mel"], cfg["input_kind"], cache, progress)
    if not feats:
        raise DataError(f"no usable clips to evaluate ({len(skipped)} skipped)")
    metrics = trainer_for(clf, cfg, device=device).evaluate(feats, [c.label for c in kept], cfg["classes"])
    return dict(metrics, fold=fold, dataset=name, skipped=skipped)
