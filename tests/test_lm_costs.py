"""Lab 05: the per-layer cost table (Vaswani et al. 2017, Table 1) from the lab's sizes; attention figures."""

from __future__ import annotations

import pytest
import torch

from labkit.errors import LabkitError
from labkit.labs.lm import LAB
from labkit.labs.lm.text import layer_cost_table, layer_costs, plot_attention


def test_layer_costs_follow_table_1_for_the_labs_sizes():
    cfg = LAB.config("full")
    n, d = cfg.bptt, cfg.emsize
    costs = {c["layer"]: c for c in layer_costs(n, d, 3)}
    attention, rnn = costs["self-attention"], costs["recurrence (RNN)"]
    conv, dilated = costs["convolution, kernel 3"], costs["dilated convolution, kernel 3"]
    assert attention["operations"] == 35 * 35 * 200 == 245_000
    assert rnn["operations"] == 35 * 200 * 200 and conv["operations"] == 3 * 35 * 200 * 200
    assert (attention["sequential"], rnn["sequential"], conv["sequential"]) == (1, 35, 1)
    assert (attention["max_path"], rnn["max_path"], conv["max_path"], dilated["max_path"]) == (1, 34, 17, 5)
    # global context is not more parameters: attention's weights do not depend on the window
    assert attention["weights"] == layer_costs(1000, d)[0]["weights"] == 4 * d * d
    # but its operations grow with the square of the window, a recurrence's linearly
    assert layer_costs(2 * n, d)[0]["operations"] == 4 * attention["operations"]
    assert layer_costs(2 * n, d)[1]["operations"] == 2 * rnn["operations"]
    table = str(layer_cost_table(n, d))
    assert "n²·d = 245,000" in table and "max path length" in table


@pytest.mark.parametrize("bad", [{"context": 0}, {"d_model": -1}, {"kernel_size": 1}, {"context": 2.5}])
def test_layer_costs_refuse_bad_sizes(bad):
    args = {"context": 35, "d_model": 200, "kernel_size": 3, **bad}
    with pytest.raises(LabkitError, match="layer_costs"):
        layer_costs(**args)


def test_attention_figure_keeps_its_titles_inside_the_figure():
    """The smoke-size case: two heads, long words; the titles were clipped before."""
    mask = torch.ones(12, 12).triu(1).bool()
    weights = torch.softmax(torch.randn(2, 12, 12).masked_fill(mask, float("-inf")), -1)
    words = [f"w{i}" for i in range(11)] + ["extraordinarily"]
    fig = plot_attention(weights, words, title="attention of layer 1", note="smoke size: synthetic text")
    fig.canvas.draw()
    assert "smoke size" in fig._suptitle.get_text()
    height = fig.bbox.height
    for ax in fig.axes[:2]:
        box = ax.title.get_window_extent()
        assert box.y1 <= height + 0.5 and box.y0 >= 0, "a head's title is outside the figure"
        assert ax.get_title().startswith("head ")
    assert fig._suptitle.get_window_extent().y1 <= height + 0.5
