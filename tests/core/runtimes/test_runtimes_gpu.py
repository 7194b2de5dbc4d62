"""CUDA runtimes (`core.runtimes.cuda_*`) on a real GPU: each must compute the model it was given.

A tiny Llama (hidden 128, so tinygemm's K tiling applies) is put into each runtime's representation
(and into the opt-in `torch-cuda-w4-triton`'s),
in memory and from checkpoints written by the project's own methods (RTN W4, GPTQ W8, dynamic
int8) or by llm-compressor (FP8 dynamic). The runtime's logits, after a prefill and at every greedy
decode step (compiled step replayed as a CUDA graph), are compared with eager transformers in bf16
running the *same* weights (the quantized ones expanded onto their grid), teacher-forced on the
runtime's own tokens. Tolerance: relative L2 error of the logits below 2e-2 (bf16 rounding in a
different order; 8e-2 for FP8, whose activations are also quantized, to e4m3, which the reference
does not do). Every test is skipped without CUDA, and says so.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the CUDA runtimes need a GPU")]

TOLERANCE = {"torch-cuda-compiled": 2e-2, "torch-cuda-w4-tinygemm": 2e-2, "torch-cuda-int8-wo": 2e-2,
             "torch-cuda-fp8": 8e-2, "torch-cuda-w4-triton": 2e-2}
TRITON_STEP = ("torch-cuda-compiled", "torch-cuda-w4-triton", "torch-cuda-fp8", "torch-cuda-int8-wo")   # runtimes whose decode step is `kernel_step`
PROMPT = list(range(40, 72))
STEPS = 6


@pytest.fixture(scope="module")
def tiny128(tmp_path_factory):
    from tests.conftest import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny128") / "tiny-llama-128", hidden=128)


def _runtime(name: str):
    from greenai_dagster.core import runtimes
    from greenai_dagster.core.runtimes.cuda_w4 import CudaW4Triton

    return CudaW4Triton() if name == CudaW4Triton.name else runtimes.by_name(name)


def _dequantized(name: str, record) -> torch.Tensor:
    if name in ("torch-cuda-w4-tinygemm", "torch-cuda-w4-triton"):
        from greenai_dagster.core.runtimes.cuda_w4 import dequantize_record
    elif name == "torch-cuda-fp8":
        from greenai_dagster.core.runtimes.cuda_fp8 import dequantize_record
    elif name == "torch-cuda-int8-wo":
        from greenai_dagster.core.runtimes.cuda_int8 import dequantize_record
    else:
        return record["weight"]
    return dequantize_record(record)


def _compare(session, reference, tolerance: float) -> None:
    """Prefill + STEPS greedy decodes; each position's logits against the reference's, teacher-forced."""
    session.prefill(PROMPT)
    sequence = list(PROMPT)
    for step in range(STEPS + 1):
        with torch.no_grad():
            expected = reference(torch.tensor([sequence], device="cuda")).logits[0, -1].float()
        got = session.last_logits()[0]
        error = ((got - expected).norm() / expected.norm()).item()
        assert error < tolerance, f"step {step}: relative logit error {error:.4f} > {tolerance}"
        token = session.last_token()
        assert token == int(got.argmax()), "the session must decode greedily"
        sequence.append(token)
        if step < STEPS:
            session.decode()


@pytest.mark.parametrize("name", list(TOLERANCE))
def test_runtime_agrees_with_eager_bf16_on_the_same_weights(name, tiny128):
    from transformers import AutoModelForCausalLM

    from greenai_dagster.core.runtimes.cuda_static import install_linears

    runtime = _runtime(name)
    assert runtime.available("cuda") and not runtime.available("cpu")
    model = AutoModelForCausalLM.from_pretrained(tiny128, dtype=torch.bfloat16).cuda().eval()
    reference = AutoModelForCausalLM.from_pretrained(tiny128, dtype=torch.bfloat16).cuda().eval()
    read = runtime.dense_reader(model)

    def record_of(module_name: str):
        record = read(module_name)
        reference.get_submodule(module_name).weight.data = _dequantized(name, record)
        return record

    install_linears(model, record_of, runtime.build)
    session = runtime.session_for(model, "cuda", max_len=128)   # compiled step, captured as a CUDA graph
    assert session._graph is not None
    _compare(session, reference, TOLERANCE[name])


def test_tinygemm_prefill_dequantization_is_exact():
    from greenai_dagster.core.runtimes.cuda_w4 import W4Linear, dequantize_record, repack

    torch.manual_seed(0)
    for group in (32, 64, 128, 256):
        n, k = 96, 512
        q = torch.randint(-8, 8, (n, k), dtype=torch.int8, device="cuda")
        scale = torch.rand(n, k // group, device="cuda") * 0.02 + 0.001
        zero_point = torch.randint(-2, 3, (n, k // group), device="cuda").float()
        record = {"q": q, "scale": scale, "zero_point": zero_point, "group_size": group}
        packed, sz = repack(q, scale, zero_point, group)
        layer = W4Linear(packed, sz, group, k, n, None)
        dense = dequantize_record(record).float()
        assert torch.allclose(layer.dequantize().float(), dense, rtol=1e-2, atol=1e-4)
        for rows in (1, 64):   # tinygemm (decode) and dequantize + bf16 matmul (prefill)
            x = torch.randn(rows, k, device="cuda", dtype=torch.bfloat16)
            expected = x.float() @ dense.t()
            got = layer(x).float()
            assert ((got - expected).norm() / expected.norm()).item() < 1e-2


def test_the_triton_step_runs_where_it_should_and_prefill_replays_a_graph(tiny128):
    from transformers import AutoModelForCausalLM

    for name in TOLERANCE:
        runtime = _runtime(name)
        model = AutoModelForCausalLM.from_pretrained(tiny128, dtype=torch.bfloat16).cuda().eval()
        runtime.convert(model)
        session = runtime.session_for(model, "cuda", max_len=128)
        if name not in TRITON_STEP:   # linears without a GEMV: the compiled step, eager prefill
            assert session.kernel_step_blocker and session.step_path.startswith("torch.compile"), name
            assert not session.graph_prefill
            continue
        assert session.kernel_step_blocker is None and session.step_path.startswith("Triton"), name
        logits = []
        for _ in range(3):   # eager, then captured (second prefill of this length), then replayed
            # the allocator's free blocks filled with garbage first: a graph input freed after capture
            # (the position tensor was, 2026-12-07) is overwritten and the replay reads out of bounds
            churn = [torch.full((size,), -7, dtype=torch.long, device="cuda") for size in (len(PROMPT), 64, 512)]
            del churn
            session.prefill(PROMPT)
            session.decode()
            logits.append(session.last_logits().clone())
        assert len(session._prefill_graphs) == 1, f"{name}: no prefill graph ({session.prefill_graph_error})"
        for later in logits[1:]:
            error = ((later - logits[0]).norm() / logits[0].norm()).item()
            assert error < 1e-3, f"{name}: a replayed prefill changed the next step's logits ({error:.2e})"


def test_packed_w4_kernels_compute_the_dequantized_weight():
    from greenai_dagster.core.runtimes.cuda_w4 import PackedW4Linear, dequantize_record, repack_packed

    torch.manual_seed(0)
    for group in (32, 64, 128, 256):
        for asymmetric in (False, True):
            n, k = 96, 1024
            q = torch.randint(-8, 8, (n, k), dtype=torch.int8, device="cuda")
            scale = torch.rand(n, k // group, device="cuda") * 0.02 + 0.001
            zero_point = (torch.randint(-2, 3, (n, k // group), device="cuda").float() if asymmetric
                          else torch.zeros(n, k // group, device="cuda"))
            record = {"q": q, "scale": scale, "zero_point": zero_point, "group_size": group}
            layer = PackedW4Linear(*repack_packed(q, scale, zero_point, group), group, k, n, None)
            dense = dequantize_record(record).float()
            assert torch.allclose(layer.dequantize().float(), dense, rtol=1e-2, atol=1e-4)
            for kernel in ("fused", "dequantize"):
                PackedW4Linear.prefill_kernel = kernel
                try:
                    for rows in (1, 8, 200):   # the GEMV (decode), a batch's step (fused), prefill (kernel)
                        x = torch.randn(rows, k, device="cuda", dtype=torch.bfloat16)
                        expected = x.float() @ dense.t()
                        got = layer(x).float()
                        assert ((got - expected).norm() / expected.norm()).item() < 1e-2, (group, asymmetric, kernel)
                finally:
                    PackedW4Linear.prefill_kernel = "dequantize"


def test_int8_and_fp8_gemv_kernels_agree_with_the_matmul_they_replace():
    from greenai_dagster.core.runtimes import cuda_kernels
    from greenai_dagster.core.runtimes.cuda_fp8 import Fp8Linear, quantize_fp8
    from greenai_dagster.core.runtimes.cuda_int8 import quantize_int8

    torch.manual_seed(1)
    weight = torch.randn(192, 640, device="cuda")
    x = torch.randn(640, device="cuda", dtype=torch.bfloat16)
    q, scale = quantize_int8(weight)   # per channel: one group of K
    packed = (q.to(torch.int16) + 128).to(torch.uint8).contiguous().view(torch.int32)
    got = cuda_kernels.gemv_wq(x, packed, scale.t().contiguous(), None, 640, 8).float()
    expected = (q.float() * scale) @ x.float()
    assert ((got - expected).norm() / expected.norm()).item() < 1e-2
    weight_fp8, weight_scale = quantize_fp8(weight)
    layer = Fp8Linear(weight_fp8, weight_scale, None)
    expected = layer(torch.stack([x, x]))[0].float()   # _scaled_mm on the per-token e4m3 activation
    got = cuda_kernels.gemv_fp8(x, weight_fp8, weight_scale.view(-1).float().contiguous()).float()
    assert ((got - expected).norm() / expected.norm()).item() < 1e-2


@pytest.mark.parametrize("k", [4096, 14336])
def test_gemvs_that_normalise_or_gate_their_input_equal_the_separate_launches(k, monkeypatch):
    """The decode step's fused inputs (RMSNorm before qkv / gate_up / lm_head, silu(gate) * up before down)
    give what the separate `rmsnorm` / `silu_mul` launches followed by the plain GEMV give, at Llama-3-8B's
    widths: with the tile the tuner picks (fused or not, by timing: it must have timed both), and with a
    fused and a separate-launch tile forced."""
    from greenai_dagster.core.runtimes import cuda_kernels as kernels
    from greenai_dagster.core.runtimes.cuda_fp8 import quantize_fp8

    monkeypatch.setenv("GREENAI_KERNEL_TUNING", "off")   # the tuner must time here, not read an earlier choice
    torch.manual_seed(2)
    n, group = 512, 128
    x = torch.randn(k, device="cuda", dtype=torch.bfloat16)
    gate_up = torch.randn(2 * k, device="cuda", dtype=torch.bfloat16)
    norm = ((1 + 0.1 * torch.randn(k, device="cuda")).to(torch.bfloat16), 1e-5)
    residual = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    weight = torch.randn(n, k, device="cuda") * 0.02
    packed = kernels.pack_unsigned(torch.randint(0, 16, (n, k), device="cuda"), 4)
    scales = (torch.rand(k // group, n, device="cuda") * 0.01 + 0.001).to(torch.bfloat16)
    weight_fp8, weight_scale = quantize_fp8(weight)
    gemvs = {"bf16": lambda v, **kw: kernels.gemv_bf16(v, weight.to(torch.bfloat16), **kw),
             "w4": lambda v, **kw: kernels.gemv_wq(v, packed, scales, None, group, 4, **kw),
             "fp8": lambda v, **kw: kernels.gemv_fp8(v, weight_fp8, weight_scale.view(-1).contiguous(), **kw)}

    def check(how: str) -> None:
        for name, gemv in gemvs.items():
            fused, separate = gemv(x, norm=norm), gemv(kernels.rmsnorm(x, *norm))
            error = ((fused.float() - separate.float()).norm() / separate.float().norm()).item()
            assert error < 1e-3, f"{name} with its norm ({how}): {error:.2e}"
            fused = gemv(gate_up, silu=True, residual=residual)
            separate = gemv(kernels.silu_mul(gate_up), residual=residual)
            error = ((fused.float() - separate.float()).norm() / separate.float().norm()).item()
            assert error < 1e-3, f"{name} with SiLU-gating ({how}): {error:.2e}"

    check("tuned")
    for entry in kernels.tuning_report():
        if entry["kernel"].startswith("gemv_") and entry["key"][1] == k and (entry["key"][-2] or entry["key"][-1]):
            tried = [config for _, config in entry["tried"]]
            assert any(c.get("separate_input") for c in tried) and not all(c.get("separate_input") for c in tried)
    tuned = kernels._pick
    for how, index in (("fused tile", 0), ("separate-launch tile", -1)):
        monkeypatch.setattr(kernels, "_pick", lambda name, key, configs, launch, device: configs[index])
        assert kernels._pick("gemv_bf16", (n, k, True, False), kernels._input_variants(
            kernels.BF16_CONFIGS, norm, False), None, None).get("separate_input", False) == (index == -1)
        check(how)
    monkeypatch.setattr(kernels, "_pick", tuned)


def test_the_tuner_times_a_launch_as_the_steps_graph_replays_it():
    """`_time_ms` (graph of flush + launch minus graph of flush): positive, below a millisecond for one GEMV,
    and twice the rows take longer; an rmsnorm launch costs microseconds, not the tens an eagerly timed
    launch shows."""
    from greenai_dagster.core.runtimes import cuda_kernels as kernels

    x = torch.randn(4096, device="cuda", dtype=torch.bfloat16)
    small, large = (torch.randn(n, 4096, device="cuda", dtype=torch.bfloat16) for n in (4096, 16384))
    weight = torch.ones(4096, device="cuda", dtype=torch.bfloat16)
    kernels.gemv_bf16(x, small), kernels.gemv_bf16(x, large), kernels.rmsnorm(x, weight, 1e-5)   # compile
    t_small = kernels._time_ms(lambda: kernels.gemv_bf16(x, small), x.device)
    t_large = kernels._time_ms(lambda: kernels.gemv_bf16(x, large), x.device)
    t_norm = kernels._time_ms(lambda: kernels.rmsnorm(x, weight, 1e-5), x.device)
    assert 0 < t_small < t_large < 1.0, (t_small, t_large)
    assert t_norm < 0.015, t_norm


def _checkpoint(base, folder, method: str, params: dict):
    from greenai_dagster.core.models.checkpoints import save_variant
    from greenai_dagster.core.compress import apply_strategy
    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.methods.assess import build_spec
    from greenai_dagster.core.strategy import Step, Strategy

    model, tokenizer = load_model_and_tokenizer(str(base))
    spec = build_spec("tiny", model, str(base))
    model, reports, fmt = apply_strategy(model, tokenizer, Strategy(method, [Step(method, params)]), spec, "cpu")
    return save_variant(model, tokenizer, folder, fmt, {"step_reports": reports})


@pytest.mark.parametrize("method,params,expected", [
    ("rtn", {"bits": 4, "group_size": 32}, "torch-cuda-w4-tinygemm"),
    ("gptq", {"bits": 8, "group_size": 32}, "torch-cuda-int8-wo"),
    ("int8", {"bits": 8}, "torch-cuda-int8-wo"),
])
def test_checkpoint_is_served_by_its_cuda_runtime_and_agrees_with_eager(method, params, expected, tiny128,
                                                                       tmp_path):
    if method != "int8":
        pytest.importorskip("llmcompressor", reason="llm-compressor writes the compressed-tensors checkpoint")
    from greenai_dagster.core import runtimes

    folder = _checkpoint(tiny128, tmp_path / method, method, params)
    picked = [r.name for r in runtimes.pick(folder, "cuda")]
    assert picked[0] == expected and picked[-1] == "torch-eager"
    assert expected not in [r.name for r in runtimes.pick(folder, "cpu")]
    eager = runtimes.EagerTorch().load(folder, "cuda")[0]   # int8: the fixed loader, float weights on the GPU
    session = runtimes.by_name(expected).open(folder, "cuda", max_len=128, compile_step=False, graph=False)
    _compare(session, eager, TOLERANCE[expected])


def test_fp8_dynamic_checkpoint_is_served_by_the_fp8_runtime(tiny128, tmp_path):
    pytest.importorskip("llmcompressor", reason="llm-compressor writes the FP8 checkpoint")
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from greenai_dagster.core import runtimes

    model = AutoModelForCausalLM.from_pretrained(tiny128, dtype=torch.bfloat16)
    oneshot(model=model, recipe=QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=["lm_head"]))
    folder = tmp_path / "fp8"
    model.save_pretrained(folder, save_compressed=True)
    AutoTokenizer.from_pretrained(tiny128).save_pretrained(folder)
    assert runtimes.pick(folder, "cuda")[0].name == "torch-cuda-fp8"
    eager = runtimes.EagerTorch().load(folder, "cuda")[0]
    session = runtimes.by_name("torch-cuda-fp8").open(folder, "cuda", max_len=128, compile_step=False, graph=False)
    _compare(session, eager, TOLERANCE["torch-cuda-fp8"])


def test_nvml_joules_per_token_are_a_power_the_board_can_draw(tiny128):
    """The probe's J/token on a GPU (NVML's counter, read over its 2 s window) divided by the window's seconds
    per token is a power between 20 W and the board's limit: read around 16-token loops it gave 0.9-1.6 kW
    for a 135M model on an H100 (2026-12-07)."""
    pynvml = pytest.importorskip("pynvml")
    from greenai_dagster.core.evaluation.runtime_probe import measure
    from greenai_dagster.core.evaluation.serving_energy import counter

    meter = counter("cuda", 1)
    if not meter.source.startswith("NVML"):
        pytest.skip(f"no NVML energy counter here ({meter.source})")
    session = _runtime("torch-cuda-compiled").open_for_request(tiny128, "cuda", 1, 128 + 16)
    figures = measure(session, 256, 128, 16, repeats=2, warmup=1, batch_size=0, meter=meter)
    window = figures["energy_window"]
    assert window["seconds"] >= meter.min_window_s and figures["energy_j_per_token"] is not None
    limit_w = pynvml.nvmlDeviceGetEnforcedPowerLimit(pynvml.nvmlDeviceGetHandleByIndex(0)) / 1000
    assert 20.0 < window["watts"] <= 1.1 * limit_w, window
