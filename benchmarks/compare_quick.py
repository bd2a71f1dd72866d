"""Does a change of code move any output? The quick pipeline at a revision and in the working tree, compared.

    uv run python benchmarks/compare_quick.py REV [--seeds 2]

Builds two copies of the workbook with the fast values of ``params.quick.yaml`` (as ``tests/test_pipeline.py``
does), one from ``git archive REV`` and one from the working tree, runs ``dvc repro`` in each (every stage, on the
5,000 offline digits, a few minutes each), and compares every CSV and JSON they wrote with
``benchmarks/compare_runs.py``'s rules (measured wall times aside). Both run on this host, so a difference is the
code's. Use it before recording a refactor with ``benchmarks/relock_code.py``.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml
from compare_runs import compare

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("dvc.yaml", ".dvcignore", "params.quick.yaml", ".gitignore", "kdlib", "notebooks")


def build(source: Path, work: Path, seeds: int) -> Path:
    """A quick workbook in ``work`` made of ``source``'s code and notebooks, under git and DVC, and run."""
    work.mkdir(parents=True)
    for name in COPIED:
        if (source / name).is_dir():
            shutil.copytree(source / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source / name, work / name)
    params = yaml.safe_load((source / "params.quick.yaml").read_text())
    params["distill"]["seeds"] = list(range(seeds))
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the stages import this copy's kdlib, not the installed one
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = os.environ | {"PYTHONPATH": str(work), "PATH": path}
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    for args in (["init", "-q"], ["config", "core.analytics", "false"], ["repro"]):
        subprocess.run([sys.executable, "-m", "dvc", *args], cwd=work, env=env, check=True)
    return work / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the revision to compare the working tree with")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per variant (default 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kdlib-compare-") as folder:
        old_source = Path(folder) / "source"
        archive = subprocess.run(["git", "archive", args.rev], cwd=ROOT, check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(old_source, filter="data")
        old = build(old_source, Path(folder) / "old", args.seeds)
        new = build(ROOT, Path(folder) / "new", args.seeds)
        files = sorted(p.relative_to(old) for p in old.rglob("*") if p.suffix in (".csv", ".json"))
        written = sorted(p.relative_to(new) for p in new.rglob("*") if p.suffix in (".csv", ".json"))
        moved = 0
        for name in sorted(set(files) ^ set(written)):
            print(f"{'gone ' if name in files else 'new  '} {name}")
            moved += 1
        for name in sorted(set(files) & set(written)):
            differences = compare(new / name, (old / name).read_bytes())
            print(f"{'DIFF ' if differences else 'same '} {name}")
            for line in differences:
                print(f"        {line}")
            moved += bool(differences)
        print(f"{len(files)} files at {args.rev}; {moved} differ (wall times aside)")
    return 1 if moved else 0


if __name__ == "__main__":
    sys.exit(main())
