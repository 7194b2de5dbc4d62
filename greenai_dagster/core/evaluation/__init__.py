"""Measuring a checkpoint against the baseline: quality, speed, memory, energy.

- `evaluate`: the one entry (fidelity, accuracy through lm-eval, latency, memory, size), under the
  settings of `eval_settings`;
- `fidelity`, `sampled_text`: how far the next-token distribution moved, on held-out and sampled text;
- `flips`: answers that flipped against the baseline, and the paired test of the accuracy difference;
- `llama_cpp_scoring`: the same figures from llama.cpp's own logits, where a variant is served by it;
- `runtime_probe`, `serving_energy`, `energy`: latency, memory and joules in the serving runtime, and
  energy/CO2 around a block of work.
"""
