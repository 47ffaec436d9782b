"""The house conventions, checked on the source: deliberate errors are MelfrontErrors, every file write goes
through melfront.fileio, every public definition in models/ carries a runnable example; and a missing root,
study or checkpoint is a DataNotFoundError that `except MelfrontError` and `except FileNotFoundError` both catch."""
import ast
from pathlib import Path

import pytest

import melfront
from melfront.errors import DataNotFoundError, MelfrontError

PACKAGE = Path(melfront.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _rel(path: Path, base: Path = PACKAGE.parent) -> str:
    return path.relative_to(base).as_posix()


def _trees(sources=SOURCES, base=PACKAGE.parent):
    for path in sources:
        yield _rel(path, base), ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _enclosing_functions(tree):
    """node -> name of the innermost function holding it ('' at module level)."""
    owner = {}

    def visit(node, name):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else name
            owner[child] = inner
            visit(child, inner)
    visit(tree, "")
    return owner


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
# Built-in exceptions a caller might be handed for bad input; melfront raises its own subclasses instead.
BANNED_RAISES = {"ValueError", "RuntimeError", "TypeError", "FileNotFoundError"}
# (file, function, exception): raises that a protocol requires, not errors about user input.
ALLOWED_RAISES = {
    # json.dumps(default=...) must raise TypeError for an object it cannot encode (json's protocol)
    ("melfront/study/store.py", "_jsonable", "TypeError"),
}


def _bare_raises(sources=SOURCES, base=PACKAGE.parent):
    found = []
    for rel, tree in _trees(sources, base):
        owner = _enclosing_functions(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(exc, ast.Name) and exc.id in BANNED_RAISES \
                        and (rel, owner.get(node, ""), exc.id) not in ALLOWED_RAISES:
                    found.append((rel, node.lineno, f"{rel}:{node.lineno} raise {exc.id}"))
    return [text for *_, text in sorted(found)]


def test_no_bare_builtin_errors_are_raised():
    assert _bare_raises() == []


def test_the_error_walk_finds_a_bare_raise(tmp_path):
    bad = tmp_path / "melfront" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("def f(x):\n    if x < 0:\n        raise ValueError('x < 0')\n    raise RuntimeError\n\n"
                   "def _jsonable(v):\n    raise TypeError(v)\n")
    assert _bare_raises([bad], tmp_path) == ["melfront/bad.py:3 raise ValueError", "melfront/bad.py:4 raise RuntimeError",
                                             "melfront/bad.py:7 raise TypeError"]


# --------------------------------------------------------------------------------------------
# File writes
# --------------------------------------------------------------------------------------------
# Calls that write a file when handed a path: method name -> index of the file argument.
WRITERS = {"write_text": None, "write_bytes": None, "savefig": 0, "save": None, "dump": 1, "write": 0}
# (file, function): direct writes that must stay direct, with the reason.
ALLOWED_WRITES = {
    # the resumable download appends to its ".part" file across runs (an atomic rewrite would lose the resume);
    # the finished, verified file is published with os.replace in _finish
    ("melfront/data/download.py", "_receive"),
}


def _atomic_handles(tree) -> set:
    """Names bound by ``with atomic_write(...) as NAME`` (and ``os.fdopen`` in fileio itself)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                call = item.context_expr
                if isinstance(call, ast.Call) and isinstance(item.optional_vars, ast.Name):
                    fn = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
                    if fn in ("atomic_write", "fdopen"):
                        names.add(item.optional_vars.id)
    return names


def _writes_a_path(call: ast.Call, handles: set) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name == "open":  # open(path, "w") / Path.open("w"): a write mode is a direct write
        args = call.args[1:] if isinstance(func, ast.Name) else call.args
        mode = args[0] if args else next((k.value for k in call.keywords if k.arg == "mode"), None)
        return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and any(c in mode.value for c in "wax")
    if name not in WRITERS or not isinstance(func, ast.Attribute):
        return False
    if name in ("write_text", "write_bytes"):
        return True
    owner = func.value.id if isinstance(func.value, ast.Name) else ""
    if name == "write" and owner not in ("soundfile", "sf"):
        return False  # f.write(...) on an open handle
    if name == "dump" and owner != "json":
        return False
    if name == "save":  # torch.save(obj, f), np.save(f, arr)
        if owner not in ("torch", "np", "numpy"):
            return False
        index = 1 if owner == "torch" else 0
    else:
        index = WRITERS[name]
    target = call.args[index] if len(call.args) > index else None
    return not (isinstance(target, ast.Name) and target.id in handles)


def _direct_writes():
    found = []
    for rel, tree in _trees():
        if rel == "melfront/fileio.py":
            continue
        owner, handles = _enclosing_functions(tree), _atomic_handles(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _writes_a_path(node, handles) \
                    and (rel, owner.get(node, "")) not in ALLOWED_WRITES:
                found.append((rel, node.lineno, f"{rel}:{node.lineno} {ast.unparse(node.func)}"))
    return [text for *_, text in sorted(found)]


def test_every_file_write_goes_through_fileio():
    assert _direct_writes() == []


@pytest.mark.parametrize("source,flagged", [
    ("Path('a').write_text('x')", True),
    ("open(p, 'w').write('x')", True),
    ("Path(p).open(mode='ab')", True),
    ("fig.savefig(p, dpi=1)", True),
    ("torch.save(obj, p)", True),
    ("json.dump(obj, open_file)", True),
    ("soundfile.write(p, x, 8000)", True),
    ("open(p, 'rb').read()", False),
    ("with atomic_write(p, 'wb') as f:\n    torch.save(obj, f)\n    f.write(b'')", False),
    ("with atomic_write(p, 'wb') as f:\n    fig.savefig(f, format='png')", False),
])
def test_the_write_walk_tells_direct_from_atomic(source, flagged):
    tree = ast.parse(source)
    handles = _atomic_handles(tree)
    hits = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _writes_a_path(n, handles)]
    assert bool(hits) == flagged


# --------------------------------------------------------------------------------------------
# models/: a runnable example in every public class and function
# --------------------------------------------------------------------------------------------
def test_every_public_definition_in_models_has_a_doctest():
    missing, seen = [], 0
    for path in sorted((PACKAGE / "models").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and not node.name.startswith("_"):
                seen += 1
                if ">>> " not in (ast.get_docstring(node) or ""):
                    missing.append(f"{_rel(path)}:{node.name}")
    assert seen >= 15 and missing == []


# --------------------------------------------------------------------------------------------
# DataNotFoundError
# --------------------------------------------------------------------------------------------
def _caught_both_ways(call):
    with pytest.raises(MelfrontError) as first:
        call()
    with pytest.raises(FileNotFoundError):
        call()
    assert isinstance(first.value, DataNotFoundError)
    return str(first.value)


def test_missing_dataset_root(tmp_path):
    from melfront.data import dataset
    message = _caught_both_ways(lambda: dataset("esc50", tmp_path / "nowhere"))
    assert "nowhere" in message and "melfront download esc50" in message
    message = _caught_both_ways(lambda: dataset("folder", tmp_path / "nowhere"))
    assert "nowhere" in message


def test_missing_checkpoint(tmp_path):
    from melfront.train import load_classifier
    message = _caught_both_ways(lambda: load_classifier(tmp_path / "none.pt"))
    assert "none.pt" in message and "does not exist" in message
    (tmp_path / "run").mkdir()  # a run folder without its checkpoint
    assert "checkpoint.pt" in _caught_both_ways(lambda: load_classifier(tmp_path / "run"))


def test_missing_study_for_report(tmp_path, capsys):
    from melfront.cli import main
    from melfront.cli.study import _run_report
    args = type("Args", (), {"study": str(tmp_path / "gone"), "output": None})()
    message = _caught_both_ways(lambda: _run_report(args))
    assert "no such study" in message
    assert main(["report", str(tmp_path / "gone")]) == 2
    assert "no such study (run melfront compare first)" in capsys.readouterr().err
