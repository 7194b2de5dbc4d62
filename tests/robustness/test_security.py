"""Security (issue 13): hostile checkpoints, generated code, remote code, model ids, secrets."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from greenai_dagster.core.errors import ModelLoadError
from greenai_dagster.core.models.checkpoints import INT8_STATE_FILE, VARIANT_FILE, load_variant

from tests.conftest import REPO


class _Payload:
    """Unpickling this calls Path.touch(marker): what a hostile checkpoint would do (with worse code)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _int8_folder(tiny_model_dir: Path, folder: Path) -> Path:
    """A checkpoint folder that looks like one of ours (config, tokenizer, int8 marker file)."""
    shutil.copytree(tiny_model_dir, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    (folder / VARIANT_FILE).write_text(json.dumps({"format": "torch_int8_dynamic"}))
    return folder


@pytest.mark.parametrize("writer", ["torch_save", "plain_pickle"])
def test_a_malicious_int8_checkpoint_is_refused_and_runs_nothing(tiny_model_dir, tmp_path, writer):
    marker = tmp_path / "pwned"
    folder = _int8_folder(tiny_model_dir, tmp_path / "hostile")
    state = {"model.embed_tokens.weight": torch.zeros(2), "evil": _Payload(marker)}
    if writer == "torch_save":          # the zip format torch.save writes
        torch.save(state, folder / INT8_STATE_FILE)
    else:                               # a bare pickle stream under the same name
        (folder / INT8_STATE_FILE).write_bytes(pickle.dumps(state))
    assert not marker.exists()
    with pytest.raises(ModelLoadError) as err:
        load_variant(folder)
    assert err.value.code == "E002" and "refused to load" in str(err.value) and "not a plain tensor file" in str(err.value)
    assert not marker.exists(), "unpickling ran the payload"


def test_the_payload_would_run_under_a_full_unpickler(tmp_path):
    """The planted file is a real attack: torch.load(weights_only=False), what main used, runs it."""
    marker = tmp_path / "pwned"
    torch.save({"evil": _Payload(marker)}, tmp_path / "x.pt")
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert marker.exists()


def test_int8_round_trip_still_loads_with_the_weights_only_unpickler(tiny_model, tiny_spec, tmp_path):
    from greenai_dagster.core.models.checkpoints import load_int8_state, save_variant
    from greenai_dagster.core.compress import apply_strategy
    from greenai_dagster.core.formats.int8_dynamic import int8_dynamic_record
    from greenai_dagster.core.strategy import Step, Strategy, validate_strategy

    model, tokenizer = tiny_model
    strategy = validate_strategy(Strategy("s", [Step("int8", {})]), tiny_spec)
    quantized, _, fmt = apply_strategy(model, tokenizer, strategy, tiny_spec)
    save_variant(quantized, tokenizer, tmp_path / "v", fmt, {})
    state = load_int8_state(tmp_path / "v" / INT8_STATE_FILE)
    assert any(k.endswith("_packed_params._packed_params") for k in state)
    reloaded, _ = load_variant(tmp_path / "v")
    layer = quantized.model.layers[0].self_attn.q_proj
    served = int8_dynamic_record(reloaded.model.layers[0].self_attn.q_proj)
    assert torch.equal(served["q"], layer.weight().int_repr())


def test_no_full_unpickler_anywhere_in_the_package():
    """Every tensor file is read with safetensors or torch.load(weights_only=True); nothing calls pickle/joblib."""
    import re

    root = REPO / "greenai_dagster"
    offenders = []
    for path in root.rglob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"torch\.load\((.*?)\)\s*$", text, re.MULTILINE):
            if "weights_only=True" not in match.group(1):
                offenders.append(f"{path.name}: {match.group(0)}")
        if re.search(r"^\s*(import pickle|import joblib|from joblib|import dill|import cloudpickle)", text, re.MULTILINE):
            offenders.append(f"{path.name}: imports an unpickler")
        if re.search(r"pickle\.loads?\(|joblib\.load\(|allow_pickle\s*=\s*True", text):
            offenders.append(f"{path.name}: calls an unpickler")
    assert not offenders, offenders


# ---- generated code (HumanEval) runs only after the opt-in, and then in the sandbox ---------------

ADD = {"task_id": "t/0", "prompt": "def add(a, b):\n", "entry_point": "add",
       "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"}


def test_code_benchmarks_are_refused_without_the_opt_in(data_root, tiny_model_dir, capsys):
    from greenai_dagster.cli import main
    from greenai_dagster.core.data import humaneval
    from greenai_dagster.core.data.benchmarks import PreparedBenchmark, prepare_benchmark
    from greenai_dagster.core.settings.config import ExperimentConfig
    from greenai_dagster.core.errors import EvaluationError
    from greenai_dagster.core.evaluation.evaluate import run_lm_eval

    assert ExperimentConfig().allow_code_execution is False
    for source in ("offline", "hub"):
        with pytest.raises(EvaluationError) as err:
            prepare_benchmark("humaneval", source)
        assert err.value.code == "E004" and "--allow-code-execution" in str(err.value)
        assert '"allow_code_execution": true' in str(err.value)
    with pytest.raises(EvaluationError, match="--allow-code-execution"):
        humaneval.passes(ADD, "    return a + b\n")          # outside an opted-in evaluation
    with pytest.raises(EvaluationError, match="--allow-code-execution"):
        run_lm_eval(None, None, PreparedBenchmark("humaneval", ["humaneval_offline"], None, True, executes_code=True),
                    1, 1)
    code = main(["run", "-m", str(tiny_model_dir), "-d", "humaneval", "-e", "1", "-n", "no_opt_in"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("E004:") and "--allow-code-execution" in err and "Traceback" not in err


def test_with_the_opt_in_correct_and_wrong_completions_are_scored(data_root):
    from greenai_dagster.core.data import humaneval
    from greenai_dagster.core.data.benchmarks import prepare_benchmark

    assert prepare_benchmark("humaneval", "offline", allow_code_execution=True).allow_code_execution
    with humaneval.code_execution_allowed():
        assert humaneval.passes(ADD, "    return a + b\n") is True
        assert humaneval.passes(ADD, "    return a - b\n") is False
        assert humaneval.passes(ADD, "    return a +\n") is False                    # a syntax error
        assert humaneval.process_results(ADD, ["    return a + b\n"]) == {"pass@1": 1.0}


def test_the_hub_twin_is_scored_in_the_sandbox_not_by_code_eval(data_root, monkeypatch):
    import yaml

    from greenai_dagster.core.data.benchmarks import prepare_benchmark

    monkeypatch.delenv("HF_ALLOW_CODE_EVAL", raising=False)
    bench = prepare_benchmark("humaneval", "hub", allow_code_execution=True)
    task = yaml.safe_load((Path(bench.include_path) / "humaneval.yaml").read_text().replace("!function ", ""))
    assert bench.tasks == ["humaneval"] and not bench.offline and task["dataset_path"] == "openai/openai_humaneval"
    assert task["process_results"] == "utils.process_results" and task["generation_kwargs"]["max_gen_toks"] == 1024
    assert "core.data.humaneval import process_results" in (Path(bench.include_path) / "utils.py").read_text()
    assert "HF_ALLOW_CODE_EVAL" not in __import__("os").environ


def _run(completion, timeout_s=3.0):
    from greenai_dagster.core.data import humaneval

    with humaneval.code_execution_allowed():
        return humaneval.run(ADD, completion, timeout_s=timeout_s)


def test_an_infinite_loop_is_killed_at_the_wall_time_limit():
    import time

    started = time.perf_counter()
    outcome = _run("    while True:\n        pass\n", timeout_s=2.0)
    assert outcome.status == "timeout" and not outcome.passed
    assert time.perf_counter() - started < 6.0


def test_a_huge_allocation_fails_in_the_child_and_leaves_this_process_alone():
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # without the address-space limit this would take memory until the machine swaps or the OOM killer acts
    outcome = _run("    blocks = []\n    while True:\n        blocks.append(bytearray(64 << 20))\n", timeout_s=20.0)
    assert not outcome.passed and outcome.status in ("failed", "killed") and "MemoryError" in outcome.detail
    assert outcome.seconds < 15.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000      # KiB: this process did not grow
    assert _run("    return a + b\n").passed                                           # and still works


def test_the_sandbox_has_no_network_no_secrets_no_processes_and_small_files(monkeypatch):
    import socket
    import threading

    from greenai_dagster.core.machine import sandbox

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []

    def serve():
        for _ in range(40):
            try:
                accepted.append(server.accept())
            except OSError:
                pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        net = _run(f"    import socket\n    socket.create_connection(('127.0.0.1', {port}), 2).sendall(b'x')\n"
                   "    return a + b\n")
    finally:
        thread.join()
        server.close()
    assert not net.passed and not accepted
    assert "unreachable" in net.detail.lower() or "network access" in net.detail
    if sandbox.isolation()["network"].startswith("none"):
        assert "Network is unreachable" in net.detail            # an empty network namespace, not a guard

    monkeypatch.setenv("OPENAI_API_KEY", "sk-sandbox-canary-0123456789")
    env = _run("    import os\n    assert not any('canary' in v for v in os.environ.values())\n    return a + b\n")
    assert env.passed, env.detail
    fork = _run("    import os\n    os.fork()\n    return a + b\n")
    assert not fork.passed and "not allowed" in fork.detail
    spawn = _run("    import subprocess\n    subprocess.run(['true'])\n    return a + b\n")
    assert not spawn.passed and "not allowed" in spawn.detail
    big = _run("    open('big.bin', 'wb').write(b'x' * (64 << 20))\n    return a + b\n")
    assert not big.passed and "File too large" in big.detail
    cwd = _run("    import os\n    assert os.path.basename(os.getcwd()).startswith('greenai_sandbox_')\n"
               "    assert os.environ['HOME'] == os.getcwd()\n    return a + b\n")
    assert cwd.passed, cwd.detail
    forged = _run("    print('0' * 32)\n    import os\n    os._exit(0)\n")   # cannot fake a pass without the nonce
    assert not forged.passed


# ---- remote code stays off; model references are validated -----------------------------------------

REMOTE_CONFIG = '''
from pathlib import Path
Path({marker!r}).touch()          # what a hostile repository's code could do on import
from transformers import LlamaConfig


class TinyRemoteConfig(LlamaConfig):
    model_type = "tiny_remote"
'''


def _remote_code_folder(tiny_model_dir: Path, folder: Path, marker: Path) -> Path:
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="tiny_remote", auto_map={"AutoConfig": "remote_config.TinyRemoteConfig"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "remote_config.py").write_text(REMOTE_CONFIG.format(marker=str(marker)))
    return folder


def test_a_model_shipping_its_own_code_is_refused_unless_the_user_opts_in(tiny_model_dir, tmp_path, capsys):
    from greenai_dagster.cli import main
    from greenai_dagster.core.models.checkpoints import load_variant
    from greenai_dagster.core.models.loading import load_config, load_model_and_tokenizer

    marker = tmp_path / "remote_code_ran"
    folder = _remote_code_folder(tiny_model_dir, tmp_path / "remote", marker)
    for load in (load_config, load_model_and_tokenizer, load_variant):
        with pytest.raises(ModelLoadError) as err:
            load(str(folder))
        assert err.value.code == "E002" and "--trust-remote-code" in str(err.value), load
    code = main(["run", "-m", str(folder), "-e", "1", "-n", "remote_refused", "--show-spec"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("E002:") and "--trust-remote-code" in err
    assert not marker.exists(), "the model's code ran without the opt-in"
    # what --trust-remote-code does: the experiment record's field, passed to the loader
    assert load_config(str(folder), trust_remote_code=True).model_type == "tiny_remote"
    assert marker.exists()


def test_trust_remote_code_is_a_flag_and_a_config_key_off_by_default(tmp_path):
    from greenai_dagster.cli import build_parser
    from greenai_dagster.core.settings.config import ExperimentConfig, load_config

    assert ExperimentConfig().trust_remote_code is False
    args = build_parser().parse_args(["run", "--trust-remote-code", "--allow-code-execution"])
    assert args.trust_remote_code is True and args.allow_code_execution is True
    assert build_parser().parse_args(["run"]).trust_remote_code is None
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"trust_remote_code": True}))
    assert load_config({}, str(path)).trust_remote_code is True


@pytest.mark.parametrize("ref", ["", "   ", "../../etc", "/etc", "/nonexistent/model", "~/nope", "a/b/c",
                                 "org/..", "bad..name", "org/-name", "x" * 200, "model\x00", " gpt2", "C:\\models\\x",
                                 "org/name?x=1", "https://evil.example/model"])
def test_nonsense_model_references_are_e002_before_anything_is_fetched(ref, monkeypatch):
    from greenai_dagster.core.models import loading

    def no_fetch(*args, **kwargs):
        raise AssertionError("transformers was asked to load a reference that should have been refused")

    monkeypatch.setattr("transformers.AutoConfig.from_pretrained", no_fetch)
    with pytest.raises(ModelLoadError) as err:
        loading.load_config(ref)
    assert err.value.code == "E002"


def test_valid_references_pass_validation(tiny_model_dir):
    from greenai_dagster.core.models.loading import validate_model_ref

    for ref in ("gpt2", "HuggingFaceTB/SmolLM2-135M", "org/model.v1_2-x", str(tiny_model_dir)):
        validate_model_ref(ref)


def test_cli_reports_a_bad_model_path_as_e002(data_root, capsys):
    from greenai_dagster.cli import main

    assert main(["run", "-m", "../../etc", "-e", "1", "-n", "bad_model"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("E002:") and "Traceback" not in err


# ---- secrets never reach logs, strategy files, DuckDB, metadata, reports or error messages ---------

OPENAI_KEY = "sk-LEAKCANARY-7f3a9c1e5b2d4f6a8c0e"
HF_TOKEN = "hf_LEAKCANARYabcdefghijklmnop"
CUSTOM = "LEAKCANARY-custom-secret-1234"


def _leaks(text: str) -> list[str]:
    return [s for s in (OPENAI_KEY, HF_TOKEN, CUSTOM, "LEAKCANARY") if s in text]


def test_no_secret_reaches_any_output_of_a_run(data_root, tiny_model_dir, tiny_benchmark, monkeypatch, capfd):
    """A run with the llm coordinator against a local server that echoes the key back (in an error and in
    its reasoning, as a compromised or prompt-injected model could): every file the run wrote, every
    DuckDB table, and everything printed must be free of the key."""
    import duckdb
    from tests.core.search.coordinator.test_coordinator import FakeChatServer, chat
    from tests.dagster.test_experiment_run import FAST_EVAL

    from greenai_dagster.core.settings.config import ExperimentConfig
    from greenai_dagster.core.storage.paths import duckdb_path
    from greenai_dagster.runner import run_experiment

    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    monkeypatch.setenv("MY_SERVICE_TOKEN", CUSTOM)
    hostile = json.dumps({"steps": [{"method": "int8", "params": {}}],
                          "reasoning": f"int8 is cheap. (key {OPENAI_KEY}, token {HF_TOKEN}, {CUSTOM}, "
                                       f"Authorization: Bearer {OPENAI_KEY})"})
    refusal = (400, {"error": {"message": f"response_format json_schema unsupported for key {OPENAI_KEY}"}}, {})
    started = __import__("time").time()
    with FakeChatServer([refusal, chat(hostile)]) as url:
        config = ExperimentConfig(model=str(tiny_model_dir), dataset=str(tiny_benchmark), episodes=1, name="secret_exp",
                                  coordinator="llm", llm_model="m-secret", llm_base_url=url,
                                  output_dir=str(data_root / "experiments"),
                                  eval={**FAST_EVAL, "full_set_for_frontier": False})
        outcome = run_experiment(config, interactive=True)
    assert outcome["termination_reason"] == "max_episodes_reached"
    out, err = capfd.readouterr()
    assert "[Coordinator] Reasoning" in out and "[REDACTED]" in out
    assert not _leaks(out) and not _leaks(err)

    checked = 0
    for path in data_root.rglob("*"):
        if path.is_file() and path.stat().st_mtime >= started - 1:
            data = path.read_bytes()
            assert not any(s.encode() in data for s in (OPENAI_KEY, HF_TOKEN, CUSTOM, "LEAKCANARY")), path
            checked += 1
    assert checked > 10                                   # the run's reports, checkpoints, logs, DuckDB
    with duckdb.connect(str(duckdb_path()), read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        dump = "\n".join(str(con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)
        reasoning = con.execute("SELECT reasoning FROM strategies WHERE experiment = 'secret_exp'").fetchone()[0]
    assert not _leaks(dump) and "int8 is cheap" in reasoning and "[REDACTED]" in reasoning
    strategy = json.loads((data_root / "experiments" / "secret_exp" / "episode_001" / "strategy.json").read_text())
    assert "[REDACTED]" in strategy["reasoning"]


def test_no_secret_in_error_messages(monkeypatch, tiny_spec, data_root):
    from tests.core.search.coordinator.test_coordinator import FakeChatServer, state_for

    from greenai_dagster.core.settings.config import load_config
    from greenai_dagster.core.search.coordinator import LlmCoordinator, LlmSettings
    from greenai_dagster.core.errors import EvaluationError, GreenAIError, NetworkError

    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    echo = (500, {"error": {"message": f"upstream failed for Authorization: Bearer {OPENAI_KEY}"}}, {})
    with FakeChatServer([echo]) as url:
        with pytest.raises(NetworkError) as err:
            LlmCoordinator(LlmSettings(model="m-echo", base_url=url)).propose(state_for(tiny_spec))
    assert "HTTP 500" in str(err.value) and not _leaks(str(err.value)) and err.value.__cause__ is None
    assert not _leaks(str(GreenAIError(f"boom {OPENAI_KEY} {HF_TOKEN}", f"remedy {OPENAI_KEY}")))
    for url in (f"https://user:{OPENAI_KEY}@api.example.com/v1", f"https://api.example.com/v1?api_key={OPENAI_KEY}"):
        with pytest.raises(EvaluationError) as err:
            load_config({"llm_base_url": url})
        assert "llm_base_url" in str(err.value) and "OPENAI_API_KEY" in str(err.value) and not _leaks(str(err.value))


def test_the_redactor_masks_keys_but_not_measurements(monkeypatch):
    from greenai_dagster.core.redact import redact, redact_obj

    monkeypatch.setenv("SOME_API_KEY", CUSTOM)
    assert redact(f"x {CUSTOM} y") == "x [REDACTED] y"
    assert redact("sk-abcdefghijklmnopqrst and hf_abcdefghijklmnopqrstuv") == "[REDACTED] and [REDACTED]"
    assert redact("https://bob:hunter2hunter2@h.example/v1") == "https://bob:[REDACTED]@h.example/v1"
    assert redact('"decode_ms_per_token": 10.81, "fidelity_tokens": 4096, token=12345678') == \
        '"decode_ms_per_token": 10.81, "fidelity_tokens": 4096, token=12345678'
    assert redact_obj({"api_key": "abc", "eos_token": "<|endoftext|>", "n": [f"{CUSTOM}"]}) == \
        {"api_key": "[REDACTED]", "eos_token": "<|endoftext|>", "n": ["[REDACTED]"]}


def test_log_records_are_redacted(monkeypatch, capsys):
    import logging

    from greenai_dagster.core.redact import install_log_filter

    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    handler = logging.StreamHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        install_log_filter()
        logging.getLogger("some.library").warning("request with key %s failed", OPENAI_KEY)
    finally:
        root.removeHandler(handler)
    err = capsys.readouterr().err
    assert "request with key [REDACTED] failed" in err and not _leaks(err)
