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
# # Chapter 6 — HPO against PPO on joint replenishment
#
# **Regenerates** `paper/tables/hpo_jrp{,_summary,_vs_ppo,_sample_efficiency}.{csv,md}`,
# `paper/figures/hpo_jrp_{gap,learning,sample_efficiency}.png` and, in the `paper` profile,
# `paper/tables/hpo_jrp_batch{16,512}.{csv,md}`: the HPO paper's main experiment (HPO spec §7.2, §10.1–§10.3).
#
# $n$ items share one ordering decision. Each period the planner either orders nothing, or orders any quantities
# $q \in \mathbb{R}^n_+$ and pays a joint fixed cost $F = 64\,n$ (64 per item and order; the scaling is an
# explicit field of `hybridrl.jrp.JointReplenishment`, never applied out of sight). Each item is a backlogged
# store of chapter 2's simulator — Poisson demand with mean $\sim U[6, 14]$, holding cost $h \sim U[0.7, 1.3]$,
# backlog cost $p \sim U[6.3, 11.7]$, lead time 2 — and the metric is the cost per item and period after a
# warm-up of 16 periods.
#
# The fixed cost makes the cost jump at $q = 0$: its pathwise derivative is useless. The hybrid reformulation
# (`hybridrl.hybrid.SubRanges`) makes "order or not" the discrete choice (thresholds $(0, 0, \infty)$, values
# $(0, F)$): choice 0 orders exactly nothing, choice 1 orders $q = \mu\,\mathrm{softplus}(z)$ and pays $F$.
# Given the choice, the cost is smooth in $q$, so HPO differentiates it through the simulator; PPO explores $q$
# with Gaussian noise in $n$ dimensions and sees only costs. The paper's claim: the two tie for few items, and
# PPO falls far behind as $n$ grows.
#
# A third learner shows what the score function buys: the **Gumbel-softmax straight-through** baseline
# (`method="gumbel_st"`, spec §6) relaxes the choice itself — the fixed cost becomes $w_1 F$ with relaxed
# weights $w$ — and trains both networks purely pathwise through that relaxation. Forward it simulates hard
# choices, so its costs are real; its gradient is that of a different, smoothed problem.

# %%
# On Colab, install the package first (does nothing anywhere else).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "hybridrl @ git+https://github.com/hybridrl/hybridrl"], check=True)

# %% tags=["parameters"]
profile = "quick"  # "smoke" (seconds, for tests), "quick" (laptop CPU, the default) or "paper" (published grid, GPU)
seeds = None  # algorithm seeds; None: the profile's (demand seeds 57 / 65 and the item parameters are fixed)
workers = None  # parallel training processes; None: one per CPU core
force = False  # recompute cached runs

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd

from hybridrl import experiments, hpo_experiments, plots, reporting
from hybridrl.reproduction import JRP_PUBLISHED, jrp_sweep_summary

experiments.check_profile(profile)
started = time.time()
pd.set_option("display.precision", 3)
budget = hpo_experiments.jrp_budget(profile)
print(f"items {budget.items}, seeds {budget.seeds}, horizon {budget.horizon} (warm-up {budget.warmup}), "
      f"{budget.n_train} / {budget.n_dev} / {budget.n_test} episodes")
pd.DataFrame({m: vars(c) for m, c in budget.configs.items()}).drop(index=["seed"])  # seeds are set per run

# %% [markdown]
# The `quick` profile departs from the paper's protocol to fit a laptop: episodes of 60 periods instead of 100
# (the first 16 still unreported), 512 training episodes, 200 policy updates of networks [64, 64] instead of
# 1600 updates of [512, 512], and larger learning rates. The `paper` profile is the published protocol.
#
# **Read the quick numbers as a comparison at equal budget, not as converged costs.** With 200 updates HPO is
# close to the published costs for few items (about 35.4 per item and period for $n = 1$, published 34.96) but
# far from them for many (about 55 for $n = 20$, published 39.08): it is still improving when the budget ends
# (600 updates bring $n = 20$ to about 50 in our trials). PPO, given the same updates, is further behind as $n$
# grows, which is the paper's claim; its size at convergence is what the `paper` profile measures.
#
# ## Training
#
# Every number of items is trained with HPO (full and decentralized), PPO and the Gumbel-softmax baseline, once
# per algorithm seed.

# %%
runs = hpo_experiments.run_jrp_grid(profile, seeds=seeds, workers=workers, force=force)
summary = hpo_experiments.method_summary(runs.table, keys=["n_items"])
summary.pivot(index="n_items", columns="method", values="test_cost")

# %%
summary

# %% [markdown]
# ## A classical benchmark
#
# The joint replenishment literature's standard heuristic is the **can-order policy** $(s, c, S)$: when some
# item's inventory position falls to its must-order level $s_i$, a joint order is placed, and every item at or
# below its can-order level $c_i$ is raised to its order-up-to level $S_i$ (`hybridrl.jrp`). With $c = s$ it is
# the independent $(s, S)$ policy, which ignores that the fixed cost is shared. Three scalars set the levels of
# all items from their mean demands (safety stock, order cycle, can-order fraction); they are tuned on the same
# training episodes by a grid and a pattern search, and tested on the same test episodes as the learned
# policies.

# %%
heuristics = hpo_experiments.jrp_heuristic_grid(profile, workers=workers, force=force)
learned = summary[summary.method == "hpo_full"].set_index("n_items").test_cost
heuristics.assign(hpo_full=lambda d: d.n_items.map(learned),
                  hpo_over_heuristic_pct=lambda d: 100 * (d.n_items.map(learned) / d.test_cost - 1))

# %% [markdown]
# The table has a third classical policy, the **fixed-cycle policy**: every $k$ periods a joint order raises
# each item's inventory position to a level $S_i$, and nothing is ordered in between. Its long-run cost has a
# closed form (`hybridrl.jrp.fixed_cycle_policy`): an order placed at $t$ covers the demand of periods $t$ to
# $t + L + j$ at the end of period $t + L + j$, $j = 0, \dots, k - 1$, so item $i$ costs on average
#
# $$g_i(S) = \frac{1}{k} \sum_{j=0}^{k-1} \mathbb{E}\big[h_i (S - D_j)^+ + p_i (D_j - S)^+\big],
# \qquad D_j \sim \mathrm{Poisson}\big((L + 1 + j)\,\mu_i\big),$$
#
# minimised by the critical fractile $p_i / (p_i + h_i)$ of the cycle's mixture of demands, and the joint cost
# $F = 64n$ is paid once a cycle: $64 / k$ per item and period. The best $k$ is found by enumeration. Nothing is
# tuned or simulated, yet it is a feasible policy, so its cost bounds the optimum from above (the tests check
# the closed form against a simulation of the policy, and with $F = 0$ against the base-stock optimum of
# `hybridrl.references`). Here it is simulated on the test episodes like the others (`test_cost`) and its
# exact long-run cost is beside it (`exact_cost`; the two differ by the test episodes' noise and their first
# periods).

# %% [markdown]
# In our `quick` runs the tuned can-order policy is at or below every learned policy at every $n$ — by about
# 1 % or less for few items (against the better learned policy, PPO: 0.3 % at $n = 1$, 1.1 % at $n = 5$), and
# by more than a quarter at $n = 20$ and $50$, where 200 updates leave the learned
# policies far from converged (see the learning curves). The fixed-cycle policy, which tunes nothing, is cheaper
# still from $n = 5$ on (39.2-39.9 against the can-order policy's 39.8-40.8: three shared scalars fit many items
# less well than per-item critical fractiles), but not for one item (36.7 against 35.2: an item alone gains
# from reacting to its own demand). The independent $(s, S)$ policy collapses as $n$ grows:
# each item triggers its own orders and each order pays the whole joint cost. The paper compares against no
# classical heuristic; whether HPO at the published budget beats these policies is a question for the `paper`
# profile, which the batch-16 runs finished so far answer in part (below).

# %% [markdown]
# ### How much the item draws matter
#
# The items' mean demands and costs are drawn from a seed, once per instance. Ours is seed 0; the paper's draws
# cannot be reproduced, so our instance with $n$ items and the paper's are two problems from the same
# distribution, and their costs per item and period differ even under the same policy. By how much? The
# fixed-cycle policy's exact cost is cheap enough to compute for many draws: for every $n$ with a published
# number, its mean and standard deviation over 100 draws of the items, and where our draw stands.

# %%
instances = hpo_experiments.jrp_instances(profile, force=force)
instances.assign(published_hpo_full=lambda d: d.n_items.map(lambda n: JRP_PUBLISHED[n][0]
                                                            if n in JRP_PUBLISHED else float("nan")))

# %% [markdown]
# The spread shrinks like $1/\sqrt{n}$ — averaging over more items — but is wide where the comparisons with
# the paper are made: a standard deviation of about 4 % at $n = 10$, 2.5 % at $n = 30$ and 2 % at $n = 50$, as
# large as the issue's ±2 % tolerance for "HPO within 2 % of the published numbers" (and two independent draws
# differ by $\sqrt{2}$ times that). Our draws are 1-3 % dearer than the average draw for $n \ge 5$ (they share
# their first mean demands, so they are not independent across $n$). The reproduction report prints both beside
# each comparison of HPO-full's cost per item and period with the published one: a difference of a few percent
# there is within what a different draw of the items gives.
#
# The fixed-cycle policy also gives the learned policies a bar on the same instance: it costs about 39.1-39.9
# per item and period on our instances for $n \ge 10$ (above), and the `paper` runs of HPO finished so far
# (batch 16, 1600 updates; `paper/REPRODUCTION.md`) cost 0.3-2.3 % more than it at $n = 10$ to $50$: at the
# paper's budget HPO does not yet beat this classical policy on our instances.

# %% [markdown]
# ## HPO against PPO
#
# PPO's mean cost relative to HPO's per number of items, and the probability that an HPO run costs less than a
# PPO run (bootstrap interval over seeds).

# %%
vs_ppo = hpo_experiments.compare_methods(runs.table, "hpo_full", "ppo", keys=["n_items"])
nocross = hpo_experiments.compare_methods(runs.table, "hpo_full", "hpo_decentralized", keys=["n_items"])
vs_gumbel = hpo_experiments.compare_methods(runs.table, "hpo_full", "gumbel_st", keys=["n_items"])
vs_ppo

# %%
nocross

# %%
vs_gumbel

# %% [markdown]
# The Gumbel-softmax baseline is close to HPO for one item and a few percent behind it beyond: its gradient is
# that of a smoothed problem in which a fraction of the fixed cost buys a fraction of an order.

# %%
fig_gap, ax = plt.subplots(figsize=(6, 4), layout="constrained")
ax.plot(vs_ppo.n_items, vs_ppo.gap_pct, marker="o", label=f"this run ({profile})")
published = pd.DataFrame([dict(n_items=n, gap=100 * (v[2] / v[0] - 1)) for n, v in JRP_PUBLISHED.items()])
ax.plot(published.n_items, published.gap, marker="s", ls="--", color="gray", label="published (spec §10.3)")
ax.axhline(0, color="k", lw=0.8)
ax.set_xlabel("number of items n (continuous action dimension)")
ax.set_ylabel("PPO cost over HPO cost (%)")
ax.set_title("Joint replenishment: PPO's gap to HPO")
ax.legend()

# %% [markdown]
# ## Learning curves
#
# Dev cost per item and period along training, relative to the best dev cost any method reached for the same
# number of items; IQM over seeds and numbers of items with a 95 % stratified-bootstrap band.

# %%
floor = runs.history.groupby("n_items").dev_cost.min().rename("floor")
history = runs.history.merge(floor, on="n_items").assign(gap=lambda d: 100 * (d.dev_cost / d.floor - 1))
curves = hpo_experiments.learning_curves(history, task="n_items")
fig_learning = plots.learning_curves(curves, ylabel="dev cost over the best dev cost (%)",
                                     title=f"Joint replenishment ({profile})")

# %% [markdown]
# ## Sample efficiency
#
# The paper's "scaling law" figures (spec §10.4) count the policy updates a method needs until its dev cost is
# within 5 % of a floor. Our floor is the best dev cost any method reached for the same number of items; the
# count is the median over seeds, a run that never gets there counting as the budget plus one (the paper's
# cap), and it is only as fine as the dev evaluations (every `dev_every` updates).

# %%
efficiency = hpo_experiments.updates_to_target(history, task="n_items", target_pct=5.0)
fig_efficiency, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for method, part in efficiency.groupby("method"):
    ax.plot(part.n_items, part.median_updates, marker="o", label=method)
ax.axhline(efficiency.budget.max() + 1, color="gray", ls=":", label="budget (not reached)")
ax.set_xlabel("number of items n")
ax.set_ylabel("policy updates to within 5 % of the floor (median)")
ax.set_title(f"Joint replenishment: sample efficiency ({profile})")
ax.legend()
efficiency.pivot(index="n_items", columns="method", values="median_updates")

# %% [markdown]
# ## The paper's other sweeps, at their batch sizes
#
# The paper's JRP table (spec §10.3) was trained, despite its label, with batches of **16**: 25 passes over the
# 1024 training scenarios, the same 1600 policy updates as the grid above, for up to $n = 70$ items. Its §10.2
# compares PPO with an HPO reference (the mean of the five best HPO runs) at batches of 128 — the grid above —
# and of **512** (800 passes, again 1600 updates). Only sweeps at those batch sizes compare like for like with
# their numbers, so the `paper` profile runs both (`hpo_experiments.JRP_TABLE_SWEEPS`: 10 seeds; HPO-full,
# decentralized HPO and PPO at batch 16, HPO-full and PPO at batch 512) and sets our numbers beside the
# published ones: at batch 16 the mean, standard deviation and median of each method; at batch 512 the mean of
# the five best HPO runs (`top5`) and each method's mean cost over §10.2's reference. The `quick` profile skips
# them (1600 updates a run are too many for a laptop), so there those rows of `paper/REPRODUCTION.md` are absent;
# the `paper` runs of these sweeps finished so far are judged in the report's last section instead (chapter 99).

# %%
table_sweeps = hpo_experiments.run_jrp_table_grid(profile, workers=workers, force=force)
if not table_sweeps:
    print(f"the {profile!r} profile runs none of these sweeps")
for name, sweep in table_sweeps.items():
    if sweep.table.empty:
        print(f"no run of the {name} sweep is cached")
sweep_summaries = {name: jrp_sweep_summary(name, sweep.table) for name, sweep in table_sweeps.items()
                   if not sweep.table.empty}
sweep_summaries

# %% [markdown]
# ## Writing the artifacts

# %%
stamp = reporting.provenance("notebooks/06_joint_replenishment.py", profile, started, results=[runs])
reporting.save_table(
    pd.concat([runs.table, heuristics.assign(seed=pd.NA)], ignore_index=True)[["n_items", "method", "seed", "test_cost"]],
    "hpo_jrp", stamp, digits=3,
    markdown=pd.concat([runs.table, heuristics.assign(seed=pd.NA)], ignore_index=True)[
        ["n_items", "method", "seed", "test_cost", "test_se", "best_update", "updates", "run_seconds"]],
    caption="Joint replenishment: test cost per item and period (periods ≥ 16) of every run and of the tuned "
    "heuristics (`can_order`, `independent_s_S`, `fixed_cycle`, no seed); joint fixed cost 64·n per order "
    "(`test_se`: standard error over the test episodes).",
)
reporting.save_table(instances, "hpo_jrp_instances", stamp, digits=3,
                     caption="The item draws: the best fixed-cycle policy's exact cost per item and period on our "
                     "instance (item parameter seed 0) and over `draws` draws of the items (seeds 0, 1, ...): mean, "
                     "standard deviation in % of the mean, and our draw against the mean.")
reporting.save_table(summary, "hpo_jrp_summary", stamp, digits=3,
                     caption="Joint replenishment per number of items and method: mean test cost over seeds with a "
                     "95 % bootstrap interval.")
reporting.save_table(pd.concat([vs_ppo.assign(comparison="hpo_full vs ppo"),
                                nocross.assign(comparison="hpo_full vs hpo_decentralized"),
                                vs_gumbel.assign(comparison="hpo_full vs gumbel_st")]),
                     "hpo_jrp_vs_ppo", stamp, digits=3,
                     caption="Per number of items: the second method's mean cost over HPO-full's (`gap_pct`) and "
                     "P(an HPO-full run costs less) with a bootstrap interval [`p_low`, `p_high`].")
reporting.save_figure(fig_gap, "hpo_jrp_gap", stamp)
reporting.save_figure(fig_learning, "hpo_jrp_learning", stamp)
reporting.save_table(efficiency, "hpo_jrp_sample_efficiency", stamp, digits=3,
                     caption="Policy updates until the dev cost is within 5 % of the best dev cost of any method "
                     "(median over seeds; never reached = budget + 1) and the fraction of runs that reached it.")
reporting.save_figure(fig_efficiency, "hpo_jrp_sample_efficiency", stamp)
captions = {
    "batch16": "The sweep of the paper's JRP table (spec §10.3, batch 16): test cost per item and period at a batch "
    "of {batch}, mean over seeds with a 95 % bootstrap interval, standard deviation and median, beside the "
    "published mean (`vs_published_pct`).",
    "batch512": "The batch-512 sweep of spec §10.2: test cost per item and period at a batch of {batch}, mean over "
    "seeds with a 95 % bootstrap interval, standard deviation, median and the mean of the five best runs "
    "(`top5`); `vs_reference_pct` is the mean over §10.2's HPO reference, `published_gap_pct` PPO's published "
    "gap to it.",
}
for name, table_summary in sweep_summaries.items():
    reporting.save_table(table_summary, f"hpo_jrp_{name}", reporting.provenance(
        "notebooks/06_joint_replenishment.py", profile, started, results=[table_sweeps[name]]), digits=3,
        caption=captions[name].format(batch=table_summary.batch.iloc[0]))
print(stamp.line())
