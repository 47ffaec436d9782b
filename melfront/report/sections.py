"""The study report's account of everything that did not go as planned, and its table writers.

Sections (each ``(heading, markdown, html)``, rendered by :mod:`melfront.report`): the settings derived
from the data, incomplete cells (fewer finished runs than planned), failed trials (count, causes
grouped), cell shortfalls (classes with fewer than n readable training clips) and skipped clips; and the
writer of the pages (:func:`write_pages`: report.md and a self-contained report.html). The sections read
what the study stored (:class:`~melfront.study.ResultStore`: ``failures()`` and the ``meta`` values
``derived_settings``, ``cell_shortfalls``, ``skipped_clips``).
"""
from __future__ import annotations

import base64
import html
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from ..fileio import write_text

__all__ = ["md_table", "md_escape", "short_paths", "html_table", "planned_runs", "run_counts", "incomplete_cells", "group_causes",
           "settings_rows", "settings_section", "account_sections", "write_pages"]

#: Longest list written out in full in the HTML page (longer ones fold into a <details> element).
OPEN_LIST = 20


_MD_ALWAYS = re.compile(r"([\\`|])")
_MD_LINK = re.compile(r"\]\s*[(\[]")
_MD_TAG = re.compile(r"<(?=[A-Za-z/!?])")
_MD_ENTITY = re.compile(r"&(?=[#A-Za-z])")
_MD_BLOCK = re.compile(r"^(\s*)([#>])")
_ABS_PATH = re.compile(r"(?<![\w.~])/(?:[^/\s'\"<>|]+/)+[^/\s'\"<>|:,;]+")


def md_escape(text) -> str:
    r"""``text`` as inert Markdown: one line (line breaks become spaces: no injected heading), no raw HTML (a
    ``<`` that could open a tag or an autolink, and a ``&`` that could open an entity, become entities), code
    and table-cell characters (`` ` | \``) backslash-escaped, and brackets escaped wherever they could make a
    link or an image (no ``javascript:`` link). Plain text, numbers and intervals stay as written
    (``+2.0 [+1.0, +3.0]``, ``p <0.001``); rendered, every result reads as the text itself.

    >>> md_escape("<img src=x onerror=alert(1)>\n# [x](javascript:alert(1))")
    '&lt;img src=x onerror=alert(1)> # \\[x\\](javascript:alert(1))'
    >>> md_escape("+2.0 [+1.0, +3.0] *; 4 pairs, p <0.001")
    '+2.0 [+1.0, +3.0] *; 4 pairs, p <0.001'
    """
    text = " ".join(str(text).splitlines())
    text = _MD_ENTITY.sub("&amp;", text)
    text = _MD_TAG.sub("&lt;", text)
    text = _MD_ALWAYS.sub(r"\\\1", text)
    if _MD_LINK.search(text) or "![" in text:
        text = text.replace("[", "\\[").replace("]", "\\]")
    return _MD_BLOCK.sub(r"\1\\\2", text)  # a leading # or > opens no heading or quote inside a list item


def short_paths(text) -> str:
    """``text`` with every absolute path cut to its last two parts (``…/dog/1-100.wav``): a report names the clip
    (class folder and file), not where the data sit on the machine that ran the study.

    >>> short_paths("AudioError: /home/ann/data/dog/1-100.wav: truncated")
    'AudioError: …/dog/1-100.wav: truncated'
    """
    return _ABS_PATH.sub(lambda m: "…/" + "/".join(m.group(0).rsplit("/", 2)[-2:]), str(text))


def md_table(header, body) -> str:
    """A Markdown table; a cell given as ``(text, detail)`` is written ``text; detail``; every cell escaped
    (:func:`md_escape`).

    >>> print(md_table(["a", "b"], [[1, ("x", "y")]]))
    | a | b |
    |---|---|
    | 1 | x; y |
    """
    def cell(c):
        text = f"{c[0]}; {c[1]}" if isinstance(c, tuple) and c[1] else (c[0] if isinstance(c, tuple) else c)
        return md_escape(text)
    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def html_table(header, body, marks=None, kind: str = "") -> str:
    """An HTML table (escaped); ``marks[i][j]`` highlights a cell; a ``(text, detail)`` cell puts the detail
    on a second, smaller line; ``kind`` is the table's CSS class (the report's "list": text left-aligned).

    >>> html_table(["a"], [[("1 < 2", "ok")]], [[True]])
    '<table><thead><tr><th>a</th></tr></thead><tbody>\\n<tr><td class="sig">1 &lt; 2<small>ok</small></td></tr>\\n</tbody></table>'
    """
    opening = f'<table class="{kind}">' if kind else "<table>"
    out = [opening + "<thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr></thead><tbody>"]
    for i, row in enumerate(body):
        cells = []
        for j, c in enumerate(row):
            cls = ' class="sig"' if marks and marks[i][j] else ""
            if isinstance(c, tuple):
                text = html.escape(str(c[0])) + (f"<small>{html.escape(str(c[1]))}</small>" if c[1] else "")
            else:
                text = html.escape(str(c))
            cells.append(f"<td{cls}>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def planned_runs(config, rows, failures) -> tuple[list, dict]:
    """``(test folds, {n: planned runs per cell})``: ``config.runs_for(n)`` runs on each test fold.

    The folds are the config's list when it gives one, else those the stored trials (finished or failed)
    ran on; a cell is one (model, frontend, n).

    >>> from melfront.study import StudyConfig
    >>> planned_runs(StudyConfig(n_per_class=[1, 5], runs={"default": 3}), [dict(fold="1"), dict(fold="2")], [])
    (['1', '2'], {1: 6, 5: 6})
    """
    if isinstance(config.test_folds, (list, tuple)) and config.test_folds:
        folds = [str(f) for f in config.test_folds]
    else:
        folds = sorted({str(r["fold"]) for r in list(rows) + list(failures)}) or ["?"]
    return folds, {int(n): config.runs_for(int(n)) * len(folds) for n in config.n_per_class}


def run_counts(config, rows, failures) -> dict:
    """``{(model, frontend, n): (finished, failed)}`` over the study's whole grid (zeros included).

    >>> from melfront.study import StudyConfig
    >>> c = run_counts(StudyConfig(frontends=["db"], models=["sbcnn"], n_per_class=[1]),
    ...                [dict(model="sbcnn", frontend="db", n=1)], [dict(model="sbcnn", frontend="db", n=1)])
    >>> c[("sbcnn", "db", 1)]
    (1, 1)
    """
    done = Counter((r["model"], r["frontend"], int(r["n"])) for r in rows)
    failed = Counter((f["model"], f["frontend"], int(f["n"])) for f in failures)
    cells = {(m, fe, int(n)) for m in config.models for fe in config.frontends for n in config.n_per_class}
    return {cell: (done[cell], failed[cell]) for cell in sorted(cells | set(done) | set(failed), key=str)}


def incomplete_cells(counts: dict, planned: dict) -> list[tuple]:
    """``(model, frontend, n, finished, failed, planned)`` of every cell with fewer finished runs than planned.

    >>> incomplete_cells({("sbcnn", "db", 1): (2, 1), ("sbcnn", "db", 5): (3, 0)}, {1: 3, 5: 3})
    [('sbcnn', 'db', 1, 2, 1, 3)]
    """
    return [(m, fe, n, done, failed, planned[n]) for (m, fe, n), (done, failed) in counts.items()
            if n in planned and done < planned[n]]


def _cause_kind(text: str) -> str:
    """A cause with its numbers and quoted names blanked, so that causes differing only in those group."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", str(text))
    return re.sub(r"\d+(\.\d+)?(e-?\d+)?", "#", text)


def group_causes(causes) -> list[tuple[str, int, list]]:
    """``(example cause, count, indices)`` of causes that differ only in numbers or quoted names, most common first.

    >>> group_causes(["DivergenceError: nan in epoch 3", "MemoryError", "DivergenceError: nan in epoch 12"])
    [('DivergenceError: nan in epoch 3', 2, [0, 2]), ('MemoryError', 1, [1])]
    """
    groups: dict[str, list] = defaultdict(list)
    for i, cause in enumerate(causes):
        groups[_cause_kind(cause)].append(i)
    ordered = sorted(groups.values(), key=lambda idx: (-len(idx), idx[0]))
    return [(str(causes[idx[0]]), len(idx), idx) for idx in ordered]


def settings_rows(derived, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(setting, value, derived from)`` rows of the ``derived_settings`` value.

    :meth:`melfront.train.FittedSettings.as_dict`'s form (``notes``: setting -> how it was chosen, values
    in ``mel`` and ``train``, per-model differences in ``per_model``) gives one row per note. Any other
    mapping is flattened (``mel.sample_rate``); a mapping with a ``value`` key gives its ``from`` (or
    ``source``, ``reason``) too.

    >>> settings_rows({"mel": {"sample_rate": 8000}, "train": {}, "notes": {"sample_rate": "8000 Hz (all clips)"},
    ...                "per_model": {"sbcnn": {"patch_frames": 100}}})
    [('sample_rate', '8000', '8000 Hz (all clips)'), ('sbcnn: patch_frames', '100', 'for this model')]
    >>> settings_rows({"mel": {"sample_rate": {"value": 8000, "from": "all 12 clips are 8000 Hz"}}, "lr": 0.001})
    [('mel.sample_rate', '8000', 'all 12 clips are 8000 Hz'), ('lr', '0.001', '')]
    """
    if isinstance(derived, dict) and isinstance(derived.get("notes"), dict) and not prefix:
        values = {**(derived.get("train") or {}), **(derived.get("mel") or {})}
        options = values.get("model_options")
        if isinstance(options, dict) and "input_norm" in options:
            values["input_norm"] = options["input_norm"]
        notes = sorted(derived["notes"].items(), key=lambda kv: (_ORDER.index(kv[0]) if kv[0] in _ORDER else 99))
        rows = [(str(k), _text(values[k]) if k in values else "", _text(note)) for k, note in notes]
        for model, differs in (derived.get("per_model") or {}).items():
            rows += [(f"{model}: {k}", _text(v), "for this model") for k, v in (differs or {}).items()]
        return rows
    if not isinstance(derived, dict):
        return [(prefix or "value", _text(derived), "")]
    out = []
    for key, value in derived.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and "value" in value:
            why = next((value[k] for k in ("from", "source", "reason", "why") if k in value), "")
            out.append((name, _text(value["value"]), _text(why) if why != "" else ""))
        elif isinstance(value, dict) and value:
            out += settings_rows(value, name)
        else:
            out.append((name, _text(value), ""))
    return out


# the order of derived settings in the report (a stored mapping comes back with its keys sorted)
_ORDER = ["sample_rate", "n_fft", "hop_length", "n_mels", "patch_frames", "optimizer", "lr", "input_norm", "epochs"]


def _data_text(data: dict) -> str:
    """The data survey of ``derived_settings`` in words."""
    parts = []
    for key, value in data.items():
        if key == "sample_rates" and isinstance(value, dict):
            parts.append("sample rates " + ", ".join(f"{k} Hz ({v} clips)" for k, v in value.items()))
        elif key == "median_duration" and isinstance(value, (int, float)):
            parts.append(f"median duration {value:g} s")
        else:
            parts.append(f"{key.replace('_', ' ')} {_text(value)}")
    return ", ".join(parts)


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _section(heading, text, header=None, body=None, html_text=None, long_list=None):
    """``(heading, markdown, html)``: a paragraph, an optional table, an optional list folded when long."""
    md = [text] + ([md_table(header, body)] if header else [])
    page = [html_text or f"<p>{html.escape(text)}</p>"] + ([html_table(header, body, kind="list")] if header else [])
    if long_list:
        md.append("\n".join(f"- {md_escape(line)}" for line in long_list))
        items = "".join(f"<li>{html.escape(line)}</li>" for line in long_list)
        page.append(f"<ul>{items}</ul>" if len(long_list) <= OPEN_LIST else
                    f"<details><summary>all {len(long_list)}</summary><ul>{items}</ul></details>")
    return heading, "\n\n".join(md), "".join(page)


def settings_section(derived) -> list[tuple[str, str, str]]:
    """The settings derived from the data (none: an empty list).

    >>> [h for h, _, _ in settings_section({"lr": 0.001})], settings_section({})
    (['Settings derived from the data'], [])
    """
    if not derived:
        return []
    text = "Settings the study derived from its data (every one can be overridden), and how."
    data = derived.get("data") if isinstance(derived, dict) else None
    if isinstance(data, dict) and data:
        text += f" The data: {_data_text(data)}."
    return [_section("Settings derived from the data", text, ["setting", "value", "derived from"],
                     settings_rows(derived))]


def _failure_section(failures) -> list:
    if not failures:
        return []
    groups = group_causes([short_paths(f.get("error") or "unknown error") for f in failures])
    body = []
    for example, count, idx in groups:
        cells = sorted({f"{failures[i]['model']}/{failures[i]['frontend']} n={failures[i]['n']}" for i in idx})
        body.append([example, count, ", ".join(cells[:6]) + (f", … ({len(cells)} cells)" if len(cells) > 6 else "")])
    text = (f"{len(failures)} trial(s) failed and are not in the tables (a rerun skips them unless "
            f"--retry-failed); causes, grouped:")
    return [_section(f"Failed trials ({len(failures)})", text, ["cause (first of its kind)", "trials", "cells"], body,
                     html_text=f"<p class='warn'>{html.escape(text)}</p>")]


def _incomplete_section(counts, planned) -> list:
    cells = incomplete_cells(counts, planned)
    if not cells:
        return []
    text = (f"{len(cells)} cell(s) have fewer finished runs than planned (not run yet, or failed); their means "
            f"and differences rest on fewer runs (marked † in the tables).")
    return [_section(f"Incomplete cells ({len(cells)})", text, ["model", "frontend", "n", "finished", "failed",
                                                                "planned"], [list(c) for c in cells])]


def _shortfall_section(shortfalls) -> list:
    entries = [s for s in shortfalls if isinstance(s, dict)]
    if not entries:
        return []
    groups: dict[tuple, list] = defaultdict(list)
    for s in entries:
        groups[(str(s.get("fold")), s.get("n"), str(s.get("class")), s.get("available"))].append(s.get("run"))
    body = [[fold, n, cls, available, ", ".join(str(r) for r in sorted(runs, key=str))]
            for (fold, n, cls, available), runs in sorted(groups.items(), key=str)]
    text = ("In these cells a class had fewer than n readable training clips, so it was trained on all it had "
            "(marked ‡ in the tables):")
    return [_section(f"Cell shortfalls ({len(entries)})", text, ["fold", "n", "class", "available", "runs"], body)]


def _skipped_section(skipped) -> list:
    items = [(str(s[0]), str(s[1]) if len(s) > 1 else "") for s in skipped if isinstance(s, (list, tuple)) and s]
    if not items:
        return []
    items = [(short_paths(path), short_paths(cause.replace(path, short_paths(path)))) for path, cause in items]
    groups = group_causes([cause.replace(path, "FILE") for path, cause in items])
    body = [[example, count] for example, count, _ in groups]
    text = (f"{len(items)} clip(s) could not be read and were left out before sampling (n counts readable clips "
            f"only). Causes:")
    return [_section(f"Skipped clips ({len(items)})", text, ["cause (first of its kind)", "clips"], body,
                     long_list=[f"{path}: {cause}" for path, cause in items])]


def account_sections(counts, planned, failures, shortfalls, skipped) -> list[tuple[str, str, str]]:
    """The sections on what did not go as planned (only those that have something to say).

    >>> [h for h, _, _ in account_sections({("m", "db", 1): (1, 1)}, {1: 2}, [dict(model="m", frontend="db", n=1,
    ...  error="MemoryError")], [], [["a.wav", "empty"]])]
    ['Incomplete cells (1)', 'Failed trials (1)', 'Skipped clips (1)']
    """
    return (_incomplete_section(counts, planned) + _failure_section(failures) + _shortfall_section(shortfalls)
            + _skipped_section(skipped))


#: The report page's style sheet.
CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,td:nth-child(2){text-align:left}td.sig{background:#fff1c2;font-weight:600}
table.list td,table.list th{text-align:left}td small{display:block;color:#666;font-weight:400;font-size:.8em;white-space:nowrap}
img{max-width:100%;border:1px solid #eee}.note{color:#555;font-size:.9em}code{background:#f5f5f5;padding:0 .2em}
.warn{background:#fdecea;border-left:4px solid #d9534f;padding:.4em .8em}details{margin:.4em 0}
h3{font-size:1.05em;margin:1.4em 0 .3em}blockquote{margin:.4em 0;padding:.3em .9em;border-left:4px solid #6c8ebf;background:#f4f7fb}
table.claims td:last-child,table.claims th:last-child{text-align:left}
"""


def write_pages(out: Path, title: str, sections, images) -> Path:
    """Write report.md and the self-contained report.html (PNGs embedded); returns the HTML path. An image is
    ``(heading, file name)`` or ``(heading, file name, (markdown, html))``: a note shown under the picture."""
    md = [f"# {title}", ""]
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, m, h in sections:
        if heading:
            md += [f"## {' '.join(str(heading).splitlines())}", ""]
            body.append(f"<h2>{html.escape(heading)}</h2>")
        md += [m, ""]
        body.append(h)
    for heading, fname, *note in images:
        note_md, note_html = note[0] if note and note[0] else ("", "")
        heading = short_paths(heading)  # may name a clip (class and file names: escaped, no data paths)
        if not fname:  # a figure that could not be drawn: its note alone
            md += [md_escape(heading), ""]
            body.append(f"<p class='note'>{html.escape(heading)}</p>")
            continue
        md += [f"## {md_escape(heading)}", "", f"![{md_escape(heading)}]({fname})", ""]
        md += [note_md, ""] if note_md else []
        data = base64.b64encode((out / fname).read_bytes()).decode()
        body.append(f"<h2>{html.escape(heading)}</h2><img alt='{html.escape(heading)}' src='data:image/png;base64,{data}'>"
                    + note_html)
    write_text(out / "report.md", "\n".join(md))
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")
    write_text(out / "report.html", page)
    return out / "report.html"
