"""What a causal LM is made of, found generically (no module names assumed).

Every architecture transformers' `AutoModelForCausalLM` loads is read the same way:
* *quantizable linears*: every `nn.Linear` and every transformers `Conv1D` (GPT-2's projection type,
  weight stored transposed) except the output head and the routers of a mixture of experts;
* *routers*: the small linears that score experts (`gate`, `router`, `shared_expert_gate`, ...) -
  quantizing or pruning them changes which experts run, so they are never touched;
* *fused experts*: transformers (>= 5) stores the experts of a mixture-of-experts block as 3-D tensors
  (`experts.gate_up_proj` [E, 2I, H], `experts.down_proj` [E, H, I]); llm-compressor's
  `linearize_moe` turns them into one `nn.Linear` per expert projection for the methods, and
  `repack_moe` packs float ones back so a pruned model saves in the native layout.

Conv1D layers are turned into `nn.Linear` (weights transposed) for the methods that only know
`nn.Linear` (llm-compressor's quantizers, torch's dynamic int8, ASVD); such checkpoints carry
`conv1d_as_linear` in `greenai_variant.json` and `load_patches` rebuilds the architecture with
`nn.Linear` in place of Conv1D before loading them.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from pathlib import Path

import torch

ROUTER_NAME = re.compile(r"^(gate|router|.*_gate|.*router.*)$")
EXPERT_COUNT_FIELDS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")


def text_config(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def num_experts(config) -> int:
    cfg = text_config(config)
    for field in EXPERT_COUNT_FIELDS:
        value = getattr(cfg, field, None)
        if isinstance(value, int) and value > 1:
            return value
    return 0


def conv1d_class():
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - every supported transformers has it
        return None
    return Conv1D


def is_linear(module) -> bool:
    conv = conv1d_class()
    return isinstance(module, torch.nn.Linear) or (conv is not None and isinstance(module, conv))


def is_conv1d(module) -> bool:
    conv = conv1d_class()
    return conv is not None and isinstance(module, conv) and not isinstance(module, torch.nn.Linear)


def linear_shape(module) -> tuple[int, int]:
    """(in_features, out_features) of an nn.Linear or a Conv1D (whose weight is [in, out])."""
    if is_conv1d(module):
        return int(module.weight.shape[0]), int(module.weight.shape[1])
    return int(module.in_features), int(module.out_features)


def head_names(model) -> set[str]:
    """Module names of the output head (lm_head, embed_out, ...), whether tied or not."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {name for name, module in model.named_modules() if head is not None and module is head}


def router_names(model, linear_only: bool = True) -> set[str]:
    """Layers that route tokens to experts: named like a gate / router, with at most one output per
    expert (or a single one, like Qwen2-MoE's shared_expert_gate). With `linear_only`, only those that
    are Linear / Conv1D (the ones a weight method would otherwise pick up)."""
    experts = num_experts(model.config)
    names = set()
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if not ROUTER_NAME.match(leaf):
            continue
        if is_linear(module):
            outputs = linear_shape(module)[1]
        elif linear_only:
            continue
        else:
            weight = getattr(module, "weight", None)
            if not isinstance(weight, torch.nn.Parameter) or weight.dim() != 2:
                continue
            outputs = weight.shape[0]
        if outputs <= max(experts, 1):
            names.add(name)
    return names


def quantizable_linears(model) -> dict[str, torch.nn.Module]:
    """Every Linear / Conv1D a weight method may change: not the output head, not a router."""
    skip = head_names(model) | router_names(model)
    return {name: m for name, m in model.named_modules() if is_linear(m) and name not in skip}


def fused_experts(model) -> dict[str, torch.nn.Module]:
    """Mixture-of-experts blocks whose experts are stored as 3-D tensors."""
    found = {}
    for name, module in model.named_modules():
        down = getattr(module, "down_proj", None)
        up = getattr(module, "gate_up_proj", None)
        if up is None:
            up = getattr(module, "up_proj", None)
        if isinstance(down, torch.nn.Parameter) and down.dim() == 3 and isinstance(up, torch.nn.Parameter) \
                and up.dim() == 3:
            found[name] = module
    return found


def expert_shapes(module) -> list[tuple[int, int]]:
    """(in, out) of each projection one expert of a fused block has (gate and up share a shape)."""
    transposed = bool(getattr(module, "is_transposed", False))
    has_gate = isinstance(getattr(module, "gate_up_proj", None), torch.nn.Parameter)
    up = module.gate_up_proj if has_gate else module.up_proj
    down = module.down_proj
    _, a, b = up.shape
    hidden, inter = (a, b // (2 if has_gate else 1)) if transposed else (b, a // (2 if has_gate else 1))
    _, c, d = down.shape
    down_in, down_out = (c, d) if transposed else (d, c)
    return [(hidden, inter)] * (2 if has_gate else 1) + [(down_in, down_out)]


def can_linearize(module) -> bool:
    """Whether llm-compressor knows how to split this fused experts block into per-expert linears."""
    try:
        from llmcompressor.modeling.moe.helpers import get_use_experts_implementation_args
        from llmcompressor.modeling.moe.linear_experts import LinearExperts2D
    except ImportError:
        return False
    return LinearExperts2D.get_registration(type(module)) is not None or \
        get_use_experts_implementation_args(type(module)) is not None


def expert_layout(model) -> str:
    """"" without fused experts; "per-expert" when llm-compressor can split them into linears and
    transformers can load them back per expert (its checkpoint conversion mapping names them);
    "fused" otherwise (the experts are then left as they are by every method)."""
    blocks = fused_experts(model)
    if not blocks:
        return ""
    if all(can_linearize(b) for b in blocks.values()) and expert_key_names(model.config.model_type):
        return "per-expert"
    return "fused"


def is_expert_linear(name: str) -> bool:
    return re.search(r"\.experts\.\d+\.", name) is not None


EXPERT_LINEARS = r"re:.*\.experts\.\d+\..*"


# ------------------------------------------------------------------ Conv1D <-> nn.Linear

CONV1D_FLAG = "_greenai_conv1d_as_linear"      # set on a model whose Conv1D layers became nn.Linear
LINEAR_EXPERTS_FLAG = "_greenai_linear_experts"  # set on a model whose quantized experts stay per-expert linears


def conv1d_to_linear(model) -> list[str]:
    """Replace every Conv1D by an equivalent nn.Linear (transposed weight), in place; the model is
    flagged so its checkpoint says so (`greenai_variant.json`: conv1d_as_linear)."""
    names = []
    for name, module in list(model.named_modules()):
        if not is_conv1d(module):
            continue
        n_in, n_out = linear_shape(module)
        linear = torch.nn.Linear(n_in, n_out, bias=module.bias is not None, dtype=module.weight.dtype,
                                 device=module.weight.device)
        with torch.no_grad():
            linear.weight.copy_(module.weight.t())
            if module.bias is not None:
                linear.bias.copy_(module.bias)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, linear)
        names.append(name)
    if names:
        setattr(model, CONV1D_FLAG, True)
    return names


class Conv1DAsLinear(torch.nn.Linear):
    """Built where a model's code asks for `Conv1D(nf, nx)`: the same layer as an nn.Linear(nx, nf)."""

    def __init__(self, nf: int, nx: int):
        super().__init__(nx, nf)


def _model_class(config):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM._model_mapping[type(config)]
    except KeyError:
        return None


@contextlib.contextmanager
def load_patches(config, conv1d_as_linear: bool):
    """While loading: build nn.Linear where the model's code builds Conv1D (for checkpoints saved so).

    The model's own weight initialisation (run by transformers before the checkpoint's tensors are
    copied in) expects a dense `.weight` on those layers; quantized ones hold packed tensors instead,
    so an initialiser that finds no weight skips that module (its tensors come from the checkpoint)."""
    cls = _model_class(config) if conv1d_as_linear else None
    module = sys.modules.get(cls.__module__) if cls is not None else None
    original = getattr(module, "Conv1D", None) if module is not None else None
    if original is None:
        yield
        return
    owner = next(c for c in cls.__mro__ if "_init_weights" in c.__dict__)   # shared by the model's submodels
    init = owner.__dict__["_init_weights"]

    def tolerant_init(self, mod):
        try:
            init(self, mod)
        except AttributeError:
            pass

    module.Conv1D = Conv1DAsLinear
    owner._init_weights = tolerant_init
    try:
        yield
    finally:
        module.Conv1D = original
        owner._init_weights = init


# ------------------------------------------------------------------ mixture of experts

def linearize_experts(model) -> int:
    """Fused 3-D experts -> one nn.Linear per expert projection (llm-compressor); returns how many blocks."""
    blocks = fused_experts(model)
    if not blocks:
        return 0
    from llmcompressor.modeling.moe.linearize import linearize_moe

    linearize_moe(model)
    return len(blocks)


def linearized_skeleton(model) -> torch.nn.Module:
    """An empty module tree with the names (and architecture class name) `model` has once its fused
    experts are split per expert: enough for name-based look-ups (e.g. whether llm-compressor's
    smoothing mappings resolve) without touching or copying the model's weights."""
    blocks = fused_experts(model)
    root = type(type(model).__name__, (torch.nn.Module,), {})()
    root.config = model.config

    def ensure(path: str) -> torch.nn.Module:
        node = root
        for part in path.split(".") if path else []:
            if part not in node._modules:
                node.add_module(part, torch.nn.Module())
            node = node._modules[part]
        return node

    for name, module in model.named_modules():
        if any(name.startswith(b + ".") for b in blocks):
            continue
        node = ensure(name)
        if name in blocks:
            experts = module.down_proj.shape[0]
            projections = ("gate_proj", "up_proj", "down_proj") if isinstance(
                getattr(module, "gate_up_proj", None), torch.nn.Parameter) else ("up_proj", "down_proj")
            for i in range(experts):
                for proj in projections:
                    ensure(f"{name}.{i}.{proj}")
        elif is_linear(module):
            node.__class__ = type(module)   # class-name targets ("Linear") still match
    return root


def has_linear_experts(model) -> bool:
    try:
        from llmcompressor.modeling.moe.linearize import get_linearized_moes
    except ImportError:
        return False
    return bool(get_linearized_moes(model))


def repack_float_experts(model) -> bool:
    """Pack linearized experts back into the native fused layout when none of them is quantized.
    Returns True when linearized (quantized) experts remain."""
    from llmcompressor.modeling.moe.linearize import get_linearized_moes, repack_moe

    blocks = get_linearized_moes(model)
    if not blocks:
        return False
    quantized = any(getattr(m, "quantization_scheme", None) is not None for _, b in blocks for m in b.modules())
    if quantized:
        setattr(model, LINEAR_EXPERTS_FLAG, True)
        return True
    repack_moe(model)
    return False


def expert_key_names(model_type: str) -> dict[str, str] | None:
    """How this architecture's checkpoints name one expert's projections (e.g. Mixtral: w1, w3, w2),
    read from transformers' own checkpoint conversion mapping; None when the architecture has no
    per-expert layout transformers can load (its quantized experts could not be reloaded)."""
    try:
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    except ImportError:  # pragma: no cover
        return None
    names = {}
    for conv in get_checkpoint_conversion_mapping(model_type) or []:
        sources = [p for p in getattr(conv, "source_patterns", []) if "experts.*." in p]
        targets = getattr(conv, "target_patterns", [])
        if not sources or not targets:
            continue
        leaf = [re.search(r"experts\.\*\.([^.]+)\.weight", p) for p in sources]
        if any(m is None for m in leaf):
            continue
        target = targets[0]
        if target.endswith("gate_up_proj") and len(leaf) == 2:
            names["gate_proj"], names["up_proj"] = leaf[0].group(1), leaf[1].group(1)
        elif target.endswith("down_proj") and len(leaf) == 1:
            names["down_proj"] = leaf[0].group(1)
        elif target.endswith("up_proj") and len(leaf) == 1:
            names["up_proj"] = leaf[0].group(1)
    return names if "down_proj" in names else None


EXPERT_KEY = re.compile(r"(\.experts\.\d+\.)(gate_proj|up_proj|down_proj)(\.)")


def rename_expert_keys(folder, model_type: str) -> int:
    """Rename a saved checkpoint's per-expert keys to the names transformers expects for this
    architecture, so its loader stacks (and dequantizes) them into the fused experts."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    names = expert_key_names(model_type) or {}
    if all(k == v for k, v in names.items()):
        return 0
    renamed = 0
    folder = Path(folder)
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(str(shard), "pt") as f:
            metadata = f.metadata()
            state = {k: f.get_tensor(k) for k in f.keys()}
        out = {}
        for key, value in state.items():
            new = EXPERT_KEY.sub(lambda m: m.group(1) + names.get(m.group(2), m.group(2)) + m.group(3), key)
            renamed += new != key
            out[new] = value
        save_file(out, str(shard), metadata=metadata)
    index = folder / "model.safetensors.index.json"
    if index.exists():
        data = json.loads(index.read_text())
        data["weight_map"] = {EXPERT_KEY.sub(lambda m: m.group(1) + names.get(m.group(2), m.group(2)) + m.group(3), k): v
                              for k, v in data["weight_map"].items()}
        index.write_text(json.dumps(data, indent=2))
    return renamed
