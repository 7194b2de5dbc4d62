"""Shared fixtures: a real tiny Llama built from a config (with a BPE tokenizer trained on the
packaged corpus), a tiny multiple-choice benchmark, and an isolated data root per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
"""The repository root, for tests that read its files (README, benchmarks/, deploy/) or run from it."""


def cli(argv, capsys):
    """`greenai ARGV` in this process: its exit code and captured output, which must hold no traceback."""
    from greenai_dagster.cli import main

    code = main(argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "Traceback" not in out.out
    return code, out


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("greenai_data")
    os.environ["GREENAI_DATA"] = str(root)
    os.environ["DAGSTER_HOME"] = str(root / "dagster_home")
    (root / "dagster_home").mkdir()
    (root / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return root


def build_tiny_tokenizer():
    """A real byte-level BPE tokenizer (512 tokens) trained offline on the packaged corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from greenai_dagster.core.data.corpus import calibration_text

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([calibration_text()], trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def build_tiny_model(folder: Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A real (random-weight) Llama with a real BPE tokenizer, saved like any HF checkpoint."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory) -> Path:
    """Six two-way multiple-choice items; gold answers are known to the tests."""
    items = [
        {"question": "2 + 2 =", "choices": ["4", "5"], "gold": 0},
        {"question": "The sky is", "choices": ["green", "blue"], "gold": 1},
        {"question": "Water freezes at zero degrees", "choices": ["Celsius", "Kelvin"], "gold": 0},
        {"question": "The opposite of hot is", "choices": ["warm", "cold"], "gold": 1},
        {"question": "A week has seven", "choices": ["days", "years"], "gold": 0},
        {"question": "Python is a programming", "choices": ["snake", "language"], "gold": 1},
    ]
    path = tmp_path_factory.mktemp("bench") / "tinymc.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


@pytest.fixture()
def tiny_model(tiny_model_dir):
    from greenai_dagster.core.models.loading import load_model_and_tokenizer

    return load_model_and_tokenizer(str(tiny_model_dir))


@pytest.fixture()
def tiny_spec(tiny_model, tiny_model_dir):
    from greenai_dagster.core.methods.assess import build_spec

    return build_spec("tiny", tiny_model[0], str(tiny_model_dir))


@pytest.fixture(scope="session")
def smol_tokenizer_llama(tmp_path_factory):
    """A tiny random Llama (hidden 64, 2 layers, GQA) with the packaged SmolLM2 tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from greenai_dagster.core.models.default_model import find_packaged_gguf

    gguf_path = find_packaged_gguf()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("smolvocab") / "llama"
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def wait_for_dagster(url: str, proc, log_path: Path, timeout_s: float = 240) -> None:
    """Block until the `dagster dev` started as `proc` answers on `url` *and* has loaded its code locations;
    fail with its log if it dies, with the load error if a location fails to load.

    `/server_info` answers before the code server has imported the definitions (torch, transformers: tens
    of seconds on a busy 2-core machine), and a page opened then shows a spinner until they are in. A CI
    run once lost a test to that, so the webserver is asked, through GraphQL, until every location is
    LOADED."""
    import time

    import httpx

    query = ("{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus "
             "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
    deadline = time.time() + timeout_s
    while True:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        try:
            answer = httpx.post(f"{url}/graphql", json={"query": query}, timeout=5).json()
            entries = answer["data"]["workspaceOrError"].get("locationEntries") or []
            failed = [e for e in entries if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"]
            assert not failed, f"a code location failed to load: {failed}"
            if entries and all(e["loadStatus"] == "LOADED" and e["locationOrLoadError"] for e in entries):
                return
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            pass
        assert time.time() < deadline, "dagster dev did not come up (or did not load its code location)"
        time.sleep(1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_dagster(command: list[str], log, env: dict[str, str]):
    """`python -m <command> -w workspace.yaml` (dagster dev, or the webserver alone) on a free port of
    127.0.0.1, from the repository, in its own process group (so `stop_process_group` ends the webserver,
    daemon and code server it starts together); its output goes to the open file `log`. Returns (process,
    url); `wait_for_dagster` says when it has loaded the code."""
    import subprocess
    import sys

    port = free_port()
    env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", *command, "-w", "workspace.yaml", "-h", "127.0.0.1",
                             "-p", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def stop_process_group(proc, timeout_s: float) -> None:
    """SIGTERM to the process group `start_dagster` began, SIGKILL if it has not ended after `timeout_s`."""
    import signal
    import subprocess

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
