"""Model-level checks on the packaged default (SmolLM2-135M-Instruct). Slow: run with `-m slow`."""

import pytest

pytestmark = pytest.mark.slow


def test_default_model_converts_and_has_the_known_shape(data_root):
    from greenai_dagster.core.models.default_model import ensure_default_checkpoint
    from greenai_dagster.core.evaluation import fidelity
    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.methods.assess import build_spec

    folder = ensure_default_checkpoint()
    assert (folder / "model.safetensors").exists()
    assert "quantization_config" not in (folder / "config.json").read_text()  # llm-compressor refuses it otherwise
    model, tokenizer = load_model_and_tokenizer(str(folder))
    spec = build_spec("default", model, str(folder))
    assert spec.parameter_count_exact == 134_515_008
    assert spec.valid_group_sizes == [32, 64]
    assert spec.num_key_value_heads == 3 and spec.hidden_size == 576
    windows = fidelity.token_windows(tokenizer, fidelity.held_out_text()[0], 1024)
    reference = fidelity.build_reference(model, windows)
    ppl = float(reference["nll"].double().mean().exp())
    assert 5 < ppl < 40  # a working model on English prose (512-token windows); random weights give ~49152
    # special tokens as the GGUF declares them (transformers' GGUF loader alone names <|im_start|> as EOS)
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert tokenizer.eos_token_id == model.config.eos_token_id == 2
