"""The generated benchmark: the same items on every machine, each one right by construction, and the
default benchmark made of it with nothing to download."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from greenai_dagster.core.data import generated_tasks
from greenai_dagster.core.data.benchmarks import DEFAULT_BENCHMARK, availability, prepare_benchmark
from greenai_dagster.core.evaluation.evaluate import EvalSettings, accuracy


def test_every_family_is_seeded_distinct_and_well_formed():
    for family in generated_tasks.FAMILIES:
        items = generated_tasks.family_items(family)
        assert items == generated_tasks.family_items(family)                   # seeded: the same every time
        assert len(items) >= 40, family
        assert len({i["question"] for i in items}) == len(items), family        # no repeated question
        for item in items:
            assert len(set(item["choices"])) == len(item["choices"]) >= 2, item
            assert 0 <= item["gold"] < len(item["choices"])
            assert item["question"].startswith("Q: ") and item["question"].endswith("\nA:")


def test_the_items_are_pinned_across_machines():
    """String seeds hash through SHA-512, so the first family's file is byte-identical everywhere; a change
    to a generator must bump FOLDER_NAME (stale task files would otherwise be reused)."""
    digest = hashlib.sha256(json.dumps(generated_tasks.family_items("addition")).encode()).hexdigest()
    assert generated_tasks.family_items("addition")[0]["question"] == "Q: What is 22 + 28?\nA:"
    assert digest == hashlib.sha256(json.dumps(generated_tasks.family_items("addition")).encode()).hexdigest()


def test_answers_are_right_by_construction():
    for item in generated_tasks.family_items("addition"):
        a, b = map(int, re.findall(r"\d+", item["question"]))
        assert item["choices"][item["gold"]] == str(a + b)
    for item in generated_tasks.family_items("larger_number"):
        a, b = map(int, re.findall(r"\d+", item["question"]))
        assert item["choices"][item["gold"]] == str(max(a, b))
    for item in generated_tasks.family_items("unit_conversion"):
        factor, n = (int(x) for x in re.findall(r"\d+", item["question"]))
        assert item["choices"][item["gold"]] == str(factor * n)
    for item in generated_tasks.family_items("alphabetical_first"):
        words = re.findall(r"[a-z]+", item["question"].split(":")[2])
        assert item["choices"][item["gold"]] == min(item["choices"]) and set(item["choices"]) <= set(words)
    for item in generated_tasks.family_items("letter_after"):
        which, given = re.search(r"right (after|before) ([A-Z])", item["question"]).groups()
        assert ord(item["choices"][item["gold"]]) == ord(given) + (1 if which == "after" else -1)


def test_the_default_benchmark_is_generated_offline_and_listed(data_root):
    bench = prepare_benchmark(DEFAULT_BENCHMARK)
    assert bench.offline and bench.tasks and all(t.startswith("gen_") for t in bench.tasks)
    for task in bench.tasks:
        assert (Path(bench.include_path) / f"{task}.yaml").exists()
    row = next(r for r in availability() if r["name"] == DEFAULT_BENCHMARK)
    assert row["status"].startswith("offline: ready") and "nothing to download" in row["status"]


def test_a_users_jsonl_file_is_scored_on_enough_items_to_beat_chance(tiny_model, data_root, tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps({"question": f"Q: {i} + 1 =\nA:", "choices": [str(i + 1), str(i + 2)],
                                        "gold": 0}) + "\n" for i in range(30)))
    bench = prepare_benchmark(str(path))
    assert bench.proxy_limit(EvalSettings(limit_per_task=10)) == 200
    assert bench.proxy_limit(EvalSettings(limit_per_task=None)) is None                     # the full set
    assert bench.proxy_limit(EvalSettings(limit_per_task=10, min_items_for_a_file=None)) == 10
    assert prepare_benchmark(DEFAULT_BENCHMARK).proxy_limit(EvalSettings(limit_per_task=10)) == 10
    model, tokenizer = tiny_model
    result = accuracy(model, tokenizer, bench, EvalSettings(limit_per_task=10, batch_size=8))
    assert len(result.item_correct[bench.tasks[0]]) == 30          # all of a small file, not the 10-item proxy
