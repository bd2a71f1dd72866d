"""Collect the metrics of every stage run into tables (for the README and the report).

::

    python -m kdlib.report.summary          # markdown tables of the committed results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from kdlib.core.layout import COMPARISONS_FILE, DEPLOYED_FILE, FLIPS_FILE, METRICS_FILE, results_dir, stage_files


def load_metrics(root: Path, stage: str) -> pd.DataFrame:
    """One row per run in ``results/<stage>/**/metrics.json`` (nested dicts flattened with dots): a file
    that lists its runs under ``seeds`` (the distillation stage's) gives one row per seed. No rows, but
    the ``dataset`` column, where the stage has not run."""
    rows = []
    for path in stage_files(root, stage, METRICS_FILE):
        metrics = json.loads(path.read_text())
        rows.extend(metrics["seeds"].values() if "seeds" in metrics else [metrics])
    return pd.json_normalize(rows) if rows else pd.DataFrame(columns=["dataset"])


def load_tables(root: Path, stage: str, name: str) -> pd.DataFrame:
    """One frame of every ``results/<stage>/<dataset>/<name>`` CSV, with a ``dataset`` column."""
    paths = sorted(results_dir(stage, [], root).glob(f"*/{name}"))
    return pd.concat([pd.read_csv(p).assign(dataset=p.parent.name) for p in paths]) if paths else pd.DataFrame()


def student_table(students: pd.DataFrame, variants: list[str] | None = None) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each (dataset, variant)."""
    cols = {"test_accuracy": "test accuracy", "spikes_per_image.total": "spikes / image",
            "synops_per_image": "SynOps / image"}
    grouped = students.groupby(["dataset", "variant"])[list(cols)]
    table = grouped.mean().join(grouped.std(ddof=1), rsuffix="_std").join(grouped.size().rename("seeds"))
    if variants is not None:
        order = {v: i for i, v in enumerate(variants)}
        def rank(idx: pd.Index) -> pd.Index:
            return idx.map(lambda v: order.get(v, len(order))) if idx.name == "variant" else idx

        table = table.sort_index(key=rank)
    return table


def markdown(root: Path, variants: list[str] | None = None) -> str:
    """The README's results section: the teacher per dataset, then the students per dataset."""
    lines = []
    teachers = load_metrics(root, "teacher")
    if not teachers.empty:
        lines += ["| dataset | teacher test accuracy | val accuracy | epochs | train time (s) |",
                  "|---|---|---|---|---|"]
        for _, t in teachers.iterrows():
            lines.append(f"| {t.dataset} | {t.test_accuracy:.2%} | {t.val_accuracy:.2%} | {t.epochs} | "
                         f"{t.train_seconds:.0f} |")
    students = load_metrics(root, "distill")
    if not students.empty:
        table = student_table(students, variants)
        for dataset in table.index.get_level_values(0).unique():
            lines += ["", f"**{dataset}** (mean ± std over seeds, T = {int(students.steps.max())})", "",
                      "| variant | test accuracy | spikes / image | SynOps / image | seeds |", "|---|---|---|---|---|"]
            for variant, r in table.loc[dataset].iterrows():
                lines.append(
                    f"| {variant} | {r['test_accuracy']:.2%}{_spread(r['test_accuracy_std'], '.2%')} | "
                    f"{r['spikes_per_image.total']:,.0f}{_spread(r['spikes_per_image.total_std'], ',.0f')} | "
                    f"{r['synops_per_image']:,.0f} | {int(r['seeds'])} |")
    lines += _comparison_lines(root)
    lines += _tuning_lines(root, variants)
    lines += _front_lines(root)
    lines += _energy_lines(root)
    lines += _deployment_lines(root)
    return "\n".join(lines)


def _spread(std: float, spec: str) -> str:
    """`` ± std`` in ``spec``'s format, or nothing where one seed leaves no spread (std NaN)."""
    return "" if pd.isna(std) else f" ± {std:{spec}}"


def _comparison_lines(root: Path) -> list[str]:
    """Every variant against scratch and against KD, paired by seed and Holm-corrected
    (``results/report/comparisons.csv``): the difference of test accuracy and of spikes with its 95 % interval."""
    path = results_dir("report", [], root) / COMPARISONS_FILE
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    lines = []
    for dataset, part in table.groupby("dataset", sort=False):
        lines += ["", f"**{dataset}: which differences are real** (variant − baseline, paired by seed, 95 % interval, "
                  "Holm-corrected p; test accuracy in points, spikes per image)", "",
                  "| variant | baseline | accuracy (points) | p | verdict | spikes / image | p | verdict |",
                  "|---|---|---|---|---|---|---|---|"]
        keys = ["variant", "baseline"]
        both = part[part.measure == "accuracy"].merge(part[part.measure == "spikes"], on=keys, how="outer",
                                                        suffixes=("", "_spikes"), sort=False)
        for _, r in both.iterrows():
            acc = ("" if pd.isna(r.difference) else f"{100 * r.difference:+.2f} [{100 * r.low:+.2f}, "
                   f"{100 * r.high:+.2f}] | {r.p_holm:.2g} | {r.verdict}")
            spk = ("" if pd.isna(r.difference_spikes) else f"{r.difference_spikes:+,.0f} [{r.low_spikes:+,.0f}, "
                   f"{r.high_spikes:+,.0f}] | {r.p_holm_spikes:.2g} | {r.verdict_spikes}")
            lines.append(f"| {r.variant} | {r.baseline} | {acc or ' | | '} | {spk or ' | | '} |")
    return lines


def _tuning_lines(root: Path, variants: list[str] | None) -> list[str]:
    """Stage tune per dataset: each study's budget, its best validation accuracy and the values it chose."""
    from kdlib.report.studies import best, values_text

    table = best(root)
    if table.empty:
        return []
    order = {v: i for i, v in enumerate(variants or [])}
    lines = []
    for dataset, part in table.groupby("dataset", sort=False):
        part = part.sort_values("variant", key=lambda v: v.map(lambda n: order.get(n, len(order))))
        lines += ["", f"**{dataset}: the tuned values** (each study: {int(part.trials.max())} trials of "
                  f"{int(part.epochs.max())} epochs on the validation split)", "",
                  "| variant | best val accuracy | pruned trials | values |", "|---|---|---|---|"]
        for _, r in part.iterrows():
            lines.append(f"| {r.variant} | {r.val_accuracy:.2%} | {int(r.pruned)} | {values_text(r['values'])} |")
    return lines


def _front_lines(root: Path) -> list[str]:
    """Stage front per dataset: Lee et al.'s claim at matched accuracy, in a sentence."""
    from kdlib.report.findings import front
    from kdlib.report.studies import fronts

    _, matched = fronts(root)
    return ["", *(f"- {line}" for line in front(matched))] if not matched.empty else []


def _deployment_lines(root: Path) -> list[str]:
    """Stage 4 per dataset: every student of stage 2 in Loihi's integers and in Lava, or why it was not
    deployed (``results/loihi/<dataset>/deployed.csv``)."""
    lines = []
    for path in sorted(results_dir("loihi", [], root).glob(f"*/{DEPLOYED_FILE}")):
        lines += ["", f"**{path.parent.name}: the students on Loihi** (the seed selected on validation; Lava = "
                  "PyTorch compares the class, the readout voltages and every layer's spike count)", "",
                  "| variant | seed | input bits | float | integers, PyTorch | Lava | images in Lava | Lava = PyTorch "
                  "| Loihi, Davies 2018 (nJ) | Loihi, SANA-FE (nJ) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for _, r in pd.read_csv(path).iterrows():
            if pd.isna(r.get("seed")):
                lines.append(f"| {r.variant} | not deployed: {str(r['not deployed']).removeprefix(f'{r.variant}: ')} "
                             "| | | | | | | | |")
                continue
            same = r["same class"] == r["same readout voltages"] == r["same spikes in every layer"] == 1.0
            lines.append(
                f"| {r.variant} | {int(r.seed)} | {int(r['input bits'])} | {r['float test accuracy']:.2%} | "
                f"{r['fixed-point test accuracy']:.2%} | {r['Lava accuracy']:.2%} | "
                f"{int(r['test images in Lava']):,} | {'100 %' if same else 'differs'} | "
                f"{r['Loihi, Davies 2018 (nJ)']:,.0f} | {r['Loihi, SANA-FE (nJ)']:,.0f} |")
    return lines


def _energy_lines(root: Path) -> list[str]:
    """The report's energy verdicts: the most accurate student against the teacher, per cost table and
    first-layer convention (``results/report/energy_flips.csv``)."""
    path = results_dir("report", [], root) / FLIPS_FILE
    if not path.is_file():
        return []
    from kdlib.measure.energy import CONVENTIONS

    lines = []
    for dataset, part in pd.read_csv(path).groupby("dataset", sort=False):
        lines += ["", f"**{dataset}: energy per image, the most accurate student ({part.student.iloc[0]}) against "
                  "the ANN teacher** (FP32 against FP32; INT8 and Loihi against the INT8 teacher at 45 nm)", "",
                  "| cost table | first layer's input | student (nJ) | teacher (nJ) | ratio | cheaper |",
                  "|---|---|---|---|---|---|"]
        for _, r in part.iterrows():
            lines.append(f"| {r.hardware} | {CONVENTIONS[r.convention]} | {r.student_nj:,.1f} | {r.rival_nj:,.1f} | "
                         f"{r.ratio:.3g} | {r.cheaper} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kdlib.report.summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    from kdlib.core import params as P

    variants = P.load(args.root / "params.yaml").distill.variants
    print(markdown(args.root.resolve(), variants))


if __name__ == "__main__":
    main()
