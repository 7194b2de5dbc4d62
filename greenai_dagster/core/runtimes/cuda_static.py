"""Batch-1 decoding with a static KV cache and one compiled decode step captured as a CUDA graph:
the session every CUDA runtime shares (`cuda_compiled`, `cuda_w4`, `cuda_fp8`, `cuda_int8`).

Why not `generate()`: on an H100 a bf16 Llama-3-8B decodes at 10.5 ms/token through `generate()`
against 7.35 ms/token for the same weights when one step is compiled and replayed as a CUDA graph
(about 3 ms/token of host overhead: Python, launches, a dynamic cache that grows). At batch 1 the
step is bound by reading the weights, so the runtimes differ only in their linear layers; the
rest of the step (embedding, RMSNorm, rotary embedding, attention over a preallocated cache, the
MLP's activation, the lm_head) is this one module, so every runtime is timed the same way.

Gemma 3 decoders are served too: their scaled embedding, q/k norms and norms after attention and after
the MLP are the model's own modules; sliding-window layers get their own rotary table and a window mask.

The decoder reuses the transformers model's own modules (embeddings, norms, the MLP activation,
the rotary embedding's tables) and replaces only the attention's bookkeeping: keys and values go
into a cache of `max_len` positions at the token's position, and attention runs over the whole
cache with a causal mask (fixed shapes, so the step compiles once and can be captured). q/k/v and
gate/up projections may be fused into one linear each (`install_linears`), which a runtime does
when its weight format allows concatenation along the output dimension (all of them here).

Where every linear offers a matrix-vector kernel (`gemv`) and the model is the plain Llama shape
(RMSNorm, SiLU-gated MLP, rotary attention, bf16), the decode step is not compiled at all: it is a
short list of Triton launches (`cuda_kernels`: fused-qkv GEMV that applies the layer's RMSNorm to its
input itself, a split attention kernel that also applies the rotary embedding and writes the cache, and its
combining launch, o GEMV with the residual added in its epilogue, gate_up GEMV with its norm, down GEMV
that computes silu(gate) * up from the gate_up output as it reads it, with the residual), six per layer
(seven for W4, whose SiLU-gating stays a launch of its own), captured as one CUDA graph. Its attention reads only the cache positions written so far.
Otherwise (e.g. tinygemm W4, FP8, int8, whose linears have no `gemv`) the step is compiled as before.
Open (H100, 2026-12-06): a third session built in one process hit a device-side index assert in its
first prefill; the latency probe opens one session per process, as does `benchmarks/runtimes_gpu.py`. Prefill of a prompt starting the sequence attends causally over the prompt alone (flash
attention); the session captures one CUDA graph per prompt length, from the second prefill of that
length on (with the Triton step), so a repeated length is served without host launch overhead.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from greenai_dagster.core.runtimes.base import Session

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "gemma3_text")
GEMMA_TYPES = ("gemma3_text",)
DEFAULT_MAX_LEN = 1024

Record = dict   # one linear layer's weights in a runtime's representation: tensors with out_features first


def supported_config(config, max_len: int = DEFAULT_MAX_LEN) -> bool:
    """Architectures whose decoder layer is exactly norm -> attention (rotary, GQA) -> norm -> gated MLP,
    with full attention over every position (no sliding window shorter than the cache)."""
    if getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES:
        return False
    if config.model_type in GEMMA_TYPES:   # its sliding-window layers are served (StaticDecoder's window mask)
        return (getattr(config, "final_logit_softcapping", None) is None
                and getattr(config, "attn_logit_softcapping", None) is None
                and not getattr(config, "use_bidirectional_attention", False))
    window = getattr(config, "sliding_window", None)
    if window and window < max_len:
        layer_types = getattr(config, "layer_types", None)
        if layer_types is None or any(t != "full_attention" for t in layer_types):
            return False
    return True


def concat_records(records: list[Record]) -> Record:
    """Fuse linears that read the same input: every tensor has out_features first, so they stack."""
    fused = {}
    for key, value in records[0].items():
        if isinstance(value, torch.Tensor):
            fused[key] = torch.cat([r[key] for r in records], dim=0)
        else:
            if any(r[key] != value for r in records):
                raise ValueError(f"cannot fuse linears with different {key}")
            fused[key] = value
    return fused


FUSED = (("self_attn", "qkv_proj", ("q_proj", "k_proj", "v_proj")), ("self_attn", None, ("o_proj",)),
         ("mlp", "gate_up_proj", ("gate_proj", "up_proj")), ("mlp", None, ("down_proj",)))


def install_linears(model, record_of: Callable[[str], Record], build: Callable[[Record], torch.nn.Module]) -> None:
    """Replace every decoder linear by `build(record)`, q/k/v and gate/up fused; one layer at a time,
    so a model being quantized in memory never holds two copies of more than one layer."""
    for index, layer in enumerate(model.model.layers):
        for block_name, fused_name, names in FUSED:
            block = getattr(layer, block_name)
            records = [record_of(f"model.layers.{index}.{block_name}.{name}") for name in names]
            for name in names:
                delattr(block, name)
            setattr(block, fused_name or names[0], build(concat_records(records) if fused_name else records[0]))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class StaticDecoder(torch.nn.Module):
    """The model's forward over a preallocated KV cache; `step` is the decode step that gets compiled."""

    def __init__(self, model, max_len: int, device: str, batch: int = 1):
        super().__init__()
        config, inner = model.config, model.model
        self.config, self.max_len, self.batch = config, max_len, batch
        self.embed, self.layers, self.norm = inner.embed_tokens, inner.layers, inner.norm
        self.lm_head = model.get_output_embeddings()
        self.n_heads, self.n_kv = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.scaling = float(self.head_dim ** -0.5)
        dtype = self.embed.weight.dtype
        # Gemma 3: sliding-window layers with their own rotary table, q/k norms, norms after attention and MLP
        self.gemma = config.model_type in GEMMA_TYPES
        self.layer_types = list(getattr(config, "layer_types", None) or ["full_attention"] * len(self.layers))
        self.window = getattr(config, "sliding_window", None) or max_len
        rotary = type(inner.rotary_emb)(config=config, device=device)   # rebuilt: its tables may be on meta
        x0, positions = torch.zeros(1, dtype=dtype, device=device), torch.arange(max_len, device=device)[None]
        if self.gemma:
            cos, sin = rotary(x0, positions, "full_attention")
            cos_local, sin_local = rotary(x0, positions, "sliding_attention")
        else:
            cos, sin = rotary(x0, positions)
            cos_local, sin_local = cos, sin
        self.register_buffer("cos", cos[0].to(dtype), persistent=False)
        self.register_buffer("sin", sin[0].to(dtype), persistent=False)
        self.register_buffer("cos_local", cos_local[0].to(dtype), persistent=False)
        self.register_buffer("sin_local", sin_local[0].to(dtype), persistent=False)
        # one buffer per layer and per K/V: an in-place write into a view of one big cache made inductor
        # copy the whole cache at every layer (measured: ~0.07 ms a layer on an H200)
        cache = (batch, self.n_kv, max_len, self.head_dim)
        for index in range(len(self.layers)):
            self.register_buffer(f"k_cache_{index}", torch.zeros(cache, dtype=dtype, device=device), persistent=False)
            self.register_buffer(f"v_cache_{index}", torch.zeros(cache, dtype=dtype, device=device), persistent=False)
        self.register_buffer("causal", torch.ones(max_len, max_len, dtype=torch.bool, device=device).tril(),
                             persistent=False)
        # a sliding layer's query at position i sees keys i - window < j <= i
        self.register_buffer("causal_local", self.causal.triu(-(self.window - 1)), persistent=False)
        # the decode step's state: static tensors, so a captured graph reads and writes them in place
        # (batch > 1: sequences of one length decoded together, as a server's batch of equal prompts)
        self.register_buffer("token", torch.zeros(batch, 1, dtype=torch.long, device=device), persistent=False)
        self.register_buffer("pos", torch.zeros(1, dtype=torch.long, device=device), persistent=False)
        self.register_buffer("logits", torch.zeros(batch, config.vocab_size, dtype=torch.float32, device=device),
                             persistent=False)

    def cache_bytes(self) -> int:
        return sum(b.numel() * b.element_size() for n, b in self.named_buffers() if "_cache_" in n)

    def forward(self, ids: torch.Tensor, pos: torch.Tensor, fresh: bool = False) -> torch.Tensor:
        """Logits (float32, [B, vocab]) of the last of `ids` [B, T], whose positions are `pos` [T]; fills the cache.
        `fresh`: `pos` is 0..T-1 (a new sequence), so attention needs the prompt's own keys only."""
        x = self.embed(ids)
        full = (self.cos[pos], self.sin[pos], self.causal[pos])
        local = (self.cos_local[pos], self.sin_local[pos], self.causal_local[pos])
        for index, layer in enumerate(self.layers):
            sliding = self.layer_types[index] == "sliding_attention"
            cos, sin, mask = local if sliding else full
            # a sliding layer attends over the cache with its window mask, also in a fresh prefill
            attn_fresh = fresh and not (sliding and ids.shape[1] > self.window)
            h = self._attention(index, layer.self_attn, layer.input_layernorm(x), cos, sin, mask, pos, attn_fresh)
            if self.gemma:
                x = x + layer.post_attention_layernorm(h)
                x = x + layer.post_feedforward_layernorm(self._mlp(layer.mlp, layer.pre_feedforward_layernorm(x)))
            else:
                x = x + h
                x = x + self._mlp(layer.mlp, layer.post_attention_layernorm(x))
        return self.lm_head(self.norm(x[:, -1:]))[:, 0].float()

    def _attention(self, index, attn, h, cos, sin, mask, pos, fresh=False):
        batch, length, hd = h.shape[0], h.shape[1], self.head_dim
        if hasattr(attn, "qkv_proj"):
            q, k, v = attn.qkv_proj(h).split([self.n_heads * hd, self.n_kv * hd, self.n_kv * hd], dim=-1)
        else:
            q, k, v = attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)
        q, k = q.view(batch, length, self.n_heads, hd).transpose(1, 2), k.view(batch, length, self.n_kv, hd).transpose(1, 2)
        if hasattr(attn, "q_norm"):   # Gemma 3: RMSNorm over each head's query and key before the rotary
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        scaling = float(getattr(attn, "scaling", self.scaling))
        v = v.view(batch, length, self.n_kv, hd).transpose(1, 2)
        keys, values = getattr(self, f"k_cache_{index}"), getattr(self, f"v_cache_{index}")
        keys.index_copy_(2, pos, k)
        values.index_copy_(2, pos, v)
        group = self.n_heads // self.n_kv
        if length == 1:
            # decode: the query heads of one KV head attend together, so the cache is read once, not copied
            scores = (q.reshape(batch, self.n_kv, group, hd) @ keys.transpose(-1, -2)).float() * scaling
            weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1).to(q.dtype)
            out = (weights @ values).reshape(batch, self.n_heads, 1, hd)
        elif fresh:   # a new sequence: causal attention over the prompt's own keys (flash attention)
            out = F.scaled_dot_product_attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1),
                                                 is_causal=True, scale=scaling)
        else:
            out = F.scaled_dot_product_attention(q, keys.repeat_interleave(group, 1), values.repeat_interleave(group, 1),
                                                 attn_mask=mask, scale=scaling)
        return attn.o_proj(out.transpose(1, 2).reshape(batch, length, self.n_heads * hd))

    @staticmethod
    def _mlp(mlp, h):
        if hasattr(mlp, "gate_up_proj"):
            gate, up = mlp.gate_up_proj(h).chunk(2, dim=-1)
        else:
            gate, up = mlp.gate_proj(h), mlp.up_proj(h)
        return mlp.down_proj(mlp.act_fn(gate) * up)

    def step(self) -> None:
        """One greedy decode step on the static state: token at `pos` in, next token out, pos + 1."""
        logits = self(self.token, self.pos)
        self.logits.copy_(logits)
        self.token.copy_(logits.argmax(dim=-1).view(-1, 1))
        self.pos.add_(1)

    def kernel_step_blocker(self) -> str | None:
        """Why the decode step cannot be the Triton launch list (`kernel_step`), or None if it can."""
        if not self.cos.is_cuda:
            return "not on CUDA"
        if self.batch != 1:
            return f"batch {self.batch} (the Triton step's kernels are matrix-vector products)"
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed"
        if self.embed.weight.dtype != torch.bfloat16:
            return f"activations are {self.embed.weight.dtype}, not bfloat16"
        if getattr(self.config, "hidden_act", None) != "silu":
            return f"activation {getattr(self.config, 'hidden_act', None)!r} is not SiLU"
        hd = self.head_dim
        if hd & (hd - 1) or hd < 16 or self.cos.shape[-1] != hd:
            return f"head_dim {hd} (the attention kernel takes powers of two from 16, full rotary)"
        head = self.lm_head
        if getattr(head, "bias", None) is not None or not isinstance(getattr(head, "weight", None), torch.Tensor):
            return "lm_head is not a plain bias-free linear"
        norms = [self.norm] + [n for layer in self.layers for n in (layer.input_layernorm,
                                                                    layer.post_attention_layernorm)]
        if any(not type(n).__name__.endswith("RMSNorm") or "Gemma" in type(n).__name__
               or not hasattr(n, "variance_epsilon") for n in norms):
            return "a norm is not Llama's RMSNorm"
        for layer in self.layers:
            for module in (getattr(layer.self_attn, "qkv_proj", None), layer.self_attn.o_proj,
                           getattr(layer.mlp, "gate_up_proj", None), layer.mlp.down_proj):
                if module is None or not hasattr(module, "gemv"):
                    return f"{type(module).__name__} has no matrix-vector kernel (gemv) or is not fused"
        return None

    def kernel_step(self) -> None:
        """`step` as Triton launches (module docstring); the same state in and out."""
        from greenai_dagster.core.runtimes import cuda_kernels as kernels

        x = self.embed(self.token).view(-1)
        for index, layer in enumerate(self.layers):
            attn, mlp = layer.self_attn, layer.mlp
            norm1, norm2 = layer.input_layernorm, layer.post_attention_layernorm
            qkv = attn.qkv_proj.gemv(x, norm=(norm1.weight, norm1.variance_epsilon))
            out = kernels.decode_attention(qkv, self.cos, self.sin, self.pos, getattr(self, f"k_cache_{index}"),
                                           getattr(self, f"v_cache_{index}"), self.n_heads, self.n_kv,
                                           self.head_dim, self.scaling)
            x = attn.o_proj.gemv(out, residual=x)
            gate_up = mlp.gate_up_proj.gemv(x, norm=(norm2.weight, norm2.variance_epsilon))
            x = mlp.down_proj.gemv(gate_up, residual=x, silu=True)
        self.logits.copy_(kernels.gemv_bf16(x, self.lm_head.weight, norm=(self.norm.weight, self.norm.variance_epsilon))
                          .view(1, -1))
        self.token.copy_(self.logits.argmax(dim=-1).view(1, 1))
        self.pos.add_(1)


# inductor options for the decode step: with coordinate-descent tuning, inductor turns a matrix-vector
# product into a fused Triton reduction (so int8 -> bf16 casts fuse into the weight read) and tunes it
INDUCTOR_OPTIONS = {"coordinate_descent_tuning": True}


class CompiledSession(Session):
    """Prefill runs the decoder eagerly over the prompt (a CUDA graph per prompt length once a length
    recurs); each decode replays the captured step: the Triton launch list where the model allows it
    (`kernel_step`), else the step compiled by torch.compile."""

    MAX_PREFILL_GRAPHS = 4

    def __init__(self, decoder: StaticDecoder, device: str, compile_step: bool = True, graph: bool = True,
                 kernel_step: bool = True, graph_prefill: bool = True):
        self.decoder, self.device = decoder, device
        self._length = 0
        self._graph = None
        on_cuda = device.startswith("cuda")
        self.step_path = "eager step"
        self.kernel_step_blocker = decoder.kernel_step_blocker() if on_cuda else "not on CUDA"
        step = decoder.step
        if kernel_step and self.kernel_step_blocker is None:
            step, self.step_path = decoder.kernel_step, "Triton kernels (cuda_kernels)"
        elif compile_step and on_cuda:
            step = torch.compile(decoder.step, fullgraph=True, dynamic=False)
            self.step_path = "torch.compile (inductor)"
        self._step = step
        # prefill graphs were measured with the Triton step only (H100, 2026-12-06); compiled steps keep eager prefill
        self.graph_prefill = graph and graph_prefill and on_cuda and step == decoder.kernel_step
        self._prefill_graphs: dict[int, tuple] = {}
        self._prefill_seen: set[int] = set()
        self.prefill_graph_error = None
        if on_cuda:
            with torch.no_grad(), torch._inductor.config.patch(INDUCTOR_OPTIONS):
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    for _ in range(3):   # compile, autotune, and settle allocations before capture
                        self._step()
                torch.cuda.current_stream().wait_stream(stream)
                if graph:
                    self._graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(self._graph):
                        self._step()
            torch.cuda.synchronize()

    @torch.no_grad()
    def prefill(self, prompt: list[int]) -> None:
        n = len(prompt)
        if n >= self.decoder.max_len:
            raise ValueError(f"prompt of {n} tokens does not fit the static cache ({self.decoder.max_len})")
        ids = torch.tensor([prompt] * self.decoder.batch, device=self.device)
        entry = self._prefill_graphs.get(n)
        if entry is None and self.graph_prefill and n in self._prefill_seen \
                and len(self._prefill_graphs) < self.MAX_PREFILL_GRAPHS:
            try:
                entry = self._capture_prefill(n)
            except RuntimeError as exc:   # a kernel that cannot be captured: prefill stays eager, and says why
                self.graph_prefill, self.prefill_graph_error = False, f"{type(exc).__name__}: {exc}"[:300]
        if entry is not None:
            graph, static_ids, _ = entry
            static_ids.copy_(ids)
            graph.replay()
        else:
            self._prefill_into_state(ids, torch.arange(n, device=self.device))
            self._prefill_seen.add(n)
        self._length = n
        self._sync()

    def _prefill_into_state(self, ids: torch.Tensor, pos: torch.Tensor) -> None:
        logits = self.decoder(ids, pos, fresh=True)
        self.decoder.logits.copy_(logits)
        self.decoder.token.copy_(logits.argmax(dim=-1).view(-1, 1))
        self.decoder.pos.fill_(ids.shape[1])

    def _capture_prefill(self, n: int) -> tuple:
        """A CUDA graph of a whole prefill of `n` tokens (ids copied into a static buffer before replay);
        the length has run eagerly before, so every kernel is compiled and tuned."""
        static_ids = torch.zeros(self.decoder.batch, n, dtype=torch.long, device=self.device)
        static_pos = torch.arange(n, device=self.device)
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):   # its own memory pool (a shared one outlived its graphs: see clear)
            self._prefill_into_state(static_ids, static_pos)
        # the positions stay referenced with the graph: freed, their memory went back to the allocator, and
        # the next eager temporaries overwrote what every replay reads (the H100's "index out of bounds"
        # gather asserts of the FP8 and int8 prefills at 32 layers, 2026-12-07)
        self._prefill_graphs[n] = (graph, static_ids, static_pos)
        return self._prefill_graphs[n]

    def clear_prefill_graphs(self) -> None:
        """Forget the captured prefills (a benchmark switching a layer's prefill kernel re-captures)."""
        self._prefill_graphs.clear()
        self._prefill_seen.clear()

    @torch.no_grad()
    def decode(self) -> None:
        self.replay()
        self._sync()

    def replay(self) -> None:
        """One decode step without synchronising (benchmarks time many of them between CUDA events)."""
        if self._length >= self.decoder.max_len:
            raise ValueError(f"the static cache holds {self.decoder.max_len} positions; start a new prefill")
        self._length += 1
        if self._graph is not None:
            self._graph.replay()
        else:
            with torch.no_grad():
                self._step()

    def last_logits(self) -> torch.Tensor:
        """Logits of the last prefilled or decoded position (float32, [batch, vocab])."""
        return self.decoder.logits

    def last_token(self) -> int:
        """The first sequence's greedy token (every sequence of a batch holds the same prompt)."""
        return int(self.decoder.token[0, 0].item())

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def dtype(self) -> str:
        return str(self.decoder.embed.weight.dtype).replace("torch.", "")
