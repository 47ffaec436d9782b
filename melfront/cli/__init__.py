"""The ``melfront`` command line.

Each command is a pair in its module's ``COMMANDS``: ``add(subparsers)`` declares its arguments and
``run(args)`` does the work. Modules: :mod:`.audio` (show, frontends, equivalence), :mod:`.train`
(train, evaluate, predict), :mod:`.mst` (learn-mel, mst-study), :mod:`.study` (compare, report),
:mod:`.presets` (presets),
:mod:`.data` (download, synth); shared argument groups are in :mod:`.options`.
Nothing that imports torch or numpy is imported before argparse has parsed: the command modules
declare arguments only, and the heavy melfront modules (frontends, models, training, plotting) are
imported inside the ``run`` functions and the setting checks of :mod:`.options`, the one place in
melfront where imports live in functions, so that ``melfront --help`` and ``melfront COMMAND --help``
start in about 0.4 s (``tests/test_cli_help.py`` checks that torch stays unimported).

Errors: :func:`main` turns every deliberate error (:class:`~melfront.errors.MelfrontError`, a missing
or unreadable file, a diverged training) into one line ``melfront CMD: error: ...`` on stderr and
exit status 2; Ctrl-C gives 130; anything else is a bug: a short "internal error" line and exit
status 3, or the full traceback with ``melfront --debug CMD ...``.

>>> [name for name, _, _ in COMMANDS][:3]
['show', 'frontends', 'train']
>>> split_specs("db,stack(db, pcen)")
['db', 'stack(db, pcen)']
"""
from __future__ import annotations

import argparse
import sys
import traceback

from ..errors import MelfrontError, PathError
from ..runtime import tune_allocator
from . import audio, data, export, mst, presets, study, train
from .options import split_specs
from .study import study_config_from_args

__all__ = ["main", "build_parser", "COMMANDS", "split_specs", "study_config_from_args", "EXIT_ERROR", "EXIT_BUG",
           "EXIT_INTERRUPTED"]

#: Exit status for a deliberate error (bad input, missing file, diverged training).
EXIT_ERROR = 2
#: Exit status for an unexpected exception (a bug in melfront).
EXIT_BUG = 3
#: Exit status after Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130

_BY_NAME = {name: (add, run) for module in (audio, train, mst, study, presets, data, export) for name, add, run in module.COMMANDS}
_ORDER = ["show", "frontends", "train", "evaluate", "predict", "learn-mel", "mst-study", "compare", "report", "presets",
          "download", "synth", "equivalence"]

#: ``(name, add_parser, run)`` of every command, in the order ``melfront --help`` lists them.
COMMANDS = [(name, *_BY_NAME[name]) for name in _ORDER] + [
    (name, *entry) for name, entry in _BY_NAME.items() if name not in _ORDER]


class _Version(argparse.Action):
    """``--version``: looks the installed version up only when asked (importlib.metadata is slow to import)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from .. import __version__
        print(f"melfront {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command.

    >>> args = build_parser().parse_args(["--debug", "frontends"])
    >>> args.command, args.debug
    ('frontends', True)
    """
    parser = argparse.ArgumentParser(
        prog="melfront",
        description="Mel-spectrogram frontends for neural audio classifiers: look at them, train with them, compare them.")
    parser.add_argument("--version", action=_Version, help="show melfront's version and exit")
    parser.add_argument("--debug", action="store_true",
                        help="on an unexpected error, print the full traceback (for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, add, run in COMMANDS:
        add(sub)
        sub.choices[name].set_defaults(_run=run)
    return parser


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (its lines joined with "; "), or its type when it has none."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def main(argv=None) -> int:
    """Run ``melfront`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    >>> main(["report", "/no/such/study.db"])  # the error goes to stderr as one line
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    cmd = args.command
    tune_allocator()  # glibc malloc for tensor-sized blocks (melfront/runtime.py), before any work
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"melfront {cmd}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (MelfrontError, OSError, FloatingPointError) as exc:  # an OSError is the user's path or disk: name both
        if args.debug:
            traceback.print_exc()
        if isinstance(exc, OSError) and not isinstance(exc, MelfrontError):
            exc = PathError.from_os_error(exc)
        print(f"melfront {cmd}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # anything else is a bug in melfront: say so, and how to report it
        if args.debug:
            traceback.print_exc()
        else:
            print(f"melfront {cmd}: internal error: {type(exc).__name__}: {_one_line(exc)} - this is a bug, please "
                  f"report it with the output of `melfront --debug {cmd} ...`", file=sys.stderr)
        return EXIT_BUG
