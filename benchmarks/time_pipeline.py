"""Time the whole pipeline stage by stage, as ``dvc repro`` runs it.

    uv run python benchmarks/time_pipeline.py [--force] [--log repro.log]
    uv run python benchmarks/time_pipeline.py --parse repro.log     # summarise an earlier timed run
    uv run python benchmarks/time_pipeline.py --force tune --out part1.json   # only these stages (and upstream)

Runs ``dvc repro`` (``--force``: every stage, as from a clean state) in the workbook, timestamps every
line DVC prints, and reports the wall time of each stage (from its ``Running stage`` line to the next
stage's), totals per stage family (teacher, distill, …), the whole run, the peak resident memory
of the largest process it started (the notebook kernels do the work), and the memory in use on the
whole machine (MemTotal − MemAvailable, sampled every 3 s) before the run and at its peak, overall and
within each stage, which counts a distillation run's seed workers and its notebook kernel together.

It also measures the dense fp32 matmul rate of this host (``train_throughput.matmul_gflops``, in a fresh
process with kdlib's numerical pins, on all cores) right before ``dvc repro`` starts and right after it
ends, so that ``compute_floor.py`` divides this run's work by a rate measured in the same run: these hosts'
rates differ by 2× or more, and one host's drifts.
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


def matmul_rate() -> float:
    """The host's dense fp32 matmul rate in GFLOP/s, measured in a fresh process as the stages compute."""
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import kdlib; "
            "from train_throughput import matmul_gflops; print(matmul_gflops(repeats=15))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rerun every stage")
    parser.add_argument("--log", type=Path, help="also write the timestamped DVC output here")
    parser.add_argument("--parse", type=Path, help="summarise a log written by --log instead of running")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "pipeline_times.json")
    parser.add_argument("targets", nargs="*", help="stages to reproduce, with what they depend on (default: all)")
    args = parser.parse_args()
    memory: list[tuple[float, float]] = []  # (time, MiB in use)
    rates: dict[str, float] = {}
    if args.parse:
        lines = [(float(t), line) for t, _, line in (row.partition(" ") for row in args.parse.read_text().splitlines())]
        begin, end, returncode = lines[0][0], lines[-1][0], 0
    else:
        cmd = [sys.executable, "-m", "dvc", "repro", *(["--force"] if args.force else []), *args.targets]
        done = threading.Event()

        def sample_memory() -> None:
            while (mib := machine_memory_in_use_mib()) is not None:
                memory.append((time.time(), mib))
                if done.wait(3.0):
                    return

        rates["before"] = matmul_rate()
        print(f"dense fp32 matmul before the run: {rates['before']:.0f} GFLOP/s", flush=True)
        sampler = threading.Thread(target=sample_memory, daemon=True)
        sampler.start()
        begin = time.time()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        log = args.log.open("w") if args.log else None  # written as it goes: a killed run keeps its log
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip("\n")))
            print(line, end="", flush=True)
            if log:
                log.write(f"{lines[-1][0]:.0f} {lines[-1][1]}\n")
                log.flush()
        returncode = proc.wait()
        if log:
            log.close()
        end = time.time()
        done.set()
        sampler.join()
        rates["after"] = matmul_rate()
        print(f"dense fp32 matmul after the run: {rates['after']:.0f} GFLOP/s", flush=True)
    times = stage_times(lines, end)
    starts = {m.group(1): t for t, line in lines if (m := STAGE.search(line))}
    stage_memory = {name: max((mib for t, mib in memory if start <= t <= start + seconds), default=None)
                    for name, start in starts.items() if (seconds := times.get(name)) is not None}
    families: dict[str, float] = defaultdict(float)
    for name, seconds in times.items():
        families[name.split("@")[0]] += seconds
    peak_mib = None if args.parse else resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    summary = {"returncode": returncode, "total_seconds": end - begin, "stages": times,
               "families": dict(families), "peak_child_rss_mib": peak_mib,
               "machine_memory_mib": {"before": memory[0][1], "peak": max(mib for _, mib in memory),
                                      "stage_peaks": stage_memory} if memory else None,
               "matmul_gflops": rates or None}
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print("\n| stage | runs | minutes |\n|---|---|---|")
    for family, seconds in families.items():
        runs = sum(1 for n in times if n.split("@")[0] == family)
        print(f"| {family} | {runs} | {seconds / 60:.1f} |")
    print(f"| **total** | {len(times)} | {(end - begin) / 60:.1f} |")
    if peak_mib is not None:
        print(f"peak memory of one process: {peak_mib:,.0f} MiB")
    if memory:
        peak_stage = max((n for n in stage_memory if stage_memory[n] is not None), key=stage_memory.get, default=None)
        print(f"memory in use on the machine: {memory[0][1]:,.0f} MiB before the run, "
              f"{max(mib for _, mib in memory):,.0f} MiB at its peak (during {peak_stage})")
    sys.exit(returncode)


if __name__ == "__main__":
    main()
