"""Few-shot sampling: class balance, reproducibility from (seed, n, run, fold), order independence; episodes."""
import random
import warnings
from collections import Counter

import numpy as np
import pytest

from melfront.data.base import Clip, ClipList
from melfront.data.sampling import (FEW_SHOT_SIZES, episode, few_shot_subset, grouped_holdout, n_per_class_actual,
                                    rng_for, shortfalls)
from melfront.errors import DataError


def _clips(per_class=(120, 120, 30)):
    clips = [Clip(path=f"/data/c{k}/clip{i:03d}.wav", label=k, class_name=f"class{k}", fold=1 + i % 5)
             for k, n in enumerate(per_class) for i in range(n)]
    return ClipList(clips, name="toy", classes=[f"class{k}" for k in range(len(per_class))], root="/data")


@pytest.mark.parametrize("n", FEW_SHOT_SIZES[:-2])
def test_subset_is_class_balanced(n):
    clips = _clips()
    sub = few_shot_subset(clips, n, seed=0, run=0, fold=1)
    assert Counter(c.label for c in sub) == {0: n, 1: n, 2: n}
    assert len({c.path for c in sub}) == len(sub)  # no clip twice
    assert isinstance(sub, ClipList) and sub.classes == clips.classes


def test_small_class_gives_all_its_clips_and_warns():
    clips = _clips()
    with pytest.warns(UserWarning, match="class2 \\(30\\)"):
        sub = few_shot_subset(clips, 50, seed=0, run=0, fold=1)
    counts = Counter(c.label for c in sub)
    assert counts == {0: 50, 1: 50, 2: 30}


def test_reproducible_and_independent_of_input_order_and_global_state():
    clips = _clips()
    a = few_shot_subset(clips, 10, seed=3, run=2, fold=4)
    shuffled = list(clips)
    random.Random(1).shuffle(shuffled)
    np.random.seed(123)
    _ = few_shot_subset(clips, 5, seed=9, run=0, fold=1)  # another draw in between changes nothing
    b = few_shot_subset(shuffled, 10, seed=3, run=2, fold=4)
    assert [c.path for c in a] == [c.path for c in b]


@pytest.mark.parametrize("change", [dict(run=1), dict(seed=1), dict(fold=2)])
def test_different_run_seed_or_fold_gives_a_different_subset(change):
    clips = _clips()
    base = dict(seed=0, run=0, fold=1)
    a = {c.path for c in few_shot_subset(clips, 10, **base)}
    b = {c.path for c in few_shot_subset(clips, 10, **{**base, **change})}
    assert a != b


def test_nested_subsets_grow_and_unnested_draws_differ():
    clips = _clips()
    prev = set()
    for n in (1, 2, 5, 10, 20):
        cur = {c.path for c in few_shot_subset(clips, n, seed=0, run=0, fold=1)}
        assert prev <= cur
        prev = cur
    small = {c.path for c in few_shot_subset(clips, 5, seed=0, run=0, fold=1, nested=False)}
    big = {c.path for c in few_shot_subset(clips, 20, seed=0, run=0, fold=1, nested=False)}
    assert not small <= big  # independent draws (a 5-of-120 subset is in the 20-of-120 one with prob ~1e-4 per class)


def test_runs_cover_many_clips():
    clips = _clips()
    seen = set()
    for run in range(10):
        seen |= {c.path for c in few_shot_subset(clips, 1, seed=0, run=run, fold=1)}
    assert len(seen) >= 25  # 10 runs x 3 classes draws of 1; with replacement across runs expect ~29


def test_subset_argument_errors():
    with pytest.raises(ValueError, match="n_per_class"):
        few_shot_subset(_clips(), 0)
    with pytest.raises(ValueError, match="n_per_class"):
        few_shot_subset(_clips(), 2.5)


def test_rng_for_is_a_pure_function_of_its_parts():
    assert rng_for(1, "a").integers(0, 2**32, 4).tolist() == rng_for(1, "a").integers(0, 2**32, 4).tolist()
    assert rng_for(1, "a").integers(0, 2**32, 4).tolist() != rng_for(1, "b").integers(0, 2**32, 4).tolist()


# ---------------------------------------------------------------- episodes
def test_episode_support_distinct_up_to_five_and_query_per_class():
    by_class = {0: list(range(10)), 1: [10, 11, 12], 2: [13]}
    rng = np.random.default_rng(0)
    support, query = episode(by_class, n_support=5, n_query=5, rng=rng)
    sup = Counter(label for _, label in support)
    assert sup == {0: 5, 1: 3, 2: 1}
    for label, items in by_class.items():
        s = [c for c, lab in support if lab == label]
        assert len(set(s)) == len(s) and set(s) <= set(items)
        q = [c for c, lab in query if lab == label]
        assert len(q) == 5 and set(q) <= set(items)


def test_episode_reproducible_with_the_same_rng_seed():
    by_class = {0: list(range(10)), 1: list(range(10, 30))}
    a = episode(by_class, 5, 5, np.random.default_rng(7))
    b = episode(by_class, 5, 5, np.random.default_rng(7))
    c = episode(by_class, 5, 5, np.random.default_rng(8))
    assert a == b and a != c


def test_episode_errors():
    with pytest.raises(ValueError, match="n_support"):
        episode({0: [1]}, n_support=0)
    with pytest.raises(ValueError, match="class 1"):
        episode({0: [1], 1: []})
    with pytest.raises(ValueError, match="empty"):
        episode({})


def _grouped_clips(speakers=12, words=4, takes=2):
    return ClipList([Clip(path=f"/kw/w{w}/s{s}_nohash_{k}.wav", label=w, class_name=f"w{w}", fold=1, source_id=f"s{s}")
                     for s in range(speakers) for w in range(words) for k in range(takes)],
                    name="kw", classes=[f"w{w}" for w in range(words)])


def test_grouped_holdout_keeps_groups_whole_and_is_stratified():
    clips = _grouped_clips()
    pool, test = grouped_holdout(clips, seed=0)
    assert not {c.source_id for c in pool} & {c.source_id for c in test}
    assert sorted(pool + test, key=lambda c: c.path) == sorted(clips, key=lambda c: c.path)
    counts = Counter(c.label for c in test)
    assert set(counts) == {0, 1, 2, 3} and len(set(counts.values())) == 1 and counts[0] >= 24 // 3
    again, test_again = grouped_holdout(list(reversed(clips)), seed=0)
    assert {c.path for c in test_again} == {c.path for c in test}  # order of the input does not matter
    assert {c.path for c in grouped_holdout(clips, seed=1)[1]} != {c.path for c in test}
    assert isinstance(test, ClipList) and test.classes == clips.classes


def test_grouped_holdout_without_groups_takes_exactly_per_class():
    clips = _clips((9, 12, 30))
    pool, test = grouped_holdout(clips, per_class=2, seed=0)
    assert Counter(c.label for c in test) == {0: 2, 1: 2, 2: 2} and len(pool) == 51 - 6
    pool, test = grouped_holdout(clips, seed=0)  # a third of each class by default
    assert Counter(c.label for c in test) == {0: 3, 1: 4, 2: 10}


def test_grouped_holdout_refuses_a_single_group():
    clips = [Clip(f"/x/{i}.wav", i % 2, "ab"[i % 2], 1, "same") for i in range(6)]
    with pytest.raises(DataError, match="one group"):
        grouped_holdout(clips)


def test_shortfalls_and_actual_n():
    clips = _clips((5, 2, 3))
    sub = list(clips)
    assert shortfalls(sub, 3, clips.classes) == [("class1", 2)]
    assert n_per_class_actual(sub, 3) == 2
    assert n_per_class_actual(sub, 3, skipped=[[sub[-1].path, "truncated"]]) == 2
    assert n_per_class_actual(sub, 3, skipped=[sub[5].path]) == 1  # class1 loses one of its two
