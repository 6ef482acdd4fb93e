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
# # Chapter 7 — The cross term: signal far from the optimum, noise near it
#
# **Regenerates** `paper/tables/hpo_cross_term.{csv,md}`, `paper/tables/hpo_cross_term_checkpoints.{csv,md}` and
# `paper/figures/hpo_cross_term.png`: the HPO paper's gradient study (HPO spec §10.7).
#
# Chapter 4 split the exact gradient of a hybrid policy into three terms,
#
# $$ \nabla J = \underbrace{\mathbb{E}\Big[\sum_t \tfrac{\partial c_t}{\partial \theta_C}\Big]}_{G_{PW}}
#   + \underbrace{\mathbb{E}\Big[\sum_t \nabla_{\theta_D} \log \pi^D(d_t \mid s_t)\,(R_t - b_t)\Big]}_{G_{SF}}
#   + \underbrace{\mathbb{E}\Big[\sum_t \nabla_{\theta_C} \log \pi^D(d_t \mid s_t(\theta_C))\,(R_t - b_t)\Big]}_{G_X}, $$
#
# and the decentralized HPO of chapters 5 and 6 drops the cross term $G_X$: the continuous network follows the
# pathwise term alone. The paper's argument for doing so is that **near a discrete best response the cross term
# is nearly pure noise**. Here is why one may expect it. $G_X$ asks how moving the continuous actions, through
# the states they lead to, changes the *probabilities* of later choices, weighted by how good those choices are.
# Its mean is $\mathbb{E}\big[\sum_t \sum_d \nabla_{\theta_C} \pi^D(d \mid s_t)\,A(s_t, d)\big]$. If the
# discrete policy is a best response, it puts its mass on choices with the lowest cost-to-go; a small change
# of the state either leaves that choice best (the probabilities hardly move) or happens where choices are
# nearly tied (the advantages are nearly zero). Either way the mean is small. But one sampled batch still
# carries $\log\pi^D$'s score times a noisy cost-to-go: its *estimate* is as large as ever. Far from a best
# response the probabilities move where the advantages are large, and the cross term carries signal.
#
# The study measures this along a training run, as the paper did on the joint replenishment problem of
# chapter 6. At frozen checkpoints of an HPO-full run (the same run as chapter 6's) we draw independent batches of
# training episodes and take the continuous and discrete gradients apart on each, in two ways:
#
# * the **exact** estimator (`hybridrl.estimators.mixed_terms`: undiscounted cost-to-go, leave-one-out baseline,
#   one scale): `pathwise`, `cross` and `score_function` are $G_{PW}$, $G_X$ and $G_{SF}$ above;
# * **HPO-full's own first step** (`hybridrl.hpo.hpo_first_terms`), the statistics the paper reports:
#   `pathwise_ppo` is the pathwise loss's gradient (scaled by the costs' standard deviation), `cross_ppo` the PPO
#   surrogate's gradient on $\theta_C$ through the states — the cross term as training actually takes it, on
#   normalised GAE advantages with the learned value network as baseline — and `discrete_ppo` the surrogate's
#   gradient on $\theta_D$. `pathwise_plus_cross_ppo` is the continuous network's whole step.
#
# Then, per term (`hybridrl.estimators.signal_and_noise`):
#
# * **alignment** — the leave-one-out cosine $\frac{1}{M}\sum_i \cos\big(\hat g_i, \frac{1}{M-1}\sum_{j \ne i}
#   \hat g_j\big)$ between one batch's estimate and the mean of the others: near 1, every batch points the
#   same way; near 0, a batch is noise around a small mean;
# * **noise** — $\mathbb{E}\lVert \hat g - \bar g \rVert^2 / \lVert \bar g \rVert^2$, the spread of one batch
#   relative to the mean;
# * **pathwise share** — $\mathbb{E}\lVert \hat g_{PW}\rVert / (\mathbb{E}\lVert \hat g_{PW}\rVert +
#   \mathbb{E}\lVert \hat g_X\rVert)$: how much of the continuous network's step is the pathwise term
#   (`pathwise_share` for the exact terms, `pathwise_share_ppo` for HPO-full's step; only the latter compares
#   with the paper, since the two schemes scale the terms differently).
#
# Distance from the optimum is each checkpoint's dev cost over the best dev cost its run reached (`gap_pct`):
# nobody knows the JRP's optimum, so "near" means near where training ends up, as in the paper.

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

from hybridrl import experiments, hpo_experiments, reporting

experiments.check_profile(profile)
started = time.time()
pd.set_option("display.precision", 4)
study = hpo_experiments.ALIGNMENT_BUDGETS[profile]
study

# %% [markdown]
# ## The checkpoints
#
# One row per checkpoint and run: the dev cost, its gap to the run's best, and the statistics of the three terms.
# Training is exactly chapter 6's HPO-full configuration; the study's own batches use their own random streams,
# so the training run is unchanged by being watched.

# %%
runs = hpo_experiments.run_alignment_grid(profile, workers=workers, force=force)
checkpoints = runs.history
terms = hpo_experiments.ALIGNMENT_TERMS
checkpoints[["n_items", "seed", "update", "dev_cost", "gap_pct", *[f"{t}_alignment" for t in terms],
             "pathwise_share", "pathwise_share_ppo"]]

# %% [markdown]
# ## Near and far
#
# Checkpoints grouped by their gap: the median of each statistic per group, over numbers of items and seeds.

# %%
summary = hpo_experiments.alignment_summary(checkpoints)
summary

# %%
families = {"exact estimator": ("pathwise", "cross", "score_function", "pathwise_share"),
            "HPO-full's step": ("pathwise_ppo", "cross_ppo", "discrete_ppo", "pathwise_share_ppo")}
fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), layout="constrained", sharex=True)
for row, (family, (*names, share)) in zip(axes, families.items()):
    for term, color in zip(names, ("C0", "C3", "C2")):
        for n, part in checkpoints.groupby("n_items"):
            style = dict(color=color, marker="o" if n == min(study.items) else "s", ls="none", alpha=0.7)
            row[0].plot(part.gap_pct.clip(lower=1e-2), part[f"{term}_alignment"], **style, label=f"{term}, n = {n}")
            row[1].plot(part.gap_pct.clip(lower=1e-2), part[f"{term}_noise"], **style)
    for n, part in checkpoints.groupby("n_items"):
        row[2].plot(part.gap_pct.clip(lower=1e-2), part[share], marker="o" if n == min(study.items) else "s",
                    ls="none", color="k", alpha=0.7, label=f"n = {n}")
    row[0].set_ylabel(f"{family}\nalignment (leave-one-out cosine)")
    row[0].axhline(0, color="k", lw=0.8)
    row[1].set_yscale("log")
    row[1].set_ylabel("noise  E|ĝ − ḡ|² / |ḡ|²  (log)")
    row[2].set_ylabel("pathwise share of the continuous step")
    row[0].legend(fontsize=7, ncol=2)
    row[2].legend(fontsize=8)
for ax in axes[1]:
    ax.set_xscale("log")
    ax.set_xlabel("dev cost over the run's best (%, log)")
fig.suptitle(f"Joint replenishment: the gradient terms along training ({profile})")

# %% [markdown]
# ## Against the paper
#
# The paper's study (spec §10.7, bins of width 5 in absolute cost, 512-episode batches, JRP at its published
# scale) reports, near the optimum, pathwise alignment ≈ 0.9997, cross-term alignment ≈ 0.007 and discrete
# (score function) alignment ≈ 0.08, and far from it (gap 20–25) pathwise ≈ 0.80 and cross ≈ 0.80; near the
# optimum the cross term's noise is ≈ 7.9 against the pathwise term's ≈ 0.003; the share of the pathwise term
# falls from 0.57 to 0.28 as training approaches the optimum. These are statistics of the practical scheme, so
# they sit beside our `*_ppo` rows; the exact estimator's rows have no published counterpart.

# %%
nan = float("nan")
published = pd.DataFrame([
    dict(statistic="pathwise_ppo_alignment", published_near=0.9997, published_far=0.80),
    dict(statistic="cross_ppo_alignment", published_near=0.007, published_far=0.80),
    dict(statistic="discrete_ppo_alignment", published_near=0.08, published_far=nan),
    dict(statistic="pathwise_ppo_noise", published_near=0.003, published_far=nan),
    dict(statistic="cross_ppo_noise", published_near=7.9, published_far=nan),
    dict(statistic="pathwise_share_ppo", published_near=0.28, published_far=0.57),
    *[dict(statistic=s, published_near=nan, published_far=nan) for s in (
        "pathwise_plus_cross_ppo_alignment", "pathwise_alignment", "cross_alignment", "score_function_alignment",
        "pathwise_share")],
])
ours = summary.set_index("bucket").T
comparison = published.assign(ours_near=lambda d: d.statistic.map(ours.get("near", pd.Series(dtype=float))),
                              ours_far=lambda d: d.statistic.map(ours.get("far", pd.Series(dtype=float))))
comparison

# %% [markdown]
# **What our `quick` runs show** (2 seeds, $n \in \{5, 20\}$, 40 checkpoints: 20 near, 8 far). In HPO-full's
# own step, the one the paper measured, the cross term behaves as the paper says. Far from where training ends
# (dev cost 10–43 % above the run's best) its batches agree (median alignment 0.97, noise 0.06), as much as the
# pathwise term's (0.96). Near the end (within 2 %) its alignment falls to 0.60 and its noise rises to 1.4, while
# the pathwise term keeps 0.88; the discrete term loses its signal the same way (0.996 to 0.69). Our near-end
# values are not the paper's near-zero ones: our short runs (200 updates) stop well before a discrete best
# response — at $n = 20$ the test cost is still about 40 % above the published HPO cost — so "near" means near
# where a short run ends, and the `paper` profile measures the same statistics at the published scale.
#
# Two things differ from the paper. The pathwise share of HPO-full's step stays near 0.93–0.95 all along
# training (the paper: 0.57 falling to 0.28): the pathwise loss is scaled by the costs' standard deviation and the
# cross term enters through normalised advantages, so the share depends on those scales, which the reference
# sets in ways the spec does not fully pin down. And the **exact** estimator's cross term does not lose its
# alignment (0.79 far, 0.80 near): with the undiscounted cost-to-go and a constant baseline, its mean does not
# vanish at the end of a short run; it is the practical scheme's learned baseline and discounting that turn the
# cross term into noise there. Its share of the exact continuous gradient does grow (the pathwise share falls
# from 0.73 to 0.50).
#
# ## Writing the artifacts

# %%
stamp = reporting.provenance("notebooks/07_cross_term.py", profile, started, results=[runs])
reporting.save_table(comparison, "hpo_cross_term", stamp, digits=4,
                     caption="The cross-term study: median alignment (leave-one-out cosine), noise and the pathwise "
                     "share of the continuous step, near and far from the best dev cost, beside the published "
                     "values (spec §10.7; `*_ppo`: HPO-full's own step, the statistics the paper reports).")
reporting.save_table(checkpoints, "hpo_cross_term_checkpoints", stamp, digits=4,
                     caption="Every studied checkpoint of the cross-term study: dev cost, gap to the run's best, and "
                     "each term's alignment, noise and norms (exact estimator and HPO-full's step).")
reporting.save_figure(fig, "hpo_cross_term", stamp)
print(stamp.line())
