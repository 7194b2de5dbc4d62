"""Serving runtimes: W4 checkpoints served by PyTorch's CPU int4 kernel give the same model.

The tiny Llama is quantized by the project's own `rtn` and `gptq` methods (llm-compressor) and saved
as compressed-tensors; the int4 runtime repacks the saved integers for the kernel and must agree
with eager PyTorch (which expands them to dense float weights) up to bfloat16 activation rounding.
"""

import copy

import pytest
import torch

from greenai_dagster.core import runtimes
from greenai_dagster.core.runtimes.cpu_int4 import CpuInt4, Int4Linear, repack


@pytest.fixture(scope="module")
def w4_checkpoint(tiny_model_dir, tmp_path_factory):
    from greenai_dagster.core.compress import compress_to_checkpoint
    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.methods.assess import build_spec
    from greenai_dagster.core.strategy import Step, Strategy

    spec = build_spec("tiny", load_model_and_tokenizer(str(tiny_model_dir))[0], str(tiny_model_dir))
    folder = tmp_path_factory.mktemp("w4") / "model"
    compress_to_checkpoint(str(tiny_model_dir), Strategy("rtn4", [Step("rtn", {"bits": 4, "group_size": 32})]), spec,
                           folder)
    return folder


def test_repacked_int4_matmul_equals_the_dequantized_weights():
    torch.manual_seed(0)
    n, k, g = 96, 128, 32
    q = torch.randint(-8, 8, (n, k), dtype=torch.int8)
    scale = torch.rand(n, k // g) * 0.02 + 0.001
    zero_point = torch.randint(-2, 3, (n, k // g))
    dense = ((q.float().view(n, k // g, g) - zero_point[..., None]) * scale[..., None]).view(n, k)
    packed, sz = repack(q, scale, zero_point, g)
    x = torch.randn(3, k)
    layer = Int4Linear(packed, sz, g, k, n, None)
    assert torch.allclose(layer(x), x @ dense.t(), rtol=2e-2, atol=2e-2)


def test_w4_checkpoint_is_served_by_the_int4_runtime_and_agrees_with_eager(w4_checkpoint, tiny_model_dir):
    names = [r.name for r in runtimes.pick(w4_checkpoint, "cpu")]
    assert names[-2:] == ["torch-cpu-int4", "torch-eager"]   # llama.cpp first where installed
    assert "torch-cpu-int4" not in [r.name for r in runtimes.pick(tiny_model_dir, "cpu")]   # a float checkpoint
    int4_model, tokenizer = CpuInt4().load(w4_checkpoint)
    eager_model, _ = runtimes.EagerTorch().load(w4_checkpoint, "cpu")
    assert sum(isinstance(m, Int4Linear) for m in int4_model.modules()) == 2 * 7   # 7 linears per layer
    ids = tokenizer("The quick brown fox jumps over the lazy dog", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b = int4_model(ids).logits, eager_model(ids).logits
    assert torch.allclose(a, b, rtol=0, atol=5e-3 * b.abs().max().item())
    out = int4_model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4


def test_a_torch_session_names_its_low_bit_linears_in_its_weights_label(tiny_model):
    """The results row's "weights in the runtime": int8 linears (weights held as buffers) are named, not
    hidden behind the float dtype of the rest."""
    from greenai_dagster.core.formats import int8_dynamic
    from greenai_dagster.core.formats.int8_dynamic import quantize_linears_int8
    from greenai_dagster.core.runtimes.torch_session import TorchSession

    model = copy.deepcopy(tiny_model[0]).float()
    assert TorchSession(model, "cpu").dtype() == "float32"
    served = int8_dynamic.per_token_int8(quantize_linears_int8(model))
    count = sum(type(m).__name__ == "PerTokenInt8Linear" for m in served.modules())
    assert count > 0
    assert TorchSession(served, "cpu").dtype() == f"int8 per channel ({count} linears), rest float32"
