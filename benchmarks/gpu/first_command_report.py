"""After `greenai run` on a lent GPU (benchmarks/gpu/first_command.sh): where its time went.

    python benchmarks/gpu/first_command_report.py EXPERIMENT OUT.json

The end-to-end report (end_to_end_report.py) on this one experiment, with the Dagster instance of the
environment's DAGSTER_HOME: every row's stage seconds, the runtime and kernel that measured latency and
memory, J/token and its source; every run with its status, wall time and steps.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from end_to_end_report import main  # noqa: E402 - a sibling script, not a package

if __name__ == "__main__":
    main([sys.argv[2], "--experiment", sys.argv[1]])
