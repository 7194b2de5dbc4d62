"""Benchmark and calibration data, offline: what a model is calibrated and measured on.

- `benchmarks`: a benchmark name (greenai_dagster/benchmarks.yaml) resolved to runnable lm-eval tasks;
- `generated_tasks`, `bigbench`, `humaneval`: the task families it draws on, as offline readers;
- `task_files`: items on disk (one JSONL + one lm-eval task YAML per task);
- `subsets`: seeded, stratified item orders (every prefix a stratified subset);
- `corpus`: real English text for calibration and perplexity.
"""
