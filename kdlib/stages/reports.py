"""Rendered reports: every executed stage notebook as a self-contained HTML page, and an index.

::

    python -m kdlib.stages.reports          # renders results/**/notebook.ipynb into reports/

A report hides the code cells (a reader sees prose, tables and figures), embeds its figures, and loads
nothing from the network. ``reports/index.html`` links every report and shows when each notebook ran
and with which parameters. Pages are written atomically; pages of runs that no longer exist are removed.
"""

from __future__ import annotations

import argparse
import html
import json
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from kdlib.core.io import atomic_path
from kdlib.core.layout import NOTEBOOK_FILE, results_root

TEMPLATES = Path(__file__).resolve().parent / "templates"
STAGE_TITLES = {"report": "Results of the study", "teacher": "Stage 1: teachers",
                "distill": "Stage 2: distilled students", "spikes": "Stage 3: spike analysis",
                "loihi": "Stage 4: Loihi deployment"}  # the index lists the stages in this order


def render_html(nb: nbformat.NotebookNode) -> str:
    """An executed notebook as one offline HTML page with the code cells hidden."""
    exporter = HTMLExporter(template_name="kdlib_report", extra_template_basedirs=[str(TEMPLATES)],
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    body, _ = exporter.from_notebook_node(nb)
    return body


def report_name(notebook: Path, results: Path) -> str:
    """``results/distill/mnist/kd/notebook.ipynb`` → ``distill-mnist-kd.html``."""
    return "-".join(notebook.parent.relative_to(results).parts) + ".html"


def _row(nb: nbformat.NotebookNode, name: str) -> str:
    meta = nb.metadata.get("papermill", {})
    params = {k: v for k, v in meta.get("parameters", {}).items() if not k.endswith("_dir")}
    shown = html.escape(json.dumps(params, sort_keys=True))
    started = html.escape(str(meta.get("start_time", "?"))[:19].replace("T", " "))
    seconds = meta.get("duration")
    took = f"{seconds:.0f} s" if isinstance(seconds, int | float) else "?"
    return (f'<tr><td><a href="{html.escape(name)}">{html.escape(name[:-5])}</a></td><td>{started} UTC</td>'
            f'<td>{took}</td><td><details><summary>parameters</summary><code>{shown}</code></details></td></tr>')


def build(root: Path) -> list[Path]:
    """Render every executed notebook under ``root/results`` into ``root/reports`` and write the index."""
    results, reports = results_root(root), root / "reports"
    reports.mkdir(exist_ok=True)
    written, sections = [], {}
    for notebook in sorted(results.rglob(NOTEBOOK_FILE)):
        nb = nbformat.read(notebook, as_version=4)
        name = report_name(notebook, results)
        with atomic_path(reports / name) as tmp:
            tmp.write_text(render_html(nb), encoding="utf-8")
        written.append(reports / name)
        sections.setdefault(notebook.relative_to(results).parts[0], []).append(_row(nb, name))
    for stale in set(reports.glob("*.html")) - set(written) - {reports / "index.html"}:
        stale.unlink()
    order = [*[s for s in STAGE_TITLES if s in sections], *sorted(set(sections) - set(STAGE_TITLES))]
    body = "".join(
        f"<h2>{html.escape(STAGE_TITLES.get(stage, stage))}</h2><table><tr><th>report</th><th>run started</th>"
        f"<th>took</th><th>parameters</th></tr>{''.join(sections[stage])}</table>"
        for stage in order)
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>DNN to SNN distillation: reports"
            "</title><style>body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3em .6em;"
            "text-align:left;vertical-align:top}code{font-size:.8em;word-break:break-all}</style></head><body>"
            "<h1>DNN to SNN distillation: reports</h1><p>Every executed notebook of the last pipeline run, "
            "rendered without its code. Parameters are those papermill injected into the run.</p>"
            f"{body}</body></html>\n")
    with atomic_path(reports / "index.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kdlib.stages.reports", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="workbook folder (default: here)")
    args = parser.parse_args(argv)
    written = build(args.root.resolve())
    print(f"{len(written)} reports and index.html written to {args.root / 'reports'}")


if __name__ == "__main__":
    main()
