"""Per-layer mixed precision: choose a weight format for every layer (or block) under a budget.

The whole-model menu (`core.search.coordinator.space`) gives every layer the same format; layers differ a
lot in how much a coarse format hurts. This package does what ModelOpt's `auto_quantize`, AutoRound's
AutoScheme and EvoPress do, on our own metric (KL divergence from the baseline, `core.evaluation.fidelity`):

- `levels`: the formats a unit can take (2/3/4/8-bit group-wise integers, or kept in float), the
  units (one linear, or one transformer block), and the exact fake-quantisation llm-compressor's RTN
  applies, so a simulated allocation equals the saved checkpoint;
- `sensitivity`: the measured KL when only one unit is quantized at one level, and the KL of a
  whole allocation, on calibration tokens (never the held-out evaluation text);
- `solvers`: an exact knapsack (scipy's MILP) on the additive sensitivity table for one budget, and
  NSGA-II (optuna) on measured KL for the size x KL front.

The `mixed` compression method (`method`) turns an allocation into a compressed-tensors
checkpoint with one config group per level.
"""
