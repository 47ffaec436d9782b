"""`melfront compare` end to end: the quick profile's grid (shortened) on the built-in synthetic set, then the report."""
import json

import numpy as np
import pytest

from melfront.cli import main
from melfront.study import PROFILES, ResultStore


def test_quick_profile_grid_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MELFRONT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "study"
    args = ["compare", "-o", str(out), "--n", "2", "--runs", "1", "--epochs", "2", "--jobs", "1", "--quiet"]
    assert main(args) == 0
    rows = ResultStore(out / "study.db").rows()
    frontends = PROFILES["quick"]["frontends"]
    assert sorted(r["frontend"] for r in rows) == sorted(frontends)
    assert all(r["n"] == 2 and r["model"] == "sbcnn" for r in rows)
    opts = PROFILES["quick"]["dataset_options"]
    assert {r["metrics"]["n_train"] for r in rows} == {2 * opts["n_classes"]}
    # the quick profile tests on fold 1 of 5: a fifth of every class; accuracy is read off the confusion matrix
    n_test = opts["n_classes"] * opts["clips_per_class"] // 5
    for r in rows:
        confusion = np.array(r["metrics"]["confusion"])
        assert confusion.shape == (opts["n_classes"],) * 2 and confusion.sum() == r["metrics"]["n_test"] == n_test
        assert r["accuracy"] == pytest.approx(np.trace(confusion) / n_test) and r["metrics"]["epochs"] == 2
    learned = {r["frontend"]: r["learned"] for r in rows}
    assert learned["logeps"] == {} and set(learned["loglearn"]) >= {"alpha", "beta"}
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["epochs"] == 2 and saved["dataset"] == "synth"
    html = (out / "report" / "report.html").read_text()
    assert "loglearn − logeps" in html and "data:image/png;base64," in html
    capsys.readouterr()
    # the same command again resumes: nothing is retrained, nothing duplicated
    assert main(args[:-1]) == 0
    assert "5 trials (5 already done)" in capsys.readouterr().out
    assert len(ResultStore(out / "study.db").rows()) == len(frontends)


def test_compare_rejects_unknown_frontend(tmp_path, capsys):
    assert main(["compare", "-o", str(tmp_path / "s"), "--frontends", "db,nope", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("melfront compare: error: ") and "unknown frontend 'nope'" in err and err.count("\n") == 1
