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
# # Chapter 5 — HPO against PPO on the switched linear-quadratic regulator
#
# **Regenerates** `paper/tables/hpo_switched_lqr{,_summary,_vs_ppo,_published,_sample_efficiency}.{csv,md}`,
# `paper/figures/hpo_switched_lqr_learning.png` and `paper/figures/hpo_switched_lqr_gap.png`: the HPO paper's
# second experiment (HPO spec §7.3, §10.5, §10.6).
#
# The state $x \in \mathbb{R}^p$ evolves as $x_{t+1} = \mathrm{clamp}(A x_t + B_{m_t} u_t, \pm 100)$ with cost
# $x_t^\top Q x_t + u_t^\top R u_t$ ($Q = I$, $R = 0.1 I$) over $T = 20$ periods, from $x_0 \sim U[-10, 10]^p /
# \sqrt p$. $A = 1.1 I + 0.05 G_{\mathrm{sym}}$ is open-loop unstable. At every period the controller picks a
# **mode** $m \in \{1, \dots, J\}$ — which of $J$ contiguous groups of actuators is strong ($b = 1$, the others
# $0.15$) — and a continuous control $u \in \mathbb{R}^p$. The mode is the discrete choice, the control the
# continuous action: HPO differentiates the cost through the dynamics for $u$ and uses score-function gradients
# for $m$; PPO treats both by score functions, with Gaussian exploration of $u$ in $p$ dimensions.
#
# **An exact floor.** The paper judged its S-LQR results only against each other. There is no noise in these
# dynamics, so the problem has an exact solution by dynamic programming over modes: for a fixed mode the
# optimal cost-to-go is a quadratic form, and with modes to choose it is the minimum of a *set* of quadratic
# forms, $V_t(x) = \min_{P \in \mathcal H_t} x^\top P x$, where $\mathcal H_t$ collects the Riccati maps
# $\rho_m(P) = Q + A^\top P A - A^\top P B_m (R + B_m^\top P B_m)^{-1} B_m^\top P A$ of every $P \in
# \mathcal H_{t+1}$ and every mode $m$. The set grows as $J^{T-t}$, but a form that lies above another in the
# positive-semidefinite order can never be the minimum, and pruning those keeps it small for $J = 2$
# (`hybridrl.lqr.switched_optimum`: about 140 forms at any $p$ we tried, up to 48). For $J \ge 4$ and $p \ge 3$
# the pruned set still outgrows its cap, and only the bounds remain: the best single fixed mode (above) and a
# relaxation in which every mode acts at once (below).

# %%
# On Colab, install the package first (does nothing anywhere else).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "hybridrl @ git+https://github.com/hybridrl/hybridrl"], check=True)

# %% tags=["parameters"]
profile = "quick"  # "smoke" (seconds, for tests), "quick" (laptop CPU, the default) or "paper" (published grid, GPU)
seeds = None  # algorithm seeds; None: the profile's (data and matrix seeds are fixed, see hybridrl.lqr)
workers = None  # parallel training processes; None: one per CPU core
force = False  # recompute cached runs

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd

from hybridrl import experiments, hpo_experiments, plots, reporting

experiments.check_profile(profile)
started = time.time()
pd.set_option("display.precision", 3)
budget = hpo_experiments.lqr_budget(profile)
pd.DataFrame({m: vars(c) for m, c in budget.configs.items()}).drop(index=["seed"])  # seeds are set per run

# %% [markdown]
# The `paper` profile is the published protocol (HPO spec §8-§9: 4000 updates, networks [512, 512], PPO on the
# raw costs). The `quick` profile trains 800 updates of smaller networks with larger learning rates, and gives
# PPO std-scaled costs (`reward_scaling`): at its learning rate, PPO on the raw costs diverged at $p = 24$.
# The `paper` grid has 4433 runs; until it has all run, the `paper` runs finished so far are set beside the
# published rows in the last section of `paper/REPRODUCTION.md` (chapter 99).
#
# ## What the reference actually solved
#
# In the reference implementation's S-LQR setting the discrete feature has a single sub-range whatever $J$ is,
# and a validation that would have caught it is switched off: the policy's discrete head has **one** option, the
# simulator always applies mode 0, and the score-function terms are identically zero. The sweep that produced
# the published table varies only $J$ — which still changes the actuator *groups* of mode 0. So most published
# rows describe a single-mode system, for which the finite-horizon Riccati controller is exactly optimal. Two
# facts in the published table support this reading (HPO spec §7.3): at $p = 1$ the published cost changes with
# $J$ although nothing in a genuinely switched one-dimensional problem depends on the grouping, and the rows
# $p \in \{8, 16, \dots, 48\}$ — from other sweeps — are much cheaper than their neighbours (e.g. 49.05 at $p = 8$,
# $J = 2$) and are the only ones where PPO falls far behind, as a genuinely switched problem would show.
#
# We therefore run two variants (`hybridrl.lqr.SwitchedLQR(variant=...)`): **switched**, the genuine problem,
# where the mode is a $J$-way choice; and **single_mode**, the reference-compatible one. With one choice ($J =
# 1$ or single-mode), the Riccati controller is the exact optimum, and HPO reduces to HDPO's pathwise gradient.
#
# The table below needs no training: every published row beside our exact single-mode optimum for the same
# $(p, J)$, and, for the switched problem, its exact optimum where the dynamic programme reaches it ($J = 2$),
# the best single fixed mode per trajectory (an upper bound on its optimum) and the relaxed lower bound. Our $A$ follows the spec up to the normalisation of $G_{\mathrm{sym}}$,
# which the reference does not state, so our instances differ from the reference's and the distances mix
# the policy's gap with that difference.

# %%
published = hpo_experiments.published_lqr_comparison(profile, workers=workers)
published.groupby("published_rows").hpo_full_vs_single_mode_optimal_pct.describe()

# %%
published

# %% [markdown]
# The single-mode rows lie mostly within a few percent of our single-mode optimum, on both sides (from −3.5 % to
# +10.7 %, the table's `hpo_full_vs_single_mode_optimal_pct`) — consistent with the same problem on slightly
# different matrices. The switched-like rows lie far *below* the single-mode optimum
# (by 2 % to 30 %) and below our best fixed mode: only switching modes along the trajectory can do that. Where
# the dynamic programme reaches the switched optimum ($J = 2$), the switched-like rows lie 2 % to 5 % *above*
# it, as a good but imperfect policy of the genuine switched problem would — the strongest evidence that those
# rows, and only those, come from runs with a working discrete head.
#
# ## Training HPO and PPO
#
# Each cell of the profile's grid is trained with HPO (full: with the cross term; decentralized: without), and
# with PPO, and with the Gumbel-softmax straight-through baseline (the mode choice relaxed, everything trained
# pathwise through the relaxed dynamics $x' = Ax + \sum_k w_k B_k u_k$; with one choice it is plain pathwise
# training), once per algorithm seed (`budget` above; the practical HPO scheme and the baselines are documented
# in `hybridrl.hpo`). Runs are cached under `build/cache/hpo/` and spread over worker processes.

# %%
runs = hpo_experiments.run_lqr_grid(profile, seeds=seeds, workers=workers, force=force)
references = hpo_experiments.lqr_reference_grid(budget.cells, profile, workers=workers)
table = runs.table.merge(references[hpo_experiments.LQR_CELL + ["optimal"]], on=hpo_experiments.LQR_CELL)
summary = hpo_experiments.method_summary(table).merge(references, on=hpo_experiments.LQR_CELL)
summary

# %% [markdown]
# ## Every method against the exact optimum
#
# With $J = 1$ or the single-mode variant the optimum is the Riccati controller; for the switched cells with
# $J = 2$ it is the dynamic programme over modes. The gap of every method's mean cost to it:

# %%
one_choice = summary[summary.optimal.notna()].assign(gap_to_optimal_pct=lambda d: 100 * (d.test_cost / d.optimal - 1))
one_choice[hpo_experiments.LQR_CELL + ["method", "test_cost", "test_cost_low", "test_cost_high", "runs", "optimal",
                                       "gap_to_optimal_pct"]]

# %% [markdown]
# ## HPO against PPO
#
# Per cell: PPO's mean cost relative to HPO's, and the probability that an HPO run costs less than a PPO run,
# with its bootstrap interval over seeds (`hybridrl.stats.probability_of_improvement`; with two seeds per
# method the interval is coarse — the paper's profile runs eleven).

# %%
vs_ppo = hpo_experiments.compare_methods(table, "hpo_full", "ppo")
vs_gumbel = hpo_experiments.compare_methods(table, "hpo_full", "gumbel_st")
vs_ppo

# %%
vs_gumbel

# %%
switched = vs_ppo[(vs_ppo.variant == "switched") & (vs_ppo.modes > 1)]
fig_gap, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for J, part in switched.groupby("modes"):
    ax.plot(part.dim, part.gap_pct, marker="o", label=f"J = {J}")
ax.axhline(0, color="k", lw=0.8)
ax.set_xlabel("continuous action dimension p")
ax.set_ylabel("PPO cost over HPO cost (%)")
ax.set_title(f"Switched LQR: PPO's gap to HPO ({profile}, mean over seeds)")
ax.legend()

# %% [markdown]
# In our `quick` runs HPO costs less than PPO in every cell, and PPO's gap grows with $p$ (about 0.5 %, 14 % and
# 49 % at $p$ = 2, 8 and 24 with $J = 2$). Where the problem has one choice HPO is within 0.4 % ($J = 1$) and
# 0.7 % (single-mode) of the Riccati optimum, and against the exact switched optimum it is within about 0.15 % at
# $p = 2$, 0.9 % at $p = 8$ and 3.7 % at $p = 24$: the gap PPO leaves is far larger than the one HPO leaves. (With
# 500 updates instead of 800, the single-mode gap was 1.3 %, still falling: these runs stop before convergence.)
# The Gumbel-softmax baseline matches HPO where there is nothing to switch (one choice: it is then plain pathwise
# training) and falls 2.4 % ($p = 8$) and 22 % ($p = 24$) behind where switching matters: the gradient of the
# relaxed dynamics
# $\sum_k w_k B_k u_k$ is not the gradient of the switched system.
#
# ## Learning curves
#
# The dev cost along training relative to the best fixed mode's Riccati cost of the same cell, IQM over seeds
# and switched cells with a 95 % stratified-bootstrap band, against policy updates and wall-clock seconds.

# %%
history = runs.history.merge(references, on=hpo_experiments.LQR_CELL)
history = history[history.variant == "switched"].assign(
    gap=lambda d: 100 * (d.dev_cost / d.best_fixed_mode - 1), cell=lambda d: d.dim.astype(str) + "/" + d.modes.astype(str))
curves = hpo_experiments.learning_curves(history, task="cell")
fig_learning = plots.learning_curves(curves, ylabel="dev cost over best fixed mode (%)",
                                     title=f"Switched LQR ({profile})")

# %% [markdown]
# ## Sample efficiency
#
# Policy updates until the dev cost is within 10 % of the best dev cost any method reached in the same cell
# (the paper's S-LQR target, spec §10.6): median over seeds, never reached = budget + 1, as fine as the dev
# evaluations.

# %%
floors = runs.history.groupby(hpo_experiments.LQR_CELL).dev_cost.min().rename("floor").reset_index()
efficiency = hpo_experiments.updates_to_target(
    runs.history.merge(floors, on=hpo_experiments.LQR_CELL).assign(
        cell=lambda d: "p=" + d.dim.astype(str) + " J=" + d.modes.astype(str) + " " + d.variant),
    task="cell", target_pct=10.0)
efficiency.pivot(index="cell", columns="method", values="median_updates")

# %% [markdown]
# ## Writing the artifacts

# %%
stamp = reporting.provenance("notebooks/05_switched_lqr.py", profile, started, results=[runs])
exact_rows = references[references.optimal.notna()].assign(
    method=lambda d: ((d.variant == "switched") & (d.modes > 1)).map({True: "optimal", False: "riccati"}),
    seed=pd.NA, test_cost=lambda d: d.optimal)
artifact = pd.concat([table, exact_rows], ignore_index=True)
reporting.save_table(
    artifact[["dim", "modes", "variant", "method", "seed", "test_cost", "optimal"]], "hpo_switched_lqr", stamp, digits=3,
    caption="Switched LQR: test cost per trajectory (mean over 1024 test trajectories) of every run; the exact optimum "
    "as `riccati` rows where the problem has one choice (J = 1 or the single-mode variant) and as `optimal` rows "
    "where the dynamic programme over modes reaches it (switched, J = 2); column `optimal` repeats it per row.",
)
reporting.save_table(summary, "hpo_switched_lqr_summary", stamp, digits=3,
                     caption="Switched LQR per cell and method: mean test cost over seeds with a 95 % bootstrap "
                     "interval, and the cell's references (exact optimum, best fixed mode, lower bound).")
reporting.save_table(pd.concat([vs_ppo.assign(comparison="hpo_full vs ppo"),
                                vs_gumbel.assign(comparison="hpo_full vs gumbel_st")]),
                     "hpo_switched_lqr_vs_ppo", stamp, digits=3,
                     caption="The baselines against HPO per cell: `gap_pct` = the baseline's mean cost over HPO's; "
                     "`p_better` = P(an HPO run costs less than a baseline run) with a bootstrap interval "
                     "[`p_low`, `p_high`].")
reporting.save_table(published, "hpo_switched_lqr_published", stamp, digits=3,
                     caption="Every published S-LQR row (HPO spec §10.5) beside our exact single-mode optimum and "
                     "the switched problem's best fixed mode and lower bound for the same (p, J); no training.")
reporting.save_figure(fig_gap, "hpo_switched_lqr_gap", stamp)
reporting.save_figure(fig_learning, "hpo_switched_lqr_learning", stamp)
reporting.save_table(efficiency, "hpo_switched_lqr_sample_efficiency", stamp, digits=3,
                     caption="Policy updates until the dev cost is within 10 % of the best dev cost of any method in "
                     "the cell (median over seeds; never reached = budget + 1) and the fraction of runs that "
                     "reached it.")
print(stamp.line())
