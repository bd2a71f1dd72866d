"""What the numerical pins of kdlib.core.reproducibility cost: training speed with and without them.

    uv run python benchmarks/pinning_cost.py [--repeats 5]

Trains the study's teacher (784-1200-1200-10, torch's default thread count) and its default student
(784-400-400-10 LIF, T = 4, kd objective, one thread, as the distillation stage trains it) for a fixed
number of batches on mnist-5k, in fresh processes that take turns, pinned (the default) and unpinned
(``KDLIB_PIN_NUMERICS=0``, the three variables removed). Reports images/s as the median of the repeats
and the ratio pinned / unpinned, measured in the same run. Writes ``benchmarks/pinning_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

JOB = """
import sys, time
import torch
from kdlib.core import params as P
from kdlib.core.data import batches, encode, load_dataset
from kdlib.kd.losses import build_objective
from kdlib.snn.teachers import build_teacher
from kdlib.snn.students import build_student
from kdlib.kd.distill import teacher_targets

which, n_batches = sys.argv[1], int(sys.argv[2])
ds = load_dataset("mnist-5k")
teacher = build_teacher(P.quick_section("teacher", hidden=[1200, 1200]))
if which == "teacher":
    model, params = teacher, teacher.parameters()
else:
    torch.set_num_threads(1)
    cfg = P.quick_section("student", hidden=[400, 400], steps=4)
    model = build_student(cfg)
    objective = build_objective(P.KDVariant(loss="kd", alpha=0.9, tau_teacher=4.0, tau_student=4.0), 4,
                                model.layer_widths(), teacher.hidden_widths())
    targets = teacher_targets(teacher, ds.train, [])
    params = [*model.parameters(), *objective.parameters()]
opt = torch.optim.Adam(params, lr=1e-3, fused=True)
gen = torch.Generator().manual_seed(0)

def step(b):
    if which == "teacher":
        out = model(b.x).logits
        loss = torch.nn.functional.cross_entropy(out, b.y)
    else:
        from kdlib.snn.teachers import ModelOutput
        loss, _ = objective(model(encode(b.x, 4)), b.y, ModelOutput(targets.logits[b.index], []))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()

done, images, tic = 0, 0, None
while done < n_batches + 5:
    for b in batches(ds.train, 128, shuffle=True, generator=gen):
        if done == 5:
            tic = time.perf_counter()
        step(b)
        done += 1
        images += len(b.y) if done > 5 else 0
        if done >= n_batches + 5:
            break
print("rate", images / (time.perf_counter() - tic))
"""


def run(which: str, pinned: bool, batches: int) -> float:
    env = dict(os.environ)
    if not pinned:
        from kdlib.core.reproducibility import PINS

        env = {k: v for k, v in env.items() if k not in PINS} | {"KDLIB_PIN_NUMERICS": "0"}
    out = subprocess.run([sys.executable, "-c", JOB, which, str(batches)], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(next(line.split()[1] for line in out.splitlines() if line.startswith("rate ")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "pinning_cost.json")
    args = parser.parse_args()
    rates: dict[str, dict[str, list[float]]] = {w: {"pinned": [], "unpinned": []} for w in ("teacher", "student")}
    for _ in range(args.repeats):
        for which in rates:
            for pinned in (True, False):  # taking turns, so that drift of the host hits both alike
                rates[which]["pinned" if pinned else "unpinned"].append(run(which, pinned, args.batches))
    summary = {"cpu": platform.processor() or platform.machine(), "repeats": args.repeats, "batches": args.batches}
    for which, r in rates.items():
        med = {k: statistics.median(v) for k, v in r.items()}
        summary[which] = {"images_per_second": med, "pinned_over_unpinned": round(med["pinned"] / med["unpinned"], 3),
                          "all": r}
        print(f"{which}: pinned {med['pinned']:,.0f} images/s, unpinned {med['unpinned']:,.0f} images/s, "
              f"ratio {med['pinned'] / med['unpinned']:.3f}")
    args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
