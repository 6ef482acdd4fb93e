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
# chapter 6. At frozen checkpoints (every dev evaluation of an HPO-full run, the same run as chapter 6's) we
# draw independent batches of training episodes and estimate each term of the **exact** estimator on each
# (`hybridrl.estimators.mixed_terms`: undiscounted cost-to-go, leave-one-out baseline, one scale). Then, per
# term (`hybridrl.estimators.signal_and_noise`):
#
# * **alignment** — the leave-one-out cosine $\frac{1}{M}\sum_i \cos\big(\hat g_i, \frac{1}{M-1}\sum_{j \ne i}
#   \hat g_j\big)$ between one batch's estimate and the mean of the others: near 1, every batch points the
#   same way; near 0, a batch is noise around a small mean;
# * **noise** — $\mathbb{E}\lVert \hat g - \bar g \rVert^2 / \lVert \bar g \rVert^2$, the spread of one batch
#   relative to the mean;
# * **pathwise share** — $\mathbb{E}\lVert \hat g_{PW}\rVert / (\mathbb{E}\lVert \hat g_{PW}\rVert +
#   \mathbb{E}\lVert \hat g_X\rVert)$: how much of the continuous network's step is the pathwise term.
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
             "pathwise_share"]]

# %% [markdown]
# ## Near and far
#
# Checkpoints grouped by their gap: the median of each statistic per group, over numbers of items and seeds.

# %%
summary = hpo_experiments.alignment_summary(checkpoints)
summary

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
colors = {"pathwise": "C0", "cross": "C3", "score_function": "C2"}
for term in terms:
    for n, part in checkpoints.groupby("n_items"):
        style = dict(color=colors[term], marker="o" if n == min(study.items) else "s", ls="none", alpha=0.7)
        axes[0].plot(part.gap_pct.clip(lower=1e-2), part[f"{term}_alignment"], **style,
                     label=f"{term}, n = {n}")
        axes[1].plot(part.gap_pct.clip(lower=1e-2), part[f"{term}_noise"], **style)
for n, part in checkpoints.groupby("n_items"):
    axes[2].plot(part.gap_pct.clip(lower=1e-2), part.pathwise_share, marker="o" if n == min(study.items) else "s",
                 ls="none", color="k", alpha=0.7, label=f"n = {n}")
for ax in axes:
    ax.set_xscale("log")
    ax.set_xlabel("dev cost over the run's best (%, log)")
axes[0].set_ylabel("alignment (leave-one-out cosine)")
axes[0].axhline(0, color="k", lw=0.8)
axes[1].set_yscale("log")
axes[1].set_ylabel("noise  E|ĝ − ḡ|² / |ḡ|²  (log)")
axes[2].set_ylabel("pathwise share of the continuous step")
axes[0].legend(fontsize=7, ncol=2)
axes[2].legend(fontsize=8)
fig.suptitle(f"Joint replenishment: the three gradient terms along training ({profile})")

# %% [markdown]
# ## Against the paper
#
# The paper's study (spec §10.7, bins of width 5 in absolute cost, 512-episode batches, JRP at its published
# scale) reports, near the optimum, pathwise alignment ≈ 0.9997, cross-term alignment ≈ 0.007 and discrete
# (score function) alignment ≈ 0.08, and far from it (gap 20–25) pathwise ≈ 0.80 and cross ≈ 0.80; the share of
# the pathwise term falls from 0.57 to 0.28 as training approaches the optimum. The paper's cross and discrete
# statistics come from its *practical* scheme (the PPO loss on normalised advantages), ours from the exact
# estimator, and our `quick` runs are short, so compare directions, not digits.

# %%
published = pd.DataFrame([
    dict(statistic="pathwise_alignment", published_near=0.9997, published_far=0.80),
    dict(statistic="cross_alignment", published_near=0.007, published_far=0.80),
    dict(statistic="score_function_alignment", published_near=0.08, published_far=float("nan")),
    dict(statistic="pathwise_share", published_near=0.28, published_far=0.57),
])
ours = summary.set_index("bucket").T
comparison = published.assign(ours_near=lambda d: d.statistic.map(ours.get("near", pd.Series(dtype=float))),
                              ours_far=lambda d: d.statistic.map(ours.get("far", pd.Series(dtype=float))))
comparison

# %% [markdown]
# **What our `quick` runs show.** The pathwise term is the steady one: its batches agree (median alignment
# 0.93–0.97) and scatter little (noise 0.06–0.16) all along training. The cross term is noisier (noise 0.37–0.61)
# and its alignment stays near 0.8 from the far checkpoints to the near ones (0.79 and 0.80): in these runs it
# does not fall (before the PPO early stop followed the spec, the same study gave 0.80 falling to 0.70: with
# two seeds, this statistic moves with the runs). Its share of the continuous network's step does grow as training goes on: the pathwise share falls from
# about 0.73 to 0.50 (the paper: 0.57 to 0.28). So the shares move in the direction of the paper's claim and the
# alignment does not, and neither comes near the paper's near-zero alignment: our short runs (200 updates) stop
# well before a discrete best response — at $n = 20$ the test cost is still about 40 % above the published HPO
# cost — so "near" here means near where a short run ends. The
# `paper` profile trains to the published costs and measures the same statistics there.
#
# ## Writing the artifacts

# %%
stamp = reporting.provenance("notebooks/07_cross_term.py", profile, started, results=[runs])
reporting.save_table(comparison, "hpo_cross_term", stamp, digits=4,
                     caption="The cross-term study: median alignment (leave-one-out cosine), and the pathwise share of "
                     "the continuous step, near and far from the best dev cost, beside the published values "
                     "(spec §10.7).")
reporting.save_table(checkpoints, "hpo_cross_term_checkpoints", stamp, digits=4,
                     caption="Every checkpoint of the cross-term study: dev cost, gap to the run's best, and each "
                     "term's alignment, noise and norms (exact estimator).")
reporting.save_figure(fig, "hpo_cross_term", stamp)
print(stamp.line())
