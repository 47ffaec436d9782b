"""Studies that stop when decided: runs are added in rounds, only to the cells (model, n) still undecided.

The stopping rule (:func:`cell_decision`, applied after each round) works on the paired differences of a
cell: the frontend with the best mean accuracy is the cell's *best*; each other frontend's differences
``best - other`` over matching (fold, run) trials are tested two ways at the round's alpha:

- **worse**: the paired t-test's two-sided p-value, Holm-adjusted over the cell's other frontends (Holm 1979),
  is below the round's alpha;
- **within ±D** (equivalence): both one-sided t-tests of TOST (Schuirmann 1987) reject ``|difference| >= D``
  (``D`` in percentage points, default :data:`DELTA`), the larger of the two p-values Holm-adjusted likewise.

A cell is *decided* when every other frontend is worse or within ±D; a cell that reaches ``max_runs`` runs
undecided stops there ("undecided at max runs"). Looks happen at ``start, start + step, ...`` runs, capped at
``max_runs``. The alpha of the look at ``r`` runs is the increment of Lan & DeMets' (1983) O'Brien-Fleming-type
spending function, :func:`spent_alpha`: ``alpha(r / max_runs) - alpha(r_previous / max_runs)``. The increments of
all looks sum to ``alpha``, so by the union bound the chance of any false "worse" (or false "within ±D") over
every look of a cell stays at most ``alpha`` whatever the dependence between looks (Bonferroni across looks:
conservative, but it needs neither the joint law of the sequential statistics nor a normal approximation of
the t statistics). O'Brien-Fleming-type spending keeps early looks strict (a cell is decided early only by a
clear difference) and leaves nearly all of ``alpha`` to the later looks.

Each round's decisions are stored in the study's meta ``sequential`` (rule, rounds, the runs asked of each cell
next); a rerun of the same command continues from the stored rows and decisions (its rule must be the same:
a change is a :class:`~melfront.errors.StudyError` naming the setting).

References: K. K. G. Lan and D. L. DeMets (1983), "Discrete sequential boundaries for clinical trials",
Biometrika 70(3), 659-663. S. Holm (1979), Scand. J. Statist. 6, 65-70. D. J. Schuirmann (1987), J.
Pharmacokinet. Biopharm. 15, 657-680.

>>> looks(3, 3, 10)
[3, 6, 9, 10]
>>> round(sum(look_alphas([3, 6, 9, 10], 10)), 6)
0.05
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from scipy import stats

from ..checks import finite_float, positive_int, probability
from ..errors import ParameterError, StudyError
from .config import StudyConfig, runs_for_n
from .grid import run_study
from .store import ResultStore

__all__ = ["ALPHA", "DELTA", "MAX_RUNS", "START_RUNS", "STEP_RUNS", "spent_alpha", "looks", "look_alphas",
           "cell_decision", "SequentialRule", "run_until_decided", "simulate", "rule_text"]

#: Family-wise error rate of a cell's decisions over all its looks.
ALPHA = 0.05
#: Equivalence margin in percentage points of accuracy.
DELTA = 2.0
#: Runs per cell at most (Pons et al.'s largest fixed number).
MAX_RUNS = 20
#: Runs of the first round, and runs added by each later round.
START_RUNS = 3
STEP_RUNS = 3


def spent_alpha(fraction: float, alpha: float = ALPHA) -> float:
    """Lan & DeMets' O'Brien-Fleming-type spending function: ``2 - 2 Phi(z_{1 - alpha/2} / sqrt(t))``.

    The type-I error spent by information fraction ``t`` in (0, 1] (0 at 0, ``alpha`` at 1).

    >>> round(spent_alpha(1.0), 6), round(spent_alpha(0.5), 5), spent_alpha(0.0)
    (0.05, 0.00557, 0.0)
    """
    t = min(1.0, max(0.0, float(fraction)))
    if t == 0.0:
        return 0.0
    z = stats.norm.ppf(1 - alpha / 2) / math.sqrt(t)
    return float(2 * stats.norm.sf(z))


def looks(start: int, step: int, max_runs: int) -> list[int]:
    """The runs at which a cell is looked at: ``start, start + step, ...``, capped at (and ending with) ``max_runs``.

    >>> looks(3, 3, 20), looks(5, 5, 4)
    ([3, 6, 9, 12, 15, 18, 20], [4])
    """
    out, r = [], min(start, max_runs)
    while r < max_runs:
        out.append(r)
        r += step
    return out + [max_runs]


def look_alphas(schedule, max_runs: int, alpha: float = ALPHA) -> list[float]:
    """The alpha of each look of ``schedule`` (runs): the increments of :func:`spent_alpha` (they sum to ``alpha``).

    >>> [f"{a:.1e}" for a in look_alphas([5, 10], 10)]
    ['5.6e-03', '4.4e-02']
    """
    spent = [0.0] + [spent_alpha(r / max_runs, alpha) for r in schedule]
    return [b - a for a, b in zip(spent, spent[1:])]


def _holm(p) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    out, running = np.empty_like(p), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - k) * p[i]))
        out[i] = running
    return out


def _tests(d: np.ndarray, margin: float) -> tuple[float, float]:
    """``(two-sided t-test p of mean(d) = 0, TOST p of |mean(d)| >= margin)`` of paired differences ``d``."""
    n, mean = len(d), float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else float("nan")
    if n < 2:
        return 1.0, 1.0
    if sd == 0.0:  # a constant difference: the tests are decided by its value
        return (0.0 if mean != 0 else 1.0), (0.0 if abs(mean) < margin else 1.0)
    se = sd / math.sqrt(n)
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    p_tost = max(float(stats.t.sf((mean + margin) / se, n - 1)), float(stats.t.cdf((mean - margin) / se, n - 1)))
    return p, p_tost


def cell_decision(values: dict, alpha: float, delta: float = DELTA) -> dict:
    """The rule's decision for one cell at one look.

    ``values``: ``{frontend: accuracies}``, arrays over the same (fold, run) pairs, in [0, 1]; ``alpha``: the
    look's alpha; ``delta``: the equivalence margin in percentage points. Returns ``dict(best, decided,
    others={frontend: dict(mean, std, p_holm, p_tost_holm, verdict)})``: ``mean``/``std`` of ``best - other``
    in points, ``verdict`` "worse", "within ±D" or "open".

    >>> dec = cell_decision({"a": np.array([.5, .6, .55, .6]), "b": np.array([.6, .7, .66, .7])}, alpha=0.05)
    >>> dec["best"], dec["decided"], dec["others"]["a"]["verdict"]
    ('b', True, 'worse')
    """
    names = list(values)
    means = {f: float(np.mean(values[f])) for f in names}
    best = max(names, key=lambda f: (means[f], -names.index(f)))
    others = [f for f in names if f != best]
    diffs = {f: 100.0 * (np.asarray(values[best], float) - np.asarray(values[f], float)) for f in others}
    tests = {f: _tests(diffs[f], delta) for f in others}
    p_holm = _holm([tests[f][0] for f in others]) if others else []
    p_eq = _holm([tests[f][1] for f in others]) if others else []
    out = {}
    for i, f in enumerate(others):
        d = diffs[f]
        verdict = "worse" if p_holm[i] < alpha else "within ±D" if p_eq[i] < alpha else "open"
        out[f] = dict(mean=float(d.mean()), std=float(d.std(ddof=1)) if len(d) > 1 else 0.0,
                      p_holm=float(p_holm[i]), p_tost_holm=float(p_eq[i]), verdict=verdict)
    return dict(best=best, decided=all(o["verdict"] != "open" for o in out.values()), others=out)


class SequentialRule:
    """The stopping rule's settings: ``delta`` (points), ``max_runs``, ``start``, ``step``, ``alpha``; each checked.

    >>> rule = SequentialRule(delta=2, max_runs=12)
    >>> rule.schedule, rule.alpha_at(12) > rule.alpha_at(3), SequentialRule(max_runs=2).schedule
    ([3, 6, 9, 12], True, [2])
    >>> SequentialRule(max_runs=1)
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: --max-runs must be at least 2 (a paired test needs two runs), got 1
    """

    def __init__(self, delta: float = DELTA, max_runs: int = MAX_RUNS, start: int = START_RUNS,
                 step: int = STEP_RUNS, alpha: float = ALPHA):
        self.delta = finite_float("--delta", delta)
        if self.delta <= 0:
            raise ParameterError(f"--delta must be a positive number of percentage points, got {delta!r}")
        self.max_runs = positive_int("--max-runs", max_runs)
        if self.max_runs < 2:
            raise ParameterError(f"--max-runs must be at least 2 (a paired test needs two runs), got {max_runs}")
        self.start = min(max(2, positive_int("start", start)), self.max_runs)
        self.step = positive_int("step", step)
        self.alpha = probability("alpha", alpha)
        self.schedule = looks(self.start, self.step, self.max_runs)
        self._alphas = dict(zip(self.schedule, look_alphas(self.schedule, self.max_runs, self.alpha)))

    def as_dict(self) -> dict:
        """The settings as stored with the study (meta ``sequential``)."""
        return dict(delta=self.delta, max_runs=self.max_runs, start=self.start, step=self.step, alpha=self.alpha)

    def alpha_at(self, runs: int) -> float:
        """The alpha of the look at ``runs`` runs (0 for a number of runs that is not a look)."""
        return self._alphas.get(int(runs), 0.0)

    def next_runs(self, runs: int) -> int:
        """The runs of the look after ``runs`` (``max_runs`` at most).

        >>> SequentialRule(max_runs=10).next_runs(3), SequentialRule(max_runs=10).next_runs(9)
        (6, 10)
        """
        return next((r for r in self.schedule if r > runs), self.max_runs)


def rule_text(rule: dict) -> str:
    """One paragraph saying the stopping rule (for the report and the console).

    >>> rule_text(SequentialRule().as_dict())[:60]
    'Sequential study: runs were added in rounds (3 runs, then +3'
    """
    r = SequentialRule(**rule)
    return (f"Sequential study: runs were added in rounds ({r.start} runs, then +{r.step} per round, at most "
            f"{r.max_runs}), only to the cells (model, n) still undecided. After each round a cell's best frontend "
            f"(by mean) was compared with each other over matching (fold, run) pairs: 'worse' when the paired "
            f"t-test rejects equality, 'within ±{r.delta:g} points' when both one-sided tests of TOST reject a "
            f"difference of ±{r.delta:g} points, both Holm-adjusted over the cell's frontends, at the look's "
            f"alpha: the increment of Lan & DeMets' (1983) O'Brien-Fleming-type spending function (total "
            f"{r.alpha:g}, looks at {', '.join(map(str, r.schedule))} runs; summed over the looks, so the error "
            f"rates hold under repeated looks by the union bound). A cell is decided when every other frontend is "
            f"worse or within ±{r.delta:g} points; otherwise it stops undecided at {r.max_runs} runs.")


# --------------------------------------------------------------------------------------------
# The loop around run_study
# --------------------------------------------------------------------------------------------
def _cell_values(rows, model, n, runs: int) -> dict:
    """``{frontend: accuracies}`` over the (fold, run) pairs with run < ``runs`` every frontend of the cell has."""
    by = defaultdict(dict)
    for r in rows:
        if r["model"] == model and r["n"] == n and r["run"] < runs:
            by[r["frontend"]][(str(r["fold"]), r["run"])] = r["accuracy"]
    if len(by) < 2:
        return {}
    keys = sorted(set.intersection(*(set(v) for v in by.values())))
    return {f: np.array([v[k] for k in keys], dtype=float) for f, v in by.items()} if keys else {}


def _summary(dec: dict, runs: int, alpha: float, status: str) -> dict:
    others = {f: {k: round(v, 6) if isinstance(v, float) else v for k, v in o.items()}
              for f, o in dec.get("others", {}).items()}
    return dict(runs=runs, alpha=alpha, status=status, best=dec.get("best"), others=others)


def _check_rule(store: ResultStore, rule: SequentialRule) -> dict:
    state = store.meta("sequential") or {}
    stored = state.get("rule")
    if stored and stored != rule.as_dict():
        changed = sorted(k for k in stored if stored[k] != rule.as_dict().get(k))
        name = changed[0] if changed else "rule"
        raise StudyError(f"{store.path}: this sequential study runs with {name} {stored.get(name)!r}, not "
                         f"{rule.as_dict().get(name)!r}: the stored decisions were made under it; rerun with the "
                         f"stored value or use another output folder")
    return dict(rule=rule.as_dict(), rounds=state.get("rounds", []), next_runs=state.get("next_runs", {}))


def run_until_decided(config: StudyConfig, store_path, *, rule: SequentialRule | None = None, say=print,
                      runner=None, **run_options) -> ResultStore:
    """Run ``config`` as a sequential study into the store at ``store_path``; returns the store.

    ``config.runs`` is set by the rule (:class:`SequentialRule`): every cell (model, n) starts with ``rule.start``
    runs; after each round, :func:`cell_decision` at the look's alpha decides each cell, and the undecided ones
    get ``rule.step`` more runs (each round one :func:`melfront.study.run_study` call per n, ``models`` limited
    to the undecided cells, so decided cells get no more trials), until none is undecided or every undecided
    one has ``rule.max_runs``. ``runner`` replaces ``run_study`` (tests); ``run_options`` go to it. The meta
    ``sequential`` holds the rule, each round's decision per cell ("model|n": runs, alpha, status, best,
    others) and the runs asked next; a rerun resumes from it.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> config = StudyConfig(root=str(folder / "synth"), n_per_class=[1], frontends=["db", "pcen"],
    ...                      test_folds="first", dataset_options=dict(n_classes=2, clips_per_class=4,
    ...                      duration=0.25, sample_rate=4000, n_folds=2))
    >>> fake = lambda clips, train_clips, test_clips, frontend, seed, **kw: dict(
    ...     accuracy=0.5 + 0.2 * (frontend == "pcen") + 0.01 * (seed % 3))
    >>> store = run_until_decided(config, folder / "study.db", trial_fn=fake, quiet=True, say=lambda *a: None)
    >>> [(r["round"], r["cells"]["sbcnn|1"]["status"]) for r in store.meta("sequential")["rounds"]]
    [(1, 'decided')]
    """
    rule = rule or SequentialRule()
    runner = runner or run_study
    store = ResultStore(store_path)
    state = _check_rule(store, rule)
    cells = [(m, int(n)) for n in sorted(config.n_per_class) for m in config.models]
    targets = {c: int(state["next_runs"].get(f"{c[0]}|{c[1]}", rule.start)) for c in cells}
    decided = {}
    for rnd in state["rounds"]:  # cells decided in earlier rounds stay decided
        for key, cell in rnd["cells"].items():
            if cell["status"] != "undecided":
                decided[key] = cell
    while True:
        todo = {c: r for c, r in targets.items() if f"{c[0]}|{c[1]}" not in decided}
        if not todo:
            break
        stored = store.config()
        for n in sorted({n for _, n in todo}):
            models = [m for m in config.models if (m, n) in todo]
            runs = {str(k): (stored.runs_for(k) if stored else rule.start) for k in config.n_per_class}
            runs[str(n)] = max(todo[(m, n)] for m in models)
            part = StudyConfig.from_dict({**config.to_dict(), "models": models, "n_per_class": [n], "runs": runs})
            runner(part, store_path, **run_options)
        rows = store.rows()
        record = {}
        for (m, n), runs in sorted(todo.items()):
            key, alpha = f"{m}|{n}", rule.alpha_at(runs)
            values = _cell_values(rows, m, n, runs)
            dec = cell_decision(values, alpha, rule.delta) if values else {}
            status = ("decided" if dec.get("decided") else
                      "undecided at max runs" if runs >= rule.max_runs else "undecided")
            record[key] = _summary(dec, runs, alpha, status)
            if status != "undecided":
                decided[key] = record[key]
            else:
                targets[(m, n)] = rule.next_runs(runs)
        rounds = state["rounds"]
        if rounds and {k: c["runs"] for k, c in rounds[-1]["cells"].items()} == {k: c["runs"] for k, c in record.items()}:
            rounds.pop()  # the same round again (a resumed study): its decision replaces the stored one
        rounds.append(dict(round=len(rounds) + 1, cells=record))
        state["next_runs"] = {f"{m}|{n}": r for (m, n), r in targets.items()}
        store.set_meta("sequential", state)
        say(f"round {len(rounds)}: " + "; ".join(
            f"{k.replace('|', ' n=')}: {c['status']} " + (f"({c['runs']})" if c["status"].endswith("max runs") else
                                                         f"at {c['runs']} runs") for k, c in record.items()))
    return store


# --------------------------------------------------------------------------------------------
# Simulation (tests, and the compute a rule saves)
# --------------------------------------------------------------------------------------------
def simulate(mean_diff: float, std: float, studies: int = 400, rule: SequentialRule | None = None,
             seed: int = 0) -> dict:
    """Simulated sequential studies of one cell with two frontends whose paired differences (points) are
    normal with ``mean_diff`` and ``std``: ``dict(found, equivalent, undecided, wrong_sign, runs, fixed)``: the
    fractions of studies that declared "worse" (the right one, for ``mean_diff > 0``), "within ±D", stopped
    undecided, or declared the wrong one worse; the mean runs used; Pons et al.'s fixed runs for n = 2, 5, 20.

    >>> sim = simulate(5.0, 3.0, studies=50)
    >>> sim["found"] > 0.8, sim["runs"] < 20
    (True, True)
    """
    rule = rule or SequentialRule()
    rng = np.random.default_rng(seed)
    counts, used = defaultdict(int), []
    for _ in range(studies):
        base = rng.uniform(40, 60, rule.max_runs) / 100
        other = base + rng.normal(mean_diff, std, rule.max_runs) / 100
        for runs in rule.schedule:
            dec = cell_decision({"a": base[:runs], "b": other[:runs]}, rule.alpha_at(runs), rule.delta)
            if dec["decided"] or runs == rule.max_runs:
                verdict = next(iter(dec["others"].values()))["verdict"]
                if verdict == "worse" and dec["best"] == "a" and mean_diff > 0:
                    verdict = "wrong sign"
                counts[{"worse": "found", "within ±D": "equivalent", "open": "undecided"}.get(verdict, verdict)] += 1
                used.append(runs)
                break
    return dict(found=counts["found"] / studies, equivalent=counts["equivalent"] / studies,
                undecided=counts["undecided"] / studies, wrong_sign=counts["wrong sign"] / studies,
                runs=float(np.mean(used)),
                fixed={n: runs_for_n(n) for n in (2, 5, 20)})
