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
# # Chapter 1 — HDPO on the lost-sales grid
#
# **Regenerates** `paper/tables/hdpo_lost_sales.{csv,md}`, `paper/figures/hdpo_lost_sales_gaps.png` and
# `paper/figures/hdpo_lost_sales_learning.png`: the HDPO paper's first benchmark, a single store with lost
# sales, where the optimal policy is known (HDPO spec §4.1, §9.1).
#
# A store faces Poisson(5) demand. Each period it orders $q_t \ge 0$, which arrives $L$ periods later; demand
# that finds no stock is lost at a penalty $p$ per unit, and stock left over costs $h = 1$ per unit. The grid
# is Zipkin's (2008): $p \in \{4, 9, 19, 39\}$, $L \in \{1, 2, 3, 4\}$. Lost sales make the problem hard: the
# optimal policy depends on the whole pipeline, not only on the inventory position, and base-stock policies are
# no longer optimal.
#
# We compare three things on every cell:
#
# 1. **the optimum**, by dynamic programming over the exact state $(x, q_1, \dots, q_{L-1})$;
# 2. **capped base stock**, $q = \min((S - \mathrm{IP})^+, c)$, a strong heuristic, with $(S, c)$ fitted by
#    the same gradient method;
# 3. **HDPO**: a neural policy (MLP 32×32×32 of the inventory vector) trained by differentiating the simulated
#    cost through the whole rollout.

# %% tags=["parameters"]
profile = "quick"  # "smoke" (seconds, for tests), "quick" (laptop CPU, the default) or "paper" (published scale, GPU)
seed = 0  # training seed (network initialisation and minibatch order); data seeds are the paper's (57 / 65)
device = "cpu"  # "cpu", "cuda" or "auto"
force = False  # recompute cached results

# %%
import time

import pandas as pd

from hybridrl import experiments, plots, reporting
from hybridrl.reproduction import LOST_SALES_OPTIMUM  # the published values (HDPO spec §9.1)

experiments.check_profile(profile)
started = time.time()
pd.set_option("display.precision", 4)

# %% [markdown]
# ## The optimum by dynamic programming
#
# With $x$ the on-hand stock after this period's arrivals and $q_i$ the order arriving in $i$ periods, the
# long-run average cost $g$ and relative values $V$ solve
#
# $$ g + V(x, q_1, \dots, q_{L-1}) = h\,\mathbb{E}(x - D)^+ + p\,\mathbb{E}(D - x)^+
#    + \min_{q \ge 0} \mathbb{E}_D\, V\big((x - D)^+ + q_1, q_2, \dots, q_{L-1}, q\big). $$
#
# The order is chosen *before* the period's demand is seen, so the minimum sits outside the expectation —
# taking it inside would silently shorten the lead time by one period. `hybridrl.references.lost_sales_optimum`
# solves this by relative value iteration; it reproduces Zipkin's published values (the cell after the table
# checks every cell against the specification's table, to 4 decimals).

# %%
optima = experiments.lost_sales_optima()
optima["published"] = [LOST_SALES_OPTIMUM[(int(L), int(p))] for L, p in zip(optima.lead_time, optima.penalty)]
optima.pivot(index="penalty", columns="lead_time", values="optimal")

# %%
assert (optima.optimal - optima.published).abs().max() < 5e-4, "the DP must reproduce the published optimum"

# %% [markdown]
# ## Training budgets
#
# The `paper` profile follows the authors' protocol: 32768 training scenarios of 50 periods, minibatches of
# 8192, Adam at a constant learning rate, dev evaluation every 10 epochs with best-dev model selection and
# early stopping, and a test on 32768 fresh scenarios of 5000 periods whose first 3000 are warm-up. The
# `quick` profile trains all 16 cells at once (stores without a warehouse are independent, so each cell keeps
# its own network) with fewer scenarios, a larger learning rate decayed by a cosine schedule, and a shorter
# test. At test time orders are rounded to integers, as demand is Poisson.

# %%
experiments.budget_table("lost_sales", profile)

# %% [markdown]
# ## Training HDPO and the capped base-stock heuristic
#
# Both are trained by the same loop (`hybridrl.train.fit`): roll the policy out on a minibatch of training
# scenarios, average the cost over stores, periods and scenarios, backpropagate through the simulator, take an
# Adam step. Results are cached under `build/cache/`, so re-running the notebook is instant unless
# `force=True`.

# %%
hdpo = experiments.run_grid("lost_sales", "hdpo", profile, seed=seed, device=device, force=force)
capped = experiments.run_grid("lost_sales", "capped_base_stock", profile, seed=seed, device=device, force=force)
hdpo.table[["lead_time", "penalty", "test_cost", "test_se", "best_epoch", "run_seconds"]]

# %% [markdown]
# ## Results
#
# The gap is $100\,(C - C^\star)/C^\star$, with $C$ the policy's expected cost per period in steady state and
# $C^\star$ the DP optimum. We estimate $C$ on the test scenarios with **common random numbers**: the optimal
# (DP) policy is run on the very same scenarios, and since its expected cost is known exactly,
# $\hat C = \bar C_{\text{test}} - \bar C^\star_{\text{test}} + C^\star$ is an unbiased estimate of $C$ whose
# standard error (SE) is several times smaller than that of the raw test mean — small enough to tell gaps of a
# tenth of a percent apart. Both the raw test cost and the estimate are shown; the CSV reports the estimate.

# %%
keys = ["lead_time", "penalty"]
hd = hdpo.table.set_index(keys)
cb = capped.table.set_index(keys)
table = pd.DataFrame({
    "optimal": hd.optimal,
    "capped_base_stock": cb.cost_estimate,
    "capped_base_stock_gap_pct": cb.gap_pct,
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
print(f"capped base stock: mean gap {table.capped_base_stock_gap_pct.mean():+.3f}%")
# no policy can beat the optimum by more than the Monte Carlo error (4 standard errors)
assert (table.hdpo >= table.optimal - 4 * table.hdpo_se).all(), "a learned policy beat the DP optimum"

# %%
fig = plots.gap_heatmaps(
    table, {"capped_base_stock": "capped base stock (fitted)", "hdpo": "HDPO neural policy"},
    title=f"Lost sales: gap to the DP optimum (profile {profile})",
)

# %% [markdown]
# The learning curves show the dev cost along training, relative to the optimal (DP) policy run on the same dev
# scenarios. Orders are not rounded on the dev set, and the dev trajectories start from a random (fractional)
# inventory that the integer DP policy handles only approximately in their first periods, so the curves can
# end slightly below zero.

# %%
fig_learning = plots.learning_curves(hdpo.history, hdpo.table, columns=4, title=f"HDPO on lost sales: dev cost relative to the optimal policy ({profile})")

# %% [markdown]
# ## Writing the artifacts

# %%
stamp = reporting.provenance("notebooks/01_lost_sales.py", profile, started, device, results=[hdpo, capped])
reporting.save_table(
    table[["lead_time", "penalty", "optimal", "capped_base_stock", "hdpo", "gap_pct"]],
    "hdpo_lost_sales",
    stamp,
    markdown=table[keys + ["optimal", "capped_base_stock", "capped_base_stock_gap_pct", "hdpo_test_cost",
                           "hdpo_test_se", "hdpo", "hdpo_se", "gap_pct"]],
    caption="Lost sales, Poisson(5), h = 1: average cost per period in steady state. `optimal` is the DP "
    "optimum; `hdpo_test_cost` ± `hdpo_test_se` the raw test mean of the HDPO policy; `hdpo` ± `hdpo_se` and "
    "`capped_base_stock` the common-random-numbers estimates (test mean minus the optimal policy's test mean "
    "on the same scenarios, plus the optimum); `gap_pct` is HDPO's gap to the optimum in %.",
    digits=4,
)
reporting.save_figure(fig, "hdpo_lost_sales_gaps", stamp)
reporting.save_figure(fig_learning, "hdpo_lost_sales_learning", stamp)
print(stamp.line())
