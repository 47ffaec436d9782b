"""The --until-decided stopping rule by simulation: error rates and runs used against Pons et al.'s fixed runs.

One cell, two frontends, paired differences normal with the given mean and std (points); the rule of
melfront.study.sequential with its defaults (3 runs, +3 per round, at most 20, alpha 0.05, D = 2 points).
Pure numpy/scipy, no training: about half a minute on one core.

    .venv/bin/python benchmarks/bench_sequential_rule.py [--studies 1000]
"""
import argparse
import time

from melfront.study.sequential import SequentialRule, simulate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--max-runs", type=int, default=20)
    args = parser.parse_args()
    rule = SequentialRule(max_runs=args.max_runs)
    print(f"rule: looks at {rule.schedule} runs, alpha per look "
          f"{', '.join(f'{rule.alpha_at(r):.1e}' for r in rule.schedule)}; {args.studies} simulated studies each")
    print("| true difference | paired std | worse declared | within ±2 | undecided at max | wrong sign | mean runs |")
    print("|---|---|---|---|---|---|---|")
    start = time.perf_counter()
    for diff, std in ((0.0, 3.0), (0.0, 1.0), (2.0, 3.0), (5.0, 3.0), (5.0, 6.0), (10.0, 3.0)):
        s = simulate(diff, std, studies=args.studies, rule=rule, seed=1)
        print(f"| {diff:g} | {std:g} | {100 * s['found']:.1f} % | {100 * s['equivalent']:.1f} % | "
              f"{100 * s['undecided']:.1f} % | {100 * s['wrong_sign']:.1f} % | {s['runs']:.1f} |")
    print(f"fixed runs (Pons et al.): n <= 2: 20, n = 5-10: 10, n >= 20: 5; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
