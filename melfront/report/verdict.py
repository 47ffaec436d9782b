"""The report's verdict: for each model and n, the best frontend and the frontends not told apart from it, one
plain sentence each, a line across the cells, and the runs it would take to tell them apart.

Within a cell (model, n), the *best* frontend has the highest mean; every other frontend is compared with it
by the paired difference over matching (fold, run) trials (:func:`melfront.report.paired_difference`: paired
t-test), the p-values Holm-adjusted over the cell's comparisons (Holm 1979). Those with adjusted p at or above
:data:`melfront.report.SIGNIFICANCE` (or with a single pair: no test) form, with the best, the cell's *best set*.

Runs needed (:func:`runs_needed`), from a pair's observed paired standard deviation ``s`` (points): the
smallest number of pairs ``r`` whose t-based 95 % interval has half-width at most ``D`` points,
``t_{0.975, r-1} s / sqrt(r) <= D``, and the smallest ``r`` giving 80 % power to detect a ``D``-point
difference with the two-sided paired t-test at level 0.05, ``r >= ((t_{0.975, r-1} + t_{0.8, r-1}) s / D)^2``
(the usual t-approximation of the power; both found by stepping ``r`` up, since ``t`` depends on the
degrees of freedom ``r - 1``).

>>> runs_needed(3.0, 2.0)
(12, 20)
"""
from __future__ import annotations

import html
import math
from collections import Counter

import numpy as np
from scipy import stats as sp

from ..study.config import runs_for_n
from ..study.sequential import rule_text
from . import claims
from .stats import p_text

__all__ = ["DELTA", "POWER", "runs_needed", "cell_verdict", "verdicts", "verdict_lines", "verdict_section",
           "sequential_planned", "store_verdict"]

#: Default interval half-width and smallest difference of interest, in percentage points.
DELTA = 2.0
#: Power of the paired t-test asked for by :func:`runs_needed`.
POWER = 0.8
_MOST = 100_000


def runs_needed(std: float, delta: float = DELTA, confidence: float = 0.95, power: float = POWER,
                alpha: float = 0.05) -> tuple[int, int]:
    """``(pairs for a ±delta interval, pairs for power at delta)`` from a paired std (``std`` and ``delta`` in the
    same unit). A std of 0 needs 2 pairs; nan gives ``(0, 0)`` (unknown).

    >>> runs_needed(0.0), runs_needed(6.0, 2.0)
    ((2, 2), (38, 73))
    """
    if not math.isfinite(std):
        return 0, 0
    r = np.arange(2, _MOST, dtype=float)
    df = r - 1
    ci = sp.t.ppf(0.5 + confidence / 2, df) * std / np.sqrt(r) <= delta
    pw = r >= ((sp.t.ppf(1 - alpha / 2, df) + sp.t.ppf(power, df)) * std / delta) ** 2
    first = lambda ok: int(r[np.argmax(ok)]) if ok.any() else _MOST  # noqa: E731
    return first(ci), first(pw)


def cell_verdict(rows, model, n, frontends, metric: str = "accuracy", delta: float = DELTA) -> dict | None:
    """The verdict of one cell: ``dict(model, n, best, mean, tied, below, pairs)`` or None when fewer than two
    frontends have results. ``tied``/``below``: lists of ``(frontend, difference)`` (``paired_difference`` of
    ``best - frontend``, plus ``runs_ci`` and ``runs_power`` from :func:`runs_needed`), tied = not told apart.

    >>> from melfront.report import _ROWS
    >>> v = cell_verdict(_ROWS, "sbcnn", 1, ["a", "b"])
    >>> v["best"], [f for f, _ in v["below"]], v["tied"]
    ('b', ['a'], [])
    """
    from . import SIGNIFICANCE, holm, paired_difference  # the report's statistics (this module sits beside them)
    values = {fe: [r[metric] for r in rows if r["model"] == model and r["n"] == n and r["frontend"] == fe
                   and isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])] for fe in frontends}
    means = {fe: float(np.mean(v)) for fe, v in values.items() if v}
    if len(means) < 2:
        return None
    best = max(means, key=lambda f: (means[f], -frontends.index(f)))
    diffs = {fe: paired_difference(rows, model, n, fe, best, metric) for fe in means if fe != best}
    diffs = {fe: d for fe, d in diffs.items() if d}
    for d, adjusted in zip(diffs.values(), holm([d["p"] for d in diffs.values()])):
        d["p_cell"] = adjusted
        d["runs_ci"], d["runs_power"] = (runs_needed(100 * d["std"], delta) if d["count"] >= 2 else (0, 0))
    tied = [(fe, d) for fe, d in diffs.items() if not (d["p_cell"] < SIGNIFICANCE)]
    below = [(fe, d) for fe, d in diffs.items() if d["p_cell"] < SIGNIFICANCE]
    pairs = max((d["count"] for d in diffs.values()), default=0)
    return dict(model=model, n=n, best=best, mean=means[best], tied=tied, below=below, pairs=pairs,
                untested=[fe for fe in means if fe != best and fe not in diffs], delta=delta)


def verdicts(rows, frontends, metric: str = "accuracy", delta: float = DELTA) -> list[dict]:
    """:func:`cell_verdict` of every (model, n) with two frontends or more, by model then n.

    >>> from melfront.report import _ROWS
    >>> [(v["model"], v["n"], v["best"]) for v in verdicts(_ROWS + [dict(r, n=2) for r in _ROWS], ["a", "b"])]
    [('sbcnn', 1, 'b'), ('sbcnn', 2, 'b')]
    """
    out = []
    for model in sorted({r["model"] for r in rows}):
        for n in sorted({r["n"] for r in rows if r["model"] == model}):
            v = cell_verdict(rows, model, n, list(frontends), metric, delta)
            if v:
                out.append(v)
    return out


def _diff_text(fe, d) -> str:
    mean = -100 * d["mean"]  # frontend minus best
    if d["count"] < 2:
        return f"{fe} ({mean:+.1f} points, 1 pair: no test)"
    return f"{fe} ({mean:+.1f} points, p {p_text(d['p_cell'])})"


def _sentence(v: dict) -> str:
    head = f"{v['model']}, n={v['n']}: "
    best = f"**{v['best']}** ({100 * v['mean']:.1f} %)"
    if not v["below"] and v["tied"]:
        spreads = [100 * d["std"] for _, d in v["tied"] if d["count"] >= 2]
        spread = (f"{min(spreads):.1f}-{max(spreads):.1f}" if len(spreads) > 1 else
                  f"{spreads[0]:.1f}" if spreads else "")
        why = (f"{v['pairs']} paired run{'s' if v['pairs'] != 1 else ''}"
               + (f", paired spread {spread} points" if spreads else ", too few to test"))
        others = ("the other frontend does not differ from it" if len(v["tied"]) == 1 else
                  f"none of the {len(v['tied'])} others differs from it")
        text = f"{head}nothing can be told apart: {best} has the best mean, but {others} ({why})."
    else:
        text = f"{head}{best} is best"
        text += (f"; not told apart from it: {', '.join(_diff_text(f, d) for f, d in v['tied'])}" if v["tied"]
                 else "; every other frontend is below it")
        text += f"; below it: {', '.join(_diff_text(f, d) for f, d in v['below'])}." if v["below"] else "."
    need = [(d["runs_ci"], d["runs_power"], f, 100 * d["std"]) for f, d in v["tied"] if d["count"] >= 2]
    inside = [d["ci"] and max(abs(d["ci"][0]), abs(d["ci"][1])) <= v["delta"] / 100 for _, d in v["tied"]]
    if v["tied"] and all(inside):
        text += (f" Their 95 % intervals already lie within ±{v['delta']:g} points: the differences are "
                 f"small, not unmeasured.")
    elif need:
        ci, pw, fe, s = max(need)
        if max(ci, pw) <= v["pairs"]:
            text += (f" The {v['pairs']} paired runs already give 95 % intervals of about ±{v['delta']:g} points "
                     f"(the widest spread: {fe}, {s:.1f} points): the remaining differences are below "
                     f"{v['delta']:g} points or within the noise.")
        else:
            text += (f" Telling them apart at ±{v['delta']:g} points would take about {ci} paired runs for a 95 % "
                     f"interval, {pw} for 80 % power (the widest spread: {fe}, {s:.1f} points).")
    return text


def _across(vs) -> str:
    if len(vs) < 2:
        return ""
    count = Counter(f for v in vs for f in [v["best"]] + [fe for fe, _ in v["tied"]])
    top = [f for f, c in count.most_common() if c > len(vs) / 2]
    if not top:
        return f"Across the {len(vs)} cells, no frontend is in the best set of most of them."
    listed = ", ".join(f"**{f}** ({count[f]} of {len(vs)})" for f in top)
    return f"Across the {len(vs)} cells (model, n), in the best set of most cells: {listed}."


def verdict_lines(vs, sequential: dict | None = None) -> list[str]:
    """The verdict as plain sentences: one per cell, then the line across cells, then the sequential rule's
    outcome (``sequential``: the store's meta of that name) when there is one.

    >>> from melfront.report import _ROWS
    >>> verdict_lines(verdicts(_ROWS, ["a", "b"]))[0][:45]
    'sbcnn, n=1: **b** (65.0 %) is best; every oth'
    """
    lines = [_sentence(v) for v in vs]
    if _across(vs):
        lines.append(_across(vs))
    if not vs:
        lines.append("No cell has two frontends with results: nothing to compare.")
    if sequential and sequential.get("rounds"):
        final = _final_cells(sequential)
        delta = (sequential.get("rule") or {}).get("delta", DELTA)
        used = "; ".join(f"{k.replace('|', ' n=')}: {_status(c)} (fixed protocol: "
                         f"{runs_for_n(int(k.split('|')[1]))}){_rule_calls(c, delta)}" for k, c in sorted(final.items()))
        lines.append(f"Sequential study, {len(sequential['rounds'])} round(s) — {used}. The rule's decisions are "
                     f"the ones whose error rates hold under its repeated looks; the sentences above use the "
                     f"fixed-sample tests on the runs it stopped at.")
    return lines


def _status(cell: dict) -> str:
    """"decided at 9 runs", "undecided at max runs (20)", "undecided at 6 runs"."""
    if cell["status"] == "undecided at max runs":
        return f"undecided at max runs ({cell['runs']})"
    return f"{cell['status']} at {cell['runs']} runs"


def _rule_calls(cell: dict, delta: float) -> str:
    calls = [f"{fe} {o['verdict'].replace('±D', f'±{delta:g} points')}"
             for fe, o in (cell.get("others") or {}).items()]
    return f", best {cell['best']}: " + ", ".join(calls) if cell.get("best") and calls else ""


def verdict_section(vs, sequential: dict | None = None) -> tuple[str, str, str]:
    """``(heading, markdown, html)`` of the verdict (the first section of the report), the rule too.

    >>> from melfront.report import _ROWS
    >>> heading, md, page = verdict_section(verdicts(_ROWS, ["a", "b"]))
    >>> heading, md.splitlines()[0][:28], page[:22]
    ('Verdict', '- sbcnn, n=1: **b** (65.0 %)', "<ul class='verdict'><l")
    """
    lines = verdict_lines(vs, sequential)
    rule = rule_text(sequential["rule"]) if sequential and sequential.get("rule") else ""
    note = ("Best by mean; 'not told apart': paired t-test against the best over matching (fold, run) trials, "
            "Holm-adjusted within the cell, p >= 0.05; differences are the frontend minus the best.")
    md = "\n".join(f"- {line}" for line in lines) + f"\n\n{note}" + (f"\n\n{rule}" if rule else "")
    body = "".join(f"<li>{_strong(line)}</li>" for line in lines)
    page = (f"<ul class='verdict'>{body}</ul><p class='note'>{html.escape(note)}</p>"
            + (f"<p class='note'>{html.escape(rule)}</p>" if rule else ""))
    return "Verdict", md, page


def store_verdict(store, delta: float = DELTA) -> list[str]:
    """The verdict lines (plain text, no Markdown) of the study in ``store`` (a
    :class:`~melfront.study.ResultStore`), in its headline metric: what ``melfront report`` prints.

    >>> import tempfile, pathlib
    >>> from melfront.study import ResultStore, StudyConfig, Trial
    >>> from melfront.report import _ROWS
    >>> store = ResultStore(pathlib.Path(tempfile.mkdtemp()) / "study.db")
    >>> config = StudyConfig(frontends=["a", "b"])
    >>> for r in _ROWS:
    ...     _ = store.add(f"{r['frontend']}{r['run']}", Trial(1, 1, r["run"], "sbcnn", r["frontend"]), config,
    ...                   dict(accuracy=r["accuracy"]))
    >>> store_verdict(store)[0][:40]
    'sbcnn, n=1: b (65.0 %) is best; every ot'
    """
    config, rows = store.config(), store.rows()
    names = list(config.frontends) if config else []
    frontends = [f for f in names if any(r["frontend"] == f for r in rows)]
    frontends += sorted({r["frontend"] for r in rows} - set(frontends))
    metric = claims.headline_metric(claims.preset_meta(store.meta("preset")))[0]
    lines = verdict_lines(verdicts(rows, frontends, metric, delta), store.meta("sequential"))
    return [line.replace("**", "") for line in lines]


def _final_cells(sequential) -> dict:
    final = {}
    for rnd in (sequential or {}).get("rounds", []):
        final.update(rnd["cells"])
    return final


def sequential_planned(sequential: dict | None, planned: dict, folds: int) -> dict:
    """``planned`` (``{n: runs x folds}``) of a sequential study: the fewest runs its rule gave a cell at ``n``
    (cells decided early are not incomplete); unchanged for a study without the meta ``sequential``.

    >>> state = {"rounds": [{"cells": {"sbcnn|5": {"runs": 3}}}, {"cells": {"vgg|5": {"runs": 6}}}]}
    >>> sequential_planned(state, {5: 60}, 2), sequential_planned(None, {5: 60}, 2)
    ({5: 6}, {5: 60})
    """
    out = dict(planned)
    final = _final_cells(sequential)
    for n in planned:
        runs = [c["runs"] for k, c in final.items() if int(k.split("|")[1]) == int(n)]
        if runs:
            out[n] = min(runs) * folds
    return out


def _strong(line: str) -> str:
    parts = html.escape(line).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
