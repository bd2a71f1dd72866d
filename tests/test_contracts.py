"""What the stages write holds what the report reads: the metric contracts.

The spike analysis's ``metrics.json`` is :class:`kdlib.measure.study.SpikesMetrics`, the Loihi stage's
:class:`kdlib.loihi.study.LoihiMetrics` (the functions that assemble them return these types), and the Loihi
stage's ``deployed.csv`` has the header :data:`kdlib.loihi.study.DEPLOYED_CSV_COLUMNS`. The readers take them by
name: :mod:`kdlib.report.findings` (the claims, findings and abstract), :mod:`kdlib.report.summary` (the results
page and the README) and :mod:`kdlib.report.tables` (the report notebook's tables), as rows of the frames that
:func:`kdlib.report.summary.load_metrics` flattens with dots (``spikes_per_image.layer0``, ``baseline.variant``).

Every name a reader takes from those rows must be a key of the contract, and every committed ``metrics.json`` must
have exactly the contract's keys; so renaming a key where a stage writes it fails here, not in a report months
later. A reader's rows are found by the variable that holds them (:data:`READERS`): rename one there too.
"""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints, is_typeddict

import pandas as pd
import pytest

from kdlib.loihi.study import DEPLOYED_CSV_COLUMNS, LoihiMetrics
from kdlib.measure.study import SpikesMetrics
from kdlib.report import findings, tables

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS: dict[str, Any] = {"spikes": SpikesMetrics, "loihi": LoihiMetrics}

# (module, function or None for the whole module, variable) → what the variable holds: the rows of a stage's
# metrics ("spikes", "loihi") or of the Loihi stage's deployed.csv ("deployed.csv")
READERS: dict[tuple[str, str | None, str], str] = {
    ("kdlib/report/findings.py", "claims", "s"): "spikes",  # s = spikes.loc[dataset]
    ("kdlib/report/findings.py", None, "chip"): "loihi",
    ("kdlib/report/findings.py", None, "chips"): "loihi",
    ("kdlib/report/tables.py", None, "chip"): "loihi",
    ("kdlib/report/tables.py", None, "chips"): "loihi",
    ("kdlib/report/summary.py", "_deployment_lines", "r"): "deployed.csv",
}
FRAME_API = set(dir(pd.DataFrame)) | set(dir(pd.Series))  # attributes of the frame or row, not columns


# ------------------------------------------------------------------------------------------------ the contracts
def _is_key(typed: Any, dotted: str) -> bool:
    """Whether ``dotted`` (a key, or keys joined with dots as ``pd.json_normalize`` flattens nested ones; a key may
    hold a dot itself) names an entry of the TypedDict ``typed``."""
    if is_typeddict(typed):
        keys, parts = get_type_hints(typed), dotted.split(".")
        return any(".".join(parts[:n]) in keys and (n == len(parts) or _is_key(keys[".".join(parts[:n])],
                                                                                ".".join(parts[n:])))
                   for n in range(len(parts), 0, -1))
    if get_origin(typed) is dict:  # any name: variants, importers, layers
        _, _, rest = dotted.partition(".")
        return not rest or _is_key(get_args(typed)[1], rest)
    return False  # a value has no entries


def _is_column(dotted: str) -> bool:
    return dotted in DEPLOYED_CSV_COLUMNS


def _holds(kind: str, key: str) -> bool:
    return _is_column(key) if kind == "deployed.csv" else _is_key(CONTRACTS[kind], key)


def test_the_contracts_know_their_keys() -> None:
    assert _is_key(SpikesMetrics, "early_exit_mean_steps_within_0.1_points")
    assert _is_key(LoihiMetrics, "spikes_per_image.layer0") and _is_key(LoihiMetrics, "baseline.lava_accuracy")
    assert _is_key(LoihiMetrics, "deployed.kd.lava_accuracy") and _is_key(LoihiMetrics, "nir.kd.norse.same_class")
    assert not _is_key(LoihiMetrics, "baseline.accuracy") and not _is_key(LoihiMetrics, "lava_accuracy.x")
    assert not _is_key(SpikesMetrics, "best_test_accuracy")
    assert LoihiMetrics.__optional_keys__ == {"baseline"} and not SpikesMetrics.__optional_keys__


# ------------------------------------------------------------------------------------------------ the readers
def _literal(node: ast.AST) -> str | None:
    """A string key: a constant, or the literal start of an f-string up to its first dot-ending part
    (``f"spikes_per_image.layer{i}"`` → ``spikes_per_image``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        start = str(node.values[0].value)
        return start.rsplit(".", 1)[0] if "." in start else None
    return None


def _keys_read(path: str, function: str | None, name: str) -> set[str]:
    """The keys that the code of ``path`` (only inside ``function`` if given) takes from the variable ``name``:
    ``name.key``, ``name["key"]``, ``name.get("key")`` and ``name[f"key.…"]``."""
    tree = ast.parse((ROOT / path).read_text())
    scopes = [tree] if function is None else [n for n in ast.walk(tree)
                                               if isinstance(n, ast.FunctionDef) and n.name == function]
    assert scopes, f"{path}: no function {function}"
    found = set()
    for scope in scopes:
        for node in ast.walk(scope):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == name:
                if node.attr not in FRAME_API:
                    found.add(node.attr)
            elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == name:
                key = _literal(node.slice)
                if key is not None:
                    found.add(key)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                  and isinstance(node.func.value, ast.Name) and node.func.value.id == name and node.args):
                key = _literal(node.args[0])
                if key is not None:
                    found.add(key)
    return found


@pytest.mark.parametrize(("where", "kind"), list(READERS.items()), ids=lambda v: "-".join(map(str, v))
                         if isinstance(v, tuple) else v)
def test_a_reader_reads_only_keys_the_stage_writes(where: tuple[str, str | None, str], kind: str) -> None:
    read = _keys_read(*where)
    assert read, f"{where}: reads nothing from {where[2]!r} any more; point READERS at the variable that does"
    unknown = sorted(key for key in read if not _holds(kind, key))
    assert not unknown, f"{where[0]} reads {unknown} from the {kind} metrics, which the stage does not write"


def test_findings_reads_the_spike_analysis_claims() -> None:
    """The keys the claims need (issue 33: they were made only by a cell of the notebook)."""
    read = _keys_read("kdlib/report/findings.py", "claims", "s")
    assert {"conversion_steps_to_match_best", "early_exit_mean_steps_within_0.1_points"} <= read


@pytest.mark.parametrize("name", ["SPIKES_KEYS", "CHIPS_KEYS"])
def test_the_keys_findings_declares_are_written(name: str) -> None:
    """Where :mod:`kdlib.report.findings` names the keys it reads, they are the contract's and cover what it reads."""
    declared = getattr(findings, name, None)
    if declared is None:
        pytest.skip(f"kdlib.report.findings has no {name}")
    kind = "spikes" if name == "SPIKES_KEYS" else "loihi"
    assert not [k for k in declared if not _is_key(CONTRACTS[kind], k)]
    read = set().union(*(_keys_read(*where) for where, k in READERS.items()
                         if k == kind and where[0].endswith("findings.py")))
    assert read <= set(declared), f"findings reads {sorted(read - set(declared))} but {name} does not list them"


def test_the_report_tables_read_written_keys() -> None:
    assert [k for k in tables.BEST_DEPLOYED_COLUMNS if not _is_key(LoihiMetrics, k)] == []
    assert [k for k in tables.DEPLOYED_COLUMNS if not _is_column(k)] == []


# ------------------------------------------------------------------------------------------------ the results
def _check(value: Any, hint: Any, where: str) -> list[str]:
    """How ``value`` (read from JSON) departs from ``hint``'s keys, recursively: missing and unexpected keys."""
    problems = []
    if is_typeddict(hint):
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not an object"]
        keys = get_type_hints(hint)
        missing, extra = sorted(hint.__required_keys__ - set(value)), sorted(set(value) - set(keys))
        if missing:
            problems.append(f"{where}: missing {missing}")
        if extra:
            problems.append(f"{where}: not in the contract {extra}")
        for key in set(value) & set(keys):
            problems += _check(value[key], keys[key], f"{where}.{key}")
    elif get_origin(hint) is dict and isinstance(value, dict):
        for key, item in value.items():
            problems += _check(item, get_args(hint)[1], f"{where}.{key}")
    return problems


COMMITTED = sorted((ROOT / "results").glob("spikes/*/metrics.json")) + sorted(
    (ROOT / "results").glob("loihi/*/metrics.json"))


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_committed_metrics_have_exactly_the_contract_keys(path: Path) -> None:
    contract = CONTRACTS[path.parent.parent.name]
    problems = _check(json.loads(path.read_text()), contract, str(path.relative_to(ROOT)))
    assert not problems, "\n".join(problems)


def test_there_are_committed_metrics() -> None:
    assert {p.parent.parent.name for p in COMMITTED} == set(CONTRACTS)


@pytest.mark.parametrize("path", sorted((ROOT / "results").glob("loihi/*/deployed.csv")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_committed_deployed_tables_have_the_contract_columns(path: Path) -> None:
    with path.open(newline="") as f:
        assert tuple(next(csv.reader(f))) == DEPLOYED_CSV_COLUMNS
