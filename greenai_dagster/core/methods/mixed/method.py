"""Per-layer mixed precision as a compression method: each unit (block or linear) gets its own bits.

Either the strategy names the allocation, or it names a budget (average bits per quantizable weight)
and a solver, and the method measures the model's sensitivity on calibration tokens and solves
(`levels`, `sensitivity`, `solvers` beside this module). The result is saved by llm-compressor as one compressed-tensors checkpoint with a
config group per level. With `algorithm: rtn` (the default) that is the same RTN scheme `rtn` uses, so
every figure the simulation predicted is what the checkpoint holds (a test checks the weights are
identical). With `algorithm: gptq` llm-compressor's GPTQModifier quantizes each config group at its own
bits on calibration text (as the `gptq` method does uniformly); with `algorithm: autoround` llm-compressor's
AutoRoundModifier tunes each block's rounding with every linear at its own bits (auto-round's per-layer
config). Either way the allocation starts from a strong uniform quantizer rather than round-to-nearest;
the budget solve still ranks units by RTN sensitivity (benchmarks/mixed_precision.py searches on the
quantizer's own weights instead).

Sensitivity tables are cached per model and settings under data/mixed/, so a second budget on the
same model costs only the solve and the quantization.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.methods.autoround import compile_pays
from greenai_dagster.core.methods.base import CompressionContext, CompressionMethod, MethodParams, MethodResult
from greenai_dagster.core.methods.gptq import check_group_size
from greenai_dagster.core.methods.llmcompressor_oneshot import (count_quantized, group_quant_unsupported, prepare,
                                                                run_oneshot)
from greenai_dagster.core.methods.mixed import levels as lv, sensitivity, solvers
from greenai_dagster.core.methods.mixed.levels import level_bits
from greenai_dagster.core.storage.paths import data_root

DEFAULT_BUDGET = 4.25
Level = Literal["w2", "w3", "w4", "w5", "w6", "w8", "f16"]


class MixedParams(MethodParams):
    budget_bits: float | None = Field(None, gt=0, le=16, description="average bits per quantizable weight "
                                      f"(default {DEFAULT_BUDGET}, the size of W4 with group-64 scales, when no allocation)")
    allocation: dict[str, Level] | None = Field(None, description="unit name -> level; units not named stay f16")
    solver: Literal["knapsack", "evolutionary"] = "knapsack"
    granularity: Literal["block", "linear"] = "block"
    levels: list[Level] = Field(default_factory=lambda: ["w3", "w4", "w5", "w6", "w8"], min_length=1)
    group_size: int = 64
    algorithm: Literal["rtn", "gptq", "autoround"] = Field(
        "rtn", description="how each level's integers are found: round-to-nearest, GPTQ on calibration text, or "
                           "AutoRound's tuned rounding on calibration text")
    num_calibration_samples: int = Field(64, ge=1, le=1024, description="GPTQ and AutoRound only")
    calibration_seq_len: int = Field(128, ge=16, le=4096, description="GPTQ and AutoRound only")
    iters: int = Field(50, ge=1, le=1000, description="AutoRound only: tuning steps per block (as the autoround method)")
    sensitivity_windows: int = Field(2, ge=1, description="calibration windows of 256 tokens for sensitivity")
    evolutionary_trials: int = Field(96, ge=4)

    @model_validator(mode="after")
    def _one_source(self):
        if self.budget_bits is not None and self.allocation is not None:
            raise ValueError("give budget_bits or allocation, not both")
        if self.budget_bits is None and self.allocation is None:
            self.budget_bits = DEFAULT_BUDGET
        return self


SENSITIVITY_WINDOW = 256


class MixedPrecision(CompressionMethod):
    name = "mixed"
    family = "quantization"
    Params = MixedParams

    def unsupported(self, model, spec):
        if spec.expert_layout:
            return "it allocates per block or per linear of dense models; mixture-of-experts layers are not allocated yet"
        return group_quant_unsupported(spec)

    def check(self, params, spec):
        check_group_size(params.group_size, spec)
        if params.algorithm == "autoround" and "f16" in (set((params.allocation or {}).values()) | set(params.levels)):
            raise CompressionFailed("mixed precision with AutoRound quantizes every linear of a tuned block; "
                                    "level 'f16' (a linear left in float) is not offered with it.",
                                    "Drop 'f16' from the levels and the allocation, or use algorithm 'gptq'.")
        if params.budget_bits is not None:
            cheapest = min(level_bits(lv) for lv in params.levels)
            if params.budget_bits < cheapest:
                raise CompressionFailed(f"budget_bits {params.budget_bits} is below the cheapest level ({cheapest} bits).",
                                        f"Use budget_bits >= {cheapest} or add a cheaper level.")

    def label(self, params):
        if params.get("allocation") is not None:
            digest = hashlib.sha256(json.dumps(params["allocation"], sort_keys=True).encode()).hexdigest()[:6]
            return f"mixed_custom_{digest}"
        algorithm = params.get("algorithm", "rtn")
        suffix = "" if algorithm == "rtn" else f"_{algorithm}"
        return f"mixed_{params['budget_bits']:g}b_{params.get('solver', 'knapsack')}{suffix}"

    def features(self, params):
        bits = params.get("budget_bits") or 16.0
        return {"weight_bits": bits, "group_log2": 6.0, "mixed": 1.0}

    def apply(self, model, params: MixedParams, ctx: CompressionContext) -> MethodResult:
        from compressed_tensors.quantization import QuantizationScheme
        from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

        ignore = prepare(model)
        unit_list = lv.units(model, params.granularity)
        report: dict = {"granularity": params.granularity, "units": len(unit_list)}
        if params.allocation is not None:
            unknown = sorted(set(params.allocation) - {u.name for u in unit_list})
            if unknown:
                raise CompressionFailed(f"mixed allocation names units this model does not have: {', '.join(unknown[:3])}.",
                                        f"Units at granularity '{params.granularity}' look like '{unit_list[0].name}'.")
            allocation = {u.name: params.allocation.get(u.name, "f16") for u in unit_list}
        else:
            allocation, solved = self._solve(model, params, ctx, unit_list)
            report.update(solved)
        groups = {}
        gptq = params.algorithm == "gptq"
        engines = {"rtn": "QuantizationModifier", "gptq": "GPTQModifier", "autoround": "AutoRoundModifier"}
        for level in sorted(set(allocation.values()) - {"f16"}):
            members = [u for u in unit_list if allocation[u.name] == level]
            weights = lv.quant_args(lv.level_bits(level), params.group_size)
            if gptq:   # the gptq method's default column order (act_order, measured better on SmolLM2)
                weights = weights.model_copy(update={"actorder": "static"})
            groups[f"group_{level}"] = QuantizationScheme(targets=[u.pattern() for u in members], weights=weights)
        if groups and gptq:
            run_oneshot(model, ctx, [GPTQModifier(config_groups=groups, ignore=ignore, actorder="static")],
                        params.num_calibration_samples, params.calibration_seq_len, "mixed-precision GPTQ")
        elif groups and params.algorithm == "autoround":   # as the autoround method, one bits setting per group
            modifier = _per_layer_autoround()(config_groups=groups, ignore=ignore, iters=params.iters,
                                         batch_size=min(8, params.num_calibration_samples),
                                         enable_torch_compile=compile_pays(model, ctx.device))
            run_oneshot(model, ctx, [modifier], params.num_calibration_samples, params.calibration_seq_len,
                        "mixed-precision AutoRound")
        elif groups:
            run_oneshot(model, ctx, [QuantizationModifier(config_groups=groups, ignore=ignore)], 4, 64,
                        "mixed-precision RTN", calibrate=False)
        counts = {level: sum(1 for v in allocation.values() if v == level) for level in sorted(set(allocation.values()))}
        report.update({"allocation": allocation, "level_counts": counts,
                       "avg_bits": round(lv.average_bits(allocation, unit_list), 4),
                       "quantized_linear_layers": count_quantized(model),
                       "algorithm": params.algorithm,
                       "engine": f"llmcompressor {engines[params.algorithm]}, one config group per level"})
        return MethodResult(model, report)

    def _solve(self, model, params: MixedParams, ctx: CompressionContext, unit_list) -> tuple[dict, dict]:
        if ctx.calibration is None:
            raise CompressionFailed("mixed precision with a budget needs calibration text for its sensitivity pass.")
        chunks = ctx.calibration(params.sensitivity_windows, SENSITIVITY_WINDOW)
        reference = sensitivity.reference_on(model, chunks)
        quantizer = sensitivity.Quantizer(model, unit_list, params.group_size)
        table = _cached_table(ctx, params, chunks, lambda: sensitivity.table(quantizer, reference, params.levels))
        out = {"solver": params.solver, "budget_bits": params.budget_bits, "sensitivity_tokens": sum(map(len, chunks)),
               "sensitivity": table}
        if params.solver == "knapsack":
            try:
                allocation = solvers.knapsack(table, unit_list, params.levels, params.budget_bits)
            except ValueError as exc:
                raise CompressionFailed(f"mixed precision: {exc}.") from None
            out["predicted_kl"] = round(sensitivity.predicted_kl(table, allocation), 6)
        else:
            trials = solvers.evolutionary(lambda a: sensitivity.measure(quantizer, reference, a).kl_divergence,
                                          unit_list, params.levels, params.evolutionary_trials,
                                          max_bits=params.budget_bits)
            best = solvers.best_within(trials, params.budget_bits)
            allocation = best["allocation"]
            out.update({"measured_kl": round(best["kl"], 6), "trials": len(trials)})
        quantizer.clear()
        return allocation, out


def _per_layer_autoround():
    """llm-compressor's AutoRoundModifier with each linear tuned at its own config group's bits.

    llm-compressor 0.14.0.1 matches the modifier's targets against the names inside one decoding layer
    ("self_attn.q_proj"), so targets that name a linear by its path in the model
    ("model.layers.3.self_attn.q_proj", the only way to give two blocks different bits) match nothing,
    and auto-round tunes every linear at the first group's bits while the checkpoint packs it at its own
    (tests/core/methods/mixed/test_mixed_precision.py found it: 5-bit linears holding 3-bit integers). Here the
    targets are matched once on the whole model and then recognised by module identity, as the modifier itself
    does for wrapped layers."""
    import torch
    from compressed_tensors.utils import match_named_modules
    from llmcompressor.modifiers.autoround import AutoRoundModifier

    class PerLayerAutoRound(AutoRoundModifier):
        _whole_model_targets: set = PrivateAttr(default_factory=set)
        _float_dtype: torch.dtype = PrivateAttr(default=torch.float32)

        def on_initialize(self, state, **kwargs) -> bool:
            started = super().on_initialize(state, **kwargs)
            self._whole_model_targets = {m for _, m in match_named_modules(state.model, self.resolved_targets,
                                                                           self.ignore)}
            self._float_dtype = next(state.model.parameters()).dtype
            return started

        def _match_autoround_targets(self, model):
            return {m for m in model.modules() if m in self._whole_model_targets}

        def _postprocess_qparams(self, model, registered):
            # auto-round hands the tuned block back with its weights in bfloat16; the next block's calibration
            # pass runs it on float32 activations, so they go back to the model's dtype (exact: bf16 -> fp32)
            super()._postprocess_qparams(model, registered)
            for module in model.modules():
                if module in self._whole_model_targets and module.weight.dtype != self._float_dtype:
                    module.weight.data = module.weight.data.to(self._float_dtype)

    return PerLayerAutoRound


def _table_path(key: dict):
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return data_root() / "mixed" / f"sensitivity_{digest}.json"


def known_sensitivity(spec) -> dict | None:
    """The block-level sensitivity table measured for this model by an earlier mixed candidate, if any
    (what the LLM coordinator is shown): {"levels": [...], "table": {block: {level: KL}}}."""
    model = spec.checkpoint_path or spec.model_name
    for path in sorted((data_root() / "mixed").glob("sensitivity_*.json")):
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        key = saved.get("key", {})
        if key.get("model") == model and key.get("granularity") == "block":
            return {"levels": key.get("levels"), "kl_when_only_this_block_is_quantized": saved["table"]}
    return None


def _cached_table(ctx: CompressionContext, params: MixedParams, chunks, compute) -> dict:
    """The sensitivity table for this model and settings, computed once (data/mixed/<key>.json)."""
    key = {"model": ctx.spec.checkpoint_path or ctx.spec.model_name, "params": ctx.spec.parameter_count_exact,
           "granularity": params.granularity, "levels": params.levels, "group": params.group_size,
           "tokens": hashlib.sha256(json.dumps(chunks).encode()).hexdigest()}
    path = _table_path(key)
    if path.exists():
        return json.loads(path.read_text())["table"]
    table = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "table": table}))
    tmp.replace(path)
    return table
