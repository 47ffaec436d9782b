"""The study report: tables of mean ± std, paired differences with confidence intervals and adjusted p-values,
what did not go to plan (failed trials, skipped clips, short cells, incomplete cells), and plots.

``write_report(store_path, out_dir)`` writes ``report.md``, a self-contained ``report.html`` (pictures
embedded) and the PNGs. Tables follow Pons, Serrà & Serra (2019): accuracy by model x frontend x n
(their Tables 1 and 3) and the difference between two frontends by model x n (Tables 2 and 4). Every
frontend of a study is trained on the same few-data subsets, so a difference is *paired* over matching
(fold, run) trials: its mean with a t-based 95 % confidence interval, a paired t-test, a Wilcoxon
signed-rank test as well from :data:`WILCOXON_MIN_PAIRS` pairs on (scipy.stats), and p-values adjusted
for the number of comparisons in the report (Holm 1979, :func:`holm`).
"""
from __future__ import annotations

import html
import math
from collections import defaultdict
from pathlib import Path

from ..errors import MelfrontError, ParameterError, StudyError
from ..frontends import frontend as build_frontend
from ..plotting import plot_accuracy_vs_n, plot_learned_parameters, show_clips
from ..study import ResultStore, StudyConfig, load_clips
from ..train import DEFAULT_MEL, frontend_common
from . import claims
from .sections import (account_sections, html_table, md_table, planned_runs, run_counts, settings_section,
                       write_pages)
from .stats import CONFIDENCE, mean_std, p_text  # CONFIDENCE: coverage of a paired difference's CI
from .differences import (SIGNIFICANCE, WILCOXON_MIN_PAIRS, _ROWS, difference_family, difference_table,  # noqa: F401
                          difference_tables, family_size, holm, paired_difference)
from .movement import movement, movement_note
from .verdict import DELTA, sequential_planned, store_verdict, verdict_section, verdicts

__all__ = ["write_report", "summary_table", "difference_table", "difference_tables", "difference_family",
           "family_size", "paired_difference", "holm",
           "check_compare", "study_to_report", "SIGNIFICANCE", "CONFIDENCE", "WILCOXON_MIN_PAIRS"]


def summary_table(rows, metric: str = "accuracy") -> dict:
    """``{(model, frontend): {n: (mean, std, count)}}`` of a metric ("accuracy" or "map"); std is 0 for one run.

    >>> mean, std, count = summary_table(_ROWS)[("sbcnn", "a")][1]
    >>> round(mean, 3), round(std, 3), count
    (0.55, 0.05, 3)
    """
    groups = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["frontend"], r["n"])].append(r[metric])
    table = defaultdict(dict)
    for (model, fe, n), vals in groups.items():
        m, s = mean_std(vals)
        table[(model, fe)][n] = (m, s, len(vals))
    return dict(table)


def check_compare(pairs, frontends) -> list[tuple[str, str]]:
    """The ``--compare`` pairs as tuples, each two different frontends of the study, else a
    :class:`~melfront.errors.ParameterError` listing the study's frontends.

    >>> check_compare([["db", "pcen"]], ["db", "pcen", "power"])
    [('db', 'pcen')]
    >>> check_compare([["db"]], ["db", "pcen"])
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: --compare db: give two frontends as A,B; the study's frontends: db, pcen
    """
    known = ", ".join(frontends)
    out = []
    for pair in pairs:
        pair = [pair] if isinstance(pair, str) else list(pair)
        text = ",".join(str(p) for p in pair)
        if len(pair) != 2 or pair[0] == pair[1]:
            raise ParameterError(f"--compare {text}: give two frontends as A,B; the study's frontends: {known}")
        missing = [p for p in pair if p not in frontends]
        if missing:
            raise ParameterError(f"--compare {text}: {', '.join(map(repr, missing))} not in the study; "
                                 f"the study's frontends: {known}")
        out.append((pair[0], pair[1]))
    return out


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
_fmt_p = p_text


def _fmt_cell(mean, std, count, planned, short) -> str:
    if math.isnan(mean):
        return "-"
    text = f"{100 * mean:.1f}" if count < 2 else f"{100 * mean:.1f} ± {100 * std:.1f}"
    if planned and count < planned:
        text += f" †{count}/{planned}"
    return text + (" ‡" if short else "")


def _fmt_diff(d) -> tuple[str, str, bool]:
    """``(main line, details line, significant)`` of one difference cell."""
    if d is None:
        return "-", "", False
    if d["count"] < 2:
        return f"{100 * d['mean']:+.1f}", "1 pair", False
    sig = not math.isnan(d["p_holm"]) and d["p_holm"] < SIGNIFICANCE
    lo, hi = d["ci"]
    main = f"{100 * d['mean']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]{' *' if sig else ''}"
    details = f"{d['count']} pairs, p {_fmt_p(d['p_holm'])}"
    if not math.isnan(d["p_wilcoxon_holm"]):
        details += f", W {_fmt_p(d['p_wilcoxon_holm'])}"
    return main, details, sig


def _summary_grid(rows, metric, frontends, planned, short):
    table = summary_table(rows, metric)
    ns = sorted({r["n"] for r in rows})
    header = ["model", "frontend"] + [f"n={n}" for n in ns]
    rank = {f: i for i, f in enumerate(frontends)}
    body = []
    for (model, fe) in sorted(table, key=lambda k: (k[0], rank.get(k[1], len(rank)), k[1])):
        cells = [_fmt_cell(*table[(model, fe)][n], planned.get(n), (model, fe, n) in short)
                 if n in table[(model, fe)] else "-" for n in ns]
        body.append([model, fe] + cells)
    return header, body


def _diff_grid(table, ns):
    header = ["model"] + [f"n={n}" for n in ns]
    md_body, html_body, marks = [], [], []
    for model in sorted(table):
        cells = [_fmt_diff(table[model].get(n)) for n in ns]
        md_body.append([model] + [f"{m}; {d}" if d else m for m, d, _ in cells])
        html_body.append([model] + [(m, d) for m, d, _ in cells])
        marks.append([False] + [s for _, _, s in cells])
    return header, md_body, html_body, marks


# --------------------------------------------------------------------------------------------
# Figures (drawn by melfront.plotting.study)
# --------------------------------------------------------------------------------------------
def _plot_examples(config: StudyConfig, mel: dict, path) -> str | None:
    """The study's mel frontends on one clip of its data set (the ``melfront show`` panels)."""
    try:
        clips = load_clips(config)
    except (MelfrontError, OSError) as exc:  # the data may not be on this machine any more
        return f"example clip not drawn: {exc}"
    if not len(clips):
        return "example clip not drawn: empty data set"
    common = frontend_common(mel)
    specs = [s for s in config.frontends if getattr(build_frontend(s, **common), "input_kind", "mel") == "mel"]
    clip = clips[len(clips) // 2]
    show_clips([clip.path], path, sample_rate=mel["sample_rate"], n_fft=mel["n_fft"], hop_length=mel["hop_length"],
               n_mels=mel["n_mels"], frontends=specs)
    return f"{Path(clip.path).name} (class {clip.class_name})"


def _n_classes(rows) -> int | None:
    """The number of classes the trials were tested on (their confusion matrices), for the chance level."""
    sizes = {len(r["metrics"].get("confusion") or r["metrics"].get("per_class_accuracy") or [])
             for r in rows if isinstance(r.get("metrics"), dict)} - {0}
    return sizes.pop() if len(sizes) == 1 else None


def _study_mel(config: StudyConfig, derived: dict) -> dict:
    """The mel settings the trials used: the defaults, then what was derived from the data, then the config's."""
    found = {}
    for key, value in (derived.get("mel") or {}).items() if isinstance(derived.get("mel"), dict) else ():
        found[key] = value["value"] if isinstance(value, dict) and "value" in value else value
    return {**DEFAULT_MEL, **{k: v for k, v in found.items() if k in DEFAULT_MEL or k in ("fmin", "fmax")},
            **config.mel}


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def _intro(rows, failures, config, frontends, planned, n_folds) -> str:
    seconds = sum(r["train_seconds"] or 0.0 for r in rows)
    n_planned = sum(planned.get(int(n), 0) for n in config.n_per_class) * len(config.models) * len(config.frontends)
    splits = sorted({r["metrics"].get("split", "") for r in rows} - {""})
    text = (f"{len(rows)} finished trials of {n_planned} planned"
            f"{f', {len(failures)} failed' if failures else ''} on **{config.dataset}** — models "
            f"{', '.join(config.models)}; frontends {', '.join(frontends)}; n per class {sorted(config.n_per_class)}; "
            f"test folds {', '.join(sorted({str(r['fold']) for r in rows}))}; total training time {seconds / 60:.1f} min.")
    if splits:
        text += " Split: " + "; ".join(splits) + "."
    per_n = ", ".join(f"n={n}: {planned[n]}" for n in sorted(planned))
    text += (f" Runs per cell (planned; runs × {n_folds} test fold{'s' if n_folds > 1 else ''}): {per_n}. "
             f"Tables give the mean ± std over a cell's runs (no ± for one run); † marks an incomplete cell "
             f"(finished/planned runs), ‡ a cell where some class had fewer than n readable training clips.")
    return text


def _difference_sections(rows, family, pairs, metric, m):
    """``(heading, markdown, html)`` of each difference table (``family``: :func:`difference_family`'s, its
    p-values Holm-adjusted over all ``m`` comparisons of the report)."""
    ns = sorted({r["n"] for r in rows})
    name = "Accuracy" if metric == "accuracy" else "Macro MAP"
    sections = []
    for (a, b) in pairs:
        note = (f"{name} of **{b}** minus **{a}** (percentage points): mean paired difference over matching "
                f"(fold, run) trials, [{100 * CONFIDENCE:.0f} % confidence interval, t-based], the number of "
                f"pairs, p: paired t-test, W: Wilcoxon signed-rank test (from {WILCOXON_MIN_PAIRS} pairs); "
                f"both p-values Holm-adjusted for the {m} comparisons in this report; * marks p < {SIGNIFICANCE}. "
                f"A cell with one pair has no interval and no test.")
        header, md_body, html_body, marks = _diff_grid(family[(a, b, metric)], ns)
        sections.append((f"Difference: {b} − {a}" + ("" if metric == "accuracy" else " (macro MAP)"),
                         note + "\n\n" + md_table(header, md_body),
                         f"<p class='note'>{html.escape(note).replace('**', '')}</p>"
                         + html_table(header, html_body, marks)))
    return sections


def _short(row) -> bool:
    """True when the trial's classes had fewer than n readable training clips (``n_per_class_actual``)."""
    actual = row["metrics"].get("n_per_class_actual")
    return isinstance(actual, (int, float)) and actual < row["n"]


def _table_sections(store, rows, config: StudyConfig, frontends, pairs, preset=None, delta=DELTA) -> list:
    """The report's text: ``(heading, markdown, html)`` of the verdict (:mod:`.verdict`), the intro, the tables and
    the account sections; with a preset study's meta (:mod:`melfront.report.claims`) its Protocol, its headline
    metric and its claims too."""
    failures = store.failures()
    folds, planned = planned_runs(config, rows, failures)
    sequential = store.meta("sequential")
    planned = sequential_planned(sequential, planned, len(folds))
    shortfalls = store.meta("cell_shortfalls", default=[]) or []
    short_ns = {int(s["n"]) for s in shortfalls if isinstance(s, dict) and "n" in s}
    short = {(r["model"], r["frontend"], r["n"]) for r in rows if r["n"] in short_ns or _short(r)}
    intro = _intro(rows, failures, config, frontends, planned, len(folds))
    metric, metric_note = claims.headline_metric(preset)
    if metric == "map":
        missing = sum(1 for r in rows if not (isinstance(r.get("map"), (int, float)) and math.isfinite(r["map"])))
        intro += (" Headline metric, as the preset's paper: macro mean average precision (MAP: per test fold, the "
                  "one-vs-rest average precision of the clip scores averaged over the classes present), in the "
                  "first table, the differences and the first plot; accuracy is given second.")
        intro += f" {missing} finished trial(s) have no MAP and are left out of its numbers." if missing else ""
    sections = [verdict_section(verdicts(rows, frontends, metric, delta), sequential),
                ("The study", intro, f"<p>{html.escape(intro).replace('**', '')}</p>")]
    if preset:
        sections.append(claims.protocol_section(preset, metric_note))
    sections += settings_section(store.meta("derived_settings", default={}) or {})
    names = {"accuracy": "Accuracy", "map": "Macro mean average precision"}
    for m in sorted(names, key=lambda k: k != metric):
        h, b = _summary_grid(rows, m, frontends, planned, short)
        headline = " — the headline metric" if preset and m == metric else ""
        sections.append((f"{names[m]} (%), mean ± std over runs and folds{headline}", md_table(h, b), html_table(h, b)))
    comparisons = [(a, b, metric) for a, b in pairs] + claims.claim_comparisons(preset, frontends)
    family = difference_family(rows, comparisons)
    n_comparisons = family_size(family)
    sections += _difference_sections(rows, family, pairs, metric, n_comparisons)
    if preset:
        sections += claims.claims_section(preset, family, frontends, n_comparisons, SIGNIFICANCE, CONFIDENCE)
    sections += account_sections(run_counts(config, rows, failures), planned, failures, shortfalls,
                                 store.meta("skipped_clips", default=[]) or [])
    return sections


def _figures(store, rows, config, out: Path, examples: bool, metric: str = "accuracy") -> list[tuple[str, str]]:
    """Draw the PNGs; ``(heading, file name)`` of each (the ``metric`` plot first), plus a note when the example
    clip could not be drawn."""
    order = [f for f in config.frontends if any(r["frontend"] == f for r in rows)]
    order += sorted({r["frontend"] for r in rows} - set(order))
    n_classes = _n_classes(rows)
    chance = 1.0 / n_classes if n_classes else None
    plot_accuracy_vs_n(summary_table(rows, "accuracy"), out / "accuracy_vs_n.png", order, "accuracy", chance=chance)
    plot_accuracy_vs_n(summary_table(rows, "map"), out / "map_vs_n.png", order, "map")
    mel = _study_mel(config, store.meta("derived_settings", default={}) or {})
    images = [("Accuracy against training-set size", "accuracy_vs_n.png"),
              ("Macro MAP against training-set size", "map_vs_n.png")]
    if metric == "map":
        images = [(images[1][0] + " (the headline metric)", images[1][1]), images[0]]
    if plot_learned_parameters(rows, out / "learned_parameters.png", mel):
        images.append(("Learned frontend parameters", "learned_parameters.png", movement_note(movement(rows, mel))))
    if examples:
        example = _plot_examples(config, mel, out / "frontends_example.png")
        if (out / "frontends_example.png").exists():
            images.append((f"The frontends on one clip: {example}", "frontends_example.png"))
        elif example:
            images.append((example, ""))
    return images


def write_report(store_path, out_dir, compare=None, title: str | None = None, examples: bool = True,
                 delta: float = DELTA) -> Path:
    """Write report.md, report.html and the PNGs for the study in ``store_path``; returns the HTML path.

    The store is opened read-only (:meth:`~melfront.study.ResultStore.open_readonly`: a file that is not a
    melfront study store is a :class:`~melfront.errors.StudyError` naming it, and nothing is written to
    it). ``compare``: pairs of frontends to difference (default: the study's ``compare``, else its first
    two); a pair that is not two frontends of the study is a :class:`~melfront.errors.ParameterError`
    listing them (:func:`check_compare`). ``examples=False`` skips the example-clip figure (it reads the
    data set). A store without finished trials is a StudyError. A preset study (the meta ``"preset"``) gets the
    preset's title, "(reduced)" when reduced, unless ``title`` is given, a Protocol section, its headline
    metric first and the paper's claims beside the result (:mod:`melfront.report.claims`). The report opens with
    the verdict (:mod:`.verdict`; ``delta``: the points of its runs-needed estimates), and gives how far learned
    parameters moved (:mod:`.movement`) beside their figure. (Drawing the figures takes a few seconds,
    so the example is not run by the doctests; tests/test_report.py runs it.)

    >>> page = write_report("studies/quick/study.db", "studies/quick/report")  # doctest: +SKIP
    >>> sorted(p.name for p in page.parent.iterdir())  # doctest: +SKIP
    ['accuracy_vs_n.png', 'frontends_example.png', 'learned_parameters.png', 'map_vs_n.png', 'report.html', 'report.md']
    """
    store = ResultStore.open_readonly(store_path)
    config = store.config()
    rows = store.rows()
    if config is None or not rows:
        raise StudyError(f"{store_path}: no finished trials to report on")
    from . import protocol  # (at call time: it reads melfront.mst, which reads this package's stats)
    protocol_rows = None
    if protocol.is_protocol(store):  # Tax et al.'s per-fold protocol: the arms are the study's rows
        protocol_rows, rows = rows, protocol.split_rows(rows)[1]
    if compare:
        pairs = check_compare(compare, config.frontends)
    else:
        pairs = [tuple(p) for p in (config.compare or []) if len(p) == 2 and all(f in config.frontends for f in p)]
        if not pairs and len(config.frontends) >= 2:
            pairs = [(config.frontends[0], config.frontends[1])]
    rank = {f: i for i, f in enumerate(config.frontends)}
    rows.sort(key=lambda r: rank.get(r["frontend"], len(rank)))  # tables and legends in the study's order
    frontends = [f for f in config.frontends if any(r["frontend"] == f for r in rows)] or \
        sorted({r["frontend"] for r in rows})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    preset = claims.preset_meta(store.meta("preset"))
    sections = _table_sections(store, rows, config, frontends, pairs, preset, delta)
    if protocol_rows is None:
        images = _figures(store, rows, config, out, examples, claims.headline_metric(preset)[0])
    else:  # its own sections after the Protocol section, its own figures
        at = next((i + 1 for i, sec in enumerate(sections) if str(sec[0]).startswith("Protocol")), 0)
        sections[at:at] = protocol.protocol_sections(protocol_rows)
        images = protocol.protocol_figures(store, protocol_rows, out, (preset or {}).get("title") or "tax2017")
    notes = [i[0] for i in images if not i[1]]
    for note in notes:
        sections.append(("Example clip", note, f"<p class='note'>{html.escape(note)}</p>"))
    if not title:
        title = claims.report_title(preset, config.dataset) if preset else f"melfront study: {config.dataset}"
    return write_pages(out, title, sections, [i for i in images if i[1]])


def study_to_report(config, out_dir, *, accepted, rule=None, delta=None, **run_options) -> int:
    """Run (or resume, or extend) the study ``config`` in ``out_dir/study.db``, then write ``out_dir/report``:
    the one path of ``melfront compare``, plain or ``--preset``. The comparisons are checked before any
    training; ``accepted(stored_config)`` runs once the folder is locked and the config accepted;
    ``run_options`` go to :func:`melfront.study.run_study`; with ``rule`` (a
    :class:`~melfront.study.sequential.SequentialRule`) the study runs until decided
    (:func:`~melfront.study.sequential.run_until_decided`); ``delta``: the verdict's points (default the rule's,
    else :data:`.verdict.DELTA`). The verdict is printed. Returns 0, or 1 (said on stderr) when trials failed.
    """
    import sys

    from ..study import run_study  # looked up at call time (tests stand a fake trial runner in for it)
    config.compare = [list(p) for p in check_compare(config.compare or [], config.frontends)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if rule is not None:
        from ..study.sequential import run_until_decided
        store = run_until_decided(config, out / "study.db", rule=rule, accepted=accepted, **run_options)
    else:
        store = run_study(config, out / "study.db", accepted=accepted, **run_options)
    delta = delta if delta is not None else rule.delta if rule is not None else DELTA
    page = write_report(store.path, out / "report", delta=delta)
    print("\n".join(store_verdict(store, delta)))
    print(f"results: {store.path}\nreport:  {page} (and report.md)")
    failed = store.failures()
    if failed:  # the study went on; the exit status still says it is not all there
        print(f"melfront compare: {len(failed)} trial(s) failed (see the report; --retry-failed runs them again)",
              file=sys.stderr)
        return 1
    return 0
