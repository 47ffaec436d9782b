"""The study report: every number against an independent computation (scipy directly), the sections that account
for failures, skipped clips, shortfalls, derived settings and incomplete cells, read-only opening, --compare checks."""
import hashlib
import sqlite3

import numpy as np
import pytest
from scipy import stats

from melfront.cli import main
from melfront.errors import ParameterError, StudyError
from melfront.plotting import plot_accuracy_vs_n
from melfront.report import CONFIDENCE, difference_tables, holm, summary_table, write_report
from melfront.study import ResultStore, StudyConfig, Trial

FRONTENDS = ["logeps", "loglearn", "db"]
RUNS = {"1": 1, "5": 4, "10": 8}   # one pair (no test), a t-test only, a t-test and a Wilcoxon test
N_CLASSES = 3


def make_store(path):
    """A fixture study: known accuracies, one failed trial, skipped clips, a shortfall and derived settings."""
    config = StudyConfig(dataset="synth", frontends=FRONTENDS, models=["sbcnn", "vgg"], n_per_class=[1, 5, 10],
                         runs=RUNS, test_folds="first", compare=[["logeps", "loglearn"], ["logeps", "db"]],
                         mel=dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16))
    store = ResultStore(path)
    store.save_config(config)
    rng = np.random.default_rng(1)
    acc = {}
    for model in config.models:
        for n in config.n_per_class:
            for run in range(config.runs_for(n)):
                base = 0.3 + 0.04 * n + rng.normal(0, 0.05)
                for fe, gain in (("logeps", 0.0), ("loglearn", 0.06), ("db", 0.01)):
                    trial = Trial(1, n, run, model, fe)
                    if (model, fe, n, run) == ("vgg", "db", 10, 3):
                        store.add_failure(trial.key(config), trial, config,
                                          MemoryError("out of memory in epoch 2, batch 7"))
                        continue
                    a = float(np.clip(base + gain + rng.normal(0, 0.03), 0, 1))
                    confusion = np.eye(N_CLASSES, dtype=int).tolist()
                    store.add(trial.key(config), trial, config,
                              dict(accuracy=a, map=a - 0.02, train_seconds=1.0, confusion=confusion,
                                   n_per_class_actual=n if n < 10 else 9))
                    acc[(model, fe, n, run)] = a
    store.set_meta("skipped_clips", [["/data/bad one.wav", "not a readable audio file (RIFF header)"],
                                     ["/data/empty.wav", "no samples"]])
    store.set_meta("cell_shortfalls", [dict(fold=1, n=10, run=r, **{"class": "dog"}, available=9) for r in range(8)])
    store.set_meta("derived_settings", {"mel": {"sample_rate": {"value": 8000, "from": "all 27 clips are 8000 Hz"}},
                                        "train": {"optimizer": {"value": "adam", "from": "few-data recipe"}}})
    return config, acc


@pytest.fixture
def fixture(tmp_path):
    config, acc = make_store(tmp_path / "study.db")
    return tmp_path / "study.db", config, acc


def reference_holm(p):
    """Holm's adjusted p-values straight from the definition: for the k-th smallest (1-based) of m,
    max over j <= k of min(1, (m - j + 1) * p_(j))."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    out = np.empty(m)
    for k in range(m):
        out[order[k]] = max(min(1.0, (m - j) * p[order[j]]) for j in range(k + 1))
    return out


def test_holm_matches_the_definition():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 12))
        np.testing.assert_allclose(holm(p), reference_holm(p), rtol=0, atol=1e-12)
    assert holm([]) == [] and np.isnan(holm([float("nan"), 0.2])[0]) and holm([float("nan"), 0.2])[1] == 0.2


def test_every_difference_number_against_scipy(fixture):
    path, config, acc = fixture
    rows = ResultStore.open_readonly(path).rows()
    pairs = [("logeps", "loglearn"), ("logeps", "db")]
    tables = difference_tables(rows, pairs)
    cells, p_t, p_w = [], [], []
    for a, b in pairs:
        for model in config.models:
            for n in config.n_per_class:
                runs = [r for r in range(config.runs_for(n)) if (model, a, n, r) in acc and (model, b, n, r) in acc]
                x = np.array([acc[(model, a, n, r)] for r in runs])
                y = np.array([acc[(model, b, n, r)] for r in runs])
                d = tables[(a, b)][model][n]
                assert d["count"] == len(runs) and d["mean"] == pytest.approx(np.mean(y - x), abs=1e-12)
                if len(runs) == 1:  # one pair: no interval, no test
                    assert d["ci"] is None and np.isnan(d["p"]) and np.isnan(d["p_wilcoxon"])
                    continue
                ttest = stats.ttest_rel(y, x)
                ci = ttest.confidence_interval(CONFIDENCE)
                assert d["ci"] == pytest.approx((ci.low, ci.high), abs=1e-12)
                assert d["p"] == pytest.approx(ttest.pvalue, rel=1e-9)
                assert d["std"] == pytest.approx(np.std(y - x, ddof=1))
                if len(runs) >= 6:
                    assert d["p_wilcoxon"] == pytest.approx(stats.wilcoxon(y, x).pvalue, rel=1e-9)
                    p_w.append(d["p_wilcoxon"])
                else:
                    assert np.isnan(d["p_wilcoxon"])
                cells.append(d)
                p_t.append(d["p"])
    # vgg/db at n=10 lost one run: 7 pairs there, 8 elsewhere
    assert tables[("logeps", "db")]["vgg"][10]["count"] == 7 and tables[("logeps", "db")]["sbcnn"][10]["count"] == 8
    # Holm over every comparison of the report (both tables), each test family on its own
    np.testing.assert_allclose([d["p_holm"] for d in cells], reference_holm(p_t), atol=1e-12)
    np.testing.assert_allclose([d["p_wilcoxon_holm"] for d in cells if not np.isnan(d["p_wilcoxon"])],
                               reference_holm(p_w), atol=1e-12)


def test_summary_numbers_and_cell_text(fixture, tmp_path):
    path, config, acc = fixture
    rows = ResultStore.open_readonly(path).rows()
    table = summary_table(rows)
    mean, std, count = table[("vgg", "db")][10]
    vals = [acc[("vgg", "db", 10, r)] for r in range(8) if r != 3]
    assert count == 7 and mean == pytest.approx(np.mean(vals)) and std == pytest.approx(np.std(vals, ddof=1))
    write_report(path, tmp_path / "r", examples=False)
    md = (tmp_path / "r" / "report.md").read_text()
    accuracy = md.split("## Accuracy")[1].split("##")[0]
    lines = {line.split("|")[1].strip() + "/" + line.split("|")[2].strip(): line for line in accuracy.splitlines()
             if line.startswith("| sbcnn") or line.startswith("| vgg")}
    n1 = lines["vgg/db"].split("|")[3]    # n=1: one run: no ±
    assert "±" not in n1 and f"{100 * acc[('vgg', 'db', 1, 0)]:.1f}" in n1
    assert f"{100 * mean:.1f} ± {100 * std:.1f} †7/8 ‡" in lines["vgg/db"]   # incomplete and short
    assert "†" not in lines["sbcnn/db"] and "‡" in lines["sbcnn/db"]
    diff = next(line for line in md.splitlines() if line.startswith("| sbcnn |") and "pairs" in line)
    one_pair = diff.split("|")[2]
    assert "[" not in one_pair and "p " not in one_pair and "1 pair" in one_pair
    assert "8 pairs" in diff.split("|")[4] and "W " in diff.split("|")[4] and "W " not in diff.split("|")[3]
    assert "Holm-adjusted for the 12 comparisons" in md  # 2 pairs x 2 models x 3 n


def test_report_accounts_for_everything(fixture, tmp_path):
    path, config, _ = fixture
    page = write_report(path, tmp_path / "r", examples=False)
    md = (tmp_path / "r" / "report.md").read_text()
    text = page.read_text()
    assert "77 finished trials of 78 planned, 1 failed" in md  # (1 + 4 + 8) runs x 2 models x 3 frontends
    assert "Runs per cell (planned; runs × 1 test fold): n=1: 1, n=5: 4, n=10: 8" in md
    assert "## Failed trials (1)" in md and "MemoryError: out of memory in epoch 2, batch 7" in md
    assert "vgg/db n=10" in md
    assert "## Skipped clips (2)" in md and "/data/bad one.wav: not a readable audio file" in md
    assert "## Cell shortfalls (8)" in md and "| 1 | 10 | dog | 9 | 0, 1, 2, 3, 4, 5, 6, 7 |" in md
    assert "## Settings derived from the data" in md and "| mel.sample_rate | 8000 | all 27 clips are 8000 Hz |" in md
    assert "## Incomplete cells (1)" in md and "| vgg | db | 10 | 7 | 1 | 8 |" in md
    assert "<p class='warn'>" in text and "<small>" in text and 'class="sig"' in text


def test_report_opens_the_store_read_only(fixture, tmp_path):
    path, _, _ = fixture
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    write_report(path, tmp_path / "elsewhere", examples=False)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # (sqlite may add its -shm/-wal side files)
    # an SQLite file that is not a study: a clear error, and the file untouched (no tables, no WAL)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    data = other.read_bytes()
    with pytest.raises(StudyError, match="other.db"):
        write_report(other, tmp_path / "r2")
    assert other.read_bytes() == data and not (tmp_path / "other.db-wal").exists()
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(path.read_bytes()[:100] + b"\x00garbage" * 500)
    assert main(["report", str(corrupt)]) == 2


def test_report_compare_is_checked_against_the_study(fixture, tmp_path, capsys):
    path, _, _ = fixture
    for bad in (["db"], ["db", "pcen"], ["db", "db"]):
        with pytest.raises(ParameterError, match="the study's frontends: logeps, loglearn, db"):
            write_report(path, tmp_path / "r", compare=[bad])
    assert not (tmp_path / "r").exists()  # refused before anything is drawn
    assert main(["report", str(path), "--compare", "db", "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--compare db: give two frontends as A,B" in err and "logeps, loglearn, db" in err
    assert main(["report", str(path), "--compare", "loglearn,db", "-o", str(tmp_path / "r")]) == 0
    assert "## Difference: db − loglearn" in (tmp_path / "r" / "report.md").read_text()


def test_compare_checks_its_pairs_before_training(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["compare", "-o", str(out), "--frontends", "db,logeps", "--compare", "db", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "['db']" in err and "pair" in err and err.count("\n") == 1  # (StudyConfig's check: not a pair)
    assert main(["compare", "-o", str(out), "--frontends", "db,logeps", "--compare", "db,power", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "'power' not in the study; the study's frontends: db, logeps" in err and err.count("\n") == 1
    assert not (out / "study.db").exists()


def test_accuracy_plot_shows_chance_and_keeps_bands_in_range(tmp_path):
    table = {("sbcnn", "db"): {1: (0.05, 0.2, 4), 5: (0.97, 0.1, 4)}, ("sbcnn", "pcen"): {1: (0.5, 0.0, 1)}}
    fig = plot_accuracy_vs_n(table, tmp_path / "acc.png", ["db", "pcen"], chance=1 / 3)
    ax = fig.axes[0]
    chance = [line for line in ax.lines if line.get_label().startswith("chance")]
    assert len(chance) == 1 and np.allclose(chance[0].get_ydata(), 100 / 3)
    ys = np.concatenate([c.get_paths()[0].vertices[:, 1] for c in ax.collections])
    assert ys.min() == 0.0 and ys.max() == 100.0  # clipped, not -15 % or 107 %
    lo, hi = ax.get_ylim()
    assert 0.0 <= lo and hi <= 100.0
