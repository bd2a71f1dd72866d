"""Time the whole pipeline stage by stage, as ``dvc repro`` runs it.

    uv run python benchmarks/time_pipeline.py [--force] [--log repro.log]
    uv run python benchmarks/time_pipeline.py --parse repro.log     # summarise an earlier timed run

Runs ``dvc repro`` (``--force``: every stage, as from a clean state) in the workbook, timestamps every
line DVC prints, and reports the wall time of each stage (from its ``Running stage`` line to the next
stage's), totals per stage family (teacher, distill, …), the whole run, the peak resident memory
of the largest process it started (the notebook kernels do the work), and the memory in use on the
whole machine (MemTotal − MemAvailable, sampled every 3 s) before the run and at its peak, which counts
a distillation run's seed workers and its notebook kernel together.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGE = re.compile(r"Running stage '([^']+)'")


def stage_times(lines: list[tuple[float, str]], end: float) -> dict[str, float]:
    """Seconds per stage from timestamped DVC output."""
    starts = [(t, m.group(1)) for t, line in lines if (m := STAGE.search(line))]
    bounds = [t for t, _ in starts[1:]] + ([end] if starts else [])  # no stage ran: nothing to time
    return {name: stop - start for (start, name), stop in zip(starts, bounds, strict=True)}


def machine_memory_in_use_mib() -> float | None:
    """Memory in use on the whole machine (MemTotal − MemAvailable), or None where /proc/meminfo is absent."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    except OSError:
        return None
    return (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rerun every stage")
    parser.add_argument("--log", type=Path, help="also write the timestamped DVC output here")
    parser.add_argument("--parse", type=Path, help="summarise a log written by --log instead of running")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "pipeline_times.json")
    args = parser.parse_args()
    memory: list[float] = []
    if args.parse:
        lines = [(float(t), line) for t, _, line in (row.partition(" ") for row in args.parse.read_text().splitlines())]
        begin, end, returncode = lines[0][0], lines[-1][0], 0
    else:
        cmd = [sys.executable, "-m", "dvc", "repro", *(["--force"] if args.force else [])]
        done = threading.Event()

        def sample_memory() -> None:
            while (mib := machine_memory_in_use_mib()) is not None:
                memory.append(mib)
                if done.wait(3.0):
                    return

        sampler = threading.Thread(target=sample_memory, daemon=True)
        sampler.start()
        begin = time.time()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip("\n")))
            print(line, end="", flush=True)
        returncode = proc.wait()
        end = time.time()
        done.set()
        sampler.join()
        if args.log:
            args.log.write_text("".join(f"{t:.0f} {line}\n" for t, line in lines))
    times = stage_times(lines, end)
    families: dict[str, float] = defaultdict(float)
    for name, seconds in times.items():
        families[name.split("@")[0]] += seconds
    peak_mib = None if args.parse else resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    summary = {"returncode": returncode, "total_seconds": end - begin, "stages": times,
               "families": dict(families), "peak_child_rss_mib": peak_mib,
               "machine_memory_mib": {"before": memory[0], "peak": max(memory)} if memory else None}
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print("\n| stage | runs | minutes |\n|---|---|---|")
    for family, seconds in families.items():
        runs = sum(1 for n in times if n.split("@")[0] == family)
        print(f"| {family} | {runs} | {seconds / 60:.1f} |")
    print(f"| **total** | {len(times)} | {(end - begin) / 60:.1f} |")
    if peak_mib is not None:
        print(f"peak memory of one process: {peak_mib:,.0f} MiB")
    if memory:
        print(f"memory in use on the machine: {memory[0]:,.0f} MiB before the run, {max(memory):,.0f} MiB at its peak")
    sys.exit(returncode)


if __name__ == "__main__":
    main()
