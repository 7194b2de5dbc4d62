"""Per-layer mixed precision against the uniform menu, on one model (issue 15's acceptance table).

    python benchmarks/mixed_precision.py [--budgets 3,3.5,4.25] [--trials 128] [--windows 2]

1. Sensitivity: the KL from the float model on calibration tokens (the corpus's calibration half,
   never the evaluation text) when one transformer block is RTN-quantized at one level (w2/w3/w4/w8,
   group 64, exactly llm-compressor's scheme), every other weight in float.
2. How additive it is: measured vs predicted (summed) KL of random whole allocations, rank correlation.
3. Solvers per budget (average bits per quantizable weight): the exact knapsack on the table
   (scipy milp), and the best allocation within budget of one NSGA-II run on measured KL (optuna).
4. Full evaluation of every proposal and of the uniform menu: the allocation saved as a
   compressed-tensors checkpoint by the `mixed` method, reloaded, and measured against the float
   model on the held-out text (KL, top-1, perplexity; `core.evaluation.fidelity`), size on disk measured.
5. Each mixed row's KL as a ratio of the uniform format's at the same average bits, paired on the same
   held-out positions (`fidelity.paired_ratio`), with its 95 % interval: the figure the 30 % goal is about.

With `--algorithm gptq` every level is GPTQ's (llm-compressor), not RTN's: each level's weights are those a
uniform GPTQ run at that level leaves in each linear (EvoPress's per-level database), the search stitches
them, and every proposal is saved by the `mixed` method with `algorithm: gptq` (one GPTQ pass, one config
group per level). The uniform menu then is uniform GPTQ, plus uniform AutoRound at 3 and 4 bits; each mixed
row carries `kl_vs_best_uniform`: its KL against the uniform row of the lowest held-out KL at the same bits,
paired on the same positions. The held-out text is measured once, after the search, which sees only
calibration tokens.

With `--algorithm autoround` every level is AutoRound's (auto-round through llm-compressor, 50 tuning steps
per block as the `autoround` method): each level's weights are those uniform AutoRound leaves in each linear
(its checkpoint is the uniform row too), the search stitches them, and every proposal is saved by the
`mixed` method with `algorithm: autoround` (one AutoRound pass, each linear tuned at its own bits). The
rivals then are uniform GPTQ at the budgets' bits (`--gptq-uniform`).

Rows are appended to <out>.rows.jsonl as they finish, so a rerun resumes; the table is written to
benchmarks/results/mixed_precision.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

RESULTS = Path(__file__).resolve().parent / "results"
# how a measured checkpoint was stored; rows without it came from checkpoints whose floats a GPU machine's
# save left in float32 (larger files, finer scales) and are measured again
STORED_AS = "bfloat16 floats and scales (checkpoints.narrow_floats_on_disk)"
KL_FILE = "kl_per_position.safetensors"   # beside each measured checkpoint: its KL at every held-out position
# the fitness of budget searches saved before each recorded its own: every one of them ran with the
# defaults of then, 8 windows of 256 calibration tokens and 8 children a generation, no screen
LEGACY_FITNESS = {"from_generation": 0, "tokens": 2048, "screen": "none", "offspring": 8}


def write_table(name: str, done: dict[str, dict], tag: str | None = None) -> list[dict]:
    """Put `name`'s rows (label -> last row) into benchmarks/results/mixed_precision.json beside the other
    models' rows, each with the conditions it was measured under (a model's rows of another algorithm are
    replaced: the table holds one search per model)."""
    conditions = {"eval_text": "held-out half of the corpus", "against": "the float model",
                  "scored_by": "transformers float32 (weights dequantized from the saved checkpoint)"}
    rows = [r | conditions for r in done.values()]
    RESULTS.mkdir(exist_ok=True)
    table_file = RESULTS / "mixed_precision.json"   # every model's rows, one list
    others = [r for r in json.loads(table_file.read_text()) if r.get("model") != name] if table_file.exists() else []
    tmp = table_file.with_suffix(f".{name}.tmp")   # renamed into place: a run beside this one never reads half
    tmp.write_text(json.dumps(others + rows, indent=1))
    tmp.replace(table_file)
    return rows


def stored_weights(folder: Path, unit_list, bits: int, device: str) -> dict[str, torch.Tensor]:
    """Each linear's weight exactly as a compressed-tensors checkpoint stores it: its packed integers times its
    group scales (float32), read from the safetensors files rather than from a loaded model."""
    from greenai_dagster.core.formats import compressed_tensors

    stored: dict[str, torch.Tensor] = {}
    for shard in folder.glob("*.safetensors"):
        stored.update(load_file(str(shard)))
    weights = {}
    for name in (n for u in unit_list for n in u.linears):
        ints = compressed_tensors.stored_integers(stored, name, bits)
        scale = stored[f"{name}.weight_scale"]   # multiplied in the scale's dtype, as decompression does
        scale = scale.repeat_interleave(ints.shape[1] // scale.shape[1], dim=1)
        weights[name] = (ints.to(scale.dtype) * scale).float().to(device)
    return weights


def best_uniform_at(done: dict[str, dict], avg_bits: float) -> dict | None:
    """The uniform row (any quantizer) of lowest held-out KL at these average bits: what a mixed row must beat."""
    rivals = [u for u in done.values() if u["allocation_kind"] == "uniform" and u["avg_bits"] == avg_bits]
    return min(rivals, key=lambda u: u["kl_divergence"]) if rivals else None


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main() -> None:
    from scipy.stats import kendalltau, spearmanr

    from greenai_dagster.core.data import corpus
    from greenai_dagster.core.evaluation import fidelity
    from greenai_dagster.core.models.checkpoints import load_variant
    from greenai_dagster.core.compress import compress_to_checkpoint
    from greenai_dagster.core.models.default_model import ensure_default_checkpoint
    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.methods.mixed import levels as lv
    from greenai_dagster.core.methods.mixed import sensitivity, solvers
    from greenai_dagster.core.storage.paths import data_root
    from greenai_dagster.core.models.spec import weights_size_bytes
    from greenai_dagster.core.methods.assess import build_spec
    from greenai_dagster.core.strategy import Step, Strategy

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="HF folder; default: the packaged SmolLM2-135M-Instruct")
    parser.add_argument("--name", default="smollm2", help="row tag and output folder name")
    parser.add_argument("--budgets", default="3,3.5,4,4.25,5,6")
    parser.add_argument("--levels", default="w2,w3,w4,w5,w6,w8")
    parser.add_argument("--granularity", default="linear", choices=["block", "linear"])
    parser.add_argument("--windows", type=int, default=2, help="sensitivity windows of 256 calibration tokens")
    parser.add_argument("--eval-tokens", type=int, default=4096, help="held-out tokens for the full evaluation")
    parser.add_argument("--validate", type=int, default=20, help="random allocations to test additivity")
    parser.add_argument("--trials", type=int, default=320, help="NSGA-II trials (one forward pass each)")
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--generations", type=int, default=150,
                        help="per budget: (1 + lambda) level-switch generations on measured KL (EvoPress's scheme)")
    parser.add_argument("--offspring", type=int, default=8)
    parser.add_argument("--search-windows", type=int, default=8,
                        help="calibration windows of 256 tokens the budget evolution's fitness is measured on")
    parser.add_argument("--table-only", action="store_true",
                        help="only write the table from the rows file (rows measured elsewhere, e.g. on a GPU machine)")
    parser.add_argument("--search-only", action="store_true",
                        help="stop after the search (its state saved); the full evaluations are left to a later run")
    parser.add_argument("--screen-windows", type=int, default=0,
                        help="EvoPress's multi-step selection: rank each generation's children on this many of the "
                             "search windows first (0: no screen)")
    parser.add_argument("--screen-keep", type=int, default=4, help="children the screen passes to the full fitness")
    parser.add_argument("--device", default="cpu", help="where forward passes run (float32 either way)")
    parser.add_argument("--algorithm", default="rtn", choices=["rtn", "gptq", "autoround"],
                        help="how each level's integers are found")
    parser.add_argument("--autoround-uniform", default="w3,w4", help="with gptq: uniform AutoRound rows to compare")
    parser.add_argument("--gptq-uniform", default="w3,w4", help="with autoround: uniform GPTQ rows to compare")
    parser.add_argument("--uniform-rows", default="", help="levels whose uniform row is measured (default: all)")
    parser.add_argument("--proposals", default="knapsack,evolutionary", help="which solvers' allocations are measured")
    parser.add_argument("--levels-only", action="store_true",
                        help="with autoround: write the levels' uniform checkpoints and stop (one process per level "
                             "can run beside the others on one GPU; the search run then finds them written)")
    args = parser.parse_args()
    torch.set_float32_matmul_precision("highest")   # no TF32 on a GPU: float32 figures on any device
    levels = args.levels.split(",")
    budgets = [float(b) for b in args.budgets.split(",")]
    checkpoint = args.model or str(ensure_default_checkpoint())
    gptq = args.algorithm == "gptq"
    autoround = args.algorithm == "autoround"
    # each algorithm's files apart; a name that already says its algorithm (smollm2.autoround: a second table of
    # one model, its rows kept beside the first's under their own `model`) is not suffixed twice
    tag = args.name if args.algorithm == "rtn" or args.name.endswith(f".{args.algorithm}") \
        else f"{args.name}.{args.algorithm}"
    work = data_root() / "mixed_bench" / tag / args.granularity
    work.mkdir(parents=True, exist_ok=True)
    rows_file = RESULTS / f"mixed_precision.{tag}.rows.jsonl"
    done = {}   # label -> its last row; a line torn by a killed run is skipped (that row is measured again)
    for line in rows_file.read_text().splitlines() if rows_file.exists() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        done[row["label"]] = row
    if args.table_only:
        for row in done.values():   # rows whose pairing step never ran (a lease that ended first): means only
            if row["allocation_kind"] != "uniform" and "kl_vs_best_uniform" not in row:
                best = best_uniform_at(done, row["avg_bits"])
                if best is not None:
                    row["kl_vs_best_uniform"] = {
                        "ratio": row["kl_divergence"] / best["kl_divergence"], "low": None, "high": None,
                        "uniform": best["label"], "uniform_kl": best["kl_divergence"], "uniform_size_gb": best["size_gb"],
                        "size_gb": row["size_gb"], "paired": False,
                        "why": "ratio of the two means; the run ended before its pairing step, so no interval"}
        log(f"wrote the table: {len(write_table(args.name, done))} rows for {args.name}")
        return

    model, tokenizer = load_model_and_tokenizer(checkpoint)
    model = model.to(args.device)
    spec = build_spec(args.name, model, checkpoint)
    unit_list = lv.units(model, args.granularity)
    log(f"{len(unit_list)} units ({args.granularity}), {sum(u.params for u in unit_list) / 1e6:.1f} M quantizable weights, "
        f"{torch.get_num_threads()} threads")

    # 1. sensitivity on calibration tokens
    calib = fidelity.token_windows(tokenizer, corpus.calibration_text(), args.windows * 256, window=256)
    reference = sensitivity.reference_on(model, calib.tolist())
    quantizer = sensitivity.Quantizer(model, unit_list)
    if gptq:   # each level as uniform GPTQ leaves each linear (a GPTQ pass per level, on the calibration half)
        from greenai_dagster.core.compress import apply_strategy

        for level in levels:
            if level == "f16":
                continue
            started = time.perf_counter()
            copy, tok = load_model_and_tokenizer(checkpoint, device=args.device, dtype=torch.float32)
            strategy = Strategy(f"gptq_{level}", [Step("gptq", {"bits": lv.level_bits(level), "group_size": lv.GROUP_SIZE})])
            copy, _, _ = apply_strategy(copy, tok, strategy, spec, args.device)
            quantizer.use(level, {name: m.weight.data.detach().clone()
                                  for name, m in lv.quantizable_linears(copy).items()})
            del copy
            log(f"GPTQ level {level}: {time.perf_counter() - started:.0f} s")
    if autoround:   # each level as uniform AutoRound leaves each linear; its checkpoint is also the uniform row
        for level in levels:
            started = time.perf_counter()
            folder = work / f"uniform_{level}"
            if not (folder / "config.json").exists():
                compress_to_checkpoint(checkpoint, Strategy(f"uniform_{level}", [Step("mixed", {
                    "allocation": lv.uniform(unit_list, level), "granularity": args.granularity,
                    "algorithm": "autoround"})]), spec, folder)
            if not args.levels_only:
                quantizer.use(level, stored_weights(folder, unit_list, lv.level_bits(level), args.device))
            log(f"AutoRound level {level}: {time.perf_counter() - started:.0f} s")
        if args.levels_only:
            return
    state_file = work / "search_state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    if "table" not in state:
        started = time.perf_counter()
        state["table"] = sensitivity.table(quantizer, reference, levels, progress=log)
        state["table_s"] = time.perf_counter() - started
        state_file.write_text(json.dumps(state))
    table = state["table"]

    # 2. additivity: random allocations, measured vs predicted
    if "validation" not in state:
        rng = random.Random(0)
        pairs, started = [], time.perf_counter()
        for i in range(args.validate):
            allocation = {u.name: rng.choice(levels[: 1 + i % len(levels)] if i % 2 else levels[1:]) for u in unit_list}
            measured = sensitivity.measure(quantizer, reference, allocation).kl_divergence
            pairs.append({"avg_bits": lv.average_bits(allocation, unit_list), "measured_kl": measured,
                          "predicted_kl": sensitivity.predicted_kl(table, allocation)})
            log(f"validation {i + 1}/{args.validate}: bits {pairs[-1]['avg_bits']:.2f} measured {measured:.4f} "
                f"predicted {pairs[-1]['predicted_kl']:.4f}")
        state["validation"] = pairs
        state["validation_s"] = time.perf_counter() - started
        state_file.write_text(json.dumps(state))
    pairs = state["validation"]
    rho = spearmanr([p["measured_kl"] for p in pairs], [p["predicted_kl"] for p in pairs])[0]
    tau = kendalltau([p["measured_kl"] for p in pairs], [p["predicted_kl"] for p in pairs])[0]

    # 3. solvers
    if "evolutionary" not in state:
        started = time.perf_counter()
        count = [0]

        def measured_kl(allocation):
            count[0] += 1
            kl = sensitivity.measure(quantizer, reference, allocation).kl_divergence
            if count[0] % 16 == 0:
                log(f"NSGA-II trial {count[0]}/{args.trials} ({time.perf_counter() - started:.0f} s)")
            return kl

        seeds = []   # knapsack solutions from the cheapest level to the largest budget, every 0.25 bits
        for step in range(int((max(budgets) - lv.level_bits(levels[0])) / 0.25) + 1):
            candidate = solvers.knapsack(table, unit_list, levels, lv.level_bits(levels[0]) + 0.25 * step)
            if candidate not in seeds:
                seeds.append(candidate)
        state["evolutionary_seeds"] = len(seeds)
        state["evolutionary"] = solvers.evolutionary(measured_kl, unit_list, levels, args.trials,
                                                     population=args.population, seed=0, max_bits=max(budgets),
                                                     seeds=seeds)
        state["evolutionary_s"] = time.perf_counter() - started
        state_file.write_text(json.dumps(state))
    trials = state["evolutionary"]

    # 3b. per budget, refine the better of knapsack and NSGA-II by budget-preserving level switches
    refined = state.setdefault("budget_evolution", {})
    search_calib = fidelity.token_windows(tokenizer, corpus.calibration_text(), args.search_windows * 256, window=256)
    search_reference = sensitivity.reference_on(model, search_calib.tolist())
    for budget in budgets:
        key = f"{budget:g}"
        prior = refined.get(key)   # an earlier (or killed) search at this budget goes on from its best allocation
        generations_done = len(prior["history"]) - 1 if prior else 0
        if generations_done >= args.generations:
            continue
        started = time.perf_counter()
        if prior:
            start, origin, start_kl = prior["allocation"], prior["start"], prior["start_kl"]
        else:
            knap = solvers.knapsack(table, unit_list, levels, budget)
            knap_kl = sensitivity.measure(quantizer, search_reference, knap).kl_divergence
            nsga = solvers.best_within(trials, budget)
            nsga_kl = sensitivity.measure(quantizer, search_reference, nsga["allocation"]).kl_divergence
            start, origin = (knap, "knapsack") if knap_kl <= nsga_kl else (nsga["allocation"], "NSGA-II")
            start_kl = min(knap_kl, nsga_kl)

        start_counts = prior.get("start_level_counts") if prior else dict(Counter(start.values()))

        def save(found: dict, prior: dict | None = prior, started: float = started,
                 origin: str = origin, start_kl: float = start_kl, key: str = key,
                 start_counts: dict | None = start_counts) -> None:
            merged = found | {"start": origin, "start_kl": start_kl, "start_level_counts": start_counts,
                              "seconds": round(time.perf_counter() - started + (prior or {}).get("seconds", 0), 1)}
            fitness = {"from_generation": generations_done, "tokens": int(search_calib.numel()),
                       "screen": (f"best {args.screen_keep} of {args.offspring} on {args.screen_windows} windows"
                                  if args.screen_windows else "none"), "offspring": args.offspring}
            segments = (prior or {}).get("fitness", [])
            if prior:   # the continuation re-measures its start once: counted, not repeated in the history
                merged["evaluations"] += prior["evaluations"]
                merged["screen_evaluations"] += prior.get("screen_evaluations", 0)
                merged["history"] = prior["history"] + found["history"][1:]
            # which fitness each stretch of generations used (an older state did not say: 2,048 tokens, 8 children)
            merged["fitness"] = (segments or ([LEGACY_FITNESS] if prior else [])) + [fitness]
            merged["generations"] = len(merged["history"]) - 1
            refined[key] = merged
            state_file.write_text(json.dumps(state))

        screens = ([(lambda a: sensitivity.measure(quantizer, search_reference, a,
                                                      max_positions=args.screen_windows * 255).kl_divergence,
                     args.screen_keep)] if args.screen_windows else [])
        found = solvers.evolve_at_budget(lambda a: sensitivity.measure(quantizer, search_reference, a).kl_divergence,
                                         unit_list, levels, budget, start,
                                         generations=args.generations - generations_done, offspring=args.offspring,
                                         seed=generations_done, progress=log, checkpoint=save, screens=screens)
        save(found)
        log(f"budget {budget:g}: from {origin} KL {start_kl:.4f} to {found['kl']:.4f} on the search tokens "
            f"after {refined[key]['generations']} generations")
    quantizer.clear()
    if args.search_only:
        log(f"search state in {state_file}; full evaluations left to a run without --search-only")
        return

    g = args.granularity
    passes = {"uniform": 0, "knapsack": len(unit_list) * len(levels)}

    def proposal(label: str, kind: str, budget: float, allocation: dict, granularity: str = g,
                 forward_passes: int | None = None) -> dict:
        return {"label": label, "kind": kind, "budget": budget, "allocation": allocation, "granularity": granularity,
                "forward_passes": passes.get(kind) if forward_passes is None else forward_passes}

    uniform_levels = [lv_ for lv_ in levels if not args.uniform_rows or lv_ in args.uniform_rows.split(",")]
    proposals = [proposal(f"uniform_{level}", "uniform", lv.level_bits(level), lv.uniform(unit_list, level))
                 for level in uniform_levels]
    rival = "autoround" if gptq else "gptq" if autoround else None   # the other strong uniform quantizer
    rival_levels = args.autoround_uniform if gptq else args.gptq_uniform
    if rival:
        proposals += [proposal(f"uniform_{rival}_{level}", "uniform", lv.level_bits(level), lv.uniform(unit_list, level))
                      for level in filter(None, rival_levels.split(","))]
    solvers_wanted = args.proposals.split(",")
    for budget in budgets:
        evolved = refined[f"{budget:g}"]
        if "knapsack" in solvers_wanted:
            proposals.append(proposal(f"knapsack_{g}_{budget:g}", "knapsack", budget,
                                      solvers.knapsack(table, unit_list, levels, budget)))
        if "evolutionary" in solvers_wanted:
            proposals.append(proposal(f"evolutionary_{g}_{budget:g}", "evolutionary", budget, evolved["allocation"],
                                      forward_passes=len(unit_list) * len(levels) + len(trials) + 1
                                      + evolved["evaluations"]))

    def fresh(row: dict | None, allocation: dict) -> bool:
        """Measured from a checkpoint stored as every machine stores it now, with this allocation."""
        return (row is not None and row.get("stored_as") == STORED_AS
                and (row["allocation_kind"] == "uniform" or row["allocation"] == allocation))

    proposed = {p["label"] for p in proposals}
    for row in list(done.values()):   # rows of other runs (the other granularity) measured from older checkpoints
        if row["label"] not in proposed and not fresh(row, row["allocation"]):
            proposals.append(proposal(row["label"], row["allocation_kind"], row["budget_bits"], row["allocation"],
                                      row["granularity"], row["search_forward_passes"]))
    units_of = {granularity: lv.units(model, granularity) for granularity in ("block", "linear")}

    # 4. full evaluation on held-out text against the float model
    held_out = fidelity.token_windows(tokenizer, fidelity.held_out_text()[0], args.eval_tokens)
    eval_reference = fidelity.build_reference(model, held_out)
    base_size = weights_size_bytes(Path(checkpoint))
    del model

    def measure_and_keep(folder: Path) -> dict[str, torch.Tensor]:
        """The checkpoint's per-position fidelity on the held-out windows; its KL is kept beside it for pairing."""
        variant, _ = load_variant(folder, device=args.device, dtype=torch.float32)
        values = fidelity.per_position(variant, eval_reference)
        save_file({"kl": values["kl"].contiguous()}, str(folder / KL_FILE))
        return values

    where = (torch.cuda.get_device_name() if args.device.startswith("cuda")
             else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads")
    for p in proposals:
        label, kind, allocation = p["label"], p["kind"], p["allocation"]
        if fresh(done.get(label), allocation):
            continue   # measured already; a changed allocation (a longer search) is measured again
        folder = work / label
        started = time.perf_counter()
        if label.startswith(("uniform_autoround_", "uniform_gptq_")):
            step = Step(label.split("_")[1], {"bits": lv.level_bits(label.rsplit("_", 1)[1]), "group_size": lv.GROUP_SIZE})
        else:
            step = Step("mixed", {"allocation": allocation, "granularity": p["granularity"],
                                  **({"algorithm": args.algorithm} if args.algorithm != "rtn" else {})})
        if autoround and kind == "uniform" and step.method == "mixed" and (folder / "config.json").exists():
            # the level's own checkpoint (built for the search): the uniform row, not tuned twice
            info = {"step_reports": [{"level_counts": {allocation[unit_list[0].name]: len(unit_list)}}]}
        else:
            info = compress_to_checkpoint(checkpoint, Strategy(label, [step]), spec, folder)
        values = measure_and_keep(folder)
        fid = fidelity.summarise(values, eval_reference["nll"])   # = fidelity.measure
        row = {"label": label, "model": args.name, "allocation_kind": kind, "budget_bits": p["budget"],
               "granularity": "model" if kind == "uniform" else p["granularity"],
               "avg_bits": round(lv.average_bits(allocation, units_of[p["granularity"]]), 4),
               "kl_divergence": fid.kl_divergence, "kl_stderr": fid.kl_stderr, "top1_agreement": fid.top1_agreement,
               "perplexity": fid.perplexity, "ppl_ratio": fid.ppl_ratio, "ppl_ratio_low": fid.ppl_ratio_low,
               "ppl_ratio_high": fid.ppl_ratio_high, "eval_tokens": fid.tokens,
               "size_gb": weights_size_bytes(folder) / 1e9, "baseline_size_gb": base_size / 1e9,
               "full_evaluations": 1, "search_forward_passes": p["forward_passes"],
               "predicted_kl_on_calibration": (sensitivity.predicted_kl(table, allocation) if p["granularity"] == g
                                               else done.get(label, {}).get("predicted_kl_on_calibration")),
               "level_counts": info["step_reports"][0].get("level_counts"), "allocation": allocation,
               "algorithm": (step.method if step.method != "mixed" else args.algorithm),
               "seconds": round(time.perf_counter() - started, 1), "measured_on": f"{where}, float32 (no TF32)",
               "stored_as": STORED_AS}
        with rows_file.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        done[label] = row
        log(f"{label}: bits {row['avg_bits']:.3f} KL {fid.kl_divergence:.4f} ± {fid.kl_stderr:.4f} "
            f"ppl x{fid.ppl_ratio:.3f} size {row['size_gb']:.4f} GB")

    # 5. each mixed row against the uniform format of the same average bits, paired on the same positions
    def kl_per_position(label: str) -> torch.Tensor | None:
        folder = work / label
        if not (folder / KL_FILE).exists():   # measured before the positions were kept: measure them once
            if not (folder / "config.json").exists():
                return None
            measure_and_keep(folder)
        return load_file(str(folder / KL_FILE))["kl"]

    uniform_at = {r["avg_bits"]: r["label"] for r in done.values()   # the same algorithm's uniform row
                  if r["allocation_kind"] == "uniform" and not r["label"].startswith(("uniform_autoround_",
                                                                                      "uniform_gptq_"))}
    for row in done.values():
        base_label = uniform_at.get(row["avg_bits"])
        if row["allocation_kind"] == "uniform" or base_label is None:
            continue
        base_kl, kl = kl_per_position(base_label), kl_per_position(row["label"])
        if base_kl is None or kl is None:
            log(f"{row['label']}: no checkpoint here to pair with {base_label}; its ratio is left out")
            row.pop("kl_vs_uniform", None)
            continue
        row["kl_vs_uniform"] = {"uniform": base_label, **fidelity.paired_ratio(base_kl, kl),
                                "how": "mean KL ratio on the same held-out positions, 95 % interval from "
                                       "block-clustered (64 positions) paired standard error"}
        r = row["kl_vs_uniform"]
        log(f"{row['label']}: KL x{r['ratio']:.3f} [{r['ratio_low']:.3f}, {r['ratio_high']:.3f}] of {base_label}")
        # against the strongest uniform quantizer at the same bits (GPTQ or AutoRound): the figure the bar is about
        best = best_uniform_at(done, row["avg_bits"])
        best_kl = kl_per_position(best["label"])
        if best_kl is not None:
            paired = fidelity.paired_ratio(best_kl, kl)
            row["kl_vs_best_uniform"] = {"ratio": paired["ratio"], "low": paired["ratio_low"],
                                         "high": paired["ratio_high"], "uniform": best["label"],
                                         "uniform_kl": best["kl_divergence"],
                                         "uniform_size_gb": best["size_gb"], "size_gb": row["size_gb"]}
            log(f"{row['label']}: KL x{paired['ratio']:.3f} [{paired['ratio_low']:.3f}, {paired['ratio_high']:.3f}] "
                f"of the best uniform at its bits, {best['label']}")

    rows = write_table(args.name, done, tag)
    search = {
        "what": f"per-{args.granularity} mixed precision ({args.algorithm.upper()} levels, group 64, symmetric, "
                "llm-compressor) vs the uniform menu",
        "model": checkpoint, "name": args.name,
        "sensitivity": {"tokens": int(calib.numel()), "source": "calibration half of the corpus",
                        "levels": levels, "units": len(unit_list), "granularity": args.granularity,
                        "forward_passes": len(unit_list) * (len(levels)), "seconds": round(state["table_s"], 1),
                        "table": table},
        "additivity": {"allocations": len(pairs), "spearman": rho, "kendall_tau": tau,
                       "seconds": round(state["validation_s"], 1), "pairs": pairs},
        "evolutionary": {"sampler": "optuna NSGAIISampler", "trials": len(trials), "population": args.population,
                         "fitness": "measured KL on the sensitivity tokens, and average bits",
                         "seeds": f"the uniform menu and {state.get('evolutionary_seeds', 0)} knapsack solutions",
                         "seconds": round(state["evolutionary_s"], 1)},
        "budget_evolution": {"scheme": "(1 + lambda) level switches at a fixed budget, measured KL as fitness "
                                       "(EvoPress); starts from the better of knapsack and NSGA-II",
                             "offspring_in_the_last_run": args.offspring,   # a resumed search may have used others:
                             # per budget, `evaluations` counts every measured child and `generations` every step
                             "fitness_tokens_in_the_last_run": int(search_calib.numel()),
                             # `level_counts`: how far the allocation found is from uniform (units per level)
                             "per_budget": {b: {"fitness": [LEGACY_FITNESS]} | {k: v for k, v in r.items()
                                                                                 if k != "allocation"}
                                            | {"level_counts": dict(Counter(r["allocation"].values()))}
                                            for b, r in refined.items()}},
    }
    search["algorithm"] = args.algorithm
    (RESULTS / f"mixed_precision_search.{tag}.{args.granularity}.json").write_text(json.dumps(search, indent=1))
    log(f"wrote {RESULTS / 'mixed_precision.json'}: {len(rows)} rows for {args.name}; additivity spearman {rho:.3f}, kendall {tau:.3f}")


if __name__ == "__main__":
    main()
