"""The presets registry: published protocols as data, each setting with its source and status.

A :class:`Preset` names a paper's protocol (``pons2019-us8k``, ``merlin``, ``tax2017`` ...). Its
``settings`` are :class:`Setting` rows ``(key, value, source, status)``; ``status`` says how sure we are of
the value:

- ``"read"``: read in the cited source (a reference code file, a paper section, a blog) by us;
- ``"recalled"``: stated by the paper's text or a secondary account, not checked against the source here;
- ``"unfixed"``: the sources do not fix it; melfront's own choice (``source`` says why).

A setting whose value differs from what its cited source does says so in ``deviation`` (what differs and
why melfront cannot or should not do the same); ``--show`` lists every deviation after the table.

``plan()`` checks the protocol against the data and either refuses (:class:`~melfront.errors.StudyError`
naming the reason and the fix) or returns a :class:`Plan` that declares every reduction and every user
override; nothing is changed silently. Presets join :data:`PRESETS` with :func:`register_preset` in the file
that defines them; ``import melfront.presets`` registers the built-in ones.

>>> s = Setting("mel.hop_length", 1024, "reference code src/config_file.py")
>>> (s.key, s.value, s.status)
('mel.hop_length', 1024, 'read')
>>> Setting("runs", 5, "nowhere", status="guessed")
Traceback (most recent call last):
...
melfront.errors.ParameterError: Setting 'runs': status must be one of 'read', 'recalled', 'unfixed'; got 'guessed'
>>> Plan("demo", "esc50", None, ["holdout within fold 4"], [], [], {}).title
'demo (reduced)'
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ParameterError

__all__ = ["STATUSES", "Setting", "Claim", "Plan", "Preset", "PRESETS", "register_preset", "get_preset"]

STATUSES = ("read", "recalled", "unfixed")


@dataclass(frozen=True)
class Setting:
    """One protocol setting.

    ``key`` is dotted (``"dataset"``, ``"mel.sample_rate"``, ``"train.sbcnn.patch_frames"``, ``"n_per_class"``,
    ``"runs"`` ...), ``value`` JSON-able, ``source`` where it comes from (``"reference code src/config_file.py"``,
    ``"paper Sec. 3"``), ``status`` one of :data:`STATUSES` (default ``"read"``), ``deviation`` empty when the
    value is the source's, else what differs and why (declared in ``--show`` and the report).

    >>> Setting("protocol.resampler", "soxr", "librosa 0.6.2 pinned", deviation="soxr, not kaiser_best").deviation
    'soxr, not kaiser_best'
    """

    key: str
    value: object
    source: str
    status: str = "read"
    deviation: str = ""

    def __post_init__(self):
        if not isinstance(self.key, str) or not self.key:
            raise ParameterError(f"Setting key must be a non-empty string, got {self.key!r}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise ParameterError(f"Setting {self.key!r}: source must be a non-empty string")
        if not isinstance(self.deviation, str):
            raise ParameterError(f"Setting {self.key!r}: deviation must be text, got {self.deviation!r}")
        if self.status not in STATUSES:
            raise ParameterError(f"Setting {self.key!r}: status must be one of "
                                 f"{', '.join(map(repr, STATUSES))}; got {self.status!r}")

    def as_dict(self) -> dict:
        """``{"key", "value", "source", "status"}`` and ``"deviation"`` when there is one (JSON-able, for the results
        store's meta)."""
        out = {"key": self.key, "value": self.value, "source": self.source, "status": self.status}
        if self.deviation:
            out["deviation"] = self.deviation
        return out


@dataclass(frozen=True)
class Claim:
    """A claim of the paper the report checks: ``pair = (A, B)`` (difference B - A) of two frontend specs
    (or two arms, ``("c", "d")`` for tax2017), ``text`` the claim in our words with where the paper says it,
    ``metric`` ``"accuracy"`` (default) or ``"map"``."""

    pair: tuple
    text: str
    metric: str = "accuracy"

    def __post_init__(self):
        if not isinstance(self.pair, tuple) or len(self.pair) != 2:
            raise ParameterError(f"Claim pair must be a tuple (A, B), got {self.pair!r}")
        if self.metric not in ("accuracy", "map"):
            raise ParameterError(f"Claim metric must be 'accuracy' or 'map', got {self.metric!r}")

    def as_dict(self) -> dict:
        """``{"pair": [A, B], "text", "metric"}`` (JSON-able)."""
        return {"pair": list(self.pair), "text": self.text, "metric": self.metric}


@dataclass
class Plan:
    """What a preset will run on given data.

    ``reduced``: each declared reduction, one sentence (why + what changed); ``[]`` means the full protocol.
    ``overrides``: each user override as ``"runs: 5 -> 2"``. ``grid``: one dict per trial
    (``{"model", "frontend", "n", "fold", "run"}``; tax2017 ``{"arm", "fold", ...}``). ``details``: what
    ``run()`` needs (e.g. ``{"config": StudyConfig}``).
    """

    preset: str
    dataset: str
    root: str | None
    reduced: list = field(default_factory=list)
    overrides: list = field(default_factory=list)
    grid: list = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        """The preset's name, with ``" (reduced)"`` when any reduction is declared."""
        return f"{self.preset} (reduced)" if self.reduced else self.preset


class Preset:
    """A published protocol. Subclasses set the class attributes and implement ``plan``, ``dry_run``, ``run``.

    Attributes: ``name``, ``citation``, ``reproduces`` (one line: what it reproduces), ``default_dataset``,
    ``settings`` (tuple of :class:`Setting`), ``claims`` (tuple of :class:`Claim`), ``claims_note`` (why a
    preset has no claim to set beside its result, said in ``--show`` and the report).
    """

    name: str = ""
    citation: str = ""
    reproduces: str = ""
    default_dataset: str = ""
    settings: tuple = ()
    claims: tuple = ()
    claims_note: str = ""

    headline_metric: str = "accuracy"

    def meta(self, plan: Plan) -> dict:
        """What the report states besides the results: title, citation, reductions, overrides, claims (or why
        none), headline metric, every setting, the plan's notes, data set and root (the ``preset`` meta)."""
        return dict(name=self.name, title=plan.title, citation=self.citation, reproduces=self.reproduces,
                    reduced=list(plan.reduced), overrides=list(plan.overrides),
                    claims=[c.as_dict() for c in self.claims], claims_note=self.claims_note,
                    headline_metric=self.headline_metric, settings=[s.as_dict() for s in self.settings],
                    notes=list(plan.details.get("notes", [])), dataset=plan.dataset, root=plan.root)

    def values(self) -> dict:
        """``{key: value}`` of every setting (the last one wins if a key repeats)."""
        return {s.key: s.value for s in self.settings}

    def setting(self, key: str) -> Setting:
        """The :class:`Setting` with ``key``; ``ParameterError`` naming the known keys otherwise."""
        for s in self.settings:
            if s.key == key:
                return s
        raise ParameterError(f"preset {self.name!r} has no setting {key!r}; known: "
                             f"{', '.join(s.key for s in self.settings)}")

    def show(self) -> str:
        """A plain-text table of every setting (key, value, status, source) for ``melfront presets --show``."""
        import json

        def fmt(v):
            return v if isinstance(v, str) else json.dumps(v)
        rows = [(s.key, fmt(s.value), s.status, s.source) for s in self.settings]
        head = ("key", "value", "status", "source")
        w = [max([len(head[i])] + [len(r[i]) for r in rows]) for i in range(3)]
        lines = [f"{self.name}: {self.citation}", f"reproduces: {self.reproduces}",
                 f"default dataset: {self.default_dataset}", ""]
        for r in [head] + rows:
            lines.append(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}".rstrip())
        deviations = [s for s in self.settings if s.deviation]
        if deviations:
            lines += ["", "deviations from the sources (declared):"]
            lines += [f"  {s.key}: {s.deviation}" for s in deviations]
        if self.claims:
            lines += ["", "claims:"]
            for c in self.claims:
                lines.append(f"  {c.pair[1]} - {c.pair[0]} ({c.metric}): {c.text}")
        elif self.claims_note:
            lines += ["", f"claims: none. {self.claims_note}"]
        return "\n".join(lines)

    def plan(self, root=None, dataset=None, overrides: dict | None = None) -> Plan:
        """Check the protocol against the data at ``root``; refuse (``StudyError``) or return a :class:`Plan`."""
        raise NotImplementedError

    def dry_run(self, plan: Plan, time_one: bool = True) -> str:
        """The grid of ``plan`` and, when ``time_one``, an estimate of its CPU time."""
        raise NotImplementedError

    def run(self, plan: Plan, output_dir, *, jobs=None, ray=None, quiet=False, retry_failed=False,
            ray_num_gpus=0.0) -> int:
        """Run ``plan`` to a report in ``output_dir``; 0 when every trial succeeded, 1 when some failed
        (``jobs``, ``ray``, ``ray_num_gpus``: as :func:`melfront.study.run_study`'s)."""
        raise NotImplementedError

    def __repr__(self):
        return f"<Preset {self.name}>"


PRESETS: dict = {}


def register_preset(preset: Preset) -> Preset:
    """Add ``preset`` to :data:`PRESETS` under ``preset.name``; ``ParameterError`` on a duplicate name."""
    if not isinstance(preset, Preset):
        raise ParameterError(f"register_preset needs a Preset instance, got {type(preset).__name__}")
    if not preset.name:
        raise ParameterError("a preset needs a non-empty name")
    if preset.name in PRESETS:
        raise ParameterError(f"preset {preset.name!r} is already registered")
    PRESETS[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    """The registered preset ``name``; ``ParameterError`` listing the known names otherwise.

    >>> get_preset("no-such-preset")
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: unknown preset 'no-such-preset'; known: ...
    """
    if name not in PRESETS:
        import melfront.presets  # noqa: F401  (registers the built-in presets)
    if name not in PRESETS:
        raise ParameterError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS)) or '(none)'}")
    return PRESETS[name]
