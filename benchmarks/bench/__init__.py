"""dlrun's benchmarks, run from the repository root:

    .venv/bin/python -m benchmarks.bench engine [--quick] [--out PATH]     # engine overhead (engine.py)
    .venv/bin/python -m benchmarks.bench sweep [--repeats N] [--jobs N] [--json PATH]   # sweep cost (sweep.py)
    .venv/bin/python -m benchmarks.bench drawing [--repeats 5] [--json PATH]             # a report's figures
    .venv/bin/python -m benchmarks.bench probe [--repeats 7] [--json PATH]               # health probes' cost

timing.py holds the one timing helper they share; benchmarks/README.md says what each measures.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository root
DLRUN = Path(sys.executable).parent / "dlrun"  # the console script of the venv running the benchmark
