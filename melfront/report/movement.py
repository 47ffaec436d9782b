"""How far the learned frontend parameters moved from their start, per parameter, relative to the start.

The start of a parameter is its value in the frontend built from the study's spec with the study's mel
settings (``frontend(spec, ...)``: the same construction a trial starts from); the end is the trial's stored
``learned`` value. A run's relative movement of a parameter is ``||end - start|| / ||start||`` (Euclidean
norms over the bands for a per-band parameter; ``|end - start|`` alone when the start is 0). The report gives,
for each (frontend, parameter), the median over runs and the largest, and says plainly when a trainable
frontend stayed within :data:`STILL` (1 %) of its start in every parameter: "trainable" then means little.

>>> rows = [dict(frontend="pcen(trainable=True)", learned={"alpha": [0.9801], "delta": [2.01]})]
>>> moved = movement(rows, dict(sample_rate=16000, n_fft=512, hop_length=128, n_mels=8))
>>> [(p, round(100 * m["median"], 2)) for (fe, p), m in moved.items()]
[('alpha', 0.01), ('delta', 0.5)]
"""
from __future__ import annotations

import html
import math
from collections import defaultdict

import numpy as np

from ..errors import MelfrontError
from ..frontends import frontend as build_frontend
from ..train import frontend_common
from ..train.build import learned_parameters
from .sections import html_table, md_table

__all__ = ["STILL", "start_values", "movement", "movement_lines", "movement_note"]

#: Relative movement below which a parameter is said to have stayed at its start.
STILL = 0.01


def start_values(spec: str, mel: dict) -> dict:
    """``{parameter: [floats]}`` of the frontend ``spec`` as built, before training (``{}`` if it cannot be built).

    >>> start_values("pcen(trainable=True)", dict(sample_rate=16000, n_fft=512, hop_length=128, n_mels=8))["delta"]
    [2.0]
    """
    try:
        return learned_parameters(build_frontend(spec, **frontend_common(mel)))
    except (MelfrontError, TypeError, ValueError):
        return {}


def _relative(end, start) -> float:
    end, start = np.asarray(end, dtype=float), np.asarray(start, dtype=float)
    if end.shape != start.shape:
        return float("nan")
    scale = float(np.linalg.norm(start))
    change = float(np.linalg.norm(end - start))
    return change / scale if scale > 0 else change


def movement(rows, mel: dict) -> dict:
    """``{(frontend, parameter): dict(start, end, median, largest, runs)}``: the relative movement (a fraction)
    over the runs that learned it; ``start``/``end``: the start and the median end (lists).

    >>> rows = [dict(frontend="power", learned={"exponent": [e]}) for e in (0.55, 0.6, 0.75)]
    >>> m = movement(rows, dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=8))[("power", "exponent")]
    >>> m["start"], round(m["median"], 3), round(m["largest"], 3), m["runs"]
    ([0.5], 0.2, 0.5, 3)
    """
    starts, found = {}, defaultdict(list)
    for r in rows:
        for name, values in (r.get("learned") or {}).items():
            fe = r["frontend"]
            if fe not in starts:
                starts[fe] = start_values(fe, mel)
            if name in starts[fe]:
                found[(fe, name)].append(values)
    out = {}
    for (fe, name), ends in sorted(found.items()):
        rel = [v for v in (_relative(e, starts[fe][name]) for e in ends) if math.isfinite(v)]
        if not rel:
            continue
        same = [e for e in ends if len(e) == len(starts[fe][name])]
        out[(fe, name)] = dict(start=starts[fe][name], end=np.median(np.asarray(same, float), axis=0).tolist(),
                               median=float(np.median(rel)), largest=float(np.max(rel)), runs=len(rel))
    return out


def _value(v: list) -> str:
    return f"{v[0]:.4g}" if len(v) == 1 else f"{len(v)} bands, mean {np.mean(v):.4g}"


def movement_lines(moved: dict) -> list[str]:
    """One line per frontend: the plain line when it stayed within :data:`STILL` of its start, else the parameter
    that moved most.

    >>> movement_lines({("pcen", "alpha"): dict(start=[0.98], end=[0.9801], median=1e-4, largest=2e-4, runs=3)})
    ['pcen: every learned parameter stayed within 1 % of its start (largest movement: alpha, 0.02 %): trained, it barely moved from its initial values.']
    """
    by_fe = defaultdict(dict)
    for (fe, name), m in moved.items():
        by_fe[fe][name] = m
    lines = []
    for fe, params in by_fe.items():
        name, m = max(params.items(), key=lambda kv: kv[1]["largest"])
        if m["largest"] < STILL:
            lines.append(f"{fe}: every learned parameter stayed within {100 * STILL:.0f} % of its start (largest "
                         f"movement: {name}, {100 * m['largest']:.2g} %): trained, it barely moved from its "
                         f"initial values.")
        else:
            lines.append(f"{fe}: moved most in {name} ({100 * m['median']:.3g} % median over runs, "
                         f"{100 * m['largest']:.3g} % at most).")
    return lines


def movement_note(moved: dict) -> tuple[str, str]:
    """``(markdown, html)`` beside the learned-parameters figure: the lines and a table of every parameter
    (empty strings when nothing was learned).

    >>> md, page = movement_note({("power", "exponent"): dict(start=[0.5], end=[0.6], median=0.2, largest=0.3,
    ...                                                       runs=2)})
    >>> md.splitlines()[2], movement_note({})
    ('- power: moved most in exponent (20 % median over runs, 30 % at most).', ('', ''))
    """
    if not moved:
        return "", ""
    lines = movement_lines(moved)
    header = ["frontend", "parameter", "start", "end (median over runs)", "moved (median)", "moved (largest)", "runs"]
    body = [[fe, name, _value(m["start"]), _value(m["end"]), f"{100 * m['median']:.3g} %",
             f"{100 * m['largest']:.3g} %", str(m["runs"])] for (fe, name), m in moved.items()]
    intro = ("How far the learned parameters moved from their start (the frontend built from its spec), relative: "
             "‖end − start‖ / ‖start‖.")
    md = intro + "\n\n" + "\n".join(f"- {line}" for line in lines) + "\n\n" + md_table(header, body)
    page = (f"<p class='note'>{html.escape(intro)}</p><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines)
            + "</ul>" + html_table(header, body))
    return md, page
