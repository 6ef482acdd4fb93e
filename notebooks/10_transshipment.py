# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 10 — A transshipment center: HDPO against a lower bound
#
# **Regenerates** `paper/tables/hdpo_transshipment{,_summary}.{csv,md}` and `paper/figures/hdpo_transshipment_gaps.png`
# (HDPO spec §4.5).
#
# A center buys from an unlimited supplier (lead time 3) but **cannot hold stock**: every period it ships all it
# has to $n$ stores (lead time 2), splitting it as the policy asks (`hybridrl.networks.transshipment_network`;
# the simulator ships everything, in proportion to the requests). Stores backlog, with equal costs $h = 1$,
# $p = 4$, and normal demand correlated 0.5 across stores and **not truncated** (a negative demand is a return).
# The only decisions are how much the center orders, and how to split each arrival among the stores — a split
# that cannot be undone once the goods are on their way.
#
# **The lower bound.** Let the stores rebalance their stock freely every period, even into negative allocations:
# then they act as one pooled store facing the sum of their demands, and the order decision is a single-location
# backlog problem whose optimal policy is a base stock on the system's inventory (`hybridrl.references.
# transshipment_lower_bound`, derived in its documentation). Every real policy is a feasible policy of the relaxed
# system, so none can cost less. The bound ignores the cost of committing each allocation two periods ahead, so
# it is not tight: the gap to it is an upper bound on the gap to the optimum.

# %%
# On Colab, install the package first (does nothing anywhere else).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "hybridrl @ git+https://github.com/hybridrl/hybridrl"], check=True)

# %% tags=["parameters"]
profile = "quick"  # "smoke" (seconds, for tests), "quick" (laptop CPU, the default) or "paper" (published scale, GPU)
workers = None  # parallel training processes; None: one per CPU core
force = False  # recompute cached runs

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd

from hybridrl import experiments, network_experiments, reporting, stats

experiments.check_profile(profile)
started = time.time()
pd.set_option("display.precision", 4)
budget = network_experiments.network_budget("transshipment", profile)
methods = network_experiments.chapter_methods("transshipment", profile)  # the graph network: not in quick
bounds = pd.DataFrame([dict(n_stores=n, lower_bound=network_experiments.lower_bound("transshipment", n, profile))
                       for n in budget.stores])
bounds

# %% [markdown]
# ## Training
#
# The vanilla and the symmetry-aware policies, trained by HDPO. We leave out the echelon base-stock heuristic of
# chapter 9: here the center must ship everything it holds, and splitting it in proportion to the stores'
# shortfalls from their levels makes the cost nearly flat in those levels wherever the stores are above them, so
# HDPO barely moves them (in our trials the fitted policy stayed 30 % above the bound, or diverged at the
# chapter-9 learning rate). A fair classical benchmark for this network needs a different allocation rule.

# %%
runs = network_experiments.run_network_grid("transshipment", profile, methods=methods, workers=workers, force=force)
table = runs.table.merge(bounds, on="n_stores").assign(gap_pct=lambda d: 100 * (d.test_cost / d.lower_bound - 1))
summary = stats.interval_table(table, by=["n_stores", "method"], value="gap_pct")
summary.pivot(index="n_stores", columns="method", values="gap_pct")

# %%
summary

# %% [markdown]
# **What our `quick` runs show** (learning rates chosen on the dev set, as in chapter 9). The two policies are
# within 0.2 points of gap of each other everywhere: the symmetry-aware one is ahead by 0.13 at 3 and at 10
# stores, the vanilla one by 0.15 at 5. The gap to the bound grows with the number of stores — about 12.5 %,
# 16.4 % and 19.6 % at 3, 5 and 10 — which is what a
# pooling bound does: the more stores, the more a
# free rebalancing would save, so the bound's slack grows whatever the policy. How much of the gap is the
# policies' own, this bound cannot say.

# %%
fig_gaps, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for method, part in summary.groupby("method"):
    ax.errorbar(part.n_stores, part.gap_pct, yerr=[part.gap_pct - part.gap_pct_low, part.gap_pct_high - part.gap_pct],
                marker="o", capsize=3, label=method)
ax.set_xlabel("number of stores")
ax.set_ylabel("test cost over the lower bound (%)")
ax.set_title(f"Transshipment center ({profile})")
ax.legend()

# %% [markdown]
# ## Writing the artifacts

# %%
stamp = reporting.provenance("notebooks/10_transshipment.py", profile, started, results=[runs])
reporting.save_table(table[["n_stores", "method", "seed", "test_cost", "test_se", "lower_bound", "gap_pct", "run_seconds"]],
                     "hdpo_transshipment", stamp, digits=4,
                     caption="Transshipment center: test cost per store and period of every run and its gap to the "
                     "lower bound (free rebalancing: one pooled store with base stock).")
reporting.save_table(summary, "hdpo_transshipment_summary", stamp, digits=3,
                     caption="Mean gap to the lower bound over seeds with a 95 % bootstrap interval.")
reporting.save_figure(fig_gaps, "hdpo_transshipment_gaps", stamp)
print(stamp.line())
