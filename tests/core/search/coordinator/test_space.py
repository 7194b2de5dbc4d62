"""The search space (core/search/coordinator/space.py): a method list that leaves nothing to search for
this model is E005 naming what is unusable."""

from __future__ import annotations

import pytest

from greenai_dagster.core.errors import CompressionFailed


def test_unusable_method_lists_are_e005_for_the_spec(tiny_spec):
    from greenai_dagster.core.search.coordinator.space import require_usable

    require_usable(tiny_spec, ["gptq", "int8"])
    require_usable(tiny_spec, None)
    for names, says in ((["lora"], "nothing"), (["gptq", "lora"], "no candidate for ['lora']")):
        with pytest.raises(CompressionFailed) as err:
            require_usable(tiny_spec, names)
        assert err.value.code == "E005" and says in str(err.value) and "chains" in str(err.value)
