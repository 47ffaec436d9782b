"""The report of a preset study: its title, the protocol it followed, and the paper's claims beside the result.

A preset study (:mod:`melfront.presets`) stores, before training, the meta value ``"preset"``
(:meth:`melfront.study.ResultStore.meta`): a dict with ``name``, ``title``, ``citation``, ``reproduces``,
``reduced`` (one sentence per declared reduction; empty: the full protocol), ``overrides`` (the user's, e.g.
``"runs: 5 -> 2"``), ``claims`` (``{"pair": [A, B], "text": ..., "metric": "accuracy" | "map"}``),
``headline_metric``, ``settings`` (``{key, value, source, status}``) and optionally ``notes`` (how the
protocol was fitted to the data). This module turns it into the
report's title, its "Protocol" section and its "The paper's claims beside this study" section. The numbers
come from :mod:`melfront.report` (paired differences B − A over matching (fold, run) trials, a t-based
confidence interval, Holm-adjusted p-values); nothing here computes a statistic. A claim is a sentence
of the paper, not a direction melfront can check, so each cell gets a reading of what the interval
supports (B better, A better, within noise, or too few pairs to tell) and never a verdict of agreement.
"""
from __future__ import annotations

import html
import json
import math

from .sections import html_table, md_table
from .stats import p_text

__all__ = ["METRICS", "preset_meta", "report_title", "headline_metric", "claim_comparisons", "reading",
           "protocol_section", "claims_section"]

#: The metrics a preset may headline or a claim may be stated in, and their names in the report.
METRICS = {"accuracy": "accuracy", "map": "macro mean average precision (MAP)"}


def preset_meta(value) -> dict | None:
    """The stored ``"preset"`` meta as a dict with every key present (lists for the lists), or None when
    the study is not a preset study (no meta, or not a dict).

    >>> sorted(preset_meta({"name": "merlin"}))  # doctest: +NORMALIZE_WHITESPACE
    ['citation', 'claims', 'claims_note', 'headline_metric', 'name', 'notes', 'overrides', 'reduced', 'reproduces',
     'settings', 'title']
    >>> preset_meta(None) is None, preset_meta([1]) is None
    (True, True)
    """
    if not isinstance(value, dict):
        return None
    out = {"name": str(value.get("name") or "preset"), "title": str(value.get("title") or ""),
           "citation": str(value.get("citation") or ""), "reproduces": str(value.get("reproduces") or ""),
           "claims_note": str(value.get("claims_note") or ""),
           "headline_metric": value.get("headline_metric") or "accuracy"}
    for key in ("reduced", "overrides", "claims", "settings", "notes"):
        items = value.get(key) or []
        out[key] = list(items) if isinstance(items, (list, tuple)) else [items]
    return out


def report_title(meta: dict, dataset: str) -> str:
    """The report's title: the preset's title, ``(reduced)`` whenever a reduction was declared.

    >>> report_title(preset_meta({"name": "merlin", "reduced": ["one fold only"]}), "merlin")
    'merlin (reduced): melfront preset study on merlin'
    >>> report_title(preset_meta({"name": "pons2019", "title": "pons2019"}), "urbansound8k")
    'pons2019: melfront preset study on urbansound8k'
    """
    name = meta["title"] or meta["name"]
    if meta["reduced"] and "(reduced)" not in name:
        name += " (reduced)"
    return f"{name}: melfront preset study on {dataset}"


def headline_metric(meta: dict | None) -> tuple[str, str]:
    """``(metric, note)``: the metric the tables and plots lead with, and a note when the stored one is unknown
    (then accuracy, said in the report; never a silent change).

    >>> headline_metric(None), headline_metric({"headline_metric": "map"})
    (('accuracy', ''), ('map', ''))
    >>> headline_metric({"headline_metric": "f1"})[1]
    "the preset's headline metric 'f1' is not one the study stores; the report leads with accuracy"
    """
    metric = (meta or {}).get("headline_metric") or "accuracy"
    if metric in METRICS:
        return metric, ""
    return "accuracy", (f"the preset's headline metric {metric!r} is not one the study stores; "
                        f"the report leads with accuracy")


def _claim(claim) -> tuple[str | None, str | None, str, str, str]:
    """``(A, B, text, metric, problem)`` of one stored claim; ``problem`` says why it cannot be measured."""
    if not isinstance(claim, dict):
        return None, None, str(claim), "accuracy", "not a claim record"
    pair = claim.get("pair")
    text = str(claim.get("text") or "")
    metric = claim.get("metric") or "accuracy"
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        return None, None, text, metric, f"its pair {pair!r} is not two frontends"
    if metric not in METRICS:
        return str(pair[0]), str(pair[1]), text, metric, f"its metric {metric!r} is not one the study stores"
    return str(pair[0]), str(pair[1]), text, metric, ""


def claim_comparisons(meta: dict | None, frontends) -> list[tuple[str, str, str]]:
    """``(A, B, metric)`` of every claim that this study can measure (both frontends in it), in order, once.

    >>> meta = {"claims": [{"pair": ["db", "pcen"], "text": "t", "metric": "map"},
    ...                    {"pair": ["db", "mst"], "text": "t"}, {"pair": ["db", "pcen"], "text": "u", "metric": "map"}]}
    >>> claim_comparisons(meta, ["db", "pcen"])
    [('db', 'pcen', 'map')]
    """
    out = []
    for claim in (meta or {}).get("claims") or []:
        a, b, _, metric, problem = _claim(claim)
        if not problem and a in frontends and b in frontends and (a, b, metric) not in out:
            out.append((a, b, metric))
    return out


def _pts(fraction) -> str:
    """A difference in signed percentage points, one decimal (never "-0.0")."""
    value = 100 * fraction
    return f"{0.0 if abs(value) < 0.05 else value:+.1f}"


_p = p_text


def reading(d, a: str, b: str, significance: float = 0.05) -> tuple[str, str]:
    """``(kind, sentence)``: what one paired difference (``B − A``, :func:`melfront.report.paired_difference`'s
    dict, in fractions) supports, in points. ``kind`` is ``"b"`` / ``"a"`` (that frontend better: the
    interval excludes 0 and the Holm-adjusted p is below ``significance``), ``"unadjusted"`` (the interval
    excludes 0 but the adjusted p does not hold), ``"noise"`` (the interval spans 0), ``"none"`` (no
    difference in any pair) or ``"untested"`` (no pair, or one: no interval).

    >>> reading(dict(mean=0.02, std=0.0, count=5, ci=(0.02, 0.02), p_holm=0.0), "db", "pcen")
    ('b', 'pcen better by 2.0 points, CI excludes 0 (Holm p <0.001)')
    >>> reading(dict(mean=-0.01, std=0.03, count=5, ci=(-0.05, 0.03), p_holm=0.8), "db", "pcen")[1]
    'difference within noise (CI spans 0)'
    >>> reading(dict(mean=0.01, std=0.0, count=1, ci=None, p_holm=float("nan")), "db", "pcen")[1]
    'one pair only (+1.0 points): no interval, cannot be told from noise'
    """
    if d is None or not d.get("count"):
        return "untested", "no matching pairs of finished trials"
    if d["count"] < 2 or d.get("ci") is None:
        return "untested", f"one pair only ({_pts(d['mean'])} points): no interval, cannot be told from noise"
    lo, hi = d["ci"]
    if d["mean"] == 0 and d["std"] == 0:
        return "none", f"no difference in any of the {d['count']} pairs"
    if lo <= 0 <= hi or math.isnan(lo) or math.isnan(hi):
        return "noise", "difference within noise (CI spans 0)"
    better, size = (b if d["mean"] > 0 else a), abs(100 * d["mean"])
    p = d.get("p_holm", float("nan"))
    if not math.isnan(p) and p < significance:
        return ("b" if better == b else "a"), f"{better} better by {size:.1f} points, CI excludes 0 (Holm p {_p(p)})"
    return "unadjusted", (f"{better} better by {size:.1f} points in this study's interval (CI excludes 0), but "
                          f"not after Holm's adjustment (p {_p(p)}): not shown beyond noise")


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _lines(md_lines, html_lines, title, items, css=""):
    if not items:
        return
    md_lines.append(f"{title}\n\n" + "\n".join(f"- {_text(i)}" for i in items))
    klass = f" class='{css}'" if css else ""
    html_lines.append(f"<p{klass}>{html.escape(title)}</p><ul>"
                      + "".join(f"<li>{html.escape(_text(i))}</li>" for i in items) + "</ul>")


def protocol_section(meta: dict, metric_note: str = "") -> tuple[str, str, str]:
    """``(heading, markdown, html)`` of the "Protocol" section: citation, what it reproduces, each reduction and
    each override (none: "full protocol, as published"), the preset's notes on fitting it to the data, the
    headline metric and the settings table.

    >>> h, md, _ = protocol_section(preset_meta({"name": "pons2019", "citation": "Pons et al. 2019"}))
    >>> h, "Full protocol, as published." in md
    ('Protocol', True)
    """
    metric = meta["headline_metric"] if meta["headline_metric"] in METRICS else "accuracy"
    intro = f"Preset **{meta['name']}**"
    intro += f" (`melfront presets --show {meta['name']}`)." if meta["name"] != "preset" else "."
    if meta["citation"]:
        intro += f" Citation: {meta['citation'].rstrip('.')}."
    if meta["reproduces"]:
        intro += f" It reproduces: {meta['reproduces'].rstrip('.')}."
    intro += f" Headline metric: {METRICS[metric]}."
    if metric_note:
        intro += f" Note: {metric_note}."
    md = [intro]
    page = [f"<p>{html.escape(intro).replace('**', '').replace('`', '')}</p>"]
    if meta["reduced"]:
        _lines(md, page, f"Reduced protocol: {len(meta['reduced'])} declared reduction(s) of the published one; "
                         f"the results are not the paper's setting:", meta["reduced"], "warn")
    else:
        full = "Full protocol, as published."
        if meta["overrides"]:
            full = "Full protocol, as published, except for the user's overrides below."
        md.append(full)
        page.append(f"<p>{html.escape(full)}</p>")
    _lines(md, page, "The user's overrides (given on the command line, said here):", meta["overrides"], "warn")
    _lines(md, page, "Notes on how the protocol was fitted to the data:", meta["notes"])
    rows = [[_text(s.get("key", "")), _text(s.get("value", "")), _text(s.get("status", "")), _text(s.get("source", ""))]
            for s in meta["settings"] if isinstance(s, dict)]
    if rows:
        note = ("The settings (status: read = checked in the cited source; recalled = stated by the paper or a "
                "secondary account, not checked here; unfixed = the sources do not fix it, melfront's choice):")
        md += [note, md_table(["setting", "value", "status", "source"], rows)]
        page.append(f"<p class='note'>{html.escape(note)}</p>"
                    + html_table(["setting", "value", "status", "source"], rows, kind="list"))
    return "Protocol", "\n\n".join(md), "".join(page)


def claims_section(meta: dict, family: dict, frontends, n_comparisons: int, significance: float = 0.05,
                   confidence: float = 0.95) -> list[tuple[str, str, str]]:
    """The section "The paper's claims beside this study" (none when the preset states no claims).

    ``family``: :func:`melfront.report.difference_family`'s ``{(A, B, metric): {model: {n: difference}}}``,
    Holm-adjusted over the ``n_comparisons`` of the report. For each claim: the paper's text, then per model
    and n the mean paired difference B − A in points with its interval, the number of pairs, the
    Holm-adjusted p and a reading (:func:`reading`); a claim the study cannot measure says why.
    """
    claims = meta.get("claims") or []
    if not claims:
        note = str(meta.get("claims_note") or "")
        return [("The paper's claims beside this study", note, f"<p class='note'>{html.escape(note)}</p>")] if note \
            else []
    intro = (f"Each claim of the paper, in our words, then this study's measurement of it: the mean paired "
             f"difference B − A over matching (fold, run) trials in percentage points, "
             f"[{100 * confidence:.0f} % confidence interval, t-based], the number of pairs and the paired t-test's "
             f"p-value Holm-adjusted for the {n_comparisons} comparisons in this report. A reading says what "
             f"the interval supports; melfront does not score agreement with the paper's sentence: compare "
             f"the direction yourself, and read a difference within noise as neither agreement nor disagreement.")
    if meta["reduced"]:
        intro += " This is a reduced protocol (see Protocol): the paper's setting differs."
    md, page = [intro], [f"<p class='note'>{html.escape(intro)}</p>"]
    header = ["model", "n", "B − A (points) [CI]", "pairs", "Holm p", "reading"]
    for i, claim in enumerate(claims, 1):
        a, b, text, metric, problem = _claim(claim)
        head = f"Claim {i}" + (f": B − A = {b} − {a}, in {METRICS.get(metric, metric)}" if a and b else "")
        md.append(f"**{head}.** The paper:\n\n> {text}")
        page.append(f"<h3>{html.escape(head)}</h3><blockquote>The paper: {html.escape(text)}</blockquote>")
        missing = [f for f in (a, b) if f is not None and f not in frontends]
        if not problem and missing:
            problem = f"{', '.join(missing)} not among this study's frontends with finished trials"
        table = family.get((a, b, metric)) if not problem else None
        if not table:
            why = f"Not measured here: {problem or 'no matching pairs of finished trials'}."
            md.append(why)
            page.append(f"<p class='warn'>{html.escape(why)}</p>")
            continue
        body, marks, kinds = [], [], []
        for model in sorted(table):
            for n in sorted(table[model]):
                d = table[model][n]
                kind, sentence = reading(d, a, b, significance)
                kinds.append(kind)
                cell = _pts(d["mean"])
                if d.get("ci") is not None and d["count"] >= 2:
                    cell += f" [{_pts(d['ci'][0])}, {_pts(d['ci'][1])}]"
                body.append([model, n, cell, d["count"], _p(d.get("p_holm")), sentence])
                marks.append([False, False, kind in ("a", "b"), False, False, False])
        summary = _summary(kinds, a, b)
        md += [md_table(header, body), summary]
        page.append(html_table(header, body, marks, kind="claims") + f"<p>{html.escape(summary)}</p>")
    return [("The paper's claims beside this study", "\n\n".join(md), "".join(page))]


def _summary(kinds, a, b) -> str:
    """One line over a claim's cells: how many show each frontend better, how many are noise or untested."""
    count = {k: kinds.count(k) for k in ("b", "a", "unadjusted", "noise", "none", "untested")}
    parts = [f"{b} better in {count['b']}", f"{a} better in {count['a']}"]
    if count["unadjusted"]:
        parts.append(f"{count['unadjusted']} excluding 0 only before Holm's adjustment")
    parts.append(f"within noise in {count['noise'] + count['none']}")
    if count["untested"]:
        parts.append(f"{count['untested']} with too few pairs to test")
    return (f"Over {len(kinds)} cell(s) (model × n): " + ", ".join(parts)
            + " (better: CI excludes 0 and Holm p below the threshold).")
