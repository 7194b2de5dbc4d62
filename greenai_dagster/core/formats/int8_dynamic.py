"""torch dynamic int8 checkpoints (the `int8` method): torch's quantized Linear modules, which
`save_pretrained` cannot write.

Saved as config + tokenizer + the quantized state dict (`int8_state_dict.pt`); reloaded by rebuilding the
architecture from config, re-applying `quantize_dynamic` (`quantize_linears_int8`, the very function the
method applies) and loading the state; each of torch's dynamic Linears is then served as a
`PerTokenInt8Linear` holding the same integers and scales, which quantizes activations per token (torch's
own module takes one 7-bit scale for the whole input tensor: one massive activation, such as SmolLM2's
~2800 at the first position of layer 11's down_proj input against a median per-token maximum of ~1.4,
rounds every other token's input to zero, KL 0.86 nats/token on a 512-token window; per token: 0.014).
The state is read with `torch.load(weights_only=True)`: tensors, quantized tensors, dtypes and plain
containers only. A file that would need anything else to unpickle (a checkpoint someone crafted to run
code on load) is refused with E002 before any of its objects is built.
`PerTokenInt8Linear`'s int8 GEMM is the CPU kernel: on an accelerator the Linears are expanded to float
weights on the same int8 grid (`dequantize_int8_dynamic`). The marker file says `torch_int8_dynamic`.
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

    Weights per output channel (int8). The modules it makes are what is saved; `load` serves them as
    `PerTokenInt8Linear` (activations per token at run time).
    """
    arch.conv1d_to_linear(model)
    targets = {name: per_channel_dynamic_qconfig for name in arch.quantizable_linears(model)}
    model = model.to("cpu").float()
    return quantize_dynamic(model, qconfig_spec=targets, dtype=torch.qint8, inplace=True)


class PerTokenInt8Linear(torch.nn.Module):
    """A linear of the `int8` method as served on CPU (W8A8): the checkpoint's int8 weights with one scale per
    output channel, activations quantized to 8 bits at run time with one scale and zero point per token
    (row, asymmetric over [min, max] as torch's own dynamic quantization does, but per token), an int8 x
    int8 -> int32 GEMM (`torch._int_mm`), the zero point taken out with the weights' column sums, rescaled
    by both scales. Per token, a token's result does not depend on the other tokens or sequences in the
    batch, and an outlier token rounds only itself."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.out_features, self.in_features = q.shape
        self.register_buffer("q", q.to(torch.int8).contiguous())
        self.register_buffer("scale", scale.float().reshape(1, -1).contiguous())   # per output channel
        self.register_buffer("bias", None if bias is None else bias.float())
        self.register_buffer("q_sums", self.q.sum(dim=1, dtype=torch.int32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        low, high = torch.aminmax(rows, dim=1, keepdim=True)
        x_scale = (high.clamp(min=0) - low.clamp(max=0)).clamp_(min=1e-30).div_(255.0)
        zero = (-128.0 - low.clamp(max=0) / x_scale).round_()           # in [-128, 127]: 0.0 is exact
        xq = (rows / x_scale).add_(zero).round_().clamp_(-128, 127).to(torch.int8)
        acc = torch._int_mm(xq, self.q.t()) - zero.to(torch.int32) * self.q_sums
        out = acc * (x_scale * self.scale)
        if self.bias is not None:
            out += self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def dynamic_linears(model) -> dict:
    """name -> int8 linear of the `int8` method (torch's dynamic-quantized Linear, or `PerTokenInt8Linear`)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (DynamicLinear, PerTokenInt8Linear))}


def int8_dynamic_record(module) -> dict:
    """An int8 linear's int8 weight and per-channel scales, as saved."""
    if isinstance(module, PerTokenInt8Linear):
        record = {"q": module.q, "scale": module.scale.view(-1, 1)}
        if module.bias is not None:
            record["bias"] = module.bias
        return record
    weight, bias = module._packed_params._weight_bias()
    if weight.qscheme() != torch.per_channel_affine or bool(weight.q_per_channel_zero_points().ne(0).any()):
        raise ValueError("expected symmetric per-channel int8 weights")
    record = {"q": weight.int_repr(), "scale": weight.q_per_channel_scales().float().view(-1, 1)}
    if bias is not None:
        record["bias"] = bias.detach()
    return record


def _replace_linears(model, make) -> torch.nn.Module:
    for name, module in dynamic_linears(model).items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, make(module, int8_dynamic_record(module)))
    return model


def per_token_int8(model):
    """Serve torch's dynamic int8 Linears as `PerTokenInt8Linear`: the same integers and scales, activations
    quantized per token."""
    return _replace_linears(
        model, lambda module, record: PerTokenInt8Linear(record["q"], record["scale"], record.get("bias")))


def dequantize_int8_dynamic(model):
    """Replace the CPU-only int8 Linears by float Linears holding the same weights (q * scale),
    so the model runs on any device; the weights stay on the int8 grid."""
    def dense(module, record):
        linear = torch.nn.Linear(module.in_features, module.out_features, bias="bias" in record)
        linear.weight.data = record["q"].float() * record["scale"]
        if "bias" in record:
            linear.bias.data = record["bias"].float()
        return linear

    return _replace_linears(model, dense)


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
    if device != "cpu":   # the int8 GEMM is the CPU kernel: float weights on the int8 grid
        return dequantize_int8_dynamic(model).to(device=device, dtype=compute_dtype(device, dtype)).eval()
    return per_token_int8(model).eval()


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
