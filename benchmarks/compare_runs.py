"""Compare the results of a rerun with a committed run, file by file, timings aside.

    uv run python benchmarks/compare_runs.py [REV]      # REV: the committed run (default HEAD)

For every file under ``results/`` that differs from ``REV``: JSON metrics are compared key by key and
CSV tables column by column, leaving out the measured wall times (``TIMING``), the only fields that a
deterministic rerun may change. Prints ``same`` or ``DIFF`` per file and, for metrics, each key that moved.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

TIMING = {"train_seconds", "train_images_per_second", "seconds", "lava_seconds", "lava_steps_per_second",
          "Lava steps / s", "Lava wall time (s)"}  # the Loihi stage's deployed.csv names them so


def _without_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def compare(path: Path, old: bytes) -> list[str]:
    """The differences of ``path`` from its committed bytes ``old`` (empty: the same, timings aside)."""
    if path.suffix == ".json":
        a, b = _without_timing(json.loads(old)), _without_timing(json.loads(path.read_text()))
        return [f"{key}: {a.get(key)} -> {b.get(key)}" for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]
    if path.suffix == ".csv":
        a, b = pd.read_csv(io.BytesIO(old)), pd.read_csv(path)
        if list(a.columns) != list(b.columns):
            return [f"columns {list(a.columns)} -> {list(b.columns)}"]
        columns = [c for c in a.columns if c not in TIMING]
        return [] if a[columns].equals(b[columns]) else ["values differ"]
    return ["not compared (neither JSON nor CSV)"]


def main() -> None:
    rev = sys.argv[1] if len(sys.argv) > 1 else "HEAD"
    changed = subprocess.check_output(["git", "diff", "--name-only", rev, "--", "results"], text=True).split()
    for name in changed:
        path = Path(name)
        try:
            old = subprocess.check_output(["git", "show", f"{rev}:{name}"], stderr=subprocess.DEVNULL)
        except subprocess.CalledProcessError:
            print(f"new   {name}")
            continue
        if not path.exists():
            print(f"gone  {name}")
            continue
        moved = compare(path, old)
        print(f"{'DIFF ' if moved else 'same '} {name}")
        for line in moved:
            print(f"        {line}")
    print(f"{len(changed)} files differ from {rev} byte for byte")


if __name__ == "__main__":
    main()
