"""The study report: tables of mean +- std, paired differences with their significance, and plots.

``write_report(store_path, out_dir)`` writes ``report.md``, a self-contained ``report.html`` (pictures
embedded) and the PNGs. Tables follow Pons, Serrà & Serra (2019): accuracy by model x frontend x n
(their Tables 1 and 3) and the difference between two frontends by model x n (Tables 2 and 4),
here with a paired t-test over matching (fold, run) pairs, since every frontend of a study is trained
on the same few-data subsets.
"""
from __future__ import annotations

import base64
import html
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

from .errors import MelfrontError, StudyError
from .frontends import frontend as build_frontend
from .plotting import plot_accuracy_vs_n, plot_learned_parameters, show_clips
from .study import ResultStore, StudyConfig, load_clips
from .train import DEFAULT_MEL, frontend_common

__all__ = ["write_report", "summary_table", "difference_table", "paired_difference", "SIGNIFICANCE"]

#: p-value below which a paired difference is marked significant (``*``, highlighted cells).
SIGNIFICANCE = 0.05

# Example rows of the doctests: "b" beats "a" by 0.1 in each of 3 paired runs.
_ROWS = [dict(model="sbcnn", frontend=fe, n=1, fold=1, run=run, accuracy=acc + (0.1 if fe == "b" else 0.0))
         for run, acc in enumerate((0.5, 0.6, 0.55)) for fe in ("a", "b")]


def _mean_std(values):
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def summary_table(rows, metric: str = "accuracy") -> dict:
    """``{(model, frontend): {n: (mean, std, count)}}`` of a metric ("accuracy" or "map").

    >>> mean, std, count = summary_table(_ROWS)[("sbcnn", "a")][1]
    >>> round(mean, 3), round(std, 3), count
    (0.55, 0.05, 3)
    """
    groups = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["frontend"], r["n"])].append(r[metric])
    table = defaultdict(dict)
    for (model, fe, n), vals in groups.items():
        m, s = _mean_std(vals)
        table[(model, fe)][n] = (m, s, len(vals))
    return dict(table)


def paired_difference(rows, model, n, a, b, metric="accuracy"):
    """Mean and std of ``metric[b] - metric[a]`` over (fold, run) pairs, the paired t-test p-value and the count.

    A constant non-zero difference has p = 0; fewer than 2 pairs give p = nan; None when no pair matches.

    >>> d = paired_difference(_ROWS, "sbcnn", 1, "a", "b")
    >>> round(d["mean"], 3), round(d["std"], 3), d["p"], d["count"]
    (0.1, 0.0, 0.0, 3)
    """
    by = {fe: {(r["fold"], r["run"]): r[metric] for r in rows if r["model"] == model and r["n"] == n and r["frontend"] == fe}
          for fe in (a, b)}
    keys = sorted(set(by[a]) & set(by[b]))
    if not keys:
        return None
    x = np.array([by[a][k] for k in keys])
    y = np.array([by[b][k] for k in keys])
    d = y - x
    mean, std = _mean_std(d)
    if len(keys) < 2 or np.allclose(d, d[0]):
        p = 0.0 if len(keys) >= 2 and d[0] != 0 else float("nan")
    else:
        p = float(stats.ttest_rel(y, x).pvalue)
    return dict(mean=mean, std=std, p=p, count=len(keys))


def difference_table(rows, a, b, metric="accuracy") -> dict:
    """``{model: {n: paired_difference(...)}}`` for frontends ``a`` and ``b`` (b - a).

    >>> list(difference_table(_ROWS, "a", "b")), list(difference_table(_ROWS, "a", "b")["sbcnn"])
    (['sbcnn'], [1])
    """
    out = defaultdict(dict)
    for model in sorted({r["model"] for r in rows}):
        for n in sorted({r["n"] for r in rows}):
            d = paired_difference(rows, model, n, a, b, metric)
            if d:
                out[model][n] = d
    return dict(out)


# --------------------------------------------------------------------------------------------
# Rendering helpers
# --------------------------------------------------------------------------------------------
def _fmt(m, s):
    return "-" if math.isnan(m) else f"{100 * m:.1f} ± {100 * s:.1f}"


def _fmt_diff(d):
    if d is None:
        return "-", False
    sig = not math.isnan(d["p"]) and d["p"] < SIGNIFICANCE
    p = "n/a" if math.isnan(d["p"]) else (f"{d['p']:.3f}" if d["p"] >= 0.001 else "<0.001")
    return f"{100 * d['mean']:+.1f} ± {100 * d['std']:.1f} (p {p}){' *' if sig else ''}", sig


def _summary_grid(rows, metric):
    table = summary_table(rows, metric)
    ns = sorted({r["n"] for r in rows})
    header = ["model", "frontend"] + [f"n={n}" for n in ns]
    body = []
    for (model, fe) in sorted(table, key=lambda k: (k[0], _order(rows, k[1]))):
        cells = [_fmt(*table[(model, fe)][n][:2]) if n in table[(model, fe)] else "-" for n in ns]
        body.append([model, fe] + cells)
    return header, body


def _order(rows, fe):
    seen = []
    for r in rows:
        if r["frontend"] not in seen:
            seen.append(r["frontend"])
    return seen.index(fe) if fe in seen else 0


def _diff_grid(rows, a, b, metric):
    ns = sorted({r["n"] for r in rows})
    table = difference_table(rows, a, b, metric)
    header = ["model"] + [f"n={n}" for n in ns]
    body, marks = [], []
    for model in sorted(table):
        cells, sig = [], []
        for n in ns:
            text, s = _fmt_diff(table[model].get(n))
            cells.append(text)
            sig.append(s)
        body.append([model] + cells)
        marks.append([False] + sig)
    return header, body, marks


def _md_table(header, body):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def _html_table(header, body, marks=None):
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    for i, row in enumerate(body):
        cells = []
        for j, c in enumerate(row):
            cls = ' class="sig"' if marks and marks[i][j] else ""
            cells.append(f"<td{cls}>{html.escape(str(c))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Figures (drawn by melfront.plotting.study)
# --------------------------------------------------------------------------------------------
def _plot_examples(config: StudyConfig, path) -> str | None:
    """The study's mel frontends on one clip of its data set (the ``melfront show`` panels)."""
    try:
        clips = load_clips(config)
    except (MelfrontError, OSError) as exc:  # the data may not be on this machine any more
        return f"example clip not drawn: {exc}"
    if not len(clips):
        return "example clip not drawn: empty data set"
    mel = {**DEFAULT_MEL, **config.mel}
    common = frontend_common(mel)
    specs = [s for s in config.frontends if getattr(build_frontend(s, **common), "input_kind", "mel") == "mel"]
    clip = clips[len(clips) // 2]
    show_clips([clip.path], path, sample_rate=mel["sample_rate"], n_fft=mel["n_fft"], hop_length=mel["hop_length"],
               n_mels=mel["n_mels"], frontends=specs)
    return f"{Path(clip.path).name} (class {clip.class_name})"


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,td:nth-child(2){text-align:left}td.sig{background:#fff1c2;font-weight:600}
img{max-width:100%;border:1px solid #eee}.note{color:#555;font-size:.9em}code{background:#f5f5f5;padding:0 .2em}
"""


def _table_sections(rows, config: StudyConfig, frontends, pairs) -> list[tuple[str, str, str]]:
    """The report's text: ``(heading, markdown, html)`` for the intro, the summary and the difference tables."""
    seconds = sum(r["train_seconds"] for r in rows)
    splits = sorted({r["metrics"].get("split", "") for r in rows} - {""})
    intro_md = (f"{len(rows)} finished trials on **{config.dataset}** — models {', '.join(config.models)}; "
                f"frontends {', '.join(frontends)}; n per class {sorted({r['n'] for r in rows})}; "
                f"folds {sorted({r['fold'] for r in rows})}; total training time {seconds / 60:.1f} min.")
    if splits:
        intro_md += " Split: " + "; ".join(splits) + "."
    sections = [("", intro_md, f"<p>{html.escape(intro_md).replace('**', '')}</p>")]
    for metric, name in (("accuracy", "Accuracy"), ("map", "Macro mean average precision")):
        h, b = _summary_grid(rows, metric)
        sections.append((f"{name} (%), mean ± std over runs and folds", _md_table(h, b), _html_table(h, b)))
    for a, b_ in pairs:
        h, b, marks = _diff_grid(rows, a, b_, "accuracy")
        note = (f"Accuracy of **{b_}** minus **{a}** (percentage points), mean ± std over matching (fold, run) "
                f"pairs, paired t-test p-value; * marks p < {SIGNIFICANCE}: a difference larger than the noise.")
        sections.append((f"Difference: {b_} − {a}", note + "\n\n" + _md_table(h, b),
                         f"<p class='note'>{html.escape(note).replace('**', '')}</p>" + _html_table(h, b, marks)))
    return sections


def _write_pages(out: Path, title: str, sections, images) -> Path:
    """Write report.md and the self-contained report.html (PNGs embedded); returns the HTML path."""
    md = [f"# {title}", ""]
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, m, h in sections:
        if heading:
            md += [f"## {heading}", ""]
            body.append(f"<h2>{html.escape(heading)}</h2>")
        md += [m, ""]
        body.append(h)
    for heading, fname in images:
        md += [f"## {heading}", "", f"![{heading}]({fname})", ""]
        data = base64.b64encode((out / fname).read_bytes()).decode()
        body.append(f"<h2>{html.escape(heading)}</h2><img alt='{html.escape(heading)}' src='data:image/png;base64,{data}'>")
    (out / "report.md").write_text("\n".join(md))
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>")
    (out / "report.html").write_text(page)
    return out / "report.html"


def write_report(store_path, out_dir, compare=None, title: str | None = None) -> Path:
    """Write report.md, report.html and the PNGs for the study in ``store_path``; returns the HTML path.

    ``compare``: pairs of frontends to difference (default: the study's ``compare``, else its first two).
    A store without finished trials is a :class:`~melfront.errors.StudyError`. (Drawing the figures takes
    a few seconds, so the example is not run by the doctests; tests/test_study.py runs it.)

    >>> page = write_report("studies/quick/study.db", "studies/quick/report")  # doctest: +SKIP
    >>> sorted(p.name for p in page.parent.iterdir())  # doctest: +SKIP
    ['accuracy_vs_n.png', 'frontends_example.png', 'learned_parameters.png', 'map_vs_n.png', 'report.html', 'report.md']
    """
    store = ResultStore(store_path)
    config = store.config()
    rows = store.rows()
    if config is None or not rows:
        raise StudyError(f"{store_path}: no finished trials to report on")
    # tables and legends list frontends in the study's order
    rank = {f: i for i, f in enumerate(config.frontends)}
    rows.sort(key=lambda r: rank.get(r["frontend"], len(rank)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frontends = [f for f in config.frontends if any(r["frontend"] == f for r in rows)] or \
        sorted({r["frontend"] for r in rows})
    pairs = [tuple(p) for p in (compare or config.compare or [])]
    pairs = [p for p in pairs if p[0] in frontends and p[1] in frontends]
    if not pairs and len(frontends) >= 2:
        pairs = [(frontends[0], frontends[1])]
    title = title or f"melfront study: {config.dataset}"

    order = sorted({r["frontend"] for r in rows}, key=lambda f: _order(rows, f))
    plot_accuracy_vs_n(summary_table(rows, "accuracy"), out / "accuracy_vs_n.png", order, "accuracy")
    plot_accuracy_vs_n(summary_table(rows, "map"), out / "map_vs_n.png", order, "map")
    has_learned = plot_learned_parameters(rows, out / "learned_parameters.png", {"sample_rate": 22050, **config.mel})
    example = _plot_examples(config, out / "frontends_example.png")

    sections = _table_sections(rows, config, frontends, pairs)
    images = [("Accuracy against training-set size", "accuracy_vs_n.png"),
              ("Macro MAP against training-set size", "map_vs_n.png")]
    if has_learned:
        images.append(("Learned frontend parameters", "learned_parameters.png"))
    if (out / "frontends_example.png").exists():
        images.append((f"The frontends on one clip: {example}", "frontends_example.png"))
    elif example:
        sections.append(("Example clip", example, f"<p class='note'>{html.escape(example)}</p>"))

    return _write_pages(out, title, sections, images)
