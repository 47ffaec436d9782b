"""``melfront presets``: the published protocols melfront can run (``melfront compare --preset NAME``).

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> sub = parser.add_subparsers()
>>> for name, add, run in COMMANDS:
...     add(sub)
>>> parser.parse_args(["presets", "--show", "merlin"]).show
'merlin'
"""
from __future__ import annotations

__all__ = ["COMMANDS"]


def _add_presets(sub):
    p = sub.add_parser("presets", help="list the published protocols (run one with compare --preset NAME)",
                       description="The presets: published protocols as data, every setting with its source and "
                                   "status (read in the source, recalled from the paper or an account, or unfixed: "
                                   "melfront's choice). Run one with `melfront compare --preset NAME`.")
    p.add_argument("--show", metavar="NAME", help="print every setting of one preset: key, value, status, source")


def _run_presets(args):
    from ..presets import PRESETS, get_preset
    if args.show:
        print(get_preset(args.show).show())
        return 0
    width = max(len(name) for name in PRESETS)
    for name, preset in PRESETS.items():
        print(f"{name:<{width}}  {preset.reproduces}")
        print(f"{'':<{width}}  {preset.citation}")
    print("\nmelfront presets --show NAME: every setting; melfront compare --preset NAME [--dry-run]: run it")
    return 0


#: ``(name, add_parser, run)`` of this module's commands.
COMMANDS = [("presets", _add_presets, _run_presets)]
