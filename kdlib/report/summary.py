"""The committed results in words and tables: ``docs/results.md`` and the README's headline findings.

Both are generated from ``results/`` (and ``params.yaml``) by pure functions of the repository's root
(:func:`results_page`, :func:`headline`); their sentences come from :mod:`kdlib.report.findings`, the one
source of the study's words. A test holds the committed page and the README's block to what they generate.

::

    python -m kdlib.report.summary            # write docs/results.md (and docs/claims.md's table of sources)
    python -m kdlib.report.summary --readme   # ... and the README's headline block
    python -m kdlib.report.summary --check    # exit 1, naming the file, where either is not what the results give
    python -m kdlib.report.summary --stdout   # print docs/results.md instead of writing it
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kdlib.core.layout import COMPARISONS_FILE, DEPLOYED_FILE, FLIPS_FILE, METRICS_FILE, results_dir, stage_files

RESULTS_PAGE = Path("docs/results.md")
README = Path("README.md")
CLAIMS_PAGE = Path("docs/claims.md")  # its table of sources is findings.PAPERS
HEADLINE_START = "<!-- headline:start -->"
HEADLINE_END = "<!-- headline:end -->"
COMMAND = "uv run python -m kdlib.report.summary"
WIDTH = 110  # where the generated sentences are wrapped


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


@dataclass(frozen=True)
class Study:
    """What the sentences are made from, in :mod:`kdlib.report.findings`' tables (its module docstring)."""

    params: Any | None            # the validated params.yaml, None where the root has none
    runs: pd.DataFrame            # one row per trained student
    means: pd.DataFrame           # one row per (dataset, variant), the mean over seeds
    teachers: pd.Series           # the teachers' test accuracy by dataset
    chips: pd.DataFrame           # the Loihi stage's metrics, one row per dataset (may be empty)
    flips: pd.DataFrame | None    # the report's energy verdicts (results/report/energy_flips.csv)
    comparisons: pd.DataFrame | None  # the report's paired comparisons (results/report/comparisons.csv)


def study(root: Path) -> Study:
    """The committed results under ``root`` read back as :class:`Study`, datasets in ``params.yaml``'s order (as
    the report orders them)."""
    from kdlib.core import params as P
    from kdlib.report import findings

    params = P.load(root / "params.yaml") if (root / "params.yaml").is_file() else None
    students = load_metrics(root, "distill")
    runs = students.rename(columns={"test_accuracy": "accuracy", "spikes_per_image.total": "spikes"})
    order = [*(params.data.datasets if params else []), *sorted(set(runs.dataset))]
    runs = runs.sort_values("dataset", key=lambda d: d.map(order.index), kind="stable")
    means = findings.seed_means(runs) if not runs.empty else pd.DataFrame()
    teachers = load_metrics(root, "teacher")
    report = results_dir("report", [], root)
    tables = {name: pd.read_csv(report / name) if (report / name).is_file() else None
              for name in (FLIPS_FILE, COMPARISONS_FILE)}
    return Study(params, runs, means, teachers.set_index("dataset").get("test_accuracy", pd.Series(dtype=float)),
                 load_metrics(root, "loihi"), tables[FLIPS_FILE], tables[COMPARISONS_FILE])


def headline(root: Path) -> str:
    """The README's headline findings, one bullet each: :func:`kdlib.report.findings.findings` on the students
    alone (per dataset, the most accurate student against scratch and the teacher, and heterogeneous-temperature
    KD against KD); the energy and Loihi findings, and the rest, are on the results page."""
    from kdlib.report import findings

    s = study(root)
    if s.means.empty:
        return ""
    return "\n".join(map(_bullet, findings.findings(s.means, s.teachers, s.chips.iloc[0:0], None, s.comparisons)))


def results_page(root: Path) -> str:
    """``docs/results.md``: how it was made, the run's setting, every finding in words, then :func:`markdown`."""
    from kdlib.report import findings

    s = study(root)
    lines = ["# Results", "", *textwrap.wrap(
        f"This page is generated: `{COMMAND}` writes it from the committed results (`results/`, the run that "
        "`dvc.lock` records), and a test holds it to them, so change `kdlib/report/summary.py` or rerun the study, "
        "not this page. The rendered report (`reports/index.html`, made by the `reports` stage) shows the same "
        "results with their figures.", WIDTH, break_on_hyphens=False)]
    if s.params is not None:
        lines += ["", *textwrap.wrap(_setting(s.params), WIDTH, break_on_hyphens=False)]
    if not s.means.empty:
        found = (findings.findings(s.means, s.teachers, s.chips, s.flips, s.comparisons)
                 + findings.controls(s.runs))
        lines += ["", "## Findings", "", *map(_bullet, found)]
    tables = markdown(root, s.params.distill.variants if s.params is not None else None)
    return "\n".join([*lines, *(["", tables] if tables else [])]) + "\n"


def _setting(params: Any) -> str:
    """The run's setting in words, from ``params.yaml``."""
    tune, student = params.tune, params.student
    how = (f"with the values its tuning study chose on the validation split (`tune.use: tuned`; the same budget "
           f"for every method, {tune.trials} trials of {tune.epochs} epochs)" if tune.use == "tuned" else
           "with the hand-set values under `variants` in `params.yaml` (`tune.use: hand-set`)")
    shape = "-".join(map(str, [784, *student.hidden, 10])) if student.arch == "mlp" else student.arch
    own = ", ".join(f"{name} with " + " and ".join(_own(*item) for item in params.variants[name].student.items())
                    for name in params.distill.variants if params.variants[name].student)
    layers = "both hidden layers" if len(student.hidden) == 2 else f"all {len(student.hidden)} hidden layers"
    seeds = len(params.distill.seeds)
    return (f"Every method trains {how}, on {seeds} seed{'' if seeds == 1 else 's'}. Test accuracy of the model "
            f"selected on validation accuracy; students are {shape} {_NEURONS.get(student.neuron, student.neuron)} "
            f"networks at T = {student.steps} with {_ENCODINGS.get(student.encoding, student.encoding)}"
            + (f" (but {own})" if own else "")
            + f", trained for {student.epochs} epochs; spikes are counted over {layers} and all steps, per test image.")


_NEURONS = {"lif": "LIF"}
_ENCODINGS = {"direct": "direct input", "rate": "rate-coded input"}


def _own(key: str, value: Any) -> str:
    """A variant's own student setting in words."""
    if key == "neuron":
        return f"{_NEURONS.get(value, value)} neurons"
    return _ENCODINGS.get(value, str(value)) if key == "encoding" else f"{key} {value}"


_BLOCK_START = re.compile(r"([-+*>#|=]|\d+[.)])(\s|$)")


def _bullet(sentence: str) -> str:
    """``sentence`` as a markdown bullet wrapped at :data:`WIDTH` (on one line where a wrapped line would start a
    block of its own)."""
    lines = textwrap.wrap(sentence, WIDTH, initial_indent="- ", subsequent_indent="  ", break_long_words=False,
                          break_on_hyphens=False)
    return f"- {sentence}" if any(_BLOCK_START.match(line.lstrip()) for line in lines[1:]) else "\n".join(lines)


def with_block(text: str, name: str, block: str) -> str:
    """``text`` with ``block`` between its ``<!-- name:start … -->`` and ``<!-- name:end -->`` markers."""
    start, end = text.find(f"<!-- {name}:start"), text.find(f"<!-- {name}:end -->")
    if start < 0 or end < start:
        raise ValueError(f"no <!-- {name}:start --> … <!-- {name}:end --> block")
    opened = text.index("-->", start) + len("-->")
    return f"{text[:opened]}\n{block}{chr(10) if block and not block.endswith(chr(10)) else ''}{text[end:]}"


def with_headline(readme: str, block: str) -> str:
    """``readme`` with ``block`` between its :data:`HEADLINE_START` and :data:`HEADLINE_END` markers."""
    try:
        return with_block(readme, "headline", block)
    except ValueError:
        raise ValueError(f"the README has no {HEADLINE_START} … {HEADLINE_END} block") from None


def markdown(root: Path, variants: list[str] | None = None) -> str:
    """The result tables, each under its heading (those the results hold): the teachers and the students per
    dataset, the paired comparisons, the tuned values, the fronts, the energy verdicts, the deployments."""
    sections = [("Teachers and students", ["", *_teacher_lines(root), *_student_lines(root, variants)]),
                ("Which differences are real", _comparison_lines(root)),
                ("The tuned values", _tuning_lines(root, variants)),
                ("The temperature fronts", _front_lines(root)),
                ("Energy per image", _energy_lines(root)),
                ("The students on Loihi", _deployment_lines(root))]
    lines = [line for title, body in sections if any(body) for line in ["", f"## {title}", *body]]
    return "\n".join(lines).strip("\n")


def _teacher_lines(root: Path) -> list[str]:
    """Stage teacher: one row per dataset."""
    teachers = load_metrics(root, "teacher")
    if teachers.empty:
        return []
    lines = ["| dataset | teacher test accuracy | val accuracy | epochs | train time (s) |", "|---|---|---|---|---|"]
    for _, t in teachers.iterrows():
        lines.append(f"| {t.dataset} | {t.test_accuracy:.2%} | {t.val_accuracy:.2%} | {t.epochs} | "
                     f"{t.train_seconds:.0f} |")
    return lines


def _student_lines(root: Path, variants: list[str] | None) -> list[str]:
    """Stage distill per dataset: every variant's mean and spread over its seeds."""
    students = load_metrics(root, "distill")
    if students.empty:
        return []
    lines = []
    table = student_table(students, variants)
    for dataset in table.index.get_level_values(0).unique():
        lines += ["", f"**{dataset}** (mean ± std over seeds, T = {int(students.steps.max())})", "",
                  "| variant | test accuracy | spikes / image | SynOps / image | seeds |", "|---|---|---|---|---|"]
        for variant, r in table.loc[dataset].iterrows():
            lines.append(
                f"| {variant} | {r['test_accuracy']:.2%}{_spread(r['test_accuracy_std'], '.2%')} | "
                f"{r['spikes_per_image.total']:,.0f}{_spread(r['spikes_per_image.total_std'], ',.0f')} | "
                f"{r['synops_per_image']:,.0f} | {int(r['seeds'])} |")
    return lines


def _spread(std: float, spec: str) -> str:
    """`` ± std`` in ``spec``'s format, or nothing where one seed leaves no spread (std NaN)."""
    return "" if pd.isna(std) else f" ± {std:{spec}}"


def _comparison_lines(root: Path) -> list[str]:
    """Every variant against scratch and against KD, paired by seed and Holm-corrected
    (``results/report/comparisons.csv``), as the report shows them (:func:`kdlib.report.tables.comparisons_wide`)."""
    from kdlib.report.tables import comparisons_wide

    path = results_dir("report", [], root) / COMPARISONS_FILE
    if not path.is_file():
        return []
    wide = comparisons_wide(pd.read_csv(path)).fillna("")
    lines = []
    for dataset, part in wide.groupby(level="dataset", sort=False):
        lines += ["", f"**{dataset}: which differences are real** (variant − baseline, paired by seed, 95 % interval, "
                  "Holm-corrected p; test accuracy in points, spikes per image)", "",
                  "| variant | baseline | " + " | ".join(f"{m}: {k}" for m, k in part.columns) + " |",
                  "|---|---|" + "---|" * len(part.columns)]
        for (_, baseline, variant), row in part.iterrows():
            lines.append(f"| {variant} | {baseline} | " + " | ".join(map(str, row)) + " |")
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
    return ["", *map(_bullet, front(matched))] if not matched.empty else []


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlib.report.summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository (default: here)")
    parser.add_argument("--readme", action="store_true", help="rewrite the README's headline block too")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 where docs/results.md or the README's block is stale")
    parser.add_argument("--stdout", action="store_true", help="print docs/results.md instead of writing it")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    page = results_page(root)
    if args.stdout:
        sys.stdout.write(page)
        return 0
    from kdlib.report.findings import sources_markdown

    wanted = {RESULTS_PAGE: page}
    if (root / CLAIMS_PAGE).is_file():  # the repository's page (a bare results folder has none)
        wanted[CLAIMS_PAGE] = with_block((root / CLAIMS_PAGE).read_text(), "sources", sources_markdown())
    if args.readme or args.check:
        try:
            wanted[README] = with_headline((root / README).read_text(), headline(root))
        except (OSError, ValueError) as err:
            print(f"{README}: {err}", file=sys.stderr)
            return 1
    if args.check:
        stale = [path for path, text in wanted.items()
                 if not (root / path).is_file() or (root / path).read_text() != text]
        for path in stale:
            print(f"{path} is not what the committed results generate: run `{COMMAND} --readme`", file=sys.stderr)
        return 1 if stale else 0
    from kdlib.core.io import atomic_path

    for path, text in wanted.items():
        with atomic_path(root / path) as tmp:
            tmp.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
