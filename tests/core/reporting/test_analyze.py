"""`greenai analyze` (core/reporting/analyze.py) on damaged folders: it names the damaged file (E004)
instead of a traceback, and a file given for a folder is E004."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import cli


def _experiment_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "exp"
    (folder / "episode_001").mkdir(parents=True)
    (folder / "model_spec.json").write_text(json.dumps({"model_name": "m", "model_family": "llama",
                                                        "parameter_count": "1M", "model_size_gb": 0.1}))
    (folder / "pareto_frontier.json").write_text(json.dumps({"solutions": [], "hypervolume": 0.0}))
    return folder


@pytest.mark.parametrize("damage", [
    ("pareto_frontier.json", "{not json"), ("model_spec.json", "[1, 2, 3]"), ("final_results.json", '"x"'),
    ("episode_001/results.json", "{\"accuracy\": "), ("episode_001/strategy.json", "\x00\x01"),
    ("pareto_frontier.json", "{}"), ("model_spec.json", '{"model_name": "m"}'),
    ("final_results.json", '{"episodes_completed": 1}')])
@pytest.mark.parametrize("fmt", ["summary", "detailed"])
def test_analyze_names_the_damaged_file_instead_of_a_traceback(damage, fmt, tmp_path, capsys):
    folder = _experiment_folder(tmp_path)
    (folder / damage[0]).write_text(damage[1])
    code, out = cli(["analyze", str(folder), "--format", fmt], capsys)      # never a traceback (cli checks)
    syntax = damage[1] in ("{not json", "{\"accuracy\": ", "\x00\x01") or not damage[1].startswith("{")
    if syntax:                      # not JSON, or JSON that is not an object: E004 naming the file
        assert code == 1 and out.err.startswith("E004:") and damage[0].split("/")[-1] in out.err, out.err
    else:                           # an object missing fields: described as far as it goes, or E004
        assert code == 0 or out.err.startswith("E004:"), out.err


def test_analyze_of_a_file_is_e004(tmp_path, capsys):
    (tmp_path / "f.txt").write_text("x")
    code, out = cli(["analyze", str(tmp_path / "f.txt")], capsys)
    assert code == 1 and out.err.startswith("E004:")
