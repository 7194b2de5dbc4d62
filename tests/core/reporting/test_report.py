"""The frontier chart (core/reporting/report.py): accuracy error bars clipped where the figure ends, units on
every axis choice, and a title that says the frontier has more objectives than the two axes."""

from __future__ import annotations

import pytest

from greenai_dagster.core.search.objectives import OBJECTIVES
from tests.core.reporting.test_frontier_text import frontier, row


def test_the_chart_has_accuracy_error_bars_units_and_says_the_frontier_is_multidimensional():
    from greenai_dagster.core.reporting.report import chart_figure

    summary, baseline = frontier()
    rows = [dict(r, is_pareto=r["candidate_key"] in {m["candidate_key"] for m in summary.members})
            for r in [row("ep001_int8_dynamic", 0.0123456789, 20.1, "torch-int8-dynamic"),
                      row("ep002_gptq_w4g64", 0.0456789, 12.3, "llama.cpp", memory_gb=0.11, model_size_gb=0.05)]]
    fig = chart_figure("exp", rows, baseline, summary)
    assert fig.layout.xaxis.title.text == "kl_divergence (nats/token)"
    assert fig.layout.yaxis.title.text == "accuracy (fraction)"
    [pareto] = [t for t in fig.data if t.name == "Pareto-optimal"]
    assert pareto.error_y.visible and list(pareto.error_y.array) == pytest.approx([1.96 * 0.0503] * 2)
    assert list(pareto.error_y.arrayminus) == pytest.approx([1.96 * 0.0503] * 2)
    # an interval is clipped where the figure ends: accuracy 0.95 +- 0.098 stays below 1, KL above 0
    edge = chart_figure("exp", [dict(rows[0], accuracy=0.95, kl_divergence=0.001, is_pareto=True)], None, summary)
    [point] = [t for t in edge.data if t.name == "Pareto-optimal"]
    assert point.error_y.array[0] == pytest.approx(0.05) and point.error_y.arrayminus[0] == pytest.approx(1.96 * 0.0503)
    assert point.error_x.arrayminus[0] == pytest.approx(0.001) and point.error_x.array[0] == pytest.approx(1.96 * 0.001)
    menus, labels = fig.layout.updatemenus, fig.layout.annotations      # the axis menus sit under the title
    assert all(m.y > 1 and m.yanchor == "bottom" for m in menus) and fig.layout.margin.t >= 200
    assert menus[0].x > labels[0].x and menus[1].x > labels[1].x
    assert pareto.cliponaxis is False and fig.layout.xaxis.automargin and fig.layout.yaxis.automargin
    title = fig.layout.title.text
    assert "Frontier over 4 objectives" in title and "not a frontier member" in title and "95%" in title
    # every axis choice in the dropdowns carries its unit
    for menu in fig.layout.updatemenus:
        for button in menu.buttons:
            name = button.label
            titled = button.args[1].get("xaxis.title.text") or button.args[1].get("yaxis.title.text")
            assert titled == f"{name} ({OBJECTIVES[name].unit})"
