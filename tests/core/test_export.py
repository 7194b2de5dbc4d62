"""AutoGPTQ / AutoAWQ formats written by auto-round for an AutoRound strategy."""

import json

import pytest

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.export import export_autoround

STEPS = [{"method": "autoround", "params": {"bits": 4, "group_size": 32, "iters": 2, "num_calibration_samples": 8,
                                              "calibration_seq_len": 64}}]


@pytest.mark.parametrize("fmt,method", [("auto_gptq", "gptq"), ("auto_awq", "awq")])
def test_autoround_strategy_exports_to_legacy_formats(tiny_model_dir, tmp_path, fmt, method):
    out = export_autoround(str(tiny_model_dir), STEPS, fmt, tmp_path / fmt)
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == method and config["bits"] == 4 and config["group_size"] == 32
    assert (out / "model.safetensors").exists()


def test_other_strategies_are_refused(tiny_model_dir, tmp_path):
    with pytest.raises(CompressionFailed, match="only a single-step autoround"):
        export_autoround(str(tiny_model_dir), [{"method": "gptq", "params": {}}], "auto_gptq", tmp_path / "x")
