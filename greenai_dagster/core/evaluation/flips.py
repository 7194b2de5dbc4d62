"""Answer flips against the baseline, and a paired test of the accuracy difference.

Two models can have the same accuracy while answering different items right ("Accuracy is Not
All You Need", Dutta et al. 2024). With per-item correctness of both on the same items, we count
correct->wrong and wrong->correct flips and test the difference with McNemar's exact test (a
binomial test on the discordant pairs): a candidate is "better" or "worse" than the baseline only
when p < ALPHA; otherwise the difference is within noise.

Per-item correctness is stored as {task: "0110..."} (one character per item, in the task file's
order), the same order for every model of an experiment.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

ALPHA = 0.05


@dataclass
class Flips:
    items: int
    correct_to_wrong: int
    wrong_to_correct: int
    flip_rate: float              # share of items whose correctness changed
    accuracy_delta: float         # candidate minus baseline, item-weighted
    delta_stderr: float           # paired standard error of that difference
    p_value: float                # McNemar exact (two-sided)
    verdict: str                  # "better", "worse" or "no difference"

    def to_json(self) -> dict:
        return asdict(self)


def item_correctness(samples: dict[str, list[dict]], metric_of: dict[str, str]) -> dict[str, str]:
    """lm-eval's logged samples -> {task: "0/1 per item, in doc order"}."""
    out = {}
    for task, rows in samples.items():
        metric = metric_of[task]
        ordered = sorted(rows, key=lambda r: r["doc_id"])
        seen, bits = set(), []
        for r in ordered:
            if r["doc_id"] in seen:      # one row per filter; the first is the unfiltered one
                continue
            seen.add(r["doc_id"])
            bits.append("1" if float(r[metric]) > 0.5 else "0")
        out[task] = "".join(bits)
    return out


def compare(baseline: dict[str, str], candidate: dict[str, str]) -> Flips | None:
    """Flips over the items both were scored on (the common prefix of every shared task)."""
    from scipy.stats import binomtest   # scipy costs 0.5 s: the quality gate and `greenai --help` import this module

    n = down = up = 0
    for task, base_bits in baseline.items():
        cand_bits = candidate.get(task)
        if not cand_bits:
            continue
        for b, c in zip(base_bits, cand_bits):
            n += 1
            down += b == "1" and c == "0"
            up += b == "0" and c == "1"
    if n == 0:
        return None
    delta = (up - down) / n
    var = ((up + down) / n - delta * delta) / n
    p_value = binomtest(up, up + down, 0.5).pvalue if up + down else 1.0
    verdict = "no difference" if p_value >= ALPHA else ("better" if up > down else "worse")
    return Flips(items=n, correct_to_wrong=down, wrong_to_correct=up, flip_rate=(up + down) / n,
                 accuracy_delta=delta, delta_stderr=math.sqrt(max(var, 0.0)), p_value=float(p_value), verdict=verdict)


def above_chance(correct: dict[str, str], chance: dict[str, float], alpha: float = ALPHA) -> dict:
    """Is the model above chance on these items? One-sided z-test of the total correct count
    against the sum of per-item chance rates (each task's items share one chance rate)."""
    hits = expected = variance = 0.0
    items = 0
    for task, bits in correct.items():
        p = chance.get(task, 0.0)
        hits += bits.count("1")
        expected += p * len(bits)
        variance += p * (1 - p) * len(bits)
        items += len(bits)
    if items == 0:
        return {"items": 0, "accuracy": None, "chance": None, "z": None, "p_value": 1.0, "above_chance": False}
    z = (hits - expected) / math.sqrt(variance) if variance > 0 else (math.inf if hits > expected else 0.0)
    p_value = 0.5 * math.erfc(z / math.sqrt(2)) if math.isfinite(z) else (0.0 if z > 0 else 1.0)
    return {"items": items, "accuracy": hits / items, "chance": expected / items, "z": z, "p_value": p_value,
            "above_chance": p_value < alpha}


def interval_text(accuracy: float, stderr: float | None, digits: int = 3) -> str:
    """"95% CI low-high", or "95% CI n/a" where lm-eval reported no standard error (stored as null)."""
    if stderr is None or stderr != stderr:
        return "95% CI n/a"
    low, high = accuracy_interval(accuracy, stderr)
    return f"95% CI {low:.{digits}f}-{high:.{digits}f}"


def accuracy_interval(accuracy: float, stderr: float) -> tuple[float, float]:
    """95 % interval from the standard error, clipped to [0, 1]."""
    half = 1.96 * (stderr or 0.0)
    return max(0.0, accuracy - half), min(1.0, accuracy + half)
