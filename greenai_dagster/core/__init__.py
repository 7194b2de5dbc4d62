"""Plain Python core: never imports Dagster, so every piece is testable on its own.

Read it as the data flows, bottom to top (`.importlinter` keeps the lower layers from reaching up):

- `models/`: what a causal LM is made of, how it is loaded, sized and saved;
- `formats/`: one module per checkpoint format (detect, save, load), below methods and runtimes;
- `methods/`: the compression methods, one small registered class each;
- `runtimes/`: where a checkpoint is served (llama.cpp, torch int8/int4, CUDA kernels, eager);
- `data/`: benchmarks and calibration text, offline;
- `evaluation/`: fidelity, accuracy, latency, memory and energy of a checkpoint;
- `search/`: objectives, the quality gate, the Pareto frontier, and the coordinators that pick the next
  strategy (whole-model) or a format per layer (mixed precision);
- `storage/`: the results store, its schema, the folders on disk;
- `settings/`: an experiment's and a sweep's settings as the user writes them;
- `machine/`: device slots, GPU claims, the sandbox for untrusted code, how a child process died;
- `reporting/`: the experiment folder, the frontier table, `greenai analyze`.

The modules at this level tie them together: `strategy` (a strategy is data) and `compress` (apply it),
`experiment` (the record every step receives), `pipeline` (the steps), `decide` and `engine` (the state
machine both drivers execute), `selftest` (`greenai doctor`), `export`, and `errors`/`redact`, which
every layer uses.
"""
