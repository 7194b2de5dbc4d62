"""Shared door to llm-compressor's `oneshot`: calibration data from our corpus, errors as E005.

GPTQ, AWQ, AutoRound, SmoothQuant W8A8, SparseGPT and Wanda are all llm-compressor modifiers;
each method file only builds its modifier list. The model is changed in place, and its
`save_pretrained` writes the compressed-tensors format (packed ints, bitmask / 2:4 sparsity).

Any architecture (`core.models.arch`): Conv1D layers become nn.Linear first (llm-compressor quantizes
nn.Linear), the output head and MoE routers are never touched, and fused experts are split into
per-expert linears by llm-compressor; experts left in float are packed back into the native fused
layout afterwards, quantized ones stay per expert (transformers stacks them back when loading).
"""

from __future__ import annotations

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.methods.base import CompressionContext, needs_linears
from greenai_dagster.core.models import arch


def calibration_dataset(ctx: CompressionContext, num_samples: int, seq_len: int):
    from datasets import Dataset

    chunks = ctx.calibration(num_samples, seq_len)
    return Dataset.from_dict({"input_ids": chunks, "attention_mask": [[1] * len(c) for c in chunks]})


def weight_scheme(bits: int, group_size: int, symmetric: bool = True, act_order: bool = False):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    weights = QuantizationArgs(num_bits=bits, type="int", symmetric=symmetric, strategy="group",
                               group_size=group_size, actorder="static" if act_order else None)
    return {"group_0": QuantizationScheme(targets=["Linear"], weights=weights)}


def prepare(model, quantize_experts: bool = True) -> list[str]:
    """Ready any causal LM for llm-compressor; returns the `ignore` list (head, routers, and the experts
    where they cannot be quantized and reloaded)."""
    arch.conv1d_to_linear(model)
    ignore = sorted(arch.head_names(model) | arch.router_names(model))
    if arch.fused_experts(model) and (not quantize_experts or arch.expert_layout(model) != "per-expert"):
        ignore.append(arch.EXPERT_LINEARS)
    return ignore


def run_oneshot(model, ctx: CompressionContext, recipe: list, num_samples: int, seq_len: int, what: str,
                calibrate: bool = True) -> None:
    """Run `recipe`; `calibrate=False` for recipes that read only the weights (RTN): llm-compressor's
    data-free pipeline then skips tracing the model and running calibration batches."""
    from llmcompressor import oneshot

    try:
        if calibrate:
            oneshot(model=model, tokenizer=ctx.tokenizer, recipe=recipe,
                    dataset=calibration_dataset(ctx, num_samples, seq_len),
                    num_calibration_samples=num_samples, max_seq_length=seq_len, pipeline="sequential")
        else:
            oneshot(model=model, tokenizer=ctx.tokenizer, recipe=recipe, pipeline="datafree")
        if arch.has_linear_experts(model):
            arch.repack_float_experts(model)
    except Exception as exc:  # noqa: BLE001 - any library failure is the seed's E005
        raise CompressionFailed(f"{what} failed in llm-compressor: {type(exc).__name__}: {exc}".splitlines()[0]) from exc


def count_quantized(model) -> int:
    return sum(1 for m in model.modules() if getattr(m, "quantization_scheme", None) is not None)


def group_quant_unsupported(spec) -> str | None:
    """Why group-wise weight quantization cannot run on this model (no linears, no valid group size)."""
    if needs_linears(spec):
        return needs_linears(spec)
    if not spec.valid_group_sizes:
        return spec.group_size_note or "no group size divides every quantized layer's input width"
    return None


def expert_note(spec, quantized: bool = True) -> str | None:
    """What a quantizer does with the experts of a mixture of experts."""
    if spec.expert_layout == "per-expert" and quantized:
        return ("experts are quantized one linear per expert; transformers stacks them back into its fused expert "
                "tensors when loading (dequantized to float there, packed on disk); routers stay in float")
    if spec.expert_layout:
        return "the fused experts are kept in float (transformers cannot reload them quantized); routers stay in float"
    return None


def check_expert_scheme(symmetric: bool, spec, method: str) -> None:
    """transformers reloads quantized per-expert weights only from symmetric packed integers."""
    if spec.expert_layout == "per-expert" and not symmetric:
        raise CompressionFailed(
            f"{method} with asymmetric weights (zero points) cannot quantize the experts of {spec.model_name}: "
            "transformers reloads quantized experts into its fused expert tensors only from symmetric packed "
            "integers.", "Set symmetric: true for this mixture-of-experts model.")


def smoothing_problem(model, kind: str) -> str | None:
    """Whether llm-compressor's activation-smoothing mappings (AWQ / SmoothQuant) resolve on this model:
    the registry is keyed by architecture, with Llama-style defaults that may match nothing."""
    if arch.expert_layout(model) == "per-expert":   # llm-compressor maps the experts once they are split
        model = arch.linearized_skeleton(model)
    try:
        from compressed_tensors.utils import match_modules_set

        if kind == "awq":
            from llmcompressor.modifiers.transform.awq.dynamic_mappings import get_layer_mappings_from_model

            sets = [(m.smooth_layer, *m.balance_layers) for m in get_layer_mappings_from_model(model)]
        else:
            from llmcompressor.modifiers.transform.smoothquant.dynamic_mappings import get_layer_mappings_from_model

            sets = [(*m.balance_layers, m.smooth_layers) for m in get_layer_mappings_from_model(model)]
        matched = sum(1 for targets in sets for _ in match_modules_set(model, targets))
    except Exception as exc:  # noqa: BLE001 - a mapping that does not resolve is the answer
        return (f"llm-compressor's {kind} smoothing mappings for {type(model).__name__} do not resolve on its "
                f"layers ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")
    if not matched:
        return (f"llm-compressor has no {kind} smoothing mappings that match {type(model).__name__}'s layers "
                "(its Llama-style defaults find no norm/projection pairs here)")
    return None


def release_session() -> None:
    """Forget the model llm-compressor's global session still holds after `oneshot`. Its save reads the
    recipe from that session, so this runs once the checkpoint is written; without it the last compressed
    model stayed allocated (GPU memory included) through every later step of the process."""
    try:
        from llmcompressor.core import reset_session
    except ImportError:   # llm-compressor not installed: no session to release
        return
    reset_session()
