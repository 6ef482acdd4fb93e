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


def learning_curves(
    curves: dict[str, pd.DataFrame], *, profiles: dict | None = None, ylabel: str = "dev gap to the optimal policy (%)",
    title: str = "", statistic: str = "IQM", xlabel: str = "policy updates",
) -> plt.Figure:
    """Aggregate learning curves with confidence bands, against policy updates and against wall-clock seconds.

    ``curves`` maps a method's label to a curve from :func:`hybridrl.experiments.learning_curve` (columns
    ``step, seconds, estimate, low, high, runs, tasks``). Methods differ in the cost of an update (a pathwise
    update backpropagates through the whole rollout), so the wall-clock panel is the fair comparison. With
    ``profiles`` (label -> :class:`hybridrl.stats.Profile` of the final test gaps) a third panel shows the
    performance profile: the fraction of runs × cells whose gap is at most τ, with its band.
    """
    panels = 3 if profiles else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.4 * panels, 3.6), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (label, c) in enumerate(curves.items()):
        n = f"{int(c.runs.iloc[0])} seeds × {int(c.tasks.iloc[0])} cells"
        for ax, x in zip(axes[:2], ("step", "seconds")):
            ax.plot(c[x], c.estimate, marker="o", ms=3, color=colors[k % len(colors)], label=f"{label} ({n})")
            ax.fill_between(c[x], c.low, c.high, color=colors[k % len(colors)], alpha=0.25, lw=0)
    for ax, label in zip(axes[:2], (xlabel, "wall-clock seconds (median over seeds)")):
        ax.axhline(0, color="k", lw=0.8)
        ax.set_yscale("symlog", linthresh=0.5)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{ylabel}\n{statistic}, 95% stratified bootstrap band")
    axes[0].legend(fontsize=8)
    if profiles:
        ax = axes[2]
        for k, (label, prof) in enumerate(profiles.items()):
            ax.step(prof.thresholds, prof.fraction, where="post", color=colors[k % len(colors)], label=label)
            ax.fill_between(prof.thresholds, prof.low, prof.high, step="post", color=colors[k % len(colors)],
                            alpha=0.25, lw=0)
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlabel("test gap to the optimum τ (%)")
        ax.set_ylabel("fraction of runs × cells with gap ≤ τ")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.set_title("performance profile")
    if title:
        fig.suptitle(title)
    return fig
