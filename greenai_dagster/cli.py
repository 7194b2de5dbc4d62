"""`greenai` command line: run, analyze, query (the seed's CLI, on Dagster).

    greenai run [-m MODEL] [-d DATASET] [-e N] [-b HOURS] [-i] [-o DIR] [-n NAME] [-c CONFIG.json] [--show-spec]
    greenai analyze DIR [--format summary|detailed|json]
    greenai analyze --sweep NAME [--html PAGE.html]
    greenai sweep FILE.yaml [--now] [-e N] [-i]
    greenai query "SELECT ... FROM results"
    greenai compact [--db FILE]
    greenai serve [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--dagster-url URL]

Errors print as `E00N: what happened. Remedy: what to do.` and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path
from typing import get_args, get_origin

from greenai_dagster.core.data.benchmarks import availability, resolve_source
from greenai_dagster.core.errors import DiskFull, EvaluationError, GreenAIError
from greenai_dagster.core.evaluation.eval_settings import EvalSettings
from greenai_dagster.core.redact import install_log_filter
from greenai_dagster.core.storage.paths import data_root


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "WARNING")

    warnings.filterwarnings("ignore")
    # what runs outside a stage (input checks, the spec); inside one, runner.library_output_to sends every
    # library's output (loguru sinks included, which llmcompressor re-adds on import) to the run's log file
    for name in ("transformers", "lm-eval", "lm_eval", "codecarbon", "datasets", "llmcompressor", "dagster",
                 "bitsandbytes", "accelerate", "compressed_tensors", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)

    install_log_filter()
    try:
        from loguru import logger

        logger.remove()
    except ImportError:
        pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="greenai", description="Agentic multi-objective LLM compression on Dagster.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment (episodes of compress -> benchmark -> frontier)")
    run.add_argument("-i", "--interactive", action="store_true", help="print each episode's decision and metrics")
    run.add_argument("-c", "--config", help="JSON config file (CLI flags override it)")
    run.add_argument("--show-spec", action="store_true", help="print the model spec and exit")
    add_config_flags(run)

    analyze = sub.add_parser("analyze", help="summarise an experiment folder, or (--sweep) a sweep's experiments")
    analyze.add_argument("directory", nargs="?")
    analyze.add_argument("--format", choices=["summary", "detailed", "json"], default="summary")
    analyze.add_argument("--sweep", help="compare the frontiers of every experiment of this sweep (its `name`)")
    analyze.add_argument("--html", help="with --sweep: where to write the comparison page "
                                        "(default <data root>/reports/sweep_<NAME>.html)")

    sweep = sub.add_parser("sweep", help="check a sweep file (models x benchmarks) and list its experiments; "
                                         "--now runs them here, one after another")
    sweep.add_argument("file", help="a sweep YAML file (README 'Sweeps'; example: sweeps/nightly-smollm2.yaml)")
    sweep.add_argument("--now", action="store_true", help="run every combination now, as `greenai run` would")
    sweep.add_argument("-e", "--episodes", type=int, help="episodes per experiment (overrides the file's)")
    sweep.add_argument("-o", "--output-dir", help="experiments folder (default data/experiments)")
    sweep.add_argument("-i", "--interactive", action="store_true", help="print each episode's decision and metrics")

    export = sub.add_parser("export", help="pack one strategy's checkpoint as a .tar.gz")
    export.add_argument("experiment")
    export.add_argument("strategy_id")
    export.add_argument("-o", "--output", required=True)
    export.add_argument("--format", choices=["checkpoint", "gguf", "auto_gptq", "auto_awq"], default="checkpoint",
                        help="checkpoint: the episode's own folder (.tar.gz); gguf: one llama.cpp file (-o x.gguf; "
                             "float variants converted, W4/W8 repacked exactly); auto_gptq / auto_awq: re-run "
                             "AutoRound natively and write that format (autoround strategies only)")
    export.add_argument("--gguf-type", default=None,
                        help="with --format gguf: quantize a float variant with llama.cpp (Q4_K_M, Q5_K_M, Q8_0, Q4_0, ...)")

    sub.add_parser("benchmarks", help="list every benchmark, where its data comes from, and whether it runs "
                                      "offline now")
    cancel = sub.add_parser("cancel", help="cancel an experiment (or a REST job id): no new episode starts, and its "
                                           "running Dagster runs are terminated through the webserver")
    cancel.add_argument("job", help="experiment name or job id")
    cancel.add_argument("--dagster-url", default=os.environ.get("GREENAI_DAGSTER_URL", "http://127.0.0.1:3000"))
    doctor = sub.add_parser("doctor", help="self-test: every serving runtime runs the packaged model on this "
                                           "machine and its logits are compared with PyTorch's (exit 1 when a "
                                           "runtime the default run relies on fails)")
    doctor.add_argument("--threads", type=int, default=0, help="threads (default: every core)")

    server = sub.add_parser("llm-server", help="serve the packaged model (or --gguf) as an OpenAI-compatible "
                                               "endpoint on 127.0.0.1 for the llm coordinator (llama.cpp)")
    server.add_argument("--gguf", default=None, help="a GGUF file (default: the packaged SmolLM2-135M-Instruct)")
    server.add_argument("--port", type=int, default=8765)
    server.add_argument("--threads", type=int, default=2,
                        help="CPU threads for llama.cpp (default 2: the server shares the machine with the runs "
                             "it coordinates)")

    serve = sub.add_parser("serve", help="the seed's REST API (FastAPI; OpenAPI docs at /docs); jobs are Dagster "
                                         "runs launched through the Dagster webserver (`dagster dev`)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; any other needs an API key)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-key", default=None,
                       help="require this key in the X-API-Key header (default: GREENAI_API_KEY)")
    serve.add_argument("--dagster-url", default=None,
                       help="the Dagster webserver that launches runs (default: GREENAI_DAGSTER_URL or "
                            "http://127.0.0.1:3000)")

    query = sub.add_parser("query", help="run SQL over the DuckDB results file")
    query.add_argument("sql")
    query.add_argument("--db", help="DuckDB file (default data/greenai.duckdb)")

    compact = sub.add_parser("compact", help="fold the results' Parquet files (one per written row) into the DuckDB "
                                             "file's results_compacted table; reads stay the same, only faster")
    compact.add_argument("--db", help="DuckDB file (default data/greenai.duckdb)")
    return parser


def _dest(flags: tuple[str, ...]) -> str:
    return flags[-1].lstrip("-").replace("-", "_")


def _flag_help(model, name: str) -> str:
    """The field's description as every entry point shows it (core/settings/config.py `describe`), and its default."""
    from greenai_dagster.core.settings.config import describe, field_default

    default = field_default(model, name)
    shown = "unset" if default is None else ",".join(default) if isinstance(default, list) else default
    listed = " (comma-separated)" if _is_list(model, name) else ""
    return f"{describe(model, name)}{listed} (default: {shown})".replace("%", "%%")


def _is_list(model, name: str) -> bool:
    annotation = model.model_fields[name].annotation
    return list in (get_origin(annotation), *map(get_origin, get_args(annotation)))


def add_config_flags(run: argparse.ArgumentParser) -> None:
    """`greenai run`'s settings flags, generated from ExperimentConfig (core/settings/config.py `CLI_FLAGS`, and
    `CLI_EVAL_FLAGS` for the eval block): the help is the field's description and default, a Literal's values
    are the choices. Every flag's argparse default is None, meaning "not given": a --config file's value then
    stands, and what neither sets takes ExperimentConfig's default (named in the help)."""
    from greenai_dagster.core.settings.config import CLI_EVAL_FLAGS, CLI_FLAGS, ExperimentConfig, field_choices

    for model, table in ((ExperimentConfig, CLI_FLAGS), (EvalSettings, CLI_EVAL_FLAGS)):
        for name, flags in table.items():
            kinds = {get_args(a)[0] if get_args(a) else a for a in (model.model_fields[name].annotation,
                                                                      *get_args(model.model_fields[name].annotation))}
            keywords = {"help": _flag_help(model, name), "default": None}
            if bool in kinds and model.model_fields[name].default is None:    # three states: on, off, unset
                keywords["action"] = argparse.BooleanOptionalAction
            elif bool in kinds:                                                # an opt-in: the flag turns it on
                keywords["action"] = "store_true"
            elif field_choices(model, name):
                keywords["choices"] = list(field_choices(model, name))
            elif int in kinds:
                keywords["type"] = int
            elif float in kinds:
                keywords["type"] = float
            run.add_argument(*flags, **keywords)


def config_from_args(args):
    """The validated ExperimentConfig of `greenai run` flags (+ --config file): E00N naming the field. The
    flags are read by the tables they were generated from, so a new flag needs one line in core/settings/config.py."""
    from greenai_dagster.core.settings.config import CLI_EVAL_FLAGS, CLI_FLAGS, ExperimentConfig, load_config

    def given(model, table) -> dict:
        values = {}
        for name, flags in table.items():
            value = getattr(args, _dest(flags))
            if isinstance(value, str) and _is_list(model, name):
                value = [part.strip() for part in value.split(",") if part.strip()] or None
            if value is not None:
                values[name] = value
        return values

    overrides = given(ExperimentConfig, CLI_FLAGS)
    if overrides.get("output_dir"):
        overrides["output_dir"] = str(Path(overrides["output_dir"]).resolve())
    return load_config(overrides, args.config, given(EvalSettings, CLI_EVAL_FLAGS))


def cmd_run(args) -> int:
    config = config_from_args(args)
    if args.show_spec:
        return show_spec(config.model, config.trust_remote_code)
    from greenai_dagster.runner import run_experiment

    run_experiment(config, interactive=args.interactive)
    return 0


def show_spec(model_ref: str, trust_remote_code: bool = False) -> int:
    from greenai_dagster.core.models.loading import load_model_and_tokenizer, resolve_model_path
    from greenai_dagster.core.methods.assess import build_spec

    path = resolve_model_path(model_ref)
    model, _ = load_model_and_tokenizer(path, trust_remote_code=trust_remote_code)
    spec = build_spec(model_ref, model, checkpoint_path=path if Path(path).is_dir() else None)
    data = spec.to_json()
    width = max(len(k) for k in data)
    for key, value in data.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
        print(f"{key:<{width}}  {value}")
    return 0


def cmd_analyze(args) -> int:
    if args.sweep:
        from greenai_dagster.core.reporting.analyze import analyze_sweep

        page = Path(args.html) if args.html else data_root() / "reports" / f"sweep_{args.sweep}.html"
        print(analyze_sweep(args.sweep, page, deployment_store()))
        return 0
    if not args.directory:
        raise EvaluationError("analyze needs an experiment folder or --sweep NAME.",
                              "e.g. greenai analyze data/experiments/<name>, or greenai analyze --sweep <sweep name>")
    from greenai_dagster.core.reporting.analyze import analyze_folder

    print(analyze_folder(Path(args.directory), args.format))
    return 0


def cmd_sweep(args) -> int:
    """Every model x benchmark of the file through `greenai run`'s path (runner.run_experiment), one after
    another; all inputs are checked first, so a bad model in the last combination fails before any work."""
    from greenai_dagster.core.pipeline import validate_inputs
    from greenai_dagster.core.settings.sweep import load_sweep

    sweep = load_sweep(args.file)
    if args.episodes is not None and args.episodes < 1:
        raise EvaluationError(f"--episodes must be at least 1, not {args.episodes}.", "Pass -e 1 or more.")
    output_dir = str(Path(args.output_dir).resolve()) if args.output_dir else None
    configs = sweep.experiments(episodes=args.episodes, output_dir=output_dir)
    print(f"Sweep {sweep.name}: {len(configs)} experiment(s); schedule: "
          + (f"{sweep.schedule_name} ({sweep.cron} UTC)" if sweep.cron else "none (no cron)"))
    for config in configs:
        print(f"  {config.name}: {config.model} on {config.dataset}, {config.episodes} episode(s)")
    if not args.now:
        print("Checked; nothing started. --now runs them here, one after another.")
        return 0
    for config in configs:
        validate_inputs(config.model_copy(update={
            "benchmark_source": resolve_source(config.dataset, config.benchmark_source)}))
    from greenai_dagster.runner import run_experiment

    outcomes = []
    for position, config in enumerate(configs, 1):
        print(f"\n[Sweep] {position}/{len(configs)}: {config.name}", flush=True)
        try:
            outcome = run_experiment(config, interactive=args.interactive)
            outcomes.append((config.name, outcome["termination_reason"]))
        except GreenAIError as exc:      # one combination failing leaves the others to run
            print(str(exc), file=sys.stderr)
            outcomes.append((config.name, f"failed: {exc.code}"))
    print(f"\n[Sweep] {sweep.name} done:")
    for name, how in outcomes:
        print(f"  {name}: {how}")
    print(f"Compare them: greenai analyze --sweep {sweep.name}")
    return 1 if any(how.startswith("failed") for _, how in outcomes) else 0


def deployment_store():
    """The results store of this deployment (`local`, or `cluster` with its shared file), through the same
    resources the Dagster runs use, so a command never reads a different file than the runs wrote."""
    from greenai_dagster.resources import open_store, resources_for

    return open_store(resources_for())


def cmd_query(args) -> int:
    import duckdb

    from greenai_dagster.core.storage.store import ResultsStore

    path = Path(args.db) if args.db else deployment_store().path
    if not path.exists() and not ResultsStore(path).results_dir.is_dir():    # row files alone are results too
        raise EvaluationError(f"no results database at {path}.", "Run `greenai run` first, or pass --db.")
    try:
        frame = ResultsStore(path).query(args.sql)
    except duckdb.Error as exc:
        raise EvaluationError(f"query failed: {str(exc).splitlines()[0]}", "Check the SQL; tables: experiments, strategies, results, frontier.") from None
    import pandas as pd

    with pd.option_context("display.max_rows", 200, "display.max_columns", 50, "display.width", 200):
        print(frame.to_string(index=False))
    return 0


def cmd_compact(args) -> int:
    from greenai_dagster.core.storage.store import ResultsStore

    path = Path(args.db) if args.db else deployment_store().path
    if not path.exists() and not ResultsStore(path).results_dir.is_dir():
        raise EvaluationError(f"no results database at {path}.", "Run `greenai run` first, or pass --db.")
    done = ResultsStore(path).compact()
    print(f"folded {done['files_folded']} row files into {path} (results_compacted: {done['rows_in_table']} rows); "
          f"removed {done['temp_files_removed']} stale temp files")
    return 0


def cmd_benchmarks(args) -> int:
    for row in availability():
        print(f"{row['name']:<22} {row['source']:<18} {row['tasks']:>3} tasks  {row['status']}")
    return 0


def cmd_cancel(args) -> int:
    from greenai_dagster.api import service

    try:
        state = service.cancel(args.job, args.dagster_url)
    except service.NotFound as exc:
        raise EvaluationError(str(exc), "List experiments with: greenai query \"SELECT name, status FROM experiments\"")
    except service.Unavailable as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{state['experiment'] or args.job}: {state['status']} after {state['progress']['episodes_completed']} "
          "episodes; results written so far are kept")
    return 0


def cmd_doctor(args) -> int:
    from greenai_dagster.core import selftest
    from greenai_dagster.core.runtimes import verdicts

    machine = verdicts.machine_fingerprint()
    print(f"machine: {machine['cpu']} ({os.cpu_count()} cores, AMX {'yes' if machine['amx'] else 'no'}); "
          f"llama.cpp build {machine['llama_cpp_build'] or 'not installed'}")
    rows = selftest.run_all(data_root() / "selftest", threads=args.threads or None)
    failed = sorted({r["runtime"] for r in rows if not r["passed"]})
    relied_on = [r for r in failed if r in selftest.DEFAULT_RUN_RUNTIMES]
    print(f"{len(rows) - sum(not r['passed'] for r in rows)} of {len(rows)} checks passed"
          + (f"; failed here, left out of serving: {', '.join(failed)}" if failed else "")
          + f" (verdicts in {verdicts.cache_file()})")
    return 1 if relied_on else 0


def cmd_export(args) -> int:
    store = deployment_store()
    row = store.result(f"{args.experiment}/{args.strategy_id}")
    if row is None or not row.get("checkpoint_path") or not Path(row["checkpoint_path"]).is_dir():
        raise EvaluationError(f"no checkpoint for {args.experiment}/{args.strategy_id}.",
                              "List them with: greenai query \"SELECT experiment, strategy_id FROM results\"")
    folder = Path(row["checkpoint_path"])
    if args.format == "gguf":
        from greenai_dagster.core.export import export_gguf

        out = export_gguf(folder, Path(args.output), args.gguf_type)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); serve it with llama.cpp "
              f"(python -m llama_cpp.server --model {out})")
        return 0
    if args.format != "checkpoint":
        from greenai_dagster.core.export import export_autoround
        from greenai_dagster.core.models.loading import resolve_model_path

        experiment = store.experiment(args.experiment)
        steps = json.loads((folder / "greenai_variant.json").read_text())["strategy"]["steps"]
        folder = export_autoround(resolve_model_path(experiment["model"]), steps, args.format,
                                  Path(tempfile.mkdtemp()) / args.format)
    try:
        with tarfile.open(args.output, "w:gz") as archive:
            archive.add(folder, arcname=args.strategy_id if args.format == "checkpoint" else f"{args.strategy_id}_{args.format}")
    except OSError as exc:
        raise DiskFull(f"cannot write {args.output}: {exc.strerror}.") from exc
    print(f"wrote {args.output} ({Path(args.output).stat().st_size / 1e6:.1f} MB); load it with "
          "greenai_dagster.core.models.checkpoints.load_variant(<unpacked folder>)")
    return 0


def cmd_serve(args) -> int:
    from greenai_dagster.api.server import KeyRequired, serve

    try:
        serve(args.host, args.port, args.api_key, args.dagster_url)
    except KeyRequired as exc:
        print(f"greenai serve: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_llm_server(args) -> int:
    from greenai_dagster.core.search.coordinator.local_server import command
    from greenai_dagster.core.models.default_model import find_packaged_gguf

    model = Path(args.gguf) if args.gguf else find_packaged_gguf()
    print(f"serving {model.name} at http://127.0.0.1:{args.port}/v1 -- in another shell:\n"
          f"  export OPENAI_BASE_URL=http://127.0.0.1:{args.port}/v1 OPENAI_API_KEY=local\n"
          f"  greenai run --coordinator llm ...   (or config: \"llm_base_url\", \"llm_model\": \"{model.stem}\")", flush=True)
    os.execv(sys.executable, command(model, port=args.port, threads=args.threads))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    handlers = {"run": cmd_run, "analyze": cmd_analyze, "query": cmd_query, "export": cmd_export,
                "llm-server": cmd_llm_server, "serve": cmd_serve, "compact": cmd_compact,
                "benchmarks": cmd_benchmarks, "sweep": cmd_sweep, "doctor": cmd_doctor, "cancel": cmd_cancel}
    try:
        return handlers[args.command](args)
    except GreenAIError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted; results written so far are kept. Re-run with the same --name to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
