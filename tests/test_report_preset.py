"""The report of a preset study (the "preset" meta): the (reduced) title, the Protocol section, the paper's claims
beside the measured paired differences (known differences, so every number is known), the MAP headline, and
no change at all without the meta."""
import numpy as np
import pytest

from melfront.report import difference_family, family_size, write_report
from melfront.report.claims import claim_comparisons, preset_meta, reading
from melfront.study import ResultStore, StudyConfig, Trial

RUNS = {"1": 1, "5": 4}   # n=1: one pair (no interval), n=5: four pairs
# per frontend: (accuracy offset, map offset) from db's, per run index (logeps alternates: pure noise)
ACC_GAIN = {"db": 0.0, "pcen": 0.02}
MAP_GAIN = {"db": 0.0, "pcen": 0.05}


def logeps_gain(run):
    return 0.01 if run % 2 == 0 else -0.01


def make_store(path, preset=None):
    config = StudyConfig(dataset="synth", frontends=["db", "pcen", "logeps"], models=["sbcnn"], n_per_class=[1, 5],
                         runs=RUNS, test_folds="first", compare=[["db", "pcen"]],
                         mel=dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16))
    store = ResultStore(path)
    store.save_config(config)
    if preset is not None:
        store.set_meta("preset", preset)
    rng = np.random.default_rng(3)
    for n in config.n_per_class:
        for run in range(config.runs_for(n)):
            acc, ap = 0.4 + rng.uniform(0, 0.2), 0.3 + rng.uniform(0, 0.2)
            for fe in config.frontends:
                gain = logeps_gain(run)
                a = acc + ACC_GAIN.get(fe, gain)
                m = ap + MAP_GAIN.get(fe, gain)
                trial = Trial(1, n, run, "sbcnn", fe)
                store.add(trial.key(config), trial, config, dict(accuracy=a, map=m, train_seconds=1.0))
    return config


PRESET = dict(
    name="merlin", title="merlin (reduced)", citation="Example et al. 2020, Sec. 4", reproduces="Table 2, PCEN vs dB",
    reduced=["one test fold instead of five: the data has one (test folds 1 of 5)"], overrides=["runs: 5 -> 4"],
    headline_metric="map", notes=["n = all: 5, the largest n every class has in every training pool"],
    claims=[{"pair": ["db", "pcen"], "text": "PCEN beats dB in MAP (Sec. 4.2)", "metric": "map"},
            {"pair": ["db", "pcen"], "text": "PCEN beats dB in accuracy (Sec. 4.3)", "metric": "accuracy"},
            {"pair": ["pcen", "db"], "text": "dB is worse than PCEN (Table 2)", "metric": "map"},
            {"pair": ["db", "logeps"], "text": "log-EPS is about equal to dB (Sec. 5)", "metric": "accuracy"},
            {"pair": ["db", "mst"], "text": "the MST frontend beats dB (Sec. 6)", "metric": "accuracy"}],
    settings=[{"key": "mel.sample_rate", "value": 22050, "source": "reference code src/config_file.py",
               "status": "read"},
              {"key": "runs", "value": 5, "source": "paper Sec. 3", "status": "recalled"}])


@pytest.fixture(scope="module")
def preset_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("preset")
    make_store(folder / "study.db", PRESET)
    page = write_report(folder / "study.db", folder / "report", examples=False)
    return folder, (folder / "report" / "report.md").read_text(), page.read_text()


def section(md, heading):
    return md.split(f"## {heading}")[1].split("\n## ")[0]


def claim_block(md, i):
    return md.split(f"**Claim {i}")[1].split("**Claim ")[0]


def test_reduced_title_and_protocol(preset_report):
    _, md, page = preset_report
    assert md.startswith("# merlin (reduced): melfront preset study on synth")
    assert "<title>merlin (reduced): melfront preset study on synth</title>" in page
    protocol = section(md, "Protocol")
    assert "Example et al. 2020, Sec. 4" in protocol and "Table 2, PCEN vs dB" in protocol
    assert "- one test fold instead of five" in protocol and "- runs: 5 -> 4" in protocol
    assert "- n = all: 5, the largest n every class has" in protocol
    assert "Full protocol, as published" not in protocol and "Reduced protocol: 1 declared reduction" in protocol
    assert "| mel.sample_rate | 22050 | read | reference code src/config_file.py |" in protocol
    assert "| runs | 5 | recalled | paper Sec. 3 |" in protocol
    assert "<p class='warn'>Reduced protocol" in page


def test_claims_carry_the_known_differences(preset_report):
    folder, md, page = preset_report
    claims = section(md, "The paper's claims beside this study")
    # the family: the compare table (db, pcen in MAP; claims 1 and 3 are the same test) + claims in accuracy
    # (db, pcen) and (db, logeps); each over n = 1, 5: 3 comparisons x 2 cells
    assert "Holm-adjusted for the 6 comparisons" in claims and "Holm-adjusted for the 6 comparisons" in md.split(
        "## Difference")[1]
    first = claim_block(claims, 1)
    assert "> PCEN beats dB in MAP (Sec. 4.2)" in first
    assert "| sbcnn | 5 | +5.0 [+5.0, +5.0] | 4 | <0.001 | pcen better by 5.0 points, CI excludes 0" in first
    assert "| sbcnn | 1 | +5.0 | 1 | n/a | one pair only (+5.0 points): no interval" in first
    assert "pcen better in 1, db better in 0" in first
    second = claim_block(claims, 2)   # the same pair in accuracy: +2.0 on every pair
    assert "| sbcnn | 5 | +2.0 [+2.0, +2.0] | 4 | <0.001 | pcen better by 2.0 points" in second
    third = claim_block(claims, 3)    # the reversed pair: B - A = -5.0, A better
    assert "| sbcnn | 5 | -5.0 [-5.0, -5.0] | 4 | <0.001 | pcen better by 5.0 points" in third
    assert "pcen better in 1" in third.split("Over ")[1] and "db better in 0" in third.split("Over ")[1]
    fourth = claim_block(claims, 4)   # +1, -1, +1, -1: mean 0 within noise, never "better"
    row = next(line for line in fourth.splitlines() if line.startswith("| sbcnn | 5 |"))
    assert "+0.0 [" in row and "difference within noise (CI spans 0)" in row and "better" not in row
    assert "within noise in 1" in fourth
    fifth = claim_block(claims, 5)
    assert "Not measured here: mst not among this study's frontends" in fifth and "| sbcnn |" not in fifth
    assert "<blockquote>The paper: PCEN beats dB in MAP (Sec. 4.2)</blockquote>" in page


def test_claims_numbers_are_the_report_machinery(preset_report):
    folder, md, _ = preset_report
    rows = ResultStore.open_readonly(folder / "study.db").rows()
    comparisons = [("db", "pcen", "map")] + claim_comparisons(PRESET, ["db", "pcen", "logeps"])
    family = difference_family(rows, comparisons)
    noise = family[("db", "logeps", "accuracy")]["sbcnn"][5]
    assert noise["count"] == 4 and noise["mean"] == pytest.approx(0.0, abs=1e-12)
    lo, hi = noise["ci"]
    row = next(line for line in claim_block(md, 4).splitlines() if line.startswith("| sbcnn | 5 |"))
    assert f"[{100 * lo:+.1f}, {100 * hi:+.1f}]" in row and f"| {noise['p_holm']:.3f} |" in row
    assert family[("db", "pcen", "map")]["sbcnn"][5]["mean"] == pytest.approx(0.05)
    assert family_size(family) == 6  # (pcen, db, map) is (db, pcen, map) reversed: one test
    reversed_ = family[("pcen", "db", "map")]["sbcnn"][5]
    assert reversed_["mean"] == pytest.approx(-0.05) and reversed_["p_holm"] == family[("db", "pcen", "map")][
        "sbcnn"][5]["p_holm"]


def test_map_is_the_headline(preset_report):
    folder, md, page = preset_report
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## Verdict", "## The study"]  # the verdict (in the headline metric) opens the report
    assert "sbcnn, n=5: **pcen** (" in section(md, "Verdict")
    headings = headings[2:]
    assert headings[0] == "## Protocol"
    assert headings[1] == "## Macro mean average precision (%), mean ± std over runs and folds — the headline metric"
    assert headings[2] == "## Accuracy (%), mean ± std over runs and folds"
    assert headings[3] == "## Difference: pcen − db (macro MAP)"
    diff = section(md, "Difference: pcen − db (macro MAP)")
    assert diff.startswith("\n\nMacro MAP of **pcen** minus **db**") and "+5.0 [+5.0, +5.0] *" in diff
    assert "Headline metric, as the preset's paper: macro mean average precision" in md
    assert md.index("Macro MAP against training-set size (the headline metric)") < md.index("Accuracy against")
    assert page.index("alt='Macro MAP against") < page.index("alt='Accuracy against")
    assert (folder / "report" / "map_vs_n.png").exists()


def test_full_protocol_and_no_meta(tmp_path):
    full = dict(PRESET, title="pons2019", name="pons2019", reduced=[], overrides=[], headline_metric="accuracy",
                claims=[])
    make_store(tmp_path / "full.db", full)
    write_report(tmp_path / "full.db", tmp_path / "full", examples=False)
    md = (tmp_path / "full" / "report.md").read_text()
    assert md.startswith("# pons2019: melfront preset study on synth") and "(reduced)" not in md
    assert "Full protocol, as published." in section(md, "Protocol")
    assert "claims beside" not in md  # no claims stated: no section
    assert "## Accuracy (%), mean ± std over runs and folds — the headline metric" in md
    assert "## Difference: pcen − db\n" in md and "+2.0 [+2.0, +2.0] *" in md
    noted = dict(full, claims_note="The source's results were not available here.")
    make_store(tmp_path / "noted.db", noted)
    write_report(tmp_path / "noted.db", tmp_path / "noted", examples=False)
    said = section((tmp_path / "noted" / "report.md").read_text(), "The paper's claims beside this study")
    assert said.strip() == "The source's results were not available here."  # no claim: the report says why
    make_store(tmp_path / "plain.db")
    write_report(tmp_path / "plain.db", tmp_path / "plain", examples=False)
    plain = (tmp_path / "plain" / "report.md").read_text()
    assert plain.startswith("# melfront study: synth\n")
    assert "## Protocol" not in plain and "claims beside" not in plain and "headline" not in plain.lower()
    headings = [line for line in plain.splitlines() if line.startswith("## ")][2:]  # after the verdict and the study
    assert headings[:3] == ["## Accuracy (%), mean ± std over runs and folds",
                            "## Macro mean average precision (%), mean ± std over runs and folds",
                            "## Difference: pcen − db"]
    assert "Holm-adjusted for the 2 comparisons" in plain


def test_reading_never_claims_more_than_the_interval():
    # the interval excludes 0 but Holm's adjustment does not hold: said, and not called better
    kind, text = reading(dict(mean=0.03, std=0.02, count=5, ci=(0.005, 0.055), p_holm=0.2), "db", "pcen")
    assert kind == "unadjusted" and "not after Holm's adjustment" in text and "not shown beyond noise" in text
    assert reading(dict(mean=0.0, std=0.0, count=4, ci=(0.0, 0.0), p_holm=1.0), "db", "pcen")[0] == "none"
    assert reading(dict(mean=-0.04, std=0.01, count=6, ci=(-0.05, -0.03), p_holm=0.01), "db", "pcen") == (
        "a", "db better by 4.0 points, CI excludes 0 (Holm p 0.010)")
    assert reading(None, "db", "pcen")[0] == "untested"
    # a malformed meta is read without error; its claims say why they are not measured
    meta = preset_meta({"name": "x", "claims": [{"pair": ["db"], "text": "t"}, "free text"], "reduced": "one"})
    assert meta["reduced"] == ["one"] and claim_comparisons(meta, ["db", "pcen"]) == []
