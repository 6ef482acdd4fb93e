"""Figures shared by the notebooks (matplotlib; every function returns the figure)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def gap_heatmaps(table: pd.DataFrame, methods: dict[str, str], *, title: str = "") -> plt.Figure:
    """One heatmap per method of the gap (%) to the optimum over the (lead time, penalty) grid.

    ``table`` has columns ``lead_time, penalty`` and, for each key of ``methods``, a gap column
    ``{key}_gap_pct``; ``methods`` maps those keys to panel titles.
    """
    lead_times = sorted(table.lead_time.unique())
    penalties = sorted(table.penalty.unique())
    values = {
        key: table.pivot(index="lead_time", columns="penalty", values=f"{key}_gap_pct").loc[lead_times, penalties]
        for key in methods
    }
    vmax = max(0.5, max(float(np.nanmax(np.abs(v.values))) for v in values.values()))
    fig, axes = plt.subplots(
        1, len(methods), figsize=(4.6 * len(methods) + 1, 0.55 * len(lead_times) + 1.8), squeeze=False,
        sharey=True, layout="constrained",
    )
    for ax, (key, label) in zip(axes[0], methods.items()):
        v = values[key]
        im = ax.imshow(v.values, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
        for i in range(len(lead_times)):
            for j in range(len(penalties)):
                ax.text(j, i, f"{v.values[i, j]:+.2f}", ha="center", va="center", fontsize=9)
        ax.set_xticks(range(len(penalties)), [f"{p:g}" for p in penalties])
        ax.set_yticks(range(len(lead_times)), [str(L) for L in lead_times])
        ax.set_xlabel("penalty p")
        ax.set_title(label)
    axes[0][0].set_ylabel("lead time L")
    fig.colorbar(im, ax=axes[0].tolist(), label="gap to optimum (%)")
    if title:
        fig.suptitle(title)
    return fig


def learning_curves(history: pd.DataFrame, cells: pd.DataFrame, *, title: str = "", columns: int = 4) -> plt.Figure:
    """Dev cost against policy updates, one panel per lead time, one line per penalty.

    The dev cost is shown relative to the optimal policy run on the same dev scenarios (common random numbers),
    in % of the optimum: ``100 (dev_cost - optimal_policy_dev_cost) / optimal``, which removes most of the
    noise of a small dev set. ``history`` is the per-epoch record of :func:`hybridrl.experiments.run_grid`
    (rows with a dev evaluation are used) and ``cells`` its table (``lead_time, penalty, optimal,
    optimal_policy_dev_cost``).
    """
    keys = ["lead_time", "penalty"]
    dev = history.dropna(subset=["dev_cost"]).merge(cells[keys + ["optimal", "optimal_policy_dev_cost"]], on=keys)
    dev = dev.assign(gap=100 * (dev.dev_cost - dev.optimal_policy_dev_cost) / dev.optimal)
    lead_times = sorted(dev.lead_time.unique())
    ncols = min(columns, len(lead_times))
    nrows = -(-len(lead_times) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), sharey=True, squeeze=False)
    for ax, L in zip(axes.flat, lead_times):
        for p, part in dev[dev.lead_time == L].groupby("penalty"):
            ax.plot(part.step, part.gap, marker="o", ms=3, label=f"p = {p:g}")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_yscale("symlog", linthresh=0.5)
        ax.set_title(f"L = {L}")
        ax.set_xlabel("policy updates")
    for ax in axes.flat[len(lead_times):]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("dev cost vs optimal policy (%)")
    axes.flat[len(lead_times) - 1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
