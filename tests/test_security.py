"""Security (issue 13): hostile checkpoints, generated code, remote code, model ids, secrets."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from greenai_dagster.core.checkpoints import INT8_STATE_FILE, VARIANT_FILE, load_variant
from greenai_dagster.core.errors import ModelLoadError


class _Payload:
    """Unpickling this calls Path.touch(marker): what a hostile checkpoint would do (with worse code)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _int8_folder(tiny_model_dir: Path, folder: Path) -> Path:
    """A checkpoint folder that looks like one of ours (config, tokenizer, int8 marker file)."""
    shutil.copytree(tiny_model_dir, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    (folder / VARIANT_FILE).write_text(json.dumps({"format": "torch_int8_dynamic"}))
    return folder


@pytest.mark.parametrize("writer", ["torch_save", "plain_pickle"])
def test_a_malicious_int8_checkpoint_is_refused_and_runs_nothing(tiny_model_dir, tmp_path, writer):
    marker = tmp_path / "pwned"
    folder = _int8_folder(tiny_model_dir, tmp_path / "hostile")
    state = {"model.embed_tokens.weight": torch.zeros(2), "evil": _Payload(marker)}
    if writer == "torch_save":          # the zip format torch.save writes
        torch.save(state, folder / INT8_STATE_FILE)
    else:                               # a bare pickle stream under the same name
        (folder / INT8_STATE_FILE).write_bytes(pickle.dumps(state))
    assert not marker.exists()
    with pytest.raises(ModelLoadError) as err:
        load_variant(folder)
    assert err.value.code == "E002" and "refused to load" in str(err.value) and "not a plain tensor file" in str(err.value)
    assert not marker.exists(), "unpickling ran the payload"


def test_the_payload_would_run_under_a_full_unpickler(tmp_path):
    """The planted file is a real attack: torch.load(weights_only=False), what main used, runs it."""
    marker = tmp_path / "pwned"
    torch.save({"evil": _Payload(marker)}, tmp_path / "x.pt")
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert marker.exists()


def test_int8_round_trip_still_loads_with_the_weights_only_unpickler(tiny_model, tiny_spec, tmp_path):
    from greenai_dagster.core.checkpoints import load_int8_state, save_variant
    from greenai_dagster.core.compress import apply_strategy
    from greenai_dagster.core.strategy import Step, Strategy, validate_strategy

    model, tokenizer = tiny_model
    strategy = validate_strategy(Strategy("s", [Step("int8", {})]), tiny_spec)
    quantized, _, fmt = apply_strategy(model, tokenizer, strategy, tiny_spec)
    save_variant(quantized, tokenizer, tmp_path / "v", fmt, {})
    state = load_int8_state(tmp_path / "v" / INT8_STATE_FILE)
    assert any(k.endswith("_packed_params._packed_params") for k in state)
    reloaded, _ = load_variant(tmp_path / "v")
    layer = quantized.model.layers[0].self_attn.q_proj
    assert torch.equal(reloaded.model.layers[0].self_attn.q_proj.weight().int_repr(), layer.weight().int_repr())


def test_no_full_unpickler_anywhere_in_the_package():
    """Every tensor file is read with safetensors or torch.load(weights_only=True); nothing calls pickle/joblib."""
    import re

    root = Path(__file__).resolve().parent.parent / "greenai_dagster"
    offenders = []
    for path in root.rglob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"torch\.load\((.*?)\)\s*$", text, re.MULTILINE):
            if "weights_only=True" not in match.group(1):
                offenders.append(f"{path.name}: {match.group(0)}")
        if re.search(r"^\s*(import pickle|import joblib|from joblib|import dill|import cloudpickle)", text, re.MULTILINE):
            offenders.append(f"{path.name}: imports an unpickler")
        if re.search(r"pickle\.loads?\(|joblib\.load\(|allow_pickle\s*=\s*True", text):
            offenders.append(f"{path.name}: calls an unpickler")
    assert not offenders, offenders
