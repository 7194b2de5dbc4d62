"""A `Session` over a transformers model: the three torch runtimes share it."""

from __future__ import annotations

import time

import torch

from greenai_dagster.core.runtimes.base import Session


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class TorchSession(Session):
    def __init__(self, model, device: str):
        self.model, self.device = model, device
        self._past = None
        self._token = None

    @torch.no_grad()
    def prefill(self, prompt: list[int]) -> None:
        ids = torch.tensor([prompt], device=self.device)
        out = self.model(input_ids=ids, use_cache=True)
        self._past, self._token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        _sync(self.device)

    @torch.no_grad()
    def decode(self) -> None:
        out = self.model(input_ids=self._token, past_key_values=self._past, use_cache=True)
        self._past, self._token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        _sync(self.device)

    @torch.no_grad()
    def batched_tokens_per_s(self, prompt: list[int], batch_size: int, new_tokens: int) -> float:
        batch = torch.tensor([prompt] * batch_size, device=self.device)
        _sync(self.device)
        start = time.perf_counter()
        self.model.generate(input_ids=batch, attention_mask=torch.ones_like(batch), max_new_tokens=new_tokens,
                            min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
        _sync(self.device)
        return batch_size * new_tokens / (time.perf_counter() - start)

    # low-bit Linear modules by class name, and how a results row names their weights
    LOW_BIT_LINEARS = {"Int4Linear": "int4 packed", "PerTokenInt8Linear": "int8 per channel"}

    def dtype(self) -> str:
        """The weights as this session holds them: the low-bit linears by kind and count, then the rest's dtype
        (a float parameter's dtype alone said "float32" for int8 linears, whose weights are buffers)."""
        base = str(next(self.model.parameters()).dtype).replace("torch.", "")
        names = [type(m).__name__ for m in self.model.modules()]
        parts = [f"{label} ({names.count(cls)} linears)" for cls, label in self.LOW_BIT_LINEARS.items()
                 if cls in names]
        return f"{', '.join(parts)}, rest {base}" if parts else base
