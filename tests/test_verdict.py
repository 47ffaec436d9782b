"""The report's verdict (melfront.report.verdict): best set per (model, n), the runs it would take, the line across
cells; how far learned parameters moved (melfront.report.movement); `melfront report` printing the verdict and
`melfront compare --until-decided` end to end with a stand-in trial function."""
import numpy as np
import pytest
from scipy import stats

import melfront.study.sequential as sequential
from melfront.cli import main
from melfront.report import write_report
from melfront.report.movement import movement, movement_lines
from melfront.report.verdict import cell_verdict, runs_needed, verdict_lines, verdicts
from melfront.study import ResultStore, StudyConfig, run_study

MEL = dict(sample_rate=4000, n_fft=256, hop_length=64, n_mels=16)


@pytest.mark.parametrize("std,delta", [(3.0, 2.0), (6.0, 2.0), (1.0, 4.0), (10.0, 1.0)])
def test_runs_needed_is_the_smallest_number_meeting_each_target(std, delta):
    ci, power = runs_needed(std, delta)
    half = lambda r: stats.t.ppf(0.975, r - 1) * std / np.sqrt(r)  # noqa: E731
    assert half(ci) <= delta and (ci == 2 or half(ci - 1) > delta)
    need = lambda r: ((stats.t.ppf(0.975, r - 1) + stats.t.ppf(0.8, r - 1)) * std / delta) ** 2  # noqa: E731
    assert power >= need(power) and (power == 2 or power - 1 < need(power - 1))
    assert runs_needed(2 * std, delta)[0] > ci


def _rows(n=1, runs=8, seed=0):
    """best: 'b'; 'a' 1 point below with a 4-point spread (not told apart); 'c' 15 points below (clearly worse)."""
    rng = np.random.default_rng(seed)
    rows = []
    for run in range(runs):
        base = rng.uniform(0.5, 0.6)
        for fe, acc in (("a", base - 0.01 + rng.normal(0, 0.04)), ("b", base), ("c", base - 0.15 + rng.normal(0, 0.01))):
            rows.append(dict(model="sbcnn", frontend=fe, n=n, fold=1, run=run, accuracy=acc))
    return rows


def test_cell_verdict_best_set_and_sentence():
    v = cell_verdict(_rows(), "sbcnn", 1, ["a", "b", "c"])
    assert v["best"] == "b" and [f for f, _ in v["tied"]] == ["a"] and [f for f, _ in v["below"]] == ["c"]
    line = verdict_lines([v])[0]
    assert line.startswith("sbcnn, n=1: **b**") and "not told apart from it: a (" in line and "below it: c (" in line
    assert "paired runs for a 95 % interval" in line and "80 % power" in line


def test_nothing_told_apart_says_why_and_the_line_across_cells():
    rows = [dict(r, accuracy=r["accuracy"] + (0.15 if r["frontend"] == "c" else 0.0)) for r in _rows(runs=3)]
    rows = [r for r in rows if r["frontend"] != "c"] + [dict(r, n=5) for r in _rows(n=5)]
    vs = verdicts(rows, ["a", "b", "c"])
    lines = verdict_lines(vs)
    assert "nothing can be told apart" in lines[0] and "3 paired runs, paired spread" in lines[0]
    assert lines[-1].startswith("Across the 2 cells") and "**b** (2 of 2)" in lines[-1]


def test_movement_says_when_a_trainable_frontend_barely_moved():
    rows = [dict(frontend="pcen(trainable=True)", learned={"alpha": [0.98 + 1e-4 * run], "delta": [2.0 + 0.009 * run]})
            for run in range(3)] + [dict(frontend="power", learned={"exponent": [0.6]})]
    moved = movement(rows, MEL)
    assert moved[("pcen(trainable=True)", "delta")]["largest"] == pytest.approx(0.009, rel=1e-3)
    lines = movement_lines(moved)
    assert any(line.startswith("pcen(trainable=True): every learned parameter stayed within 1 %") for line in lines)
    assert any(line.startswith("power: moved most in exponent (20 %") for line in lines)


def _fake_trial(clips, train_clips, test_clips, frontend, seed, **kw):
    noise = np.random.default_rng([seed, len(frontend)]).normal(0, 0.02)
    learned = {"alpha": [0.98], "delta": [2.0 + 1e-4 * (seed % 7)]} if frontend.startswith("pcen") else {}
    return dict(accuracy=0.6 + 0.1 * (frontend == "db") + noise, learned=learned)


def _config(tmp_path, **kw):
    values = dict(root=str(tmp_path / "synth"), n_per_class=[1], frontends=["db", "pcen(trainable=True)"],
                  test_folds="first", mel=MEL, dataset_options=dict(n_classes=2, clips_per_class=6, duration=0.25,
                                                                    sample_rate=4000, n_folds=2))
    return StudyConfig(**{**values, **kw})


def test_report_opens_with_the_verdict_and_report_prints_it(tmp_path, capsys):
    run_study(_config(tmp_path, runs={"default": 4}), tmp_path / "study.db", trial_fn=_fake_trial, quiet=True)
    page = write_report(tmp_path / "study.db", tmp_path / "report", examples=False)
    md = (tmp_path / "report" / "report.md").read_text()
    assert md.index("## Verdict") < md.index("## Accuracy") and "sbcnn, n=1: **db**" in md
    assert "stayed within 1 % of its start" in md
    text = page.read_text()
    assert text.index("<h2>Verdict</h2>") < text.index("<table") and "<strong>db</strong>" in text
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r2"), "--delta", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sbcnn, n=1: db (") and "report:" in out
    assert main(["report", str(tmp_path), "--delta", "-1"]) == 2


def test_compare_until_decided_end_to_end(tmp_path, monkeypatch, capsys):
    real = sequential.run_study
    monkeypatch.setattr(sequential, "run_study", lambda *a, **k: real(*a, **{**k, "trial_fn": _fake_trial}))
    out = tmp_path / "study"
    args = ["compare", "-o", str(out), "--root", str(tmp_path / "synth"), "--frontends", "db,pcen(trainable=True)",
            "--n", "1", "--until-decided", "--max-runs", "6", "--jobs", "1", "--quiet", "--epochs", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "round 1: sbcnn n=1:" in printed and "sbcnn, n=1: db (" in printed
    state = ResultStore(out / "study.db").meta("sequential")
    assert state["rule"]["max_runs"] == 6 and state["rounds"][-1]["cells"]["sbcnn|1"]["status"] != "undecided"
    md = (out / "report" / "report.md").read_text()
    assert "Sequential study:" in md and "Lan & DeMets" in md
    assert main(args + ["--runs", "3"]) == 2
    assert "--runs and --until-decided" in capsys.readouterr().err
    assert main(["compare", "-o", str(out), "--max-runs", "4", "--quiet"]) == 2
    assert "--max-runs only applies to --until-decided" in capsys.readouterr().err


def test_small_measured_differences_are_said_to_be_small():
    rows = [dict(model="m", frontend=f, n=5, fold="test", run=r, accuracy=0.5 + (0.001 * r if f == "a" else 0.0))
            for r in range(4) for f in "ab"]
    line = verdict_lines(verdicts(rows, ["a", "b"]))[0]
    assert "already lie within ±2 points" in line and "would take" not in line
