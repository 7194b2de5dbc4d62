"""A model's spec with every compression method's verdict on it.

`core.models.spec.measure_spec` reads shapes and applies the memory formulas; it knows nothing of methods, so
the spec sits below them. Here every registered method is asked whether it can compress this model:
those that cannot are recorded with the reason and left out of the search space (a strategy naming one
is refused with E005 before any work), the others may add a note (e.g. a group size that does not divide
a width), and the preferred methods keep only those that apply.
"""

from __future__ import annotations

from greenai_dagster.core.methods import REGISTRY
from greenai_dagster.core.models.spec import ModelSpec, measure_spec, unreadable


def build_spec(model_name: str, model, checkpoint_path: str | None = None) -> ModelSpec:
    """The spec every step uses: shapes and formulas, then each method's verdict."""
    spec = measure_spec(model_name, model, checkpoint_path)
    try:
        assess(spec, model)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise unreadable(model_name, model, exc) from exc
    return spec


def assess(spec: ModelSpec, model) -> None:
    """Fill `spec.unsupported_methods` and `spec.method_notes`; drop unsupported preferred methods."""
    for name, method in REGISTRY.items():
        reason = method.unsupported(model, spec)
        if reason:
            spec.unsupported_methods[name] = reason
        else:
            note = method.note(model, spec)
            if note:
                spec.method_notes[name] = note
    spec.preferred_methods = [m for m in spec.preferred_methods if m not in spec.unsupported_methods]
