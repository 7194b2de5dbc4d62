"""Out of memory: a model that cannot fit is refused before loading (E003, needed vs available), and a
genuine out-of-memory inside a method is E003 for that candidate, recorded, and the sweep goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from greenai_dagster.core.errors import OutOfMemory

from tests.conftest import REPO

ROOT = REPO


def huge_model_folder(folder: Path) -> Path:
    """A 70B-class Llama as a config only: no weight file exists, so anything that tried to load it
    would fail differently (E002); the refusal must come from the estimate."""
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=128256, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                num_attention_heads=64, num_key_value_heads=8).save_pretrained(folder)
    return folder


def test_the_estimate_refuses_a_model_that_cannot_fit_before_loading(tmp_path, data_root, tiny_benchmark):
    from greenai_dagster.core.settings.config import ExperimentConfig
    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.models.memory import available_bytes, parameter_count
    from greenai_dagster.core.pipeline import validate_inputs
    from transformers import AutoConfig

    folder = huge_model_folder(tmp_path / "huge")
    params = parameter_count(AutoConfig.from_pretrained(folder))
    assert 69e9 < params < 72e9                                    # counted on the meta device, nothing allocated
    with pytest.raises(OutOfMemory) as err:
        load_model_and_tokenizer(str(folder))
    text = str(err.value)
    assert text.startswith("E003: ") and "needs about" in text and "GiB is available" in text, text
    needed = float(text.split("needs about ")[1].split(" GiB")[0])
    available = float(text.split("; ")[1].split(" GiB")[0])
    assert needed == pytest.approx(params * 4 * 1.1 / 1024**3, rel=0.01) and available < needed
    assert available == pytest.approx(available_bytes("cpu") / 1024**3, rel=0.5)

    # `greenai run` refuses it before the experiment exists (validate_inputs runs first)
    config = ExperimentConfig(model=str(folder), dataset=str(tiny_benchmark), output_dir=str(tmp_path / "exp"))
    with pytest.raises(OutOfMemory, match=r"^E003: .*needs about .* GiB is available"):
        validate_inputs(config)
    from greenai_dagster.cli import main

    assert main(["run", "-m", str(folder), "-d", str(tiny_benchmark), "-n", "huge", "-o", str(tmp_path / "exp")]) == 1
    from greenai_dagster.core.storage.paths import duckdb_path
    from greenai_dagster.core.storage.store import ResultsStore

    assert ResultsStore(duckdb_path()).experiment("huge") is None and not (tmp_path / "exp" / "huge").exists()


def test_a_model_that_fits_is_not_refused(tiny_model_dir):
    from greenai_dagster.core.models.loading import load_config
    from greenai_dagster.core.models.memory import check_fits

    check_fits(str(tiny_model_dir), load_config(str(tiny_model_dir)), "cpu", torch.float32)


# A method that really runs out of memory: GPTQ builds a Hessian of in_features^2 float32 per layer; a
# model whose MLP is 16384 wide (down_proj: a 1 GiB Hessian, 4 MiB of weights) under an address-space
# limit of what the process already uses plus 512 MiB cannot get it.
CHILD = """
import json, resource, sys
import psutil
from greenai_dagster.core import pipeline
from greenai_dagster.core.errors import GreenAIError
from greenai_dagster.core.experiment import open_experiment
from greenai_dagster.core.models.loading import load_model_and_tokenizer
from greenai_dagster.core.storage.store import ResultsStore
import llmcompressor  # noqa: F401  (imported before the limit: imports are not what is measured)

store = ResultsStore(sys.argv[1])
load_model_and_tokenizer(sys.argv[2])     # warm every library once ...
store.strategy(sys.argv[3])               # ... and DuckDB (its first connection reserves ~600 MiB of address space)
exp = open_experiment(store, "oom")
limit = psutil.Process().memory_info().vms + 512 * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
try:
    pipeline.compress_candidate(store, exp, sys.argv[3])
    print(json.dumps({"raised": None}))
except GreenAIError as exc:
    print(json.dumps({"raised": exc.code, "message": str(exc)}))
"""


def test_a_real_oom_inside_a_method_is_e003_recorded_and_the_sweep_goes_on(tmp_path, tiny_benchmark):
    from tests.conftest import build_tiny_model

    from greenai_dagster.core import pipeline
    from greenai_dagster.core.settings.config import ExperimentConfig
    from greenai_dagster.core.search.coordinator import make_coordinator
    from greenai_dagster.core.decide import decide_next, termination_reason
    from greenai_dagster.core.experiment import open_experiment
    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.reporting.report import write_json
    from greenai_dagster.core.methods.assess import build_spec
    from greenai_dagster.core.storage.store import ResultsStore
    from greenai_dagster.core.strategy import Strategy

    model_dir = tmp_path / "wide"
    build_tiny_model(model_dir, hidden=64, layers=1)
    config_file = model_dir / "config.json"                           # widen the MLP, re-save real weights
    from transformers import AutoModelForCausalLM, LlamaConfig

    wide = LlamaConfig(**{**json.loads(config_file.read_text()), "intermediate_size": 16384})
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(wide).save_pretrained(model_dir)

    store = ResultsStore(tmp_path / "r.duckdb")
    config = ExperimentConfig(model=str(model_dir), dataset=str(tiny_benchmark), episodes=3, name="oom",
                              output_dir=str(tmp_path / "exp"), compression_methods=["gptq", "int8"])
    store.create_experiment("oom", config.model, config.dataset, config.model_dump(), config.output_dir)
    model, _ = load_model_and_tokenizer(str(model_dir))
    spec = build_spec(str(model_dir), model, str(model_dir))
    write_json(pipeline.experiment_dir(store, "oom") / "model_spec.json", spec.to_json())
    strategy = Strategy.from_json({"strategy_id": "ep001_gptq", "steps": [{"method": "gptq", "params": {
        "bits": 4, "group_size": 64, "num_calibration_samples": 4, "calibration_seq_len": 32}}]})
    store.add_strategy("oom/ep001_gptq", "oom", 1, strategy.to_json())

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "r.duckdb"), str(model_dir), "oom/ep001_gptq"],
                           capture_output=True, text=True, env=env, timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    outcome = json.loads(child.stdout.strip().splitlines()[-1])
    assert outcome["raised"] == "E003", outcome
    assert "gptq ran out of host memory" in outcome["message"] and "Traceback" not in child.stdout

    record = store.strategies("oom")[0]
    assert record["status"] == "failed" and record["error"].startswith("E003: gptq ran out of host memory")
    assert not (pipeline.experiment_dir(store, "oom") / "episode_001" / "model").exists()
    assert store.results("oom") == []
    # the sweep goes on: one failure does not end it, and the next proposal is another strategy
    assert termination_reason(store, open_experiment(store, "oom")) is None
    decision = decide_next(store, open_experiment(store, "oom"), make_coordinator("planner", seed=0))
    assert decision.termination_reason is None and decision.episode == 2
    assert decision.proposal.strategy.label() != strategy.label()
