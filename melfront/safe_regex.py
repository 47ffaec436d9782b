"""Regular expressions from users (``--group-by``), run with a bound: compile check, length limit, deadline.

Python's :mod:`re` backtracks: a pattern such as ``(a+)+$`` takes time exponential in the length of a
name it almost matches (2^40 steps on a 40-character name), and a running match cannot be interrupted
in the process that runs it. So :func:`search_all` runs every search of one call in a separate,
isolated Python process (``python -I -S``, no melfront, no site packages) with a wall-clock deadline
(:data:`DEADLINE_S` plus a little per name) and ends it when the deadline passes: a pathological pattern
becomes one :class:`~melfront.errors.ParameterError` naming the option and the cause, never a hang.
Patterns longer than :data:`MAX_PATTERN` characters and texts longer than :data:`MAX_TEXT` characters
(file names are at most 255 bytes on common file systems) are refused before anything runs.

>>> search_all("--group-by", r"^([^_]+)_nohash_", ["ann_nohash_0.wav", "x.wav"])
['ann', None]
>>> search_all("--group-by", "(a+)+$", ["a" * 40 + "!"], deadline_s=0.5)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
melfront.errors.ParameterError: --group-by '(a+)+$': matching 1 file names took more than 0.5 s; ...
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

from .errors import ParameterError

__all__ = ["compile_pattern", "search_all", "DEADLINE_S", "MAX_PATTERN", "MAX_TEXT"]

#: Seconds one :func:`search_all` call may take (plus :data:`PER_TEXT_S` per text).
DEADLINE_S = 3.0
#: Extra seconds per text searched (10,000 file names: one more second).
PER_TEXT_S = 1e-4
#: The longest pattern accepted, in characters.
MAX_PATTERN = 1000
#: The longest text searched, in characters.
MAX_TEXT = 1024

_WORKER = r"""
import json, re, sys
job = json.loads(sys.stdin.read())
rx = re.compile(job["pattern"])
out = []
for text in job["texts"]:
    m = rx.search(text)
    out.append(None if m is None else (m.group(1) if rx.groups else m.group(0)))
sys.stdout.write(json.dumps(out))
"""


def compile_pattern(name: str, pattern) -> re.Pattern:
    """``pattern`` compiled, or ParameterError naming ``name`` (not text, too long, not a valid expression).

    >>> compile_pattern("--group-by", "^([^_]+)_").groups
    1
    >>> compile_pattern("--group-by", "([a-")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: --group-by: not a valid regular expression '([a-' (unterminated character set...
    """
    if not isinstance(pattern, str) or not pattern:
        raise ParameterError(f"{name} must be a regular expression (text), got {pattern!r}")
    if len(pattern) > MAX_PATTERN:
        raise ParameterError(f"{name}: a regular expression of {len(pattern)} characters; at most {MAX_PATTERN}")
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ParameterError(f"{name}: not a valid regular expression {pattern!r} ({exc})") from None


def search_all(name: str, pattern: str, texts, deadline_s: float | None = None) -> list:
    """For each text, the first capture group of ``pattern``'s first match (the whole match when the pattern
    has no group), or None where it does not match; all searches together bounded by a deadline.

    ``name`` is the option the pattern came from (for the error messages). ``deadline_s`` defaults to
    :data:`DEADLINE_S` + :data:`PER_TEXT_S` per text.
    """
    compile_pattern(name, pattern)
    texts = [str(t) for t in texts]
    for t in texts:
        if len(t) > MAX_TEXT:
            raise ParameterError(f"{name}: a name of {len(t)} characters is longer than the {MAX_TEXT} searched "
                                 f"({t[:40]!r}...)")
    if not texts:
        return []
    deadline = DEADLINE_S + PER_TEXT_S * len(texts) if deadline_s is None else float(deadline_s)
    job = json.dumps({"pattern": pattern, "texts": texts})
    try:
        done = subprocess.run([sys.executable, "-I", "-S", "-c", _WORKER], input=job, capture_output=True,
                              text=True, timeout=deadline, encoding="utf-8", errors="surrogateescape")
    except subprocess.TimeoutExpired:
        raise ParameterError(f"{name} {pattern!r}: matching {len(texts)} file names took more than {deadline:.1f} s; "
                             f"the pattern backtracks (nested quantifiers such as (a+)+ take exponential time): "
                             f"simplify it") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ParameterError(f"{name} {pattern!r}: the search failed ({last})")
    return json.loads(done.stdout)
