"""python -m bench [--only 1,3] [--quick] [--reps N]"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from .figures import FIGURES
from .measure import BenchError
from .runner import run
from .settings import Settings


def parse(argv: list[str]) -> tuple[Settings, list[int]]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", help="figures to run, e.g. 2 or 1,3 (default: all five)")
    parser.add_argument(
        "--quick", action="store_true", help="one repetition, a fifth of the data: a smoke run"
    )
    parser.add_argument("--reps", type=int, help="repetitions per side (default 3)")
    args = parser.parse_args(argv)
    settings = Settings().quick_variant() if args.quick else Settings()
    if args.reps is not None:
        if args.reps < 1:
            parser.error("--reps must be at least 1")
        settings = replace(settings, reps=args.reps)
    only = list(FIGURES)
    if args.only:
        try:
            only = [int(x) for x in args.only.split(",")]
        except ValueError:
            parser.error(f"--only takes figure numbers like 2 or 1,3, not {args.only!r}")
        unknown = [n for n in only if n not in FIGURES]
        if unknown:
            parser.error(f"no figure {unknown[0]}; figures are {', '.join(map(str, FIGURES))}")
    return settings, only


def main(argv: list[str] | None = None) -> int:
    settings, only = parse(sys.argv[1:] if argv is None else argv)
    try:
        return run(settings, only)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
