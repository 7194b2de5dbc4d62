"""A second fidelity text: what the baseline itself writes.

The reference prose (`core.data.corpus`) is one narrow domain, Python reference documentation, and a user
deploying a chat or code model learns little from KL on it alone. Text sampled from the baseline is
never anyone's calibration or training data (the methods calibrate on the corpus's calibration half),
fits the model by construction (its own distribution, in its own chat format), and spans the
domains of the prompts below. KL on it is the KL of a candidate on its baseline's own distribution:
the expected log-likelihood ratio of what the baseline would say.

Sampling: one prompt per window, cycling through PROMPTS (16 domains: chat, advice, stories, code,
science, maths, letters, recipes, ...), written in the tokenizer's chat template when it has one;
temperature 1, no top-k/top-p truncation, seed SEED (torch's generator on the model's device), all
windows decoded as one left-padded batch. A window is the prompt's tokens followed by the sampled
ones, cut at `window` tokens; the end-of-text token is masked until the window is full
(`min_new_tokens`), so every window is whole. The samples differ between devices and dtypes
(floating-point sums differ), which is why they are drawn once per experiment, with the baseline,
and stored with its reference (`core.evaluation.evaluate.make_sampled_reference`): every candidate is scored
on the same tokens.

The prompt's own positions are scored too (they are a few per cent of a window): they are part of what
the model reads in use.
"""

from __future__ import annotations

import torch

from greenai_dagster.core.evaluation import fidelity

SEED = 20261206
PROMPTS: tuple[tuple[str, str], ...] = (   # (domain, what the user asks)
    ("chat", "Hi! Tell me a little about yourself and what you can help with."),
    ("advice", "What are some good ways to sleep better at night?"),
    ("story", "Write a short story about a lighthouse keeper who finds a message in a bottle."),
    ("code", "Write a Python function that checks whether a string is a palindrome, and explain how it works."),
    ("science", "Explain how photosynthesis works in simple terms."),
    ("history", "Describe what daily life was like in a medieval town."),
    ("maths", "A train travels 120 km in 1.5 hours. What is its average speed? Show your reasoning."),
    ("letter", "Write a polite email asking a colleague to move our meeting to next week."),
    ("recipe", "How do I make a simple tomato soup at home?"),
    ("travel", "Plan a three-day trip to a small city by the sea."),
    ("opinion", "What are the advantages and disadvantages of working from home?"),
    ("poem", "Write a poem about autumn leaves."),
    ("health", "Why is drinking enough water important, and how much should I drink?"),
    ("technology", "What is the difference between computer memory and storage?"),
    ("language", "How do I say 'good morning, how are you?' in French and Spanish?"),
    ("business", "Give me ideas for naming a small coffee shop, with a reason for each."),
)


def source(windows: int, window: int) -> str:
    """The line that names this text wherever a figure measured on it is reported."""
    return (f"text sampled from the baseline: {windows} windows of {window} tokens, one prompt each from "
            f"{len(PROMPTS)} domains in its chat format, temperature 1, seed {SEED}")


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The prompt as the model sees it in use: its chat template with the assistant turn opened, or, for a
    tokenizer without one, the plain text after the BOS token the tokenizer adds by default."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    return fidelity.bos_prefix(tokenizer) + tokenizer(prompt, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def sample_windows(model, tokenizer, max_tokens: int, window: int = fidelity.WINDOW,
                   seed: int = SEED) -> torch.Tensor:
    """[n, window] token ids (n = max_tokens // window, at least 1): each a prompt and the baseline's
    continuation of it, sampled at temperature 1."""
    n = max(1, max_tokens // window)
    prompts = [prompt_ids(tokenizer, PROMPTS[i % len(PROMPTS)][1]) for i in range(n)]
    if max(len(p) for p in prompts) >= window:
        raise ValueError(f"a sampling prompt is {max(len(p) for p in prompts)} tokens; windows are {window}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    longest = max(len(p) for p in prompts)
    device = next(model.parameters()).device
    ids = torch.tensor([[pad] * (longest - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts], device=device)
    new = window - min(len(p) for p in prompts)
    from transformers import GenerationConfig

    # every sampling setting named here, none taken from the model's generation_config.json (SmolLM2's asks
    # for temperature 0.2 and top-p 0.9: the baseline's own distribution is temperature 1, untruncated)
    how = GenerationConfig(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=new,
                           min_new_tokens=new, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):   # the caller's state stays
        torch.manual_seed(seed)
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=how)
    sampled = out[:, longest:].cpu()
    return torch.stack([torch.cat([torch.tensor(p), sampled[i]])[:window] for i, p in enumerate(prompts)])
