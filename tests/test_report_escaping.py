"""report.md and report.html write hostile class and file names as inert text, and no absolute data paths."""
import re

from melfront.report import write_report
from melfront.report.sections import md_escape, md_table, short_paths
from melfront.study import ResultStore, StudyConfig, Trial

EVIL_CLASS = "<img src=x onerror=alert(1)>\n# Owned [click](javascript:alert(1))"
EVIL_FILE = "/home/victim/data/evil\n## [x](javascript:alert(2))/<script>a.wav"


def _store(tmp_path):
    config = StudyConfig(dataset="synth", frontends=["logeps", "loglearn"], models=["sbcnn"], n_per_class=[1],
                         runs={"default": 2}, compare=[["logeps", "loglearn"]])
    store = ResultStore(tmp_path / "study.db")
    store.save_config(config)
    for run in range(2):
        for fe, acc in (("logeps", 0.4 + run / 10), ("loglearn", 0.5 + run / 10)):
            trial = Trial(1, 1, run, "sbcnn", fe)
            store.add(trial.key(config), trial, config, dict(accuracy=acc, map=acc))
    bad = Trial(1, 1, 2, "sbcnn", "logeps")
    store.add_failure(bad.key(config), bad, config, f"AudioError: {EVIL_FILE}: truncated <b>")
    store.set_meta("skipped_clips", [[EVIL_FILE, f"AudioError: {EVIL_FILE}: empty file"],
                                     ["/srv/corpus/dog/1-100.wav", "bad header"]])
    store.set_meta("cell_shortfalls", [dict(fold=1, n=1, run=0, **{"class": EVIL_CLASS}, available=0)])
    return tmp_path / "study.db"


def test_report_md_is_inert_and_names_no_data_paths(tmp_path):
    path = _store(tmp_path)
    write_report(path, tmp_path / "report", examples=False)
    md = (tmp_path / "report" / "report.md").read_text()
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<img" not in md and "<script" not in md and "<b>" not in md
    assert not re.search(r"(?<!\\)\]\(javascript:", md) and "\\[click\\]" in md  # escaped: no link
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert not any("Owned" in h or "javascript" in h for h in headings), headings
    for text in (md, page):
        assert "/home/victim" not in text and "/srv/corpus" not in text
        assert "…/dog/1-100.wav" in text
    assert "<img src=x" not in page and "<script>" not in page and "&lt;img src=x" in page


def test_md_escape_and_short_paths():
    assert md_escape("a|b`c\\d") == "a\\|b\\`c\\\\d" and md_escape("x\ny") == "x y"
    assert short_paths("see /a/b/c/d.wav and n=1/2") == "see …/c/d.wav and n=1/2"
    assert md_table(["<h>"], [["[a](javascript:x)"]]).splitlines() == ["| &lt;h> |", "|---|",
                                                                      "| \\[a\\](javascript:x) |"]
    assert not re.search(r"(?m)^#", md_table(["c"], [["x\n# y"]]))
