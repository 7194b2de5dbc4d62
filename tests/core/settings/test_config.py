"""An experiment's settings as the user writes them (core/settings/config.py): a config file that is not
a JSON object, a config path that is a folder, and method names nobody knows are each one clear E00N."""

from __future__ import annotations

import json

import pytest

from greenai_dagster.core.errors import CompressionFailed
from tests.conftest import cli


@pytest.mark.parametrize("content", ['[1, 2]', '"model"', '42', 'null', '{"eval": [1]}', b"\xff\xfe{"])
def test_a_config_file_that_is_valid_json_but_not_an_object_is_e004(content, tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out = cli(["run", "-c", str(path), "--show-spec"], capsys)
    assert code == 1 and out.err.startswith("E004:") and ("c.json" in out.err or "eval" in out.err), out.err


def test_a_config_path_that_is_a_directory_is_e004(tmp_path, capsys):
    code, out = cli(["run", "-c", str(tmp_path), "--show-spec"], capsys)
    assert code == 1 and out.err.startswith("E004:") and "is a directory" in out.err


def test_unknown_method_names_are_e005_at_validation(tmp_path):
    from greenai_dagster.core.settings.config import load_config

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"compression_methods": ["gptq", "magic"]}))
    with pytest.raises(CompressionFailed) as err:
        load_config({}, str(path))
    assert err.value.code == "E005" and "magic" in str(err.value) and "gptq" in err.value.remedy
