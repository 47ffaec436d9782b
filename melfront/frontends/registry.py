"""The frontend registry and the spec-string factory :func:`frontend`.

Each module that defines a frontend registers it with :func:`register_frontend` (a decorator on its class
or builder function); this module imports none of them and only looks names up, so any layer above
``melfront.frontends`` (the adaptive filterbank, the MST model) can add its own frontend without a cycle.

>>> from melfront.frontends import FRONTENDS, frontend
>>> FRONTENDS["db"].description
'decibels, librosa.power_to_db (ref, amin, top_db per example)'
>>> type(frontend("pcen(per_band=True)", n_mels=8)).__name__
'PCEN'
"""
from __future__ import annotations

import ast
import importlib
import inspect
from typing import Callable, NamedTuple

from torch import nn

from ..errors import ParameterError

__all__ = ["FrontendEntry", "FRONTENDS", "PROVIDERS", "register_frontend", "frontend", "MAX_SPEC_LENGTH",
           "MAX_SPEC_DEPTH"]

#: longest spec string :func:`frontend` parses (characters)
MAX_SPEC_LENGTH = 2000
#: deepest nesting of frontends in a spec (``stack(chain(db, minmax))`` is 2 deep; ``a + b + c`` is 2)
MAX_SPEC_DEPTH = 20
_MAX_SYNTAX_DEPTH = 100  # any AST nesting (argument values too): well below Python's recursion limit


class FrontendEntry(NamedTuple):
    """One registered frontend: what :func:`frontend` calls for its name.

    ``builder(**kwargs)`` returns the module; ``input_kind`` is ``"mel"``, ``"waveform"`` or ``None`` when
    only the built module knows (e.g. :class:`~melfront.frontends.Stack`); ``combines`` marks the
    frontends whose positional arguments are frontend specs (``stack``, ``chain``).

    >>> FrontendEntry(dict, "a description").input_kind is None
    True
    """

    builder: Callable[..., nn.Module]
    description: str
    input_kind: str | None = None
    combines: bool = False


#: Modules above ``melfront.frontends`` that register frontends (``adaptive``, ``mst``). This module never
#: imports them up front (no cycle, and ``import melfront.frontends`` stays light); :data:`FRONTENDS` imports
#: them, by name, the first time it is read in full or misses a name, as an entry-point table would.
PROVIDERS = ("melfront.adaptive", "melfront.mst")


class _Registry(dict):
    """:data:`FRONTENDS`: a dict that imports the :data:`PROVIDERS` before it is listed or misses a name.

    So ``"mst" in FRONTENDS`` and ``frontend("adaptive")`` hold whatever was imported before, without
    ``import melfront`` importing every layer (the CLI's ``--help`` needs none of them).

    >>> "mst" in FRONTENDS and FRONTENDS["adaptive"].input_kind
    'waveform'
    """

    _providers_loaded = False

    def load_providers(self) -> None:
        """Import every module of :data:`PROVIDERS` once (each registers its frontends)."""
        if _Registry._providers_loaded:
            return
        _Registry._providers_loaded = True  # first: a provider's own import reads the registry too
        try:
            for module in PROVIDERS:
                importlib.import_module(module)
        except BaseException:
            _Registry._providers_loaded = False
            raise

    def __missing__(self, key):
        self.load_providers()
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        raise KeyError(key)

    def __contains__(self, key) -> bool:
        if not dict.__contains__(self, key):
            self.load_providers()
        return dict.__contains__(self, key)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def __iter__(self):
        self.load_providers()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self.load_providers()
        return dict.__len__(self)

    def keys(self):
        self.load_providers()
        return dict.keys(self)

    def values(self):
        self.load_providers()
        return dict.values(self)

    def items(self):
        self.load_providers()
        return dict.items(self)


#: name -> :class:`FrontendEntry`, filled by :func:`register_frontend` as the frontend modules are imported
#: (those of :data:`PROVIDERS` the first time the registry is listed or misses a name)
FRONTENDS: dict[str, FrontendEntry] = _Registry()


def register_frontend(name: str, description: str, *, input_kind: str | None = None, combines: bool = False):
    """Decorator that registers a frontend class or builder function under ``name`` in :data:`FRONTENDS`.

    ``name`` is what specs use (lower case, a Python identifier); ``description`` is the one line
    ``melfront frontends`` prints. ``input_kind`` defaults to the builder's own ``input_kind``
    attribute, else to ``"waveform"`` when ``description`` starts with ``"waveform"``, else ``None``
    (always ``None`` for ``combines=True``: a combination takes its frontends' kind).
    Registering a name again with another builder raises :class:`~melfront.errors.ParameterError`
    (re-importing the same definition replaces it).

    >>> @register_frontend("doctest_identity", "returns its input", input_kind="mel")
    ... class Identity(nn.Identity):
    ...     pass
    >>> FRONTENDS["doctest_identity"].builder is Identity
    True
    >>> del FRONTENDS["doctest_identity"]
    """
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise ParameterError(f"frontend name must be a lower-case identifier, got {name!r}")
    if not isinstance(description, str) or not description.strip():
        raise ParameterError(f"frontend {name!r} needs a one-line description, got {description!r}")
    if input_kind not in (None, "mel", "waveform"):
        raise ParameterError(f"input_kind must be 'mel', 'waveform' or None, got {input_kind!r}")

    def decorate(builder):
        if not callable(builder):
            raise ParameterError(f"register_frontend({name!r}) decorates a class or function, got {builder!r}")
        old = dict.get(FRONTENDS, name)  # no provider import: this runs while the providers are imported
        if old is not None and _qualified(old.builder) != _qualified(builder):
            raise ParameterError(f"frontend name {name!r} is already registered by {_qualified(old.builder)}")
        kind = input_kind or (None if combines else getattr(builder, "input_kind", None))
        if kind is None and description.lower().startswith("waveform"):
            kind = "waveform"
        FRONTENDS[name] = FrontendEntry(builder, description, kind if isinstance(kind, str) else None, bool(combines))
        return builder

    return decorate


def _qualified(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _names() -> str:
    return ", ".join(FRONTENDS) or "(none registered)"


def _accepted(builder):
    """(names of the keyword arguments ``builder`` takes, whether it takes ``**kwargs``)."""
    try:
        sig = inspect.signature(builder)
    except (TypeError, ValueError):  # a builtin without a signature: let it check its own arguments
        return set(), True
    names = {p.name for p in sig.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
    return names, any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())


def _operands(node):
    """The terms of ``a + b + c`` in order (iterative: a long chain does not recurse)."""
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add):
            stack.extend((n.right, n.left))
        else:
            out.append(n)
    return out


def _check_depth(node, spec: str) -> None:
    """Refuse specs nested too deeply, before anything recursive (building, ``literal_eval``, ``unparse``) sees them.

    Frontends may nest :data:`MAX_SPEC_DEPTH` deep (``a + b + c`` counts once); any other syntax
    (argument values, stray operators) :data:`_MAX_SYNTAX_DEPTH` deep.
    """
    todo = [(node, 1, 1, True)]  # node, frontend depth, syntax depth, whether node stands for a frontend
    while todo:
        n, depth, syntax, is_frontend = todo.pop()
        if depth > MAX_SPEC_DEPTH:
            raise ParameterError(f"frontend spec {spec[:60]!r}... nests frontends more than {MAX_SPEC_DEPTH} deep")
        if syntax > _MAX_SYNTAX_DEPTH:
            raise ParameterError(f"frontend spec {spec[:60]!r}... is nested more than {_MAX_SYNTAX_DEPTH} deep")
        if is_frontend and isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add):
            todo.extend((t, depth + 1, syntax + 1, True) for t in _operands(n))
        elif is_frontend and isinstance(n, ast.Call):
            todo.append((n.func, depth, syntax + 1, False))
            todo.extend((a, depth + 1, syntax + 1, True) for a in n.args)
            todo.extend((k, depth, syntax + 1, False) for k in n.keywords)
        else:
            todo.extend((c, depth, syntax + 1, False) for c in ast.iter_child_nodes(n))


def _literal(node, spec):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
        raise ParameterError(f"in frontend spec {spec!r}: argument values must be literals "
                             f"(numbers, strings, True/False/None, lists), got {ast.unparse(node)!r}") from None


def _build(node, spec: str, common: dict) -> nn.Module:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return FRONTENDS["chain"].builder(*[_build(t, spec, common) for t in _operands(node)])
    if isinstance(node, ast.Name):
        name, args, keywords = node.id, [], []
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name, args, keywords = node.func.id, node.args, node.keywords
    else:
        raise ParameterError(f"cannot parse frontend spec {spec!r} at {ast.unparse(node)!r}: expected name, "
                             f"name(key=value, ...) or a + b; valid names: {_names()}")
    key = name.lower()
    if key not in FRONTENDS:
        raise ParameterError(f"unknown frontend {name!r} in spec {spec!r}; valid names: {_names()}")
    entry = FRONTENDS[key]
    if entry.combines:
        if keywords:
            raise ParameterError(f"{key}(...) takes frontend specs only, got keyword {keywords[0].arg!r} in {spec!r}")
        if not args:
            raise ParameterError(f"{key}(...) needs at least one frontend spec, e.g. {key}(db, pcen), in {spec!r}")
        return entry.builder(*[_build(a, spec, common) for a in args])
    if args:
        raise ParameterError(f"frontend {key!r} takes keyword arguments only (name=value), "
                             f"got {ast.unparse(args[0])!r} in {spec!r}")
    accepted, var_kw = _accepted(entry.builder)
    given = {}
    for kw in keywords:
        if kw.arg is None:
            raise ParameterError(f"'**' is not allowed in frontend spec {spec!r}")
        if kw.arg not in accepted and not var_kw:
            raise ParameterError(f"frontend {key!r} has no argument {kw.arg!r} (in spec {spec!r}); "
                                 f"valid arguments: {', '.join(sorted(accepted)) or 'none'}")
        given[kw.arg] = _literal(kw.value, spec)
    kwargs = {k: v for k, v in common.items() if var_kw or k in accepted}
    kwargs.update(given)
    try:
        return entry.builder(**kwargs)
    except TypeError as exc:
        raise ParameterError(f"frontend spec {spec!r}: {exc}") from None


def frontend(spec: str, **common) -> nn.Module:
    """Build a frontend from a short spec string.

    ``spec`` is a name from :data:`FRONTENDS`, optionally with keyword arguments (Python literals
    only, parsed with :mod:`ast`, never evaluated): ``"db"``, ``"db(ref='max', top_db=None)"``,
    ``"logeps"``, ``"loglearn(per_band=True)"``, ``"power(per_band=True)"``,
    ``"pcen(trainable=True, per_band=True, init='loop')"``, ``"stack(db, pcen, power)"``,
    ``"chain(minmax, db)"`` or ``"db + minmax"``. ``common`` carries settings shared by all
    frontends (``n_mels``, ``sample_rate``, ``hop_length``, ``n_fft``); each builder gets only the
    ones it accepts, and the spec's own arguments override them. Unknown names or arguments, specs
    longer than :data:`MAX_SPEC_LENGTH` characters or nested deeper than :data:`MAX_SPEC_DEPTH`
    raise :class:`~melfront.errors.ParameterError` (a ``ValueError``) saying what is valid.

    >>> f = frontend("stack(db, pcen(init='loop'), power(per_band=True))", n_mels=4)
    >>> f.out_channels, [type(m).__name__ for m in f.frontends]
    (3, ['Decibel', 'PCEN', 'PowerLearn'])
    >>> frontend("nosuch")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: unknown frontend 'nosuch' in spec 'nosuch'; valid names: ...
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ParameterError(f"frontend spec must be a non-empty string, got {spec!r}")
    if len(spec) > MAX_SPEC_LENGTH:
        raise ParameterError(f"frontend spec is {len(spec)} characters long, more than {MAX_SPEC_LENGTH}: "
                             f"{spec[:60]!r}...")
    try:
        tree = ast.parse(spec.strip(), mode="eval")
    except SyntaxError as exc:
        raise ParameterError(f"cannot parse frontend spec {spec!r}: {exc.msg}; valid names: {_names()}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes; a parser stack overflow
        raise ParameterError(f"cannot parse frontend spec {spec[:60]!r}: {type(exc).__name__}: {exc}") from None
    _check_depth(tree.body, spec)
    return _build(tree.body, spec, common)
