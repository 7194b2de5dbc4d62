"""Model spec: shapes, size and memory needs of a causal LM, and what compression it admits.

The memory formulas are the seed's (seeds/001):
  inference = P*W + KV + A + buffer,  KV = 2*L*B*H_kv*S*d_head*bytes,  A = B*S*D*bytes,
              buffer = 10% of P*W
  training  = P*(W + O + G) + A*L + buffer,  O = 8 bytes (Adam), G = W,  A = B*S*D*bytes,
              buffer = 20% of P*(W + O + G)
One change from the seed: the KV cache counts key/value heads (H_kv), not query heads, so
grouped-query attention models (SmolLM2, Llama 3) are not over-estimated. With H_kv = H it is
the seed's formula exactly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from greenai_dagster.core.errors import ModelLoadError
from greenai_dagster.core.models import arch

GIB = 1024**3
PRECISION_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
GROUP_SIZE_CANDIDATES = (32, 64, 128, 256)
FALLBACK_GROUP_SIZES = (16, 8)   # only when none of the usual sizes divides every width (e.g. hidden 72)

# Conditions under which min / recommended VRAM are stated (kept in the spec so they are visible).
INFERENCE_CONDITIONS = {"batch_size": 1, "seq_len": 2048, "precision": "fp16"}
TRAINING_CONDITIONS = {"batch_size": 1, "seq_len": 512, "precision": "fp16"}


def inference_memory(params: int, batch_size: int, seq_len: int, d_model: int, n_layers: int,
                     n_kv_heads: int, d_head: int, precision: str = "fp16") -> dict[str, float]:
    b = PRECISION_BYTES[precision]
    weights = params * b
    kv_cache = 2 * n_layers * batch_size * n_kv_heads * seq_len * d_head * b
    activations = batch_size * seq_len * d_model * b
    buffer = 0.1 * weights
    total = weights + kv_cache + activations + buffer
    return {
        "total_gb": total / GIB,
        "weights_gb": weights / GIB,
        "kv_cache_gb": kv_cache / GIB,
        "activations_gb": activations / GIB,
        "buffer_gb": buffer / GIB,
        "kv_cache_per_token_mb": kv_cache / seq_len / 1024**2,
    }


def training_memory(params: int, batch_size: int, seq_len: int, d_model: int, n_layers: int,
                    precision: str = "fp16") -> dict[str, float]:
    b = PRECISION_BYTES[precision]
    optimizer_bytes = 8  # Adam: momentum + variance, fp32
    model_state = params * (b + optimizer_bytes + b)
    activations = batch_size * seq_len * d_model * b * n_layers
    buffer = 0.2 * model_state
    total = model_state + activations + buffer
    return {
        "total_gb": total / GIB,
        "model_state_gb": model_state / GIB,
        "activations_gb": activations / GIB,
        "buffer_gb": buffer / GIB,
    }


def valid_group_sizes(in_features: set[int], candidates=GROUP_SIZE_CANDIDATES) -> list[int]:
    """Group sizes that divide the input width of every quantized linear layer."""
    return [g for g in candidates if all(width % g == 0 for width in in_features)]


def choose_group_sizes(in_features: set[int]) -> tuple[list[int], str | None]:
    """The usual group sizes that fit every width; else the largest smaller power of two that does
    (one per model, stated); else none, with the reason (group-wise quantization is then left out)."""
    if not in_features:
        return [], "the model has no quantizable linear layers"
    sizes = valid_group_sizes(in_features)
    if sizes:
        return sizes, None
    widths = ", ".join(map(str, sorted(in_features)))
    fallback = valid_group_sizes(in_features, FALLBACK_GROUP_SIZES)[:1]
    if fallback:
        return fallback, (f"no group size of {'/'.join(map(str, GROUP_SIZE_CANDIDATES))} divides every quantized "
                          f"layer's input width ({widths}); group size {fallback[0]} is used for this model")
    return [], (f"no power-of-two group size from {FALLBACK_GROUP_SIZES[-1]} to {GROUP_SIZE_CANDIDATES[-1]} divides "
                f"every quantized layer's input width ({widths})")


def preferred_methods(parameter_count: int) -> list[str]:
    """The seed's priors: GPTQ 4-bit first, INT8 for accuracy, AWQ for speed; AutoRound for small models."""
    if parameter_count < 3e9:
        return ["gptq", "int8", "autoround", "awq"]
    return ["gptq", "awq", "int8", "autoround"]


def human_count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.0f}{unit}" if n / scale >= 10 else f"{n / scale:.1f}{unit}"
    return str(n)


@dataclass
class ModelSpec:
    model_name: str
    model_family: str
    parameter_count: str
    parameter_count_exact: int
    model_size_gb: float
    min_vram_gb: float
    recommended_vram_gb: float
    preferred_methods: list[str]
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int | None
    vocab_size: int
    linear_in_features: list[int]
    linear_out_features: list[int]
    min_linear_rank: int
    valid_group_sizes: list[int]
    inference_memory: dict = field(default_factory=dict)
    training_memory: dict = field(default_factory=dict)
    memory_conditions: dict = field(default_factory=dict)
    checkpoint_path: str | None = None
    # what the model is made of (core.models.arch) and what that means for the methods
    architecture: str = ""
    linear_layer_types: dict = field(default_factory=dict)   # {"Linear": n, "Conv1D": n, "fused experts": n}
    tied_embeddings: bool = True
    num_experts: int = 0
    router_layers: list = field(default_factory=list)        # never quantized or pruned
    expert_layout: str = ""      # MoE only: "per-expert" (methods see one linear per expert) or "fused" (untouched)
    width_examples: dict = field(default_factory=dict)       # {input width: a layer with that width}
    group_size_note: str | None = None
    unsupported_methods: dict = field(default_factory=dict)  # {method: why it cannot compress this model}
    method_notes: dict = field(default_factory=dict)         # {method: what it leaves out on this model}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ModelSpec":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2))


def weights_size_bytes(folder: Path) -> int:
    """Bytes of weight files in a checkpoint folder (what a download costs)."""
    suffixes = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and p.name.endswith(suffixes))


def measure_spec(model_name: str, model, checkpoint_path: str | None = None) -> ModelSpec:
    """Read shapes from a loaded model (any HF causal LM) and apply the formulas.

    Layers are found generically (`core.models.arch`): every nn.Linear / Conv1D except the output head and
    mixture-of-experts routers, plus the experts of fused MoE blocks. Which compression methods can
    compress the model is each method's verdict, added above this module
    (`core.methods.assess.build_spec`): the spec knows shapes, not methods."""
    try:
        return _build_spec(model_name, model, checkpoint_path)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise unreadable(model_name, model, exc) from exc


def unreadable(model_name: str, model, exc: BaseException):
    """E002 for a model whose shapes (or a method's reading of them) cannot be made out."""
    return ModelLoadError(
        f"cannot read the shapes of model '{model_name}' ({type(model).__name__}): {type(exc).__name__}: {exc}"
        .splitlines()[0], "This architecture is not supported; please report it with its config.json.")


def _count(text_cfg, *names, default=None):
    for name in names:
        value = getattr(text_cfg, name, None)
        if value is not None:
            return value
    if default is not None:
        return default
    raise AttributeError(f"the config has none of {', '.join(names)}")


def _build_spec(model_name: str, model, checkpoint_path: str | None) -> ModelSpec:
    cfg = model.config
    text_cfg = arch.text_config(cfg)
    d_model = _count(text_cfg, "hidden_size", "n_embd", "d_model")
    n_layers = _count(text_cfg, "num_hidden_layers", "n_layer", "num_layers")
    n_heads = _count(text_cfg, "num_attention_heads", "n_head", "num_heads")
    n_kv = _count(text_cfg, "num_key_value_heads", "multi_query_group_num", default=n_heads)
    d_head = getattr(text_cfg, "head_dim", None) or d_model // n_heads
    params = sum(p.numel() for p in model.parameters())  # tied weights are counted once

    linears = arch.quantizable_linears(model)
    shapes = {name: arch.linear_shape(m) for name, m in linears.items()}
    types: dict[str, int] = {}
    for m in linears.values():
        types[type(m).__name__] = types.get(type(m).__name__, 0) + 1
    for name, block in arch.fused_experts(model).items():
        per_expert = arch.expert_shapes(block)
        experts = block.down_proj.shape[0]
        types["fused experts"] = types.get("fused experts", 0) + experts * len(per_expert)
        for label, shape in zip(("gate_proj", "up_proj", "down_proj")[-len(per_expert):], per_expert):
            shapes[f"{name}.*.{label}"] = shape
    in_features = {s[0] for s in shapes.values()}
    out_features = {s[1] for s in shapes.values()}
    examples: dict[int, str] = {}
    for name, (n_in, _) in shapes.items():
        examples.setdefault(n_in, name)
    group_sizes, group_note = choose_group_sizes(in_features)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    tied = head is not None and embed is not None and head.weight is embed.weight

    size_gb = (weights_size_bytes(Path(checkpoint_path)) / GIB) if checkpoint_path and Path(checkpoint_path).is_dir() \
        else params * 2 / GIB
    infer = inference_memory(params, n_layers=n_layers, d_model=d_model, n_kv_heads=n_kv, d_head=d_head,
                             **INFERENCE_CONDITIONS)
    train = training_memory(params, n_layers=n_layers, d_model=d_model, **TRAINING_CONDITIONS)
    spec = ModelSpec(
        model_name=model_name,
        model_family=getattr(cfg, "model_type", "unknown"),
        parameter_count=human_count(params),
        parameter_count_exact=params,
        model_size_gb=round(size_gb, 4),
        min_vram_gb=round(infer["total_gb"], 3),
        recommended_vram_gb=round(train["total_gb"], 3),
        preferred_methods=preferred_methods(params),
        hidden_size=d_model,
        num_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv,
        head_dim=d_head,
        intermediate_size=getattr(text_cfg, "intermediate_size", None),
        vocab_size=text_cfg.vocab_size,
        linear_in_features=sorted(in_features),
        linear_out_features=sorted(out_features),
        min_linear_rank=min((min(s) for s in shapes.values()), default=0),
        valid_group_sizes=group_sizes,
        inference_memory=infer,
        training_memory=train,
        memory_conditions={"min_vram": INFERENCE_CONDITIONS, "recommended_vram": TRAINING_CONDITIONS},
        checkpoint_path=checkpoint_path,
        architecture=type(model).__name__,
        linear_layer_types=types,
        tied_embeddings=bool(tied),
        num_experts=arch.num_experts(cfg),
        router_layers=sorted(arch.router_names(model, linear_only=False)),
        expert_layout=arch.expert_layout(model),
        width_examples={str(w): n for w, n in sorted(examples.items())},
        group_size_note=group_note,
    )
    return spec
