"""`python -m benchmarks.bench engine|sweep [options]`: run one benchmark (`... engine --help` for its options)."""

import importlib
import sys

COMMANDS = {
    "engine": "dlrun's fit() against a hand-written loop and Lightning, the dlrun command, scaling",
    "sweep": "the marginal cost of one job in a basic-launcher sweep, against the job's own fit()",
    "drawing": "the seconds of one report's figures, fresh and (the least any reuse could cost) redrawn",
    "probe": "the cost of the training-health probes (report.probe_every) on the default run's epochs",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print("usage: python -m benchmarks.bench {engine,sweep,drawing,probe} [options]\n", file=sys.stderr)
        for name, what in COMMANDS.items():
            print(f"  {name:8}{what}", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    # imported here so that `sweep` never pays for torch, which engine imports at the top
    module = importlib.import_module(f"benchmarks.bench.{argv[0]}")
    module.main(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
