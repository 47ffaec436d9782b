"""Sequential studies (melfront.study.sequential): the stopping rule's error rates by simulation, and the loop
around run_study with a stand-in trial function (decided cells get no more runs; a rerun resumes)."""
import numpy as np
import pytest

from melfront.errors import ParameterError, StudyError
from melfront.study import StudyConfig
from melfront.study.sequential import (SequentialRule, cell_decision, look_alphas, run_until_decided, simulate,
                                       spent_alpha)


def test_spending_function_is_increasing_and_spends_alpha_by_the_last_look():
    fractions = np.linspace(0.05, 1.0, 20)
    spent = [spent_alpha(t) for t in fractions]
    assert all(b > a for a, b in zip(spent, spent[1:]))
    assert spent[-1] == pytest.approx(0.05)
    rule = SequentialRule(max_runs=20)
    assert sum(look_alphas(rule.schedule, 20)) == pytest.approx(0.05)
    assert rule.alpha_at(3) < 1e-5 < rule.alpha_at(20)  # O'Brien-Fleming-type: strict early, lenient last


def test_equal_means_declare_a_difference_in_at_most_five_percent_of_studies():
    sim = simulate(0.0, 3.0, studies=400, seed=11)
    assert sim["found"] + sim["wrong_sign"] <= 0.05
    assert sim["found"] + sim["equivalent"] + sim["undecided"] + sim["wrong_sign"] == pytest.approx(1.0)


def test_three_equal_frontends_rarely_declare_one_worse():
    rule, rng, declared = SequentialRule(max_runs=12), np.random.default_rng(5), 0
    for _ in range(150):
        base = rng.uniform(0.4, 0.6, 12)
        values = {f: base + rng.normal(0, 0.03, 12) for f in "abc"}
        for runs in rule.schedule:
            dec = cell_decision({f: v[:runs] for f, v in values.items()}, rule.alpha_at(runs), rule.delta)
            if any(o["verdict"] == "worse" for o in dec["others"].values()):
                declared += 1
                break
            if dec["decided"]:
                break
    assert declared / 150 <= 0.05


def test_a_five_point_difference_with_std_three_is_found_in_most_studies_with_fewer_runs():
    sim = simulate(5.0, 3.0, studies=400, seed=12)
    assert sim["found"] >= 0.8
    assert sim["wrong_sign"] == 0.0
    # compute against Pons et al.'s fixed runs 20 / 10 / 5 (n <= 2 / 5-10 / >= 20): fewer than the 20 for small n
    assert sim["runs"] < sim["fixed"][2]
    print(f"5-point difference, std 3: found {sim['found']:.3f}, mean runs {sim['runs']:.1f} (fixed {sim['fixed']})")


def test_decision_equivalence_and_open():
    base = np.linspace(0.5, 0.6, 10)
    same = {"a": base, "b": base + np.tile([0.001, -0.001], 5)}
    assert cell_decision(same, alpha=0.01)["others"]["a"]["verdict"] == "within ±D"
    noisy = {"a": base, "b": base + np.array([0.05, -0.04, 0.03, -0.06, 0.02, 0.0, 0.04, -0.03, 0.01, -0.02])}
    dec = cell_decision(noisy, alpha=0.01)
    assert not dec["decided"] and list(dec["others"].values())[0]["verdict"] == "open"


def test_rule_settings_are_checked():
    with pytest.raises(ParameterError, match="--delta"):
        SequentialRule(delta=0)
    with pytest.raises(ParameterError, match="--max-runs"):
        SequentialRule(max_runs=0)


def _fake(clips, train_clips, test_clips, frontend, seed, **kw):
    n = len(train_clips) // 2
    noise = np.random.default_rng([seed, len(frontend)]).normal(0, 0.03)
    if n == 1:  # a clear difference: pcen 20 points better, the same draw for both
        return dict(accuracy=0.5 + 0.2 * (frontend == "pcen") + 0.01 * (seed % 5))
    return dict(accuracy=0.5 + noise)  # equal means, 3-point spread each


def _config(tmp_path):
    return StudyConfig(root=str(tmp_path / "synth"), n_per_class=[1, 2], frontends=["db", "pcen"],
                       test_folds="first", dataset_options=dict(n_classes=2, clips_per_class=6, duration=0.25,
                                                                sample_rate=4000, n_folds=2))


def test_runs_are_added_only_to_undecided_cells_and_a_rerun_resumes(tmp_path):
    rule = SequentialRule(max_runs=6, start=3, step=3)
    store = run_until_decided(_config(tmp_path), tmp_path / "study.db", rule=rule, trial_fn=_fake, quiet=True,
                              say=lambda *a: None)
    state = store.meta("sequential")
    assert state["rule"] == rule.as_dict()
    first, last = state["rounds"][0]["cells"], state["rounds"][-1]["cells"]
    assert first["sbcnn|1"]["status"] == "decided" and first["sbcnn|1"]["best"] == "pcen"
    assert first["sbcnn|2"]["status"] == "undecided"
    assert "sbcnn|1" not in last and last["sbcnn|2"]["status"] == "undecided at max runs"
    rows = store.rows()
    assert max(r["run"] for r in rows if r["n"] == 1) == 2  # decided after 3 runs: no more trials
    assert max(r["run"] for r in rows if r["n"] == 2) == 5  # undecided: grown to max runs
    count = len(rows)
    lines = []
    run_until_decided(_config(tmp_path), tmp_path / "study.db", rule=rule, trial_fn=_fake, quiet=True,
                      say=lines.append)
    assert len(store.rows()) == count and lines == []  # nothing left to decide, nothing run again
    with pytest.raises(StudyError, match="delta"):
        run_until_decided(_config(tmp_path), tmp_path / "study.db", rule=SequentialRule(delta=3, max_runs=6),
                          trial_fn=_fake, quiet=True, say=lambda *a: None)
