"""Few-shot sampling: class-balanced training subsets and prototypical-network episodes.

Pons, Serrà & Serra (2019, "Training neural audio classifiers with few data", ICASSP) train on
``n`` randomly chosen audios per class, ``n`` in {1, 2, 5, 10, 20, 50, 100}, and repeat every
experiment several times with different random subsets. :func:`few_shot_subset` draws such a subset
reproducibly from ``(seed, n, run, fold)`` alone: its random generator is derived from a hash of
these values, so the result does not depend on the order of the input clips nor on any other
random draw made before. :func:`episode` draws the support and query sets of one training
episode of a prototypical network (Snell, Swersky & Zemel 2017, NeurIPS); :func:`support_clips` and
:func:`query_clips` draw the two apart (for a support set fixed for a whole run). :func:`grouped_holdout`
holds out a stratified part of a fold with no group (speaker, recording, site) on both sides, and
:func:`shortfalls` says which classes of a subset had fewer than ``n`` clips.
"""
from __future__ import annotations

import hashlib
import warnings
from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np

from ..checks import finite_float, optional, positive_int
from ..errors import DataError, ParameterError
from .base import class_counts, group_of

__all__ = ["FEW_SHOT_SIZES", "rng_for", "seed_for", "few_shot_subset", "episode", "support_clips", "query_clips",
           "grouped_holdout",
           "without_groups_of", "shortfalls", "n_per_class_actual"]

#: The training-set sizes (clips per class) of Pons et al. (2019).
FEW_SHOT_SIZES = (1, 2, 5, 10, 20, 50, 100)


def rng_for(*parts) -> np.random.Generator:
    """A numpy Generator seeded from a SHA-256 hash of ``parts`` (their ``str``), independent of any global state.

    >>> rng_for("few-shot", 0, 1).integers(0, 100, 3).tolist() == rng_for("few-shot", 0, 1).integers(0, 100, 3).tolist()
    True
    """
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(np.frombuffer(digest, dtype=np.uint32))


def seed_for(*parts) -> int:
    """A 63-bit integer seed (for ``torch.Generator``) from a SHA-256 hash of ``parts`` (their ``str``).

    >>> seed_for("crop", 0, 1) == seed_for("crop", 0, 1) != seed_for("crop", 0, 2)
    True
    >>> 0 <= seed_for("crop", 0, 1) < 2**63
    True
    """
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def _key(clip) -> str:
    return str(getattr(clip, "path", clip))


def _label(clip) -> int:
    try:
        return int(clip.label)
    except AttributeError:
        raise ParameterError(f"clip {clip!r} has no integer .label") from None


def few_shot_subset(clips: Sequence, n_per_class: int, seed: int = 0, run: int = 0, fold=0,
                    nested: bool = True) -> list:
    """A class-balanced subset of ``n_per_class`` clips of every class, reproducible from ``(seed, n, run, fold)``.

    Parameters
    ----------
    clips : sequence of Clip
        Candidate training clips (anything with ``.label`` and ``.path``); a ``ClipList`` gives a ``ClipList``.
    n_per_class : int
        Clips per class (Pons et al. use 1, 2, 5, 10, 20, 50, 100). A class with fewer clips gives all
        of them, with a ``UserWarning``.
    seed, run, fold
        The draw is a function of these (and ``n_per_class`` when ``nested=False``) only: the same
        values give the same subset whatever the order of ``clips``; different ``run`` values give
        different subsets.
    nested : bool
        True (default): each class's clips are put in one random order per ``(seed, run, fold)`` and the
        first ``n`` taken, so the subset for ``n`` is contained in the subset for any larger ``n``
        (learning curves then differ only by the added clips). False: an independent draw for each ``n``.

    Returns
    -------
    list (or ClipList) of clips, grouped by class in label order, each group in drawn order.

    >>> from melfront.data.base import Clip
    >>> clips = [Clip(f"c{k}_{i}.wav", k, f"class{k}", 1) for k in range(2) for i in range(10)]
    >>> two = few_shot_subset(clips, 2, seed=0, run=0, fold=1)
    >>> [c.label for c in two], set(two) <= set(few_shot_subset(clips, 5, seed=0, run=0, fold=1))
    ([0, 0, 1, 1], True)
    """
    positive_int("n_per_class", n_per_class)
    by_class: dict[int, list] = defaultdict(list)
    for c in clips:
        by_class[_label(c)].append(c)
    chosen = []
    short = []
    for label in sorted(by_class):
        # sort by path so that the input order does not matter
        group = sorted(by_class[label], key=_key)
        rng = rng_for("few-shot", seed, run, fold, label, "nested" if nested else int(n_per_class))
        order = rng.permutation(len(group))
        if len(group) < n_per_class:
            name = getattr(group[0], "class_name", label)
            short.append(f"{name} ({len(group)})")
        chosen.extend(group[j] for j in order[:n_per_class])
    if short:
        warnings.warn(f"few_shot_subset: {len(short)} class(es) have fewer than {n_per_class} clips, all taken: "
                      + ", ".join(short), UserWarning, stacklevel=2)
    subset = getattr(clips, "subset", None)
    return subset(chosen) if callable(subset) else chosen


def episode(clips_by_class: Mapping[int, Sequence], n_support: int = 5, n_query: int = 5,
            rng: np.random.Generator | None = None) -> tuple[list, list]:
    """One prototypical-network episode (Snell et al. 2017, as used by Pons et al. 2019).

    Parameters
    ----------
    clips_by_class : mapping label -> sequence of clip identifiers (e.g. indices into the feature list)
    n_support : int
        Support audios per class: ``min(n_support, available)`` distinct clips, drawn without
        replacement; the caller takes one random patch from each (Pons et al.: up to 5 audios).
    n_query : int
        Query patches per class: ``n_query`` clips drawn with replacement from the class's clips (with
        one audio per class the queries are other patches of the same audio); the caller takes a
        random patch from each.
    rng : numpy Generator (default: a fresh unseeded one)

    Returns
    -------
    support, query : lists of ``(clip, label)`` pairs, classes in sorted label order.

    >>> support, query = episode({0: [0, 1, 2], 1: [3]}, n_support=2, n_query=3, rng=np.random.default_rng(0))
    >>> sorted(support)[-1], len(query), sorted({label for _, label in query})
    ((3, 1), 6, [0, 1])
    """
    positive_int("n_support", n_support)
    positive_int("n_query", n_query)
    rng = np.random.default_rng() if rng is None else rng
    support, query = [], []
    for label, group in _groups(clips_by_class):  # per class: its support, then its queries (the draw order)
        support.extend(_support_of(group, label, n_support, rng))
        query.extend(_queries_of(group, label, n_query, rng))
    return support, query


def _groups(clips_by_class: Mapping[int, Sequence]) -> list[tuple[int, list]]:
    """``[(label, clips), ...]`` in sorted label order; ParameterError for no classes or a class without clips."""
    if not clips_by_class:
        raise ParameterError("clips_by_class is empty")
    out = []
    for label in sorted(clips_by_class):
        group = list(clips_by_class[label])
        if not group:
            raise ParameterError(f"class {label!r} has no clips")
        out.append((label, group))
    return out


def _support_of(group: list, label, n: int, rng: np.random.Generator) -> list:
    """``min(n, len(group))`` distinct clips of one class, as ``(clip, label)``."""
    return [(group[j], label) for j in rng.choice(len(group), size=min(n, len(group)), replace=False)]


def _queries_of(group: list, label, n: int, rng: np.random.Generator) -> list:
    """``n`` clips of one class drawn with replacement, as ``(clip, label)``."""
    return [(group[j], label) for j in rng.integers(0, len(group), size=n)]


def support_clips(clips_by_class: Mapping[int, Sequence], n_support: int, rng: np.random.Generator) -> list:
    """A support set: ``min(n_support, available)`` distinct clips of every class, drawn without replacement.

    Returns ``[(clip, label), ...]``, classes in sorted label order, each class's clips in drawn order. The
    caller takes one patch from each clip (Pons et al. 2019: one patch from each of up to 5 audios per class).

    >>> by_class = {0: [0, 1, 2], 1: [3]}
    >>> s = support_clips(by_class, 2, np.random.default_rng(0))
    >>> s == support_clips(by_class, 2, np.random.default_rng(0)), [label for _, label in s], len({c for c, _ in s})
    (True, [0, 0, 1], 3)
    """
    positive_int("n_support", n_support)
    return [pair for label, group in _groups(clips_by_class) for pair in _support_of(group, label, n_support, rng)]


def query_clips(clips_by_class: Mapping[int, Sequence], n_query: int, rng: np.random.Generator) -> list:
    """A query set: ``n_query`` clips of every class drawn with replacement (the rule of :func:`episode`).

    Returns ``[(clip, label), ...]``, classes in sorted label order; the caller takes a random patch of each.

    >>> q = query_clips({0: [0, 1], 1: [2]}, 3, np.random.default_rng(0))
    >>> len(q), [label for _, label in q], {c for c, label in q if label == 1}
    (6, [0, 0, 0, 1, 1, 1], {2})
    """
    positive_int("n_query", n_query)
    return [pair for label, group in _groups(clips_by_class) for pair in _queries_of(group, label, n_query, rng)]


def grouped_holdout(clips: Sequence, per_class: int | None = None, seed: int = 0, fold=0,
                    fraction: float | None = None) -> tuple[list, list]:
    """``(pool, test)``: a stratified part of ``clips`` held out for testing, no group on both sides.

    Groups (:func:`~melfront.data.base.group_of`: the clip's ``source_id``, else the clip itself) are
    visited in a random order reproducible from ``(seed, fold)``; a group goes to the test side while one
    of its classes has fewer than ``per_class`` test clips (default: a third of the class, at least 1),
    unless that would take the last clip of one of its classes from the pool. A group (a speaker who says
    every word) therefore stays whole, and every class gets about ``per_class`` test clips. Without groups
    every class gets exactly ``per_class`` (a plain stratified split). ``fraction`` instead of ``per_class``:
    ``round(fraction * n)`` of a class's ``n`` clips, at least 1 (held-out sides of a given share: the Tax et al.
    protocol's validation and test parts). Clips without a ``label`` (paths) count as one class.
    scikit-learn's ``StratifiedGroupKFold`` was not used: it cannot give a set number of test clips per class.
    Fewer than two groups is a DataError.

    >>> from melfront.data.base import Clip
    >>> clips = [Clip(f"{spk}_{w}.wav", w, str(w), 1, spk) for spk in "abcdef" for w in range(2)]
    >>> pool, test = grouped_holdout(clips, seed=0)
    >>> len(test), {c.source_id for c in pool} & {c.source_id for c in test}
    (4, set())
    >>> pool, test = grouped_holdout([f"{i}.wav" for i in range(8)], fraction=0.25)
    >>> len(pool), len(test)
    (6, 2)
    """
    per_class = optional(positive_int, "per_class", per_class)
    if fraction is not None:
        if per_class is not None:
            raise ParameterError("grouped_holdout: give per_class or fraction, not both")
        fraction = finite_float("fraction", fraction, 0.0, 1.0, low_open=True, high_open=True)
    _label = _class_of(clips)
    groups: dict[str, list] = defaultdict(list)
    for c in sorted(clips, key=_key):
        groups[group_of(c)].append(c)
    if len(groups) < 2:
        raise DataError(f"cannot hold out a test part: all {len(clips)} clips are in one group "
                        f"({next(iter(groups), 'none')!r})")
    labels = sorted({_label(c) for c in clips})
    total = dict(zip(labels, (sum(_label(c) == k for c in clips) for k in labels)))
    want = {k: per_class or (max(1, round(fraction * total[k])) if fraction else max(1, total[k] // 3)) for k in labels}
    taken = dict.fromkeys(labels, 0)
    order = sorted(groups)
    rng_for("holdout", seed, fold).shuffle(order)
    test_groups = set()
    for g in order:
        counts = defaultdict(int)
        for c in groups[g]:
            counts[_label(c)] += 1
        if not any(taken[k] < want[k] for k in counts):
            continue
        if any(total[k] - taken[k] - m < 1 for k, m in counts.items()):
            continue  # would leave a class with no training clip
        test_groups.add(g)
        for k, m in counts.items():
            taken[k] += m
    pool = [c for g in order if g not in test_groups for c in groups[g]]
    test = [c for g in order if g in test_groups for c in groups[g]]
    subset = getattr(clips, "subset", None)
    return (subset(pool), subset(test)) if callable(subset) else (pool, test)


def _class_of(clips):
    """The label function of :func:`grouped_holdout`: ``int(clip.label)``, or 0 for all when no clip has a label."""
    if any(hasattr(c, "label") for c in clips):
        return _label
    return lambda clip: 0


def without_groups_of(pool: Sequence, test: Sequence) -> tuple[list, int]:
    """``(pool without the clips whose group is in test, how many were dropped)``.

    >>> from melfront.data.base import Clip
    >>> pool = [Clip("a1.wav", 0, "x", 1, "a"), Clip("b1.wav", 0, "x", 1, "b")]
    >>> kept, dropped = without_groups_of(pool, [Clip("a2.wav", 0, "x", 2, "a")])
    >>> [c.path for c in kept], dropped
    (['b1.wav'], 1)
    """
    taken = {group_of(c) for c in test}
    kept = [c for c in pool if group_of(c) not in taken]
    subset = getattr(pool, "subset", None)
    return (subset(kept) if callable(subset) else kept), len(pool) - len(kept)


def shortfalls(subset: Sequence, n_per_class: int, classes: Sequence[str]) -> list[tuple[str, int]]:
    """``[(class name, clips available), ...]`` for the classes of ``subset`` with fewer than ``n_per_class`` clips.

    >>> from melfront.data.base import Clip
    >>> shortfalls([Clip("a.wav", 0, "owl", 1), Clip("b.wav", 0, "owl", 1), Clip("c.wav", 1, "frog", 1)], 2,
    ...            ["owl", "frog"])
    [('frog', 1)]
    """
    counts = class_counts(subset, len(classes))
    return [(str(classes[k]), m) for k, m in enumerate(counts) if m < n_per_class]


def n_per_class_actual(subset: Sequence, n_classes: int, skipped: Sequence = ()) -> int:
    """The fewest clips any class has in ``subset`` once the ``skipped`` paths (``[path, cause]`` or paths)
    are taken out: what a trial asked to train on ``n`` clips per class really trained on.

    >>> from melfront.data.base import Clip
    >>> sub = [Clip("a.wav", 0, "owl", 1), Clip("b.wav", 0, "owl", 1), Clip("c.wav", 1, "frog", 1),
    ...        Clip("d.wav", 1, "frog", 1)]
    >>> n_per_class_actual(sub, 2), n_per_class_actual(sub, 2, skipped=[["d.wav", "truncated"]])
    (2, 1)
    """
    gone = {str(s[0]) if isinstance(s, (list, tuple)) else str(s) for s in skipped}
    return min(class_counts([c for c in subset if str(c.path) not in gone], n_classes), default=0)
