"""The one results-file format (experiments/grid/results_file.py): round trip, every committed old shape
read losslessly (and re-rendered byte-identically), bad files refused in one line, the merge under lock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labelchain.experiments.grid import variants
from labelchain.experiments.grid.results_file import (
    FORMAT_VERSION,
    ResultsFile,
    ResultsFileError,
    load_results,
    merge_rows_locked,
    save_results,
)
from labelchain.experiments.run.folder import run_script

RESULTS = Path(__file__).resolve().parent.parent / "experiments" / "results"
GRIDS = ("orderings", "strength", "trees", "guidance", "scale", "ablations", "score_modes", "prior_recall")


def test_round_trip_keeps_every_field(tmp_path: Path):
    results = ResultsFile(
        "trees",
        rows=[{"dataset": "d", "seed": 0, "method": "flat", "metrics": {"P@1": 0.5}}],
        command="python experiments/compare_trees.py",
        args={"seeds": [0]},
        sections={"shapes": {"d": [2, 3]}, "commands": ["c"]},
    )
    save_results(tmp_path / "trees.json", results)
    on_disk = json.loads((tmp_path / "trees.json").read_text())
    assert list(on_disk) == ["format_version", "kind", "command", "args", "rows", "shapes", "commands"]
    assert on_disk["format_version"] == FORMAT_VERSION == 1
    assert load_results(tmp_path / "trees.json") == results
    # absent header fields stay absent (an old strength file has no args)
    bare = ResultsFile("strength", rows=[])
    save_results(tmp_path / "strength.json", bare)
    assert json.loads((tmp_path / "strength.json").read_text()) == {"format_version": 1, "kind": "strength", "rows": []}
    assert load_results(tmp_path / "strength.json") == bare


@pytest.mark.parametrize("name", GRIDS)
def test_every_committed_old_shape_is_read_losslessly(name: str, tmp_path):
    """Each committed file, and the same file in the old (version 0) shape, whichever it is today."""
    raw = json.loads((RESULTS / f"{name}.json").read_text())
    body = {k: v for k, v in raw.items() if k not in ("format_version", "kind")}
    old = tmp_path / f"{name}.json"
    old.write_text(json.dumps(body))
    for path in (RESULTS / f"{name}.json", old):
        loaded = load_results(path)
        assert loaded.kind == name
        assert loaded.rows == body.get("rows", [])
        assert loaded.command == body.get("command") and loaded.args == body.get("args")
        payload = loaded.payload()
        assert payload.pop("format_version") == 1 and payload.pop("kind") == name
        assert payload == {"rows": [], **body}  # nothing lost, nothing added but rows=[] where there were none


@pytest.mark.parametrize("name", ["orderings", "strength", "guidance", "trees"])
def test_committed_reports_re_render_byte_identically_through_the_loader(name: str):
    from labelchain.experiments.restate_claims import reports

    render = reports()[name][0]
    assert render(load_results(RESULTS / f"{name}.json").payload()) == (RESULTS / f"{name}.md").read_text()


@pytest.mark.parametrize("name", ["orderings", "strength", "guidance", "trees"])
def test_a_converted_file_renders_the_committed_report(tmp_path: Path, name: str):
    from labelchain.experiments.restate_claims import reports

    save_results(tmp_path / f"{name}.json", load_results(RESULTS / f"{name}.json"))
    assert json.loads((tmp_path / f"{name}.json").read_text())["format_version"] == 1
    render = reports()[name][0]
    assert render(load_results(tmp_path / f"{name}.json").payload()) == (RESULTS / f"{name}.md").read_text()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"format_version": 2, "kind": "trees", "rows": []}', "format_version 2 is not one this code reads (0..1)"),
        ('{"format_version": "1", "rows": []}', "format_version '1' is not one this code reads"),
        ('{"format_version": 1, "kind": "guidance", "rows": []}', "a 'guidance' results file, expected 'trees'"),
        ("[1, 2]", "a results file is a JSON object, got list"),
        ('{"rows": {"a": 1}}', "'rows' must be a list, got dict"),
        ('{"rows": [], "args": [1]}', "'args' must be an object, got list"),
        ('{"rows": [', "not JSON (Expecting value: line 1 column 11"),
    ],
)
def test_bad_files_are_one_line_naming_the_file(tmp_path: Path, text: str, reason: str):
    path = tmp_path / "trees.json"
    path.write_text(text)
    with pytest.raises(ResultsFileError) as caught:
        load_results(path, "trees")
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


def test_run_script_prints_a_bad_results_file_in_one_line(tmp_path: Path, capsys):
    (tmp_path / "trees.json").write_text('{"format_version": 9}')
    with pytest.raises(SystemExit) as caught:
        run_script(lambda: load_results(tmp_path / "trees.json"))
    assert (
        caught.value.code
        == f"error: {tmp_path / 'trees.json'}: format_version 9 is not one this code reads (0..1); update labelchain"
    )


def test_the_loader_is_light():
    """Notebooks read results through it: no torch, no gymnasium."""
    code = (
        "import sys, labelchain.experiments.grid.results_file; print(sorted({'torch', 'gymnasium'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_kind_comes_from_the_file_unless_asked(tmp_path: Path):
    save_results(tmp_path / "copy of trees.json", ResultsFile("trees"))
    assert load_results(tmp_path / "copy of trees.json").kind == "trees"  # a renamed file keeps its kind
    (tmp_path / "old.json").write_text('{"rows": []}')
    assert load_results(tmp_path / "old.json").kind == "old"  # an old file: its name's stem
    assert load_results(tmp_path / "old.json", "orderings").kind == "orderings"


def test_missing_file(tmp_path: Path):
    assert load_results(tmp_path / "x.json", missing_ok=True) == ResultsFile("x")
    with pytest.raises(ResultsFileError, match="no such results file"):
        load_results(tmp_path / "x.json")


def test_merge_rows_locked_replaces_namesakes_keeps_the_rest(tmp_path: Path):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps({"rows": [{"k": "a", "v": 1}, {"k": "b", "v": 1}], "notes": ["old"]}))  # old shape
    seen = []
    merged = merge_rows_locked(
        path,
        ResultsFile("grid", [{"k": "b", "v": 2}, {"k": "c", "v": 2}], "cmd", {}, {"notes": ["new"]}),
        key=lambda r: r["k"],
        merge_sections=lambda prev, fresh: {"notes": prev.sections["notes"] + fresh.sections["notes"]},
        then=lambda m: seen.append((tmp_path / "grid.lock").exists()),
    )
    assert [(r["k"], r["v"]) for r in merged.rows] == [("a", 1), ("b", 2), ("c", 2)]
    assert merged.sections == {"notes": ["old", "new"]} and seen == [True]
    assert load_results(path) == merged and json.loads(path.read_text())["format_version"] == 1


def test_variant_merge_into_unions_commands_and_merges_shapes(tmp_path: Path):
    out = tmp_path / "trees"
    row = lambda method, v: {"dataset": "d", "seed": 0, "method": method, "v": v}  # noqa: E731
    first = {"args": {}, "command": "c1", "commands": ["c1"], "shapes": {"d": [2]}}
    variants.merge_into(out, first, [row("flat", 1), row("tree", 1)], lambda p: f"{len(p['rows'])} rows\n", ("shapes",))
    second = {"args": {}, "command": "c0", "commands": ["c0"], "shapes": {"e": [3]}}
    payload = variants.merge_into(out, second, [row("tree", 2)], lambda p: f"{len(p['rows'])} rows\n", ("shapes",))
    assert [(r["method"], r["v"]) for r in payload["rows"]] == [("flat", 1), ("tree", 2)]
    assert payload["commands"] == ["c0", "c1"] and payload["shapes"] == {"d": [2], "e": [3]}
    assert (tmp_path / "trees.md").read_text() == "2 rows\n"
    assert variants.load_payload(out) == payload and payload["kind"] == "trees"
    assert variants.done_variants(out) == {("d", 0, variants.variant_of(m)) for m in ("flat", "tree")}


def test_scale_report_parts_re_render_from_the_loaded_file():
    """bench_scale writes scale.md from the results file's `results`: its table and summary come back."""
    from labelchain.experiments.reports.scale import summary, table

    payload = load_results(RESULTS / "scale.json").payload()
    report = (RESULTS / "scale.md").read_text()
    outputs = payload["args"]["outputs"]
    assert table(payload["results"], outputs) in report
    assert summary(payload["results"], outputs) == payload["summary"]
    assert f"Summary: `{json.dumps(payload['summary'])}`" in report
