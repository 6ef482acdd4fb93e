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
# # Chapter 2 — HDPO on the backlogged grid
#
# **Regenerates** `paper/tables/hdpo_backlogged.{csv,md}`, `paper/tables/hdpo_backlogged_levels.{csv,md}`,
# `paper/figures/hdpo_backlogged_gaps.png` and `paper/figures/hdpo_backlogged_learning.png`: the HDPO paper's
# backlogged single store, where a base-stock policy is optimal (HDPO spec §4.2, §9.2).
#
# Demand is Normal(5, 1.6) clipped at zero; unmet demand is backlogged and charged $p$ in every period it
# waits; $h = 1$. The grid runs to long lead times, $L \in \{1, 4, 7, 10, 15, 20\}$ with
# $p \in \{4, 9, 19, 39\}$, so the neural policy sees up to 20 inventory slots.
#
# Under backlog, the on-hand stock of period $t + L$ after demand is the inventory position after ordering
# in period $t$ minus the demand of periods $t, \dots, t + L$. A base-stock policy that orders up to $S$
# every period therefore pays a newsvendor cost, and the best level is the critical fractile of the demand
# over $L + 1$ periods:
#
# $$ S^\star = F^{-1}_{D[L+1]}\!\Big(\frac{p}{p + h}\Big), \qquad
#    C^\star = h\,\mathbb{E}(S^\star - D[L+1])^+ + p\,\mathbb{E}(D[L+1] - S^\star)^+ . $$
#
# `hybridrl.references.backlog_base_stock` computes both exactly (a numerical convolution of the clipped
# normal). We compare it with a base-stock level fitted by HDPO and with the HDPO neural policy.

# %% tags=["parameters"]
profile = "quick"  # "smoke" (seconds, for tests), "quick" (laptop CPU, the default) or "paper" (published scale, GPU)
seed = 0  # training seed (network initialisation and minibatch order); data seeds are the paper's (57 / 65)
device = "cpu"  # "cpu", "cuda" or "auto"
force = False  # recompute cached results

# %%
import time

import pandas as pd

from hybridrl import experiments, plots, reporting
from hybridrl.reproduction import BACKLOG_OPTIMUM

experiments.check_profile(profile)
started = time.time()
pd.set_option("display.precision", 4)

# %% [markdown]
# ## The exact optimum
#
# The table below is ours; the check compares every cell with the specification's table (HDPO spec §9.2),
# computed independently: they agree to 4 decimals.

# %%
optima = experiments.backlog_optima()
optima["published"] = [BACKLOG_OPTIMUM[(int(L), int(p))] for L, p in zip(optima.lead_time, optima.penalty)]
assert (optima.optimal - optima.published).abs().max() < 5e-4
optima.pivot(index="penalty", columns="lead_time", values="optimal")

# %% [markdown]
# ## Training
#
# The budgets per profile (see Chapter 1 for what each profile means). The base-stock policy has one
# parameter per cell, $S = \mathrm{softplus}(b)$ with $b_0 = 10$; the neural policy is the same MLP as in
# Chapter 1. Demand is continuous here, so orders are not rounded.

# %%
experiments.budget_table("backlogged", profile)

# %%
hdpo = experiments.run_grid("backlogged", "hdpo", profile, seed=seed, device=device, force=force)
base_stock = experiments.run_grid("backlogged", "base_stock", profile, seed=seed, device=device, force=force)

# %% [markdown]
# ## Results
#
# Gaps are relative to the exact optimum $C^\star$. As in Chapter 1, each policy's expected cost is estimated
# on the test scenarios with common random numbers: the optimal base-stock policy runs on the same scenarios,
# and $\hat C = \bar C_{\text{test}} - \bar C^\star_{\text{test}} + C^\star$ (SE: its standard error). The raw
# test means are shown too.

# %%
keys = ["lead_time", "penalty"]
hd = hdpo.table.set_index(keys)
bs = base_stock.table.set_index(keys)
table = pd.DataFrame({
    "optimal": hd.optimal,
    "level": optima.set_index(keys).level,
    "fitted_level": bs.level,
    "base_stock": bs.cost_estimate,
    "base_stock_gap_pct": bs.gap_pct,
    "hdpo_test_cost": hd.test_cost,
    "hdpo_test_se": hd.test_se,
    "hdpo": hd.cost_estimate,
    "hdpo_se": hd.estimate_se,
    "gap_pct": hd.gap_pct,
}).reset_index().astype({"lead_time": int, "penalty": int})
table["hdpo_gap_pct"] = table.gap_pct
table

# %%
print(f"HDPO: mean gap {table.gap_pct.mean():+.3f}%, worst cell {table.gap_pct.abs().max():.3f}%")
print(f"fitted base stock: mean gap {table.base_stock_gap_pct.mean():+.3f}%, "
      f"largest level error {(table.fitted_level - table.level).abs().max():.3f} units")
assert (table.hdpo >= table.optimal - 4 * table.hdpo_se).all(), "a learned policy beat the optimum"

# %% [markdown]
# The fitted base-stock levels next to $S^\star$:

# %%
levels = table[keys].assign(optimal_level=table.level, fitted_level=table.fitted_level,
                            error=table.fitted_level - table.level)
levels.pivot(index="penalty", columns="lead_time", values="error")

# %%
fig = plots.gap_heatmaps(
    table, {"base_stock": "base stock (fitted)", "hdpo": "HDPO neural policy"},
    title=f"Backlog: gap to the optimal base-stock cost (profile {profile})",
)

# %%
fig_learning = plots.learning_curves(hdpo.history, hdpo.table, columns=3, title=f"HDPO on backlog: dev cost relative to the optimal policy ({profile})")

# %% [markdown]
# ## Writing the artifacts

# %%
stamp = reporting.provenance("notebooks/02_backlogged.py", profile, started, device, results=[hdpo, base_stock])
reporting.save_table(
    table[["lead_time", "penalty", "optimal", "base_stock", "hdpo", "gap_pct"]],
    "hdpo_backlogged",
    stamp,
    markdown=table[keys + ["optimal", "base_stock", "base_stock_gap_pct", "hdpo_test_cost", "hdpo_test_se",
                           "hdpo", "hdpo_se", "gap_pct"]],
    caption="Backlog, Normal(5, 1.6) clipped at 0, h = 1: average cost per period in steady state. `optimal` is "
    "the exact optimum; `hdpo_test_cost` ± `hdpo_test_se` the raw test mean of HDPO; `hdpo` ± `hdpo_se` and "
    "`base_stock` (the HDPO-fitted base-stock policy) the common-random-numbers estimates; `gap_pct` is HDPO's "
    "gap to the optimum in %.",
    digits=4,
)
reporting.save_table(levels, "hdpo_backlogged_levels", stamp, caption="Fitted base-stock levels against S*.")
reporting.save_figure(fig, "hdpo_backlogged_gaps", stamp)
reporting.save_figure(fig_learning, "hdpo_backlogged_learning", stamp)
print(stamp.line())
