"""What a study trains and tests on: its clips (readable ones, with their groups), its test folds, and
each trial's training subset and test set.

Two split rules, chosen once per study and never switched silently (``StudyConfig.split``):

- ``"folds"`` (the default when two folds or more hold every class): the data set's official folds.
  Test = one fold's clips, training pool = every other fold (or the ``train`` split). A class whose pool
  has fewer than ``n`` clips is a :class:`~melfront.errors.DataError` naming the class, ``n``, the count
  and the fix, before anything trains.
- ``"holdout"`` (the default otherwise: a flat folder, or a copy of ESC-50 with fold 4 and a few strays
  from other folds): per test fold (one that holds every class) a stratified part is held out by :func:`melfront.data.sampling.grouped_holdout` (``holdout_per_class``
  clips per class, default a third) and the rest of the data is the pool. A class with fewer than ``n``
  pool clips trains on all it has, and the cell is reported as a shortfall.

Groups (``Clip.source_id``: ESC-50 ``src_file``, UrbanSound8K ``fsID``, FSDD speaker, TUT location, or
``group_by``, a regular expression on the file name) are never on both sides of a holdout; with
``group_by`` the pool also loses every clip whose group is in the test fold. Official folds are kept as
published: where they share groups between train and test (FSDD's split is by take, so every speaker is on
both sides) the split note says how many.
A data set without groups whose file names share an id with repeats (``<id>_<rest>.wav``,
``<recording>-<slice>.wav``) gets a hint on the split line with the ``--group-by`` pattern to use
(:func:`melfront.data.folder.group_hint`); it is never applied silently.

>>> from melfront.data import Clip, ClipList
>>> clips = ClipList([Clip(f"{i}.wav", i % 2, "ab"[i % 2], 1) for i in range(12)], classes=["a", "b"])
>>> resolve_split(StudyConfig(), clips)
'holdout'
"""
from __future__ import annotations

import warnings
from pathlib import Path

from ..audio import audio_problem
from ..data import dataset
from ..data.cache import FeatureCache
from ..data.base import ClipList, check_clips, class_counts, group_of, with_groups
from ..data.folder import group_hint
from ..data.sampling import few_shot_subset, grouped_holdout, shortfalls, without_groups_of
from ..errors import DataError, ParameterError
from .config import StudyConfig

__all__ = ["SPLITS", "study_clips", "complete_folds", "folds_to_test", "fold_split", "resolve_split", "split_for_trial",
           "check_study"]

#: The split rules a study can use (see the module's text).
SPLITS = ("folds", "holdout")


def study_clips(config: StudyConfig) -> ClipList:
    """The study's data set with its groups (``config.group_by``) and without its unreadable clips.

    Every clip's header is read and its samples decoded (:func:`melfront.data.base.check_clips`) before any
    sampling, so that ``n`` means ``n`` readable clips; a clip that decoded cleanly before and is unchanged is
    remembered by the feature cache and not decoded again; the unreadable ones are in ``.skipped``
    as ``[path, cause]``. Fewer than two classes with readable clips is a DataError.

    >>> import tempfile
    >>> clips = study_clips(StudyConfig(root=tempfile.mkdtemp(), dataset_options=dict(n_classes=2,
    ...                     clips_per_class=2, duration=0.25, sample_rate=4000, n_folds=2)))
    >>> len(clips), clips.skipped
    (4, [])
    """
    clips = dataset(config.dataset, config.root, **config.dataset_options)
    clips = with_groups(clips, getattr(config, "group_by", None))
    cache = FeatureCache()  # the trials' cache: a clip that decoded cleanly is not decoded again by each worker
    readable, _ = check_clips(clips, decode=lambda path: cache.audio_problem(path, audio_problem))
    present = [name for name, m in zip(readable.classes, class_counts(readable, len(readable.classes))) if m]
    if len(present) < 2:
        raise DataError(f"{config.dataset}: a study needs at least two classes with readable clips; found "
                        f"{len(present)} ({', '.join(present) or 'none'}) in {len(readable)} readable of "
                        f"{len(clips)} clips")
    return readable


def complete_folds(clips) -> list:
    """The folds that hold at least one clip of every class present in ``clips``.

    >>> from melfront.data import Clip, ClipList
    >>> clips = ClipList([Clip(f"{i}.wav", i % 2, "ab"[i % 2], 4) for i in range(4)] + [Clip("x.wav", 0, "a", 2)],
    ...                  classes=["a", "b"])
    >>> clips.folds, complete_folds(clips)
    ([2, 4], [4])
    """
    present = {c.label for c in clips}
    return [f for f in clips.folds if {c.label for c in clips if c.fold == f} == present]


def folds_to_test(config: StudyConfig, clips) -> list:
    """The folds a study tests on, in order: ``config.test_folds`` ("all", "first" or a list), or ``["test"]``
    for data sets with a published train/test split. Under a holdout only folds holding every class are
    tested (the others' clips join the training pool).

    >>> from melfront.data import Clip, ClipList
    >>> clips = ClipList([Clip(f"{i}.wav", i % 2, "ab"[i % 2], 1 + i % 3) for i in range(6)], classes=["a", "b"])
    >>> folds_to_test(StudyConfig(test_folds="all"), clips), folds_to_test(StudyConfig(test_folds=[3]), clips)
    ([1, 2, 3], [3])
    """
    folds = list(clips.folds)
    if "test" in [str(f) for f in folds]:  # data sets with a published train/test split (FSDD)
        return ["test"]
    if resolve_split(config, clips) == "holdout":
        folds = complete_folds(clips) or folds
    if config.test_folds == "all":
        return folds
    if config.test_folds == "first":
        return folds[:1]
    wanted = list(config.test_folds) if isinstance(config.test_folds, (list, tuple)) else [config.test_folds]
    missing = [f for f in wanted if str(f) not in {str(x) for x in folds}]
    if missing:
        raise ParameterError(f"test_folds: fold(s) {missing} not in the data set, whose folds are {folds}")
    return [f for f in folds if str(f) in {str(w) for w in wanted}]


def resolve_split(config: StudyConfig, clips) -> str:
    """``config.split`` if set, else "folds" when two folds or more hold every class (:func:`complete_folds`)
    and "holdout" otherwise.

    ``split: "folds"`` on a single-fold data set is a DataError (nothing would be left to train on).

    >>> from melfront.data import Clip, ClipList
    >>> clips = ClipList([Clip(f"{i}.wav", i % 2, "ab"[i % 2], 1 + i // 2) for i in range(4)], classes=["a", "b"])
    >>> resolve_split(StudyConfig(), clips), resolve_split(StudyConfig(split="holdout"), clips)
    ('folds', 'holdout')
    """
    split = getattr(config, "split", None)
    folds = list(clips.folds)
    if split is None:
        return "folds" if len(complete_folds(clips)) >= 2 else "holdout"
    if split not in SPLITS:
        raise ParameterError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if split == "folds" and len(folds) < 2:
        raise DataError(f"split 'folds' needs a data set with two folds or more; this one has {folds}: "
                        "use split 'holdout' (--split holdout) to hold out part of it for testing")
    return split


def fold_split(config: StudyConfig, clips, fold) -> tuple[list, list, str]:
    """``(pool, test, note)`` of one test fold under the study's split rule."""
    in_fold = [c for c in clips if str(c.fold) == str(fold)]
    others = [c for c in clips if str(c.fold) != str(fold)]
    group_by = getattr(config, "group_by", None)
    if resolve_split(config, clips) == "holdout":
        kept, test = grouped_holdout(in_fold, config.holdout_per_class, seed=config.seed, fold=fold)
        others, dropped = without_groups_of(others, test)
        pool = list(kept) + list(others)
        by = f"grouped by {group_by!r}" if group_by else "grouped by source" if any(c.source_id for c in clips) \
            else "by clip"
        note = (f"holdout within fold {fold}: {len(test)} test clips held out ({by}), "
                f"{len(pool)} clips in the training pool")
        return pool, list(test), note + (f", {dropped} sharing a group with the test clips left out" if dropped else "")
    pool = others
    note = "official folds"
    if group_by:
        pool, dropped = without_groups_of(pool, in_fold)
        if dropped:
            note += f"; {dropped} pool clips sharing a group with fold {fold} left out"
    else:
        shared = {group_of(c) for c in pool if c.source_id} & {group_of(c) for c in in_fold if c.source_id}
        if shared:
            note += f" (as published: {len(shared)} groups on both sides)"
    return list(pool), in_fold, note


def _too_few(config: StudyConfig, clips, pool, fold, n: int) -> None:
    counts = class_counts(pool, len(clips.classes))
    short = [(clips.classes[k], m) for k, m in enumerate(counts) if m < n]
    if short:
        name, m = short[0]
        others = f" (and {len(short) - 1} more class(es))" if len(short) > 1 else ""
        raise DataError(f"class {name!r} has {m} training clip(s) outside test fold {fold}, fewer than n={n}{others}: "
                        f"lower n to at most {min(counts)}, or hold out part of the data explicitly "
                        f"(split: holdout, --split holdout)")


def split_for_trial(config: StudyConfig, clips, fold, n: int, run: int):
    """``(train_clips, test_clips, note)`` for one trial; the note says which split was used.

    ``train_clips`` is :func:`melfront.data.sampling.few_shot_subset` of the fold's pool (``n`` per class,
    reproducible from ``(seed, n, run, fold)``; nested across ``n``, or drawn independently for each ``n`` when
    ``config.subsets == "independent"``, as Pons et al.'s src/shared.py ``random.sample`` per run). Under
    official folds a class with fewer than ``n`` pool
    clips is a DataError; under a holdout it gives all it has (see :func:`check_study`).

    >>> from melfront.data import Clip, ClipList
    >>> clips = ClipList([Clip(f"{i}.wav", i % 2, "ab"[i % 2], 1 + i % 3) for i in range(30)], classes=["a", "b"])
    >>> train, test, note = split_for_trial(StudyConfig(n_per_class=[2]), clips, 1, 2, run=0)
    >>> len(train), len(test), note, {c.fold for c in train}
    (4, 10, 'official folds', {2, 3})
    """
    pool, test, note = fold_split(config, clips, fold)
    if note.startswith("official folds"):
        _too_few(config, clips, pool, fold, n)
    with warnings.catch_warnings():  # a holdout's shortfalls are reported by check_study
        warnings.simplefilter("ignore", UserWarning)
        train = few_shot_subset(pool, n, seed=config.seed, run=run, fold=fold,
                                nested=getattr(config, "subsets", "nested") == "nested")
    return list(train), list(test), note


def check_study(config: StudyConfig, clips, trials) -> dict:
    """What a study's start says and stores, checked before anything trains.

    Returns ``dict(split=..., notes={fold: note}, shortfalls=[dict(fold, n, run, class, available)], lines=[...])``:
    the console lines (unreadable clips with their first causes, the split, the groups, the shortfalls).
    Under official folds a pool too small for some ``n`` raises the DataError of :func:`split_for_trial` here.

    >>> from melfront.data import Clip, ClipList
    >>> from melfront.study.config import Trial
    >>> clips = ClipList([Clip(f"{i}.wav", i % 2, "ab"[i % 2], 1) for i in range(6)], classes=["a", "b"])
    >>> info = check_study(StudyConfig(n_per_class=[3]), clips, [Trial(1, 3, 0, "sbcnn", "db")])
    >>> info["split"], len(info["shortfalls"]), info["shortfalls"][0]
    ('holdout', 2, {'fold': 1, 'n': 3, 'run': 0, 'class': 'a', 'available': 2})
    """
    split = resolve_split(config, clips)
    cells = sorted({(t.fold, t.n, t.run) for t in trials}, key=lambda c: (str(c[0]), c[1], c[2]))
    notes, found, pools = {}, [], {}
    for fold, n, run in cells:
        if fold not in pools:
            pools[fold] = fold_split(config, clips, fold)
            notes[fold] = pools[fold][2]
        pool = pools[fold][0]
        if split == "folds":
            _too_few(config, clips, pool, fold, n)
            continue
        found += [dict(fold=fold, n=n, run=run, **{"class": name}, available=m)
                  for name, m in shortfalls(pool, n, clips.classes)]
    return dict(split=split, notes=notes, shortfalls=found, lines=_lines(config, clips, split, notes, found))


def _lines(config, clips, split, notes, found) -> list[str]:
    lines = []
    skipped = getattr(clips, "skipped", [])
    if skipped:
        causes = "; ".join(f"{Path(p).name}: {c}" for p, c in skipped[:3])
        lines.append(f"{len(skipped)} of {len(clips) + len(skipped)} clips unreadable, skipped: first causes: {causes}")
    if getattr(config, "split", None):
        why = ""
    elif split == "holdout":
        why = (f" (fewer than two folds hold every class: complete {complete_folds(clips)} of {clips.folds}; "
               "set split: folds to refuse)")
    else:
        why = " (the data set's folds)"
    group_by = getattr(config, "group_by", None)
    n_groups = len({group_of(c) for c in clips if c.source_id})
    hint = None if group_by or n_groups else group_hint(clips)  # suggested, never applied
    lines.append(f"split: {split}{why}; " + "; ".join(f"fold {f}: {note}" for f, note in notes.items())
                 + (f"; {hint}" if hint else ""))
    if group_by:
        lines.append(f"groups: {n_groups} from the file names (group_by {group_by!r})")
    elif n_groups:
        lines.append(f"groups: {n_groups} from the data set's metadata")
    if found:
        cells = {(s["fold"], s["n"]) for s in found}
        worst = min(found, key=lambda s: s["available"])
        lines.append(f"{len(cells)} (fold, n) cell(s) have classes with fewer than n training clips (e.g. fold "
                     f"{worst['fold']}, n={worst['n']}: class {worst['class']!r} has {worst['available']}); "
                     "they train on all there is and are marked in the report")
    return lines
