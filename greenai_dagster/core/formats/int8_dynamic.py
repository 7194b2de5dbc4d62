"""torch dynamic int8 checkpoints (the `int8` method): torch's quantized Linear modules, which
`save_pretrained` cannot write.

Saved as config + tokenizer + the quantized state dict (`int8_state_dict.pt`); reloaded by rebuilding the
architecture from config, re-applying `quantize_dynamic` (`quantize_linears_int8`, the very function the
method applies) and loading the state. The state is read with `torch.load(weights_only=True)`: tensors,
quantized tensors, dtypes and plain containers only. A file that would need anything else to unpickle (a
checkpoint someone crafted to run code on load) is refused with E002 before any of its objects is built.
torch's dynamic int8 kernels are CPU-only: on an accelerator the Linears are expanded to float weights on
the same int8 grid (`dequantize_int8_dynamic`). The marker file says `torch_int8_dynamic`.
"""

from __future__ import annotations

from pathlib import Path
from pickle import UnpicklingError   # the exception only; nothing here unpickles with it

import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

from greenai_dagster.core.errors import ModelLoadError
from greenai_dagster.core.formats.common import STORAGE_DTYPE, cast_floats, compute_dtype, marker, remote_kwargs
from greenai_dagster.core.models import arch

NAME = "torch_int8_dynamic"
MARKER = "torch_int8_dynamic"
STATE_FILE = "int8_state_dict.pt"


def quantize_linears_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Quantize every quantizable linear (`core.models.arch`: not the output head, which may be tied to the
    embeddings, and not a MoE router); Conv1D layers (GPT-2) become nn.Linear first. The same steps
    rebuild the module tree when the checkpoint is loaded.

    Weights per output channel (int8), activations per tensor at run time (uint8).
    """
    arch.conv1d_to_linear(model)
    targets = {name: per_channel_dynamic_qconfig for name in arch.quantizable_linears(model)}
    model = model.to("cpu").float()
    return quantize_dynamic(model, qconfig_spec=targets, dtype=torch.qint8, inplace=True)


def dynamic_linears(model) -> dict:
    """name -> torch dynamic-quantized Linear."""
    return {name: m for name, m in model.named_modules() if isinstance(m, DynamicLinear)}


def int8_dynamic_record(module) -> dict:
    """A torch dynamic-quantized Linear's int8 weight and per-channel scales, as saved."""
    weight, bias = module._packed_params._weight_bias()
    if weight.qscheme() != torch.per_channel_affine or bool(weight.q_per_channel_zero_points().ne(0).any()):
        raise ValueError("expected symmetric per-channel int8 weights")
    record = {"q": weight.int_repr(), "scale": weight.q_per_channel_scales().float().view(-1, 1)}
    if bias is not None:
        record["bias"] = bias.detach()
    return record


def dequantize_int8_dynamic(model):
    """Replace torch's CPU-only dynamic int8 Linears by float Linears holding the same weights (q * scale),
    so the model runs on any device; the weights stay on the int8 grid."""
    for name, module in dynamic_linears(model).items():
        record = int8_dynamic_record(module)
        dense = torch.nn.Linear(module.in_features, module.out_features, bias="bias" in record)
        dense.weight.data = record["q"].float() * record["scale"]
        if "bias" in record:
            dense.bias.data = record["bias"].float()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, dense)
    return model


def detect(folder: Path) -> bool:
    return marker(folder) == MARKER


def save(model, folder: Path, metadata: dict) -> dict:
    model.config.save_pretrained(folder)
    torch.save(cast_floats(model.state_dict(), STORAGE_DTYPE), Path(folder) / STATE_FILE)
    return metadata


def load(folder: Path, device: str = "cpu", dtype: torch.dtype | None = None, trust_remote_code: bool = False):
    from transformers import AutoConfig, AutoModelForCausalLM

    folder, remote = Path(folder), remote_kwargs(trust_remote_code)
    config = AutoConfig.from_pretrained(folder, **remote)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, **remote)
    model = quantize_linears_int8(model)
    state = load_int8_state(folder / STATE_FILE)
    model.load_state_dict(cast_floats(state, torch.float32))
    if device != "cpu":   # torch's dynamic int8 kernels are CPU-only: float weights on the int8 grid
        model = dequantize_int8_dynamic(model).to(device=device, dtype=compute_dtype(device, dtype))
    return model.eval()


def load_int8_state(path: Path) -> dict:
    """The int8 state dict, unpickled by torch's weights-only unpickler (never arbitrary objects)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelLoadError(f"int8 checkpoint {path.parent} has no {path.name}.",
                             "Re-run the episode, or unpack the exported archive completely.") from None
    except (UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as exc:
        # weights_only refuses any global it does not know; the text names it (first line only)
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"refused to load {path}: it is not a plain tensor file ({first}).",
            "Only load checkpoints this project wrote; a file that needs arbitrary objects to unpickle could run "
            "code, so it is never loaded.") from None
