"""Choosing what to try next, and what is worth keeping.

- `objectives`: every objective the system can optimise or report, named once;
- `gate`: the quality gate a candidate must pass to count;
- `pareto`: dominance, the frontier, hypervolume;
- `coordinator/`: whole-model search, the next strategy to try (planner, random, LLM);
"""
