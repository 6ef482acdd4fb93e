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
# # Chapter 4 — The mixed gradient of hybrid policies (HPO)
#
# **Regenerates** `paper/tables/hpo_estimator_bias.{csv,md}`, `paper/tables/hpo_estimator_variance.{csv,md}`
# and `paper/figures/hpo_estimator_variance.png`.
#
# HDPO differentiates the cost through the simulator. That needs the cost to be a smooth function of the
# actions, and many problems are not: a fixed ordering cost jumps when the order becomes positive; a switched
# system changes its dynamics with the mode. The HPO paper splits every action into a **discrete choice** $d$,
# which indexes the non-smooth pieces, and a **continuous action** $u$, smooth within each piece, and mixes two
# kinds of gradient: pathwise where the simulator is smooth, score function for the choices.

# %%
# On Colab, install the package first (does nothing anywhere else).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "hybridrl @ git+https://github.com/hybridrl/hybridrl"], check=True)

# %% tags=["parameters"]
profile = "quick"  # "smoke" (seconds, for tests), "quick" (laptop CPU, the default) or "paper" (more samples)
seed = 0  # seed of the sampled choices and of the policies' initial weights

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from hybridrl import estimators, experiments, reporting
from hybridrl.hybrid import HybridPolicy, exact_objective
from hybridrl.lqr import SwitchedLQR

experiments.check_profile(profile)
started = time.time()
pd.set_option("display.precision", 4)
SIZES = {  # (batches of gradient estimates, rollouts of every episode per batch, dimensions of the variance study)
    "smoke": dict(batches=8, repeats=16, dims=(1, 4)),
    "quick": dict(batches=200, repeats=128, dims=(1, 2, 4, 8, 16, 32)),
    "paper": dict(batches=1000, repeats=256, dims=(1, 2, 4, 8, 16, 32, 48)),
}[profile]

# %% [markdown]
# ## The hybrid problem and the policy
#
# A state $s_t$ evolves as $s_{t+1} = f_{d_t}(s_t, u_t, \xi_t)$ with cost $c_t = g_{d_t}(s_t, u_t, \xi_t)$,
# where $\xi_t$ is exogenous noise whose law does not depend on the policy, and for every fixed $d$ the maps
# $f_d, g_d$ are differentiable. The policy is
#
# $$ \pi_\theta(d, u \mid s) = \pi^D_{\theta_D}(d \mid s)\;\delta\big(u - \mu_{\theta_C}(s, d)\big): $$
#
# a categorical distribution over the choices (one network, parameters $\theta_D$) and, given the choice, a
# deterministic continuous action (another network, parameters $\theta_C$). The objective is the expected total
# cost $J(\theta) = \mathbb{E}\big[\sum_{t<T} c_t\big]$.
#
# Our example is the **switched linear-quadratic regulator** of the paper (`hybridrl.lqr.SwitchedLQR`):
# $x_{t+1} = \mathrm{clamp}(A x_t + B_{d_t} u_t)$, $c_t = x_t^\top Q x_t + u_t^\top R u_t$, where the mode $d_t$
# chooses which group of actuators is strong. We keep it tiny here — dimension 2, two modes, three periods —
# so that $J(\theta)$ can be computed **exactly**: there are only $2^3 = 8$ sequences of choices per initial
# state, and `hybridrl.hybrid.exact_objective` sums over all of them,
#
# $$ J(\theta) = \frac1N \sum_{i=1}^N \sum_{d_0, d_1, d_2} \Big(\prod_t \pi^D(d_t \mid s_t)\Big)\, \sum_t c_t , $$
#
# a differentiable expression whose gradient (by autograd) is the exact $\nabla J$ over the $N$ initial states.

# %%
problem = SwitchedLQR(dim=2, modes=2, horizon=3)
episode = problem.sample(16, torch.Generator().manual_seed(1))
episode.state = episode.state.double()
policy = HybridPolicy(problem.observation_dim, problem.n_choices, problem.action_dim, hidden=(16,), head_std=0.5,
                      init_seed=seed).double()
params = list(policy.parameters())
objective = exact_objective(policy, problem, episode)
exact = torch.cat([g.flatten() for g in torch.autograd.grad(objective, params)])
n_discrete = sum(p.numel() for p in policy.discrete_parameters())
print(f"J(θ) = {objective.item():.4f}; {len(exact)} parameters "
      f"({n_discrete} discrete, {len(exact) - n_discrete} continuous); |∇J| = {float(exact.norm()):.4f}")

# %% [markdown]
# ## Three terms
#
# Write $R_t = \sum_{k \ge t} c_k$ for the cost to go and $b_t$ for a baseline that does not depend on the
# choices from $t$ on. Differentiating $J$ — the product of probabilities by the log-derivative trick, the
# costs along the path with the choices held fixed — and using causality gives
#
# $$ \nabla J = \underbrace{\mathbb{E}\Big[\sum_t \frac{\partial c_t}{\partial \theta_C}\Big|_{d\ \text{fixed}}\Big]}_{G_{PW}\ \text{(pathwise)}}
#   + \underbrace{\mathbb{E}\Big[\sum_t \nabla_{\theta_D} \log \pi^D(d_t \mid s_t)\,(R_t - b_t)\Big]}_{G_{SF}\ \text{(score function)}}
#   + \underbrace{\mathbb{E}\Big[\sum_t \nabla_{\theta_C} \log \pi^D\big(d_t \mid s_t(\theta_C)\big)\,(R_t - b_t)\Big]}_{G_X\ \text{(cross term)}} . $$
#
# * $G_{PW}$ is HDPO's gradient: with $\xi$ and the sampled choices fixed, the trajectory is a smooth function
#   of $\theta_C$ and backpropagation through the simulator gives the effect of every action on every later cost.
# * $G_{SF}$ moves the discrete network: choices that led to lower cost-to-go become more likely.
# * $G_X$ is the subtle one: the continuous actions change the *states*, and through them the probabilities of
#   later choices. The discrete network does not feed the states (its one-hot sample has no gradient), so
#   $G_{PW}$ and $G_X$ act on $\theta_C$ only and $G_{SF}$ on $\theta_D$ only.
#
# The baseline does not bias anything: given $s_t$, $\mathbb{E}_{d_t}[\nabla \log \pi^D(d_t \mid s_t)] =
# \nabla \sum_d \pi^D(d \mid s_t) = 0$, for the $\theta_D$ and the $\theta_C$ (through $s_t$) derivatives alike.
# We use the mean cost-to-go of the *other* episodes of the batch (leave-one-out), which is independent of the
# episode's own choices.
#
# In code (`hybridrl.estimators.mixed`) all three terms come from one surrogate,
# $\frac1B \sum_b \big[\sum_t c_t + \sum_t \log \pi^D(d_t \mid s_t)\,(R_t - b_t)\big]$ with $R_t - b_t$
# detached: the first sum carries $G_{PW}$; the log-probabilities, computed with the states still attached to
# the graph, carry $G_{SF}$ and $G_X$. The **decentralized** estimator (`estimators.decentralized`) computes the
# log-probabilities from detached states and so drops $G_X$.
#
# ## The mixed estimator is unbiased; without the cross term it is not
#
# We draw many independent batches (each rolls out every initial state `repeats` times with fresh choices),
# compute each estimator's gradient per batch, and compare the average with the exact gradient. Two summaries:
# the component of the average along the exact gradient, with a 95 % interval over batches (it should contain
# $|\nabla J|$), and the largest standardised error over all parameters, $\max_k |\bar g_k - \nabla_k J| /
# \mathrm{se}_k$ (about 3 to 4 is what chance gives for a few hundred parameters).

# %%
rows = []
direction = exact / exact.norm()
for name, estimator in [("mixed (G_PW + G_SF + G_X)", estimators.mixed),
                        ("decentralized (no G_X)", estimators.decentralized)]:
    samples = estimators.gradient_samples(estimator, policy, problem, episode, batches=SIZES["batches"],
                                          repeats=SIZES["repeats"], seed=seed + 1)
    mean, se = samples.mean(0), samples.std(0) / np.sqrt(len(samples))
    projection = samples @ direction
    half = 1.96 * float(projection.std()) / np.sqrt(len(samples))
    z = ((mean - exact) / se).abs()
    rows.append(dict(
        estimator=name, batches=len(samples), exact_norm=float(exact.norm()),
        projection=float(projection.mean()), projection_low=float(projection.mean()) - half,
        projection_high=float(projection.mean()) + half,
        max_abs_z=float(z.max()), max_abs_z_continuous=float(z[n_discrete:].max()),
        max_abs_z_discrete=float(z[:n_discrete].max()),
        relative_error=float((mean - exact).norm() / exact.norm()),
    ))
bias = pd.DataFrame(rows)
bias["covers_exact"] = (bias.projection_low <= bias.exact_norm) & (bias.exact_norm <= bias.projection_high)
bias

# %% [markdown]
# The mixed estimator's average agrees with the exact gradient within Monte Carlo error, coordinate by
# coordinate. The decentralized estimator agrees on the discrete parameters (the same score-function term)
# but misses on the continuous ones: here, far from a best response, the cross term is a real part of the
# gradient. The paper's claim is that it becomes negligible *near* a discrete best response, which is why the
# decentralized update works well in practice (later chapters compare both).
#
# ## The variance of the score function grows with the continuous dimension
#
# A purely model-free policy gradient (REINFORCE, and PPO's surrogate) must explore the continuous action too:
# $u = \mu(s, d) + \sigma \varepsilon$, and the score of the Gaussian, $\nabla \log \mathcal N(u; \mu, \sigma^2)$,
# replaces the pathwise derivative (`estimators.score_function`). Its noise adds up over the $p$ dimensions of
# the action. We measure the relative variance of one batch's estimate, $\mathbb{E}\|\hat g - \bar g\|^2 /
# \|\bar g\|^2$, over dimensions $p$ of the switched LQR (two modes, five periods, 64 initial states per batch;
# for the score function $\sigma = 0.5$), for all parameters and for the continuous network's alone, where the
# three estimators differ: the score function ($\sigma$-exploration), the mixed estimator ($G_{PW} + G_X$) and
# the decentralized one ($G_{PW}$ only). Each estimator is measured against the mean of its own estimates (the
# score function estimates the gradient of a slightly different, noisier objective).

# %%
variance_rows = []
for p in SIZES["dims"]:
    lqr = SwitchedLQR(dim=p, modes=2, horizon=5)
    states = lqr.sample(64, torch.Generator().manual_seed(2))
    states.state = states.state.double()
    net = HybridPolicy(p, lqr.n_choices, p, hidden=(32,), head_std=0.5, init_seed=seed).double()
    discrete = sum(q.numel() for q in net.discrete_parameters())
    for name, estimator, extra in [("mixed", estimators.mixed, {}), ("decentralized", estimators.decentralized, {}),
                                   ("score function", estimators.score_function, dict(exploration_std=0.5))]:
        samples = estimators.gradient_samples(estimator, net, lqr, states, batches=max(8, SIZES["batches"] // 4),
                                              repeats=1, seed=seed + 2, **extra)
        for part, columns in (("all", slice(None)), ("continuous", slice(discrete, None))):
            variance_rows.append(dict(dim=p, estimator=name, parameters=part, batches=len(samples),
                                      relative_variance=estimators.relative_variance(samples[:, columns])))
variance = pd.DataFrame(variance_rows)
variance.pivot(index="dim", columns=["parameters", "estimator"], values="relative_variance")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True, layout="constrained")
for ax, (part, group) in zip(axes, variance.groupby("parameters", sort=True)):
    for name, curve in group.groupby("estimator"):
        ax.plot(curve.dim, curve.relative_variance, marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("continuous action dimension p")
    ax.set_title(f"{part} parameters")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("relative variance of one batch's gradient")
axes[0].legend()
fig.suptitle(f"Switched LQR (J = 2, T = 5), 64 episodes per batch ({profile})")

# %% [markdown]
# What the table and figure show (in the `quick` profile; the numbers are in `paper/tables/hpo_estimator_variance`):
# on the continuous network the score function's relative variance is one to three orders of magnitude above
# the mixed estimator's at every dimension, and it grows with $p$ overall (not monotonically: $p = 4$ lies
# below $p = 2$). The mixed estimator's is not flat either: its
# cross term $G_X$ is itself a score-function term (through the states), and its noise grows with $p$. The
# decentralized estimator — the pathwise term alone — stays the lowest at every $p$: that is the variance the
# decentralized update avoids, at the price of the bias shown above. So the statement "the mixed estimator's
# variance does not grow with the dimension" holds for its pathwise part, not for the cross term.

# %% [markdown]
# ## Writing the artifacts

# %%
stamp = reporting.provenance("notebooks/04_mixed_gradient.py", profile, started)
reporting.save_table(
    bias, "hpo_estimator_bias", stamp, digits=4,
    caption="Switched LQR (p = 2, J = 2, T = 3, 16 initial states): the average of `batches` gradient estimates "
    "against the exact gradient computed by enumerating every sequence of choices. `projection` is the average's "
    "component along the exact gradient with a 95 % interval [`projection_low`, `projection_high`] (it should "
    "contain `exact_norm`); `max_abs_z` the largest standardised error over all parameters.",
)
reporting.save_table(
    variance, "hpo_estimator_variance", stamp, digits=4,
    caption="Relative variance E|g − ḡ|² / |ḡ|² of one batch's gradient (64 episodes) against the continuous "
    "action dimension, for all parameters and for the continuous network's: the mixed estimator, the "
    "decentralized one (no cross term) and the pure score-function estimator (Gaussian exploration σ = 0.5).",
)
reporting.save_figure(fig, "hpo_estimator_variance", stamp)
print(stamp.line())
