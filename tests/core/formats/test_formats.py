"""core/formats: every checkpoint format the project writes, saved, recognised and read back on a real tiny Llama.

Each format's round trip (save -> detect -> load) must give the logits of the model that was saved; detection
must pick the right module for each folder (adapters before their base, markers before config contents); a
folder that holds no checkpoint is E002. Float tensors are stored in bfloat16 (the save casts the model in
place), so the logits a folder must reload to are those of the saved model as stored: its float32 copy after
the save (int8: its float parameters rounded to bfloat16 before), matched to float32 rounding. An adapters
folder is checked in its two parts: the base (adapters disabled) as the stored base computes, and the adapter
weights as trained.
"""

from __future__ import annotations

import copy

import pytest
import torch

from greenai_dagster.core import formats
from greenai_dagster.core.compress import apply_strategy
from greenai_dagster.core.errors import ModelLoadError
from greenai_dagster.core.formats import adapters, compressed_tensors, gguf, hf, int8_dynamic, lowrank
from greenai_dagster.core.methods import REGISTRY
from greenai_dagster.core.methods.assess import build_spec
from greenai_dagster.core.models import gguf_files
from greenai_dagster.core.models.loading import load_model_and_tokenizer
from greenai_dagster.core.runtimes import RUNTIMES
from greenai_dagster.core.strategy import Step, Strategy, validate_strategy

TEXT = "The assert statement is a convenient way"


def logits(model, tokenizer, text: str = TEXT) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits.float()


def compress(model_dir, steps: list[Step]):
    """(model after the strategy, tokenizer, the marker its last step writes, its step reports)."""
    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(str(model_dir))
    spec = build_spec("tiny", model, str(model_dir))
    out, reports, marker = apply_strategy(model, tokenizer, validate_strategy(Strategy("s", steps), spec), spec)
    return out, tokenizer, marker, reports


def close(reloaded: torch.Tensor, saved: torch.Tensor, rel: float = 1e-4) -> bool:
    return bool((reloaded - saved).abs().max() <= rel * saved.abs().max())


def adapter_state(model) -> dict:
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def save_and_measure(model, tokenizer, folder, marker, reports) -> dict:
    """Save the model; returns its folder and the logits the model computes as stored (of its base, for a model
    with adapters, whose weights come along)."""
    saved = {"folder": folder}
    if marker == int8_dynamic.MARKER:   # the save casts a copy of the state: round the float rest here
        with torch.no_grad():
            for param in model.parameters():
                param.data = param.data.to(formats.STORAGE_DTYPE).float()
        # as served on CPU: the same integers and scales, activations rounded per token
        saved["logits"] = logits(int8_dynamic.per_token_int8(copy.deepcopy(model)), tokenizer)
    if adapters.holds_adapters(model):
        saved["adapters"] = adapter_state(model)
        base = model.base_model.model   # what the save stores after unloading the adapters
    formats.save(model, tokenizer, folder, marker, {"step_reports": reports})
    if "adapters" in saved:
        saved["logits"] = logits(base.float(), tokenizer)
    elif "logits" not in saved:
        saved["logits"] = logits(model.float(), tokenizer)
    return saved


@pytest.fixture(scope="module")
def saved(tiny_model_dir, tmp_path_factory):
    """One folder per format written by `formats.save`: name -> (folder, logits of the model that was saved)."""
    root = tmp_path_factory.mktemp("formats")
    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    folders = {hf.NAME: save_and_measure(model, tokenizer, root / "hf", hf.MARKER, [])}
    strategies = {
        compressed_tensors.NAME: [Step("rtn", {"bits": 4, "group_size": 32})],
        lowrank.NAME: [Step("asvd", {"param_ratio": 0.5, "num_calibration_samples": 4})],
        int8_dynamic.NAME: [Step("int8", {})],    # int8 weights are saved as they are; the float rest in bf16
        adapters.NAME: [Step("rtn", {"bits": 4, "group_size": 32}), Step("lora", {"steps": 2, "seq_len": 32})],
    }
    for name, steps in strategies.items():
        model, tokenizer, marker, reports = compress(tiny_model_dir, steps)
        folders[name] = save_and_measure(model, tokenizer, root / name, marker, reports)
    return folders


@pytest.fixture(scope="module")
def saved_gguf(smol_tokenizer_llama, tmp_path_factory, data_root):
    if not gguf_files.converter_available():
        pytest.skip("llama.cpp's converter not installed")
    model, tokenizer, marker, reports = compress(smol_tokenizer_llama, [Step("gguf", {"quant_type": "Q8_0"})])
    before = logits(model, tokenizer, "The quick brown fox")   # the in-memory model is the GGUF file, read back
    folder = formats.save(model, tokenizer, tmp_path_factory.mktemp("gguf") / "v", marker, {"step_reports": reports})
    return folder, before


@pytest.mark.parametrize("name", [hf.NAME, compressed_tensors.NAME, lowrank.NAME, int8_dynamic.NAME, adapters.NAME])
def test_a_saved_folder_is_detected_as_its_format_and_reloads_to_the_same_logits(saved, name):
    folder, before = saved[name]["folder"], saved[name]["logits"]
    assert formats.detect(folder).NAME == name == formats.name_of(folder)
    model, tokenizer = formats.load(folder, "cpu")
    if name == adapters.NAME:
        trained, reloaded = saved[name]["adapters"], adapter_state(model)
        assert trained.keys() == reloaded.keys() and all(torch.equal(trained[k], reloaded[k]) for k in trained)
        with model.disable_adapter():
            after = logits(model, tokenizer)
        assert not close(logits(model, tokenizer), after)    # the adapters are on when enabled
    else:
        after = logits(model, tokenizer)
    assert after.dtype == torch.float32 and torch.isfinite(after).all()
    assert close(after, before), (name, float((after - before).abs().max()))


def test_each_format_module_reads_its_own_folder_directly(saved, tiny_model_dir):
    """The modules' own `load` (what the registry dispatches to) gives the registry's model."""
    module = {fmt.NAME: fmt for fmt in formats.FORMATS}
    _, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    for name, entry in saved.items():
        model = module[name].load(entry["folder"], "cpu")
        registry_model, _ = formats.load(entry["folder"], "cpu")
        assert type(model) is type(registry_model), name
        assert torch.equal(logits(model, tokenizer), logits(registry_model, tokenizer)), name


def test_the_gguf_format_round_trips_the_llama_cpp_file(saved_gguf):
    folder, before = saved_gguf
    assert formats.detect(folder) is gguf and (folder / gguf.FILE).exists()
    model, tokenizer = formats.load(folder, "cpu")
    assert close(logits(model, tokenizer, "The quick brown fox"), before)


def test_what_reaches_the_disk_and_the_marker(saved):
    """Markers stay what they were before the formats layer (`hf` for compressed-tensors and adapters), with the
    files each format is recognised by."""
    expected = {hf.NAME: "hf", compressed_tensors.NAME: "hf", lowrank.NAME: "lowrank",
                int8_dynamic.NAME: "torch_int8_dynamic", adapters.NAME: "hf"}
    for name, entry in saved.items():
        folder = entry["folder"]
        assert formats.marker(folder) == expected[name], name
        assert not folder.with_name(folder.name + ".partial").exists()
    assert (saved[int8_dynamic.NAME]["folder"] / int8_dynamic.STATE_FILE).exists()
    assert not list(saved[int8_dynamic.NAME]["folder"].glob("*.safetensors"))
    assert (saved[adapters.NAME]["folder"] / adapters.DIR / "adapter_config.json").exists()
    assert compressed_tensors.detect(saved[adapters.NAME]["folder"])    # the adapters' base is compressed-tensors


def test_a_plain_hf_folder_without_a_marker_is_hf(tiny_model_dir):
    assert formats.detect(tiny_model_dir) is hf and formats.marker(tiny_model_dir) == "hf"


@pytest.mark.parametrize("content", ["empty", "junk", "missing"])
def test_a_folder_without_a_checkpoint_is_e002(tmp_path, content):
    folder = tmp_path / "v"
    if content != "missing":
        folder.mkdir()
    if content == "junk":
        (folder / "notes.txt").write_text("not a model")
    with pytest.raises(ModelLoadError) as err:
        formats.load(folder, "cpu")
    assert err.value.code == "E002" and "no checkpoint at" in str(err.value)
    with pytest.raises(ModelLoadError):
        formats.detect(folder)
    assert formats.name_of(folder) is None


def test_an_unknown_format_is_refused_before_anything_is_written(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        formats.save(model, tokenizer, tmp_path / "v", "pickle", {})
    assert not list(tmp_path.iterdir())


def test_every_method_writes_a_format_the_registry_can_save():
    assert {m.checkpoint_format for m in REGISTRY.values()} <= set(formats.WRITERS)


def test_a_runtime_serves_only_folders_of_the_formats_it_declares(saved):
    for name, entry in saved.items():
        for runtime in RUNTIMES:
            if runtime.serves(entry["folder"], "cpu"):
                assert name in runtime.formats, (runtime.name, name)
    assert {fmt.NAME for fmt in formats.FORMATS} == set(formats.NAMES)
    assert all(set(r.formats) <= set(formats.NAMES) and r.formats for r in RUNTIMES)
