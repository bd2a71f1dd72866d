"""The study's compute floor: the floating-point work of its matrix products, beside its wall time.

    uv run python benchmarks/compute_floor.py [--times benchmarks/pipeline_times.json ...] [--repeats 7]

The floor of a stage is the work of every matrix product that the stage must do, divided by the dense
fp32 matmul rate of the host: by default the mean of the rates that ``time_pipeline.py`` measured right
before and right after the timed run (so work and wall time come from the same run), else, or with
``--measure``, the median of ``--repeats`` 2048² products measured here on all threads torch uses.
Everything else a stage does (neuron updates, the optimiser, data movement, Python, start-up,
Lava's simulation) is above the floor. The work is derived from ``params.yaml``:

* **products** of a dense layer with ``m`` inputs and ``n`` outputs: ``2·m·n`` FLOPs per image and step
  forward, the same again for the weight gradient, and again for the input gradient where the layer's
  input needs one (every layer but the first);
* **time**: a student's first layer runs once per image when its input is constant (direct encoding) and
  at every step when it is not (rate-coded input); every later layer runs at every step;
* **teacher** (stage 1): every epoch trains on the training split and evaluates the validation split;
  the selected teacher is evaluated once on the test split;
* **distillation** (stage 2, every dataset × variant × seed): the teacher's outputs on the training split
  once (a frozen teacher) or a forward and backward pass on every batch (``bidirectional_kd``, which
  fine-tunes it; a live forward pass when the student's ``max_shift`` > 0); the student's training and
  validation every epoch; the feature objectives' decoders and regressors (a dense map from a student
  layer to the teacher's width, trained with the student); one test pass that counts spikes;
* **tuning** (every dataset × variant): the frozen teacher's outputs once per study, then every trial's
  training for the epochs it ran (``trials.csv``; a pruned trial stops early; before the study has run, its
  budget of ``tune.trials`` × ``tune.epochs``) and its validation pass that counts spikes;
* **front** (every dataset): the same for KD's student at every pair of temperatures of ``front.taus`` and
  the ``rate_reg`` student at every λ of ``front.rate_lambdas``, for ``student.epochs``;
* **spike analysis** (stage 3, every dataset): the teacher on the test split; every student on the test
  split at ``spikes.max_steps`` (accuracy against T), at its own T twice (operation counts and early
  exit); the conversion's calibration on ``calibration_images`` and its run at the largest T of
  ``conversion_steps``; the noise sweep (the teacher and the first seed of every variant, at every level
  of every corruption of :data:`kdlib.measure.analysis.CORRUPTIONS`);
* **Loihi** (stage 4, every dataset of ``loihi.datasets``): for every LIF student of stage 2, its
  integer versions (every candidate of ``loihi.input_bits`` and :data:`kdlib.loihi.fixed_point.HEADROOMS`)
  calibrated and run on the validation split, then on the test split beside the float student (the
  integer model's products are float64, counted twice, and run at every step); the best student with a
  rate code; on the datasets of ``loihi.baseline``, the SLAYER student trained with its input spikes at
  every step, the live teacher (``max_shift`` > 0), its validation every epoch, and one PyTorch pass on
  the ``lava_images``. Lava's simulation is not bound by products: its measured time (``lava_seconds`` in
  the stage's metrics, and the baseline's) is reported beside the floor, not in it.

A conv student's products are its convolutions' (C_in·k²·C_out multiply-adds per output position) and
its dense layers' (:func:`student_layers`); the teacher, the feature objectives' maps and the Loihi stage
are modelled for fully connected (``mlp``) networks only, and the script says so rather than guess. The
wall times come from ``benchmarks/time_pipeline.py``'s summary of a run on the same host (``--times``); a
ratio of wall time to floor is comparable across hosts, absolute times are not. The result is written to
``benchmarks/compute_floor.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_throughput import cnn_products, matmul_gflops, product_flops  # noqa: E402

from kdlib.core import params as P  # noqa: E402
from kdlib.loihi.fixed_point import HEADROOMS  # noqa: E402
from kdlib.measure.analysis import CORRUPTIONS  # noqa: E402

TEST_IMAGES = {"mnist": 10_000, "fashion-mnist": 10_000, "mnist-5k": 500}
CLASSES = 10


Layers = list[tuple[int, int, int]]  # every product of a network: (fan_in, fan_out, output positions)


def dense_layers(hidden: list[int]) -> Layers:
    """The products of an MLP with these hidden widths: (inputs, outputs, 1) per dense layer."""
    widths = [P.PIXELS, *hidden, CLASSES]
    return [(m, n, 1) for m, n in zip(widths[:-1], widths[1:], strict=True)]


def student_layers(cfg: P.StudentParams) -> Layers:
    """The products of a student: its dense layers, or (cnn) its convolutions (C_in·k², C_out, H·W) first."""
    if cfg.arch == "cnn":
        return cnn_products(list(cfg.channels), list(cfg.hidden), CLASSES)
    return dense_layers(cfg.hidden)


def forward_flops(layers: Layers, steps: int = 1, constant_input: bool = True) -> float:
    """FLOPs of one image's forward pass; with ``steps`` > 1 the first layer runs once if its input is constant."""
    return sum(2.0 * m * n * pos * (1 if i == 0 and constant_input else steps) for i, (m, n, pos) in enumerate(layers))


def training_flops(layers: Layers, steps: int = 1, constant_input: bool = True) -> float:
    """FLOPs of one image's training step: forward, weight gradients and the input gradients of every layer
    but the first (:func:`train_throughput.product_flops`)."""
    return product_flops(layers, steps, constant_input)


def _sizes(params: P.Params, dataset: str) -> tuple[int, int, int]:
    val = P.DEFAULT_VAL_SIZE[dataset] if params.data.val_size is None else params.data.val_size
    return P.TRAIN_IMAGES[dataset] - val, val, TEST_IMAGES[dataset]


def _require_mlp(arch: str, section: str) -> None:
    if arch != "mlp":
        raise SystemExit(f"{section}.arch = {arch!r}: the floor model covers this stage for fully connected (mlp) "
                         "networks only")


def _student_forward(cfg: P.StudentParams) -> float:
    return forward_flops(student_layers(cfg), cfg.steps, cfg.encoding == "direct")


def _training(spec: P.VariantParams, cfg: P.StudentParams, teacher: list[tuple[int, int]], teacher_hidden: list[int],
              train: int, val: int):  # noqa: ANN202
    """A function of epochs: the FLOPs of training a variant's student that long, validating every epoch, and
    its teacher's work (``once``: with the frozen teacher's outputs computed once for the run; without, for one
    trial of a study or a point of the front that shares them)."""
    layers, constant = student_layers(cfg), cfg.encoding == "direct"
    t_fwd = forward_flops(teacher)
    s_fwd = forward_flops(layers, cfg.steps, constant)
    per_image = training_flops(layers, cfg.steps, constant)
    mapped = spec.layers if spec.loss in ("decoder_kd", "bidirectional_kd", "joint_kd") else []
    if mapped:
        _require_mlp(cfg.arch, "the feature objectives' student")
    for layer in mapped:  # a decoder or regressor to the teacher's width, trained with the student
        per_image += 3 * 2.0 * cfg.hidden[layer] * teacher_hidden[layer]

    def flops(epochs: int, once: bool = True) -> float:
        if spec.loss == "bidirectional_kd":
            teacher_work = epochs * train * (3 * t_fwd - 2.0 * teacher[0][0] * teacher[0][1])
        elif spec.loss in ("ce", "rate_reg"):
            teacher_work = 0.0
        elif cfg.max_shift > 0:
            teacher_work = epochs * train * t_fwd
        else:
            teacher_work = train * t_fwd if once else 0.0  # the frozen teacher's outputs, once per run
        return teacher_work + epochs * (train * per_image + val * s_fwd)

    return flops


def _trial_epochs(params: P.Params, dataset: str, variant: str) -> list[int]:
    """The epochs every trial of a study trained (``trials.csv``; a pruned trial stops early), or, before the
    study has run, its budget; the targets of a frozen teacher are counted once per study, in the first."""
    path = ROOT / "results" / "tune" / dataset / variant / "trials.csv"
    if path.is_file():
        import pandas as pd

        return [int(e) for e in pd.read_csv(path).epochs]
    return [params.tune.epochs] * params.tune.trials


def study_flops(params: P.Params) -> dict[str, float]:
    """FLOPs of the products of every stage run of the study, by DVC stage name."""
    flops: dict[str, float] = {}
    for dataset in params.data.datasets:
        train, val, test = _sizes(params, dataset)
        t_cfg = params.teacher.for_dataset(dataset)
        _require_mlp(t_cfg.arch, "teacher")
        teacher = dense_layers(t_cfg.hidden)
        t_fwd, t_train = forward_flops(teacher), training_flops(teacher)
        flops[f"teacher@{dataset}"] = t_cfg.epochs * (train * t_train + val * t_fwd) + test * t_fwd

        students = {}
        for name in params.distill.variants:
            cfg = P.student_for(params.student, params.variants, name, dataset)
            training = _training(params.variants[name], cfg, teacher, t_cfg.hidden, train, val)
            flops[f"distill@{dataset}-{name}"] = (training(cfg.epochs) + test * _student_forward(cfg)) * len(
                params.distill.seeds)
            flops[f"tune@{dataset}-{name}"] = training(0) + sum(  # the frozen teacher's outputs once per study
                training(epochs, once=False) + val * _student_forward(cfg) for epochs in _trial_epochs(params, dataset,
                                                                                                       name))
            students[name] = (student_layers(cfg), cfg.steps, cfg.encoding == "direct")
        from kdlib.stages.front import pairs  # the fronts: KD at every pair of temperatures, rate_reg at every λ

        work = 0.0
        for name, count in (("kd", len(pairs(params.front))), ("rate_reg", len(params.front.rate_lambdas))):
            if count:
                cfg = P.student_for(params.student, params.variants, name, dataset)
                training = _training(params.variants[name], cfg, teacher, t_cfg.hidden, train, val)
                work += training(0) + count * (training(cfg.epochs, once=False) + val * _student_forward(cfg))
        flops[f"front@{dataset}"] = work

        s = params.spikes
        work = test * t_fwd  # the teacher's test accuracy
        for layers, steps, constant in students.values():
            per_seed = forward_flops(layers, s.max_steps, constant) + 2 * forward_flops(layers, steps, constant)
            work += test * per_seed * len(params.distill.seeds)
        work += s.calibration_images * t_fwd + test * forward_flops(teacher, max(s.conversion_steps), True)
        levels = sum(len(c.levels) for c in CORRUPTIONS.values())
        work += levels * test * (t_fwd + sum(forward_flops(*student) for student in students.values()))
        flops[f"spikes@{dataset}"] = work

    lo = params.loihi
    candidates = len(set(lo.input_bits)) * len(HEADROOMS)
    for dataset in lo.datasets:
        train, val, test = _sizes(params, dataset)
        t_cfg = params.teacher.for_dataset(dataset)
        t_fwd = forward_flops(dense_layers(t_cfg.hidden))
        work = 0.0
        for name in params.distill.variants:  # the deployment of every LIF student with direct input
            cfg = P.student_for(params.student, params.variants, name, dataset)
            if cfg.neuron != "lif" or cfg.encoding != "direct":
                continue
            _require_mlp(cfg.arch, f"loihi: variants.{name}.student")
            layers = dense_layers(cfg.hidden)
            fixed = 2 * forward_flops(layers, cfg.steps, constant_input=False)  # float64 products, every step
            floating = forward_flops(layers, cfg.steps, constant_input=True)  # the float student, input constant
            work += candidates * (lo.calibration_images * floating + val * fixed)  # candidates, on validation
            work += test * (fixed + floating)  # integers and float
        work += test * 2 * forward_flops(dense_layers(params.student.hidden), params.student.steps, False)  # rate code
        if dataset in lo.baseline:  # the SLAYER baseline: training, and one PyTorch pass beside Lava
            layers = dense_layers(lo.hidden)
            student = training_flops(layers, lo.steps, constant_input=False)
            teacher_work = lo.epochs * train * t_fwd if lo.max_shift > 0 else train * t_fwd
            evaluation = forward_flops(layers, lo.steps, constant_input=False)
            work += teacher_work + lo.epochs * (train * student + val * evaluation) + lo.lava_images * evaluation
        flops[f"loihi@{dataset}"] = work
    flops["report"] = flops["reports"] = 0.0
    return flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--times", type=Path, nargs="+", default=[ROOT / "benchmarks" / "pipeline_times.json"],
                        help="time_pipeline.py's summaries of a run on this host (several: the parts of one run "
                             "made in segments; their stages are joined, a stage's times in several parts "
                             "added, and their matmul rates averaged)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--measure", action="store_true",
                        help="measure the matmul rate now instead of using the one recorded with --times")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "compute_floor.json")
    args = parser.parse_args()

    import torch

    params = P.load()
    flops = study_flops(params)
    times: dict[str, float] = {}
    rates: dict[str, float] = {}
    for path in args.times:
        timed = json.loads(path.read_text()) if path.is_file() else {}
        for stage, seconds in timed.get("stages", {}).items():  # a stage interrupted in one part, resumed in the next
            times[stage] = times.get(stage, 0.0) + seconds
        rates |= {f"{path.stem}.{k}": v for k, v in (timed.get("matmul_gflops") or {}).items()}
    recorded = rates or None
    if recorded and not args.measure:
        rate, source = sum(recorded.values()) / len(recorded) * 1e9, "measured by time_pipeline.py in the timed run"
    else:
        rate, source = matmul_gflops(repeats=args.repeats) * 1e9, "measured now"
    lava = {}
    for d in params.loihi.datasets:
        if (path := ROOT / "results" / "loihi" / d / "metrics.json").is_file():
            chip = json.loads(path.read_text())
            lava[f"loihi@{d}"] = chip.get("lava_seconds", 0.0) + chip.get("baseline", {}).get("lava_seconds", 0.0)

    families: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for stage, work in flops.items():
        family = families[stage.split("@")[0]]
        family["tflop"] += work / 1e12
        family["floor_s"] += work / rate
        family["wall_s"] += times.get(stage, float("nan"))
        family["lava_s"] += lava.get(stage, 0.0)
    total = {key: sum(f[key] for f in families.values()) for key in ("tflop", "floor_s", "wall_s", "lava_s")}
    summary = {"matmul_gflops": rate / 1e9, "matmul_source": source, "recorded_matmul_gflops": recorded,
               "threads": torch.get_num_threads(),
               "times": [t.resolve().relative_to(ROOT).as_posix() if t.resolve().is_relative_to(ROOT) else str(t)
                         for t in args.times],
               "families": families, "total": total, "stages_tflop": {k: v / 1e12 for k, v in flops.items()}}
    args.out.write_text(json.dumps(summary, indent=2) + "\n")

    print(f"dense fp32 matmul: {rate / 1e9:.0f} GFLOP/s ({source})")
    print("\n| stage family | TFLOP | floor (min) | wall (min) | Lava (min) | wall − Lava over floor |")
    print("|---|---|---|---|---|---|")
    for name, f in [*families.items(), ("**study**", total)]:
        ratio = (f["wall_s"] - f["lava_s"]) / f["floor_s"] if f["floor_s"] else float("nan")
        print(f"| {name} | {f['tflop']:.1f} | {f['floor_s'] / 60:.1f} | {f['wall_s'] / 60:.1f} | "
              f"{f['lava_s'] / 60:.1f} | {ratio:.1f}× |")
    if "tune" in families:
        tune = families["tune"]
        print(f"tuning: {tune['wall_s'] / total['wall_s']:.0%} of the study's wall time, "
              f"{tune['tflop'] / total['tflop']:.0%} of its products")


if __name__ == "__main__":
    main()
