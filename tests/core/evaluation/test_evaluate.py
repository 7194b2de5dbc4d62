"""Scores read from lm-eval (core/evaluation/evaluate.py, core/data/task_files.py): a stderr of "N/A" or NaN
is null, not zero, through the macro score to the reports."""

from __future__ import annotations

import pytest


def test_lm_eval_na_stderr_is_null_not_zero():
    from greenai_dagster.core.evaluation.evaluate import macro_score
    from greenai_dagster.core.reporting.report import result_json
    from greenai_dagster.core.data.task_files import task_score
    from greenai_dagster.runner import accuracy_text

    assert task_score({"acc,none": 1.0, "acc_stderr,none": "N/A"}) == ("acc", 1.0, None)
    assert task_score({"acc,none": 0.5, "acc_stderr,none": float("nan")})[2] is None
    results = {"a": {"acc,none": 1.0, "acc_stderr,none": "N/A"}, "b": {"acc,none": 0.5, "acc_stderr,none": 0.1}}
    mean, stderr, _ = macro_score(results, ["a", "b"])
    assert mean == 0.75 and stderr is None
    assert macro_score(results, ["b"])[1] == pytest.approx(0.1)
    row = {"accuracy": 0.75, "accuracy_stderr": None}
    assert accuracy_text(row) == "0.750 (95% CI n/a)" and result_json(row)["accuracy_ci95"] is None
