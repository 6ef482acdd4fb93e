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
# **Regenerates** `paper/tables/hdpo_lost_sales{,_summary,_runs}.{csv,md}`,
# `paper/figures/hdpo_lost_sales_gaps.png` and `paper/figures/hdpo_lost_sales_learning.png`: the HDPO paper's
# first benchmark, a single store with lost sales, where the optimal policy is known (HDPO spec §4.1, §9.1).
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

# %%
# On Colab, install the package first (does nothing anywhere else).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "hybridrl @ git+https://github.com/hybridrl/hybridrl"], check=True)

# %% tags=["parameters"]
profile = "quick"  # "smoke" (seconds, for tests), "quick" (laptop CPU, the default) or "paper" (published scale, GPU)
seeds = None  # training seeds (initialisation, minibatch order); None: the profile's. Data seeds are the paper's
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
# Adam step. Each method is trained once per **training seed** (the profile's seeds: `budget_table` shows how
# many), which changes the initial weights and the minibatch order but not the data. One run says little about
# a method; the spread over seeds is part of the result. Results are cached under `build/cache/`, so re-running
# the notebook is instant unless `force=True`.

# %%
hdpo = experiments.run_grid("lost_sales", "hdpo", profile, seeds=seeds, device=device, force=force)
capped = experiments.run_grid("lost_sales", "capped_base_stock", profile, seeds=seeds, device=device, force=force)
hdpo.table[["seed", "lead_time", "penalty", "test_cost", "test_se", "gap_pct", "best_epoch", "run_seconds"]]

# %% [markdown]
# ## Results
#
# The gap is $100\,(C - C^\star)/C^\star$, with $C$ the policy's expected cost per period in steady state and
# $C^\star$ the DP optimum. We estimate $C$ on the test scenarios with **common random numbers**: the optimal
# (DP) policy is run on the very same scenarios, and since its expected cost is known exactly,
# $\hat C = \bar C_{\text{test}} - \bar C^\star_{\text{test}} + C^\star$ is an unbiased estimate of $C$ whose
# standard error (SE) is several times smaller than that of the raw test mean — small enough to tell gaps of a
# tenth of a percent apart.
#
# Each cell then has one estimate per seed. The table shows their mean and a 95 % bootstrap interval over the
# seeds (`hybridrl.stats.interval_table`; with three seeds it is close to their range), and the number of runs.
# The SE column is the test-set error of a single seed's estimate: the seed-to-seed spread is usually larger.

# %%
results = {"hdpo": hdpo, "capped_base_stock": capped}
table = experiments.seed_table(results)
table["gap_pct"], table["gap_low"], table["gap_high"], table["runs"] = (
    table.hdpo_gap_pct, table.hdpo_gap_low, table.hdpo_gap_high, table.hdpo_runs)
table[["lead_time", "penalty", "optimal", "capped_base_stock", "capped_base_stock_gap_pct", "hdpo", "hdpo_se",
       "gap_pct", "gap_low", "gap_high", "runs"]]

# %% [markdown]
# Over the whole grid: the mean and the interquartile mean (IQM, the mean of the middle half of all
# seed × cell gaps, robust to one bad run) with 95 % stratified-bootstrap intervals (seeds resampled within each
# cell), and the probability that an HDPO run costs less than a capped-base-stock run on a random cell.

# %%
summary = experiments.grid_summary(results, reference="hdpo")
summary

# %%
hd_row, cb_row = summary.set_index("method").loc["hdpo"], summary.set_index("method").loc["capped_base_stock"]
print(f"HDPO: mean gap {hd_row.mean_gap_pct:+.3f}% [{hd_row.mean_gap_low:+.3f}, {hd_row.mean_gap_high:+.3f}], "
      f"worst cell {hd_row.worst_cell_gap_pct:.3f}% ({int(hd_row.runs)} seeds)")
print(f"capped base stock: mean gap {cb_row.mean_gap_pct:+.3f}%; P(HDPO better) = {cb_row.p_reference_better:.2f} "
      f"[{cb_row.p_low:.2f}, {cb_row.p_high:.2f}]")
# no run can beat the optimum by more than the Monte Carlo error (4 standard errors)
assert (hdpo.table.cost_estimate >= hdpo.table.optimal - 4 * hdpo.table.estimate_se).all(), "a run beat the optimum"

# %%
fig = plots.gap_heatmaps(
    table, {"capped_base_stock": "capped base stock (fitted)", "hdpo": "HDPO neural policy"},
    title=f"Lost sales: gap to the DP optimum, mean over {int(hd_row.runs)} seeds (profile {profile})",
)

# %% [markdown]
# ## Learning curves
#
# The dev cost along training, as a gap to the optimal (DP) policy run on the same dev scenarios, aggregated
# over every seed and cell: the IQM with a 95 % stratified-bootstrap band, against policy updates and against
# wall-clock seconds. A capped-base-stock update is much cheaper than an HDPO update (two parameters against
# a network), so the wall-clock panel is the fair comparison. Orders are not rounded on the dev set, and the
# dev trajectories start from a random (fractional) inventory that the integer DP policy handles only
# approximately in their first periods, so the curves can end slightly below zero. The right panel is the
# performance profile of the final test gaps: the fraction of seed × cell runs within τ % of the optimum.

# %%
curves = {"HDPO": experiments.learning_curve(hdpo), "capped base stock": experiments.learning_curve(capped)}
profiles = {"HDPO": experiments.gap_profile(hdpo), "capped base stock": experiments.gap_profile(capped)}
fig_learning = plots.learning_curves(curves, profiles=profiles, title=f"Lost sales ({profile})")

# %% [markdown]
# ## Writing the artifacts

# %%
# every run: one row per method, seed and cell
runs = pd.concat([hdpo.table.assign(method="hdpo"), capped.table.assign(method="capped_base_stock")])
stamp = reporting.provenance("notebooks/01_lost_sales.py", profile, started, device, results=[hdpo, capped])
keys = ["lead_time", "penalty"]
reporting.save_table(
    table[keys + ["optimal", "capped_base_stock", "capped_base_stock_gap_pct", "hdpo", "gap_pct", "gap_low",
                  "gap_high", "runs"]],
    "hdpo_lost_sales",
    stamp,
    markdown=table[keys + ["optimal", "capped_base_stock", "capped_base_stock_gap_pct", "hdpo", "hdpo_se",
                           "gap_pct", "gap_low", "gap_high", "runs"]],
    caption="Lost sales, Poisson(5), h = 1: average cost per period in steady state. `optimal` is the DP "
    "optimum; `hdpo` and `capped_base_stock` are common-random-numbers estimates (test mean minus the optimal "
    "policy's test mean on the same scenarios, plus the optimum) averaged over `runs` training seeds; `hdpo_se` "
    "is one seed's test-set standard error; `gap_pct` is HDPO's gap to the optimum in %, with a 95 % bootstrap "
    "interval over seeds [`gap_low`, `gap_high`].",
    digits=4,
)
reporting.save_table(
    summary, "hdpo_lost_sales_summary", stamp, digits=4,
    caption="Lost sales, the whole grid: gap to the optimum (%) over all seeds × cells, mean and IQM with 95 % "
    "stratified-bootstrap intervals; `p_reference_better` is P(an HDPO run costs less than a run of the row's "
    "method on a random cell) with its interval [`p_low`, `p_high`].",
)
reporting.save_table(
    runs,
    "hdpo_lost_sales_runs", stamp, digits=4,
    markdown=runs[["method", "seed", "lead_time", "penalty", "cost_estimate", "estimate_se", "gap_pct", "best_epoch",
                   "run_seconds"]],
    caption="Lost sales, every run: one row per method, training seed and cell (the data behind the tables).",
)
reporting.save_figure(fig, "hdpo_lost_sales_gaps", stamp)
reporting.save_figure(fig_learning, "hdpo_lost_sales_learning", stamp)
print(stamp.line())
