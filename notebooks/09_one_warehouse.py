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
# # Chapter 9 — One warehouse, many stores: structured policies and how much data they need
#
# **Regenerates** `paper/tables/hdpo_one_warehouse{,_summary,_vs,_data,_data_claim}.{csv,md}`,
# `paper/figures/hdpo_one_warehouse_gaps.png` and `paper/figures/hdpo_one_warehouse_data.png` (HDPO spec §4.4).
#
# One warehouse buys from an unlimited supplier (lead time 3, holding cost 0.3) and ships to $n$ stores with
# lost sales. Store $s$ has normal demand with mean $\mu_s \sim U[2.5, 7.5]$ and coefficient of variation
# $\sim U[0.25, 0.5]$, truncated at 0 and correlated 0.5 across stores, its own costs $h_s \sim U[0.7, 1.3]$,
# $p_s \sim U[6.3, 11.7]$ and lead time $L_s \in \{2, 3\}$ (`hybridrl.networks.one_warehouse_network`: the
# parameters of store $s$ are the same in every instance with at least $s$ stores). The warehouse can only ship
# what it has; if the stores ask for more, the simulator rations it in proportion to their requests.
#
# Nobody knows the optimum. We compare four policies trained by HDPO, and a lower bound:
#
# * **echelon base stock** with proportional rationing — the classical heuristic, its $n + 1$ levels fitted by
#   HDPO;
# * **vanilla** — one network of the whole state (every location's inventory vector), one output per edge; its
#   input and output grow with $n$;
# * **graph network** (in `quick` only in the data study with 5 stores: it is slower per step on a CPU) —
#   message passing over the supply graph with weights shared by all nodes and edges, so it is size-independent
#   and equivariant to relabelling stores;
# * **symmetry-aware** — a network that summarises the whole state into a context vector, then runs *one* store
#   network, shared by all stores, on each store's own state, its parameters and the context (spec §6.2). Stores
#   are alike, so what one store teaches the shared network helps all of them: the paper's claim is that this
#   needs far less data.
#
# The lower bound: whatever the warehouse does, a store can do no better than if it could order any quantity
# from an unlimited supplier at its own lead time (`hybridrl.references.one_warehouse_lower_bound`; its
# derivation is in the function's documentation). The bound drops the warehouse's holding cost and all
# interaction between stores, so the gap to it overstates the gap to the optimum; how much, is part of the
# result.

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
budget = network_experiments.network_budget("one_warehouse", profile)
# the graph network is several times slower per epoch than the vanilla one on a CPU (paper/benchmarks.md): in `quick`
# it runs in the data-efficiency study (5 stores) only
methods = network_experiments.chapter_methods("one_warehouse", profile)
study_methods = network_experiments.chapter_methods("one_warehouse", profile, data_sizes=True)
bounds = pd.DataFrame([dict(n_stores=n, lower_bound=network_experiments.lower_bound("one_warehouse", n, profile))
                       for n in budget.stores])
bounds

# %% [markdown]
# ## Training
#
# Every method, number of stores and training seed is one cached run (`hybridrl.network_experiments`).

# %%
pd.DataFrame({m: vars(c) for m, c in budget.configs.items() if m in methods + study_methods})

# %%
runs = network_experiments.run_network_grid("one_warehouse", profile, methods=methods, workers=workers, force=force)
runs = network_experiments.GridResult(runs.table.merge(bounds, on="n_stores").assign(
    gap_pct=lambda d: 100 * (d.test_cost / d.lower_bound - 1)), runs.history)
summary = stats.interval_table(runs.table, by=["n_stores", "method"], value="gap_pct")
summary.pivot(index="n_stores", columns="method", values="gap_pct")

# %% [markdown]
# The mean gap to the lower bound over seeds (95 % bootstrap interval in `summary`). Is the neural policy at or
# below the tuned heuristic? The difference of mean test costs, with its bootstrap interval over seeds:

# %%
versus = pd.concat([stats.interval_table(runs.table[runs.table.method == m], by=["n_stores"], value="test_cost")
                    .assign(method=m) for m in methods])
versus.pivot(index="n_stores", columns="method", values="test_cost")

# %% [markdown]
# Structured against vanilla, and learned against the heuristic, per number of stores: the second method's mean
# cost over the first's (`gap_pct`, bootstrap interval) and the probability that a run of the first costs less
# than a run of the second (`p_better`, with its interval). Pooled over all numbers of stores, the probability
# that a symmetry-aware run beats a vanilla run on a random instance:

# %%
comparisons = pd.concat([
    stats.compare_methods(runs.table, "symmetry_aware", "vanilla", keys=["n_stores"]).assign(
        comparison="symmetry_aware vs vanilla"),
    stats.compare_methods(runs.table, "symmetry_aware", "echelon_base_stock", keys=["n_stores"]).assign(
        comparison="symmetry_aware vs echelon_base_stock"),
    stats.compare_methods(runs.table, "vanilla", "echelon_base_stock", keys=["n_stores"]).assign(
        comparison="vanilla vs echelon_base_stock"),
], ignore_index=True)
scores = {m: stats.score_matrix(runs.table[runs.table.method == m], task="n_stores", run="seed", value="test_cost")
          for m in ("symmetry_aware", "vanilla")}
pooled = stats.probability_of_improvement(scores["symmetry_aware"].to_numpy(), scores["vanilla"].to_numpy(),
                                          lower_is_better=True)
pooled_row = pd.DataFrame([dict(comparison="symmetry_aware vs vanilla, all store counts", n_stores=pd.NA,
                                p_better=pooled.estimate, p_low=pooled.low, p_high=pooled.high,
                                runs=len(scores["vanilla"]))])
comparisons = pd.concat([comparisons, pooled_row], ignore_index=True)
comparisons

# %%
fig_gaps, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for method, part in summary.groupby("method"):
    ax.errorbar(part.n_stores, part.gap_pct, yerr=[part.gap_pct - part.gap_pct_low, part.gap_pct_high - part.gap_pct],
                marker="o", capsize=3, label=method)
ax.set_xlabel("number of stores")
ax.set_ylabel("test cost over the lower bound (%)")
ax.set_title(f"One warehouse, many stores ({profile})")
ax.legend()

# %% [markdown]
# ## How much data?
#
# With five stores, each policy is trained on fewer and fewer training scenarios (the dev and test scenarios do
# not change, and every run takes the same number of gradient steps: fewer scenarios are revisited more often).

# %%
data = network_experiments.run_network_grid(
    "one_warehouse", profile, methods=study_methods,
    stores=network_experiments.data_study_stores(profile), data_sizes=True, workers=workers, force=force)
data_table = data.table.merge(bounds, on="n_stores").assign(gap_pct=lambda d: 100 * (d.test_cost / d.lower_bound - 1))
efficiency = stats.interval_table(data_table, by=["method", "train_scenarios"], value="gap_pct")
efficiency.pivot(index="train_scenarios", columns="method", values="gap_pct")

# %% [markdown]
# The claim, measured: for each structured policy, the smallest number of training scenarios with which its
# mean gap is at most the vanilla policy's gap with the most data, as a fraction of that most data.

# %%
data_claim = network_experiments.data_needed(efficiency, reference="vanilla")
data_claim

# %% [markdown]
# **What our `quick` runs show** (on the published instances: the reference's own draws, spec §3.1; learning
# rates chosen on the dev set, `hybridrl.network_experiments.NETWORK_BUDGETS`). Both neural policies cost less
# than the tuned echelon heuristic at every number of stores: vanilla by 3.6 %, 3.1 % and 2.3 % with 3, 5 and
# 10 stores, symmetry-aware by 3.6 %, 3.3 % and 2.9 %. The two networks are within 0.02 % of each other with 3
# stores; the symmetry-aware one is ahead by 0.15 % with 5 and by 0.54 % with 10 stores. The gap to the lower
# bound is 12–14 % for every network and 16–17 % for the heuristic: the bound is loose. Its construction gives
# every store unlimited supply and drops the warehouse's own cost, and on a grid fine enough to compute in
# seconds it sat a further 2–7 % below each store's own optimum on the instances we drew before
# (`hybridrl.references.one_warehouse_store_bounds`); the gap is therefore an upper bound on the distance to the
# optimum, not an estimate of it. Trained four times longer (1280 steps instead of 320, at a learning rate of
# 3e-3), the symmetry-aware policy reached 11.1 % with 5 stores and 1024 scenarios, so these `quick` gaps still
# include some under-training.
#
# On data, the **graph network** reaches the vanilla policy's gap with 1024 scenarios (12.1 %) with 16 scenarios
# (11.9 %), a sixty-fourth of the data, and is ahead of both other networks at every size (11.2 % with 1024).
# The **symmetry-aware** policy does not: with 16 scenarios it is at 18.7 % (vanilla 17.5 %), with 256 at 12.2 %,
# and only with all 1024 scenarios is it below the vanilla policy (12.0 %). Its learning rate (1e-2) was chosen
# on the full training set, and with so few scenarios it overfits (seed 0's training cost keeps falling after
# its 96th of 320 epochs while its dev cost rises; seed 1 is unstable early): at the spec's 1e-3 it was at
# 16.0 % with 16 scenarios against the vanilla policy's 19.7 %, but then both stopped 1.5 points short with all
# the data. The paper's v2 claim for the symmetry-aware net (16 times less data) is therefore not reproduced
# here; its v3 claim for the graph network is. How much data the structure saves depends on how good the
# unstructured policy is: before the vanilla policy shared the warehouse's stock by the spec's softmax (it
# capped each store's request with a sigmoid), the symmetry-aware policy matched it with 16 scenarios.
#
# **Where the symmetry-aware net overfits: an ablation of ours.** Only its store head is shared between stores.
# Its context reads the flattened state of every location through a hidden layer of 256 into 256 numbers that
# every store head sees (spec §6.2), so it carries about as many store-specific weights as the vanilla network's
# first layer. Narrowing that context is enough: `symmetry_aware_narrow` is the same net with a context of 8
# numbers from a hidden layer of 32 (`network_experiments.NARROW_CONTEXT`; the width chosen on the dev set with
# 16 scenarios among 1, 8 and 256). It is at 13.6 % with 16 scenarios (the spec's width 18.7 %), at 11.9 %
# with 256 (below the vanilla policy's 12.1 % with all 1024: a quarter of the data suffices) and at 11.8 % with
# all 1024: a lower mean gap than the spec's width at every size, two seeds each. Still a quarter, not the
# paper's sixteenth, and whether the paper's net had a narrower context than the spec records we cannot tell.
# The row is our ablation, not the paper's net: `paper/REPRODUCTION.md` lists it unjudged.

# %%
fig_data, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for method, part in efficiency.groupby("method"):
    ax.errorbar(part.train_scenarios, part.gap_pct,
                yerr=[part.gap_pct - part.gap_pct_low, part.gap_pct_high - part.gap_pct], marker="o", capsize=3,
                label=method)
if len(data_claim):
    ax.axhline(data_claim.reference_gap_pct.iloc[0], color="grey", linestyle="--", linewidth=1,
               label="vanilla with all its data")
ax.set_xscale("log", base=2)
ax.set_xlabel("training scenarios")
ax.set_ylabel("test cost over the lower bound (%)")
ax.set_title(f"One warehouse, 5 stores: data efficiency ({profile})")
ax.legend()

# %% [markdown]
# ## Writing the artifacts

# %%
stamp = reporting.provenance("notebooks/09_one_warehouse.py", profile, started, results=[runs, data])
columns = ["n_stores", "method", "seed", "train_scenarios", "test_cost", "test_se", "lower_bound", "gap_pct",
           "run_seconds"]
reporting.save_table(
    pd.concat([runs.table[columns], data_table[columns]]).drop_duplicates(
        ["n_stores", "method", "seed", "train_scenarios"]).sort_values(["n_stores", "method", "train_scenarios", "seed"]),
    "hdpo_one_warehouse", stamp, digits=4,
    caption="One warehouse, many stores: test cost per store and period of every run (the grid over stores and the "
    "data-efficiency runs) and its gap to the lower bound (independent stores with unlimited supply).")
reporting.save_table(comparisons, "hdpo_one_warehouse_vs", stamp, digits=3,
                     caption="Pairwise comparisons per number of stores: `gap_pct` = the second method's mean cost over "
                     "the first's; `p_better` = P(a run of the first costs less) with a bootstrap interval; the last "
                     "row pools all numbers of stores (symmetry-aware vs vanilla).")
reporting.save_table(summary, "hdpo_one_warehouse_summary", stamp, digits=3,
                     caption="Mean gap to the lower bound over seeds with a 95 % bootstrap interval.")
reporting.save_table(
    data_table[["n_stores", "method", "seed", "train_scenarios", "test_cost", "lower_bound", "gap_pct"]],
    "hdpo_one_warehouse_data", stamp, digits=4,
    caption="Data efficiency with 5 stores: gap to the lower bound against the number of training scenarios "
    "(equal gradient steps).")
reporting.save_table(data_claim, "hdpo_one_warehouse_data_claim", stamp, digits=4,
                     caption="Training scenarios each structured policy needs to match the vanilla policy's gap "
                     "with the most data, as a fraction of that data (target: at most 1/4).")
reporting.save_figure(fig_gaps, "hdpo_one_warehouse_gaps", stamp)
reporting.save_figure(fig_data, "hdpo_one_warehouse_data", stamp)
print(stamp.line())
