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
# # Chapter 0 — Overview: differentiating through an inventory simulator
#
# **Regenerates** `paper/figures/overview_base_stock_fit.png`.
#
# `hybridrl` reproduces two papers by Alvo, Russo and Kanoria:
#
# * **HDPO** (*Deep Reinforcement Learning for Inventory Networks: Toward Reliable Policy Optimization*,
#   arXiv 2306.11246): when the dynamics of a problem are known and differentiable and its randomness does
#   not depend on the actions — inventory control, where demand is exogenous — a deterministic policy can be
#   trained by backpropagating the simulated total cost through the whole simulation. The paper benchmarks
#   this against the true optimum where it is known.
# * **HPO** (*Policy Optimization in Hybrid Discrete-Continuous Action Spaces via Mixed Gradients*, arXiv
#   2605.14297): the same idea when actions also have a discrete part, mixing pathwise and score-function
#   gradients (later chapters).
#
# The chapters, in reading order:
#
# | chapter | what it shows | artifacts under `paper/` |
# |---|---|---|
# | 0 — this overview | the simulator by hand; fitting a base-stock level by gradient descent | `figures/overview_base_stock_fit.png` |
# | 1 — lost sales | HDPO vs the DP optimum on Zipkin's grid | `tables/hdpo_lost_sales.*`, `figures/hdpo_lost_sales_*.png` |
# | 2 — backlog | HDPO vs the optimal base stock, lead times up to 20 | `tables/hdpo_backlogged*.*`, `figures/hdpo_backlogged_*.png` |
# | 3 — model-free RL | our simulator as Gymnasium environments; Stable-Baselines3 PPO vs HDPO and the optimum | `tables/model_free_lost_sales*.*`, `figures/model_free_lost_sales_learning.png` |
# | 4 — the mixed gradient | HPO's estimator derived; unbiased against the exact gradient; the score function's variance against the dimension | `tables/hpo_estimator_*.*`, `figures/hpo_estimator_variance.png` |
# | 5 — switched LQR | HPO vs PPO and the Gumbel-softmax baseline against the exact optimum | `tables/hpo_switched_lqr*.*`, `figures/hpo_switched_lqr_*.png` |
# | 6 — joint replenishment | HPO vs PPO against the number of items, beside a tuned can-order heuristic | `tables/hpo_jrp*.*`, `figures/hpo_jrp_*.png` |
# | 7 — the cross term | the cross term's signal and noise near and far from the optimum | `tables/hpo_cross_term*.*`, `figures/hpo_cross_term.png` |
# | 8 — serial system | HDPO (echelon base stock, a neural policy) vs the exact Clark-Scarf optimum | `tables/hdpo_serial*.*`, `figures/hdpo_serial_learning.png` |
# | 9 — one warehouse, many stores | vanilla, symmetry-aware and graph policies vs a lower bound and a tuned heuristic; data efficiency | `tables/hdpo_one_warehouse*.*`, `figures/hdpo_one_warehouse_*.png` |
# | 10 — transshipment | HDPO vs the free-rebalancing lower bound | `tables/hdpo_transshipment*.*`, `figures/hdpo_transshipment_gaps.png` |
# | 11 — HDPO vs REINFORCE | gap and gradient variance against training time, same policy and scenarios | `tables/hdpo_vs_reinforce*.*`, `figures/hdpo_vs_reinforce.png` |
# | 12 — real data | Favorita sales: HDPO vs the generalized newsvendors and the just-in-time oracle | `tables/hdpo_real_data*.*`, `figures/hdpo_real_data_*.png` |
# | 90 — benchmarks | speed of an epoch and of an update; the `paper` profile's hours (`make bench`) | `benchmarks.md` |
# | 99 — reproduction report | every published or exact number beside ours, and the `paper` runs finished so far | `REPRODUCTION.md`, `tables/hpo_paper_runs.*` |
#
# Each chapter has a `profile` parameter: `smoke` runs in seconds (for the tests), `quick` (the default)
# runs on a laptop CPU with reduced budgets, and `paper` runs the published protocol, meant for a GPU. Learned
# policies are trained once per training seed of the profile, and every table and figure reports the spread over
# seeds: intervals, their number of runs, and learning curves with confidence bands (`hybridrl.stats`).
# `make reproduce` runs every chapter with papermill and regenerates everything under `paper/`; no file
# there is edited by hand.

# %%
# On Colab, install the package first (does nothing anywhere else).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "hybridrl @ git+https://github.com/hybridrl/hybridrl"], check=True)

# %% tags=["parameters"]
profile = "quick"  # "smoke", "quick" or "paper"; this chapter is small, the profile only sets the step count
seed = 0

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from hybridrl import experiments, reporting
from hybridrl.inventory import ClippedNormal, InventorySetting, Poisson, Store, arrival_slots, rollout, step
from hybridrl.policies import BaseStock
from hybridrl.references import backlog_base_stock, backlog_base_stock_cost
from hybridrl.scenarios import sample_scenarios

experiments.check_profile(profile)
started = time.time()

# %% [markdown]
# ## A few periods by hand
#
# The simulator keeps, for every store, an **inventory vector**: slot 0 is the stock on hand at the start
# of the period (after this period's arrivals), slot $k$ what arrives $k$ periods from now. Take a store with
# lost sales, Poisson(5) demand, $p = 9$, $h = 1$ and lead time $L = 2$, starting with 2 units on hand and 3
# in transit, and order 4 units every period. Each call to `step` places the order, meets the demand,
# charges the cost and shifts the vector; the whole batch of scenarios moves at once (here just one).

# %%
setting = InventorySetting(stores=Store(Poisson(5.0), underage_cost=9.0, holding_cost=1.0, lead_time=2), unmet_demand="lost")
one = sample_scenarios(setting, n=1, periods=6, demand_seed=57, inventory_seed=4839)
inventory = torch.tensor([[[2.0, 3.0]]])  # [B=1, S=1, n=2]: 2 on hand, 3 arriving next period
slots = arrival_slots(one.lead_time, n_slots=2)
rows = []
for t in range(6):
    order = torch.tensor([[4.0]])
    out = step(inventory, order, one.demand[..., t], slots, one.underage_cost, one.holding_cost, lost_sales=True)
    rows.append(dict(period=t, on_hand=inventory[0, 0, 0].item(), in_transit=inventory[0, 0, 1].item(), order=4.0,
                     demand=one.demand[0, 0, t].item(), sales=out.sales.item(), lost=out.lost.item(), cost=out.cost.item()))
    inventory = out.inventory
by_hand = pd.DataFrame(rows)
by_hand

# %% [markdown]
# Read one row: on hand $x$, demand $d$, sales $\min(x, d)$, lost $(d - x)^+$, and cost
# $p\,(d - x)^+ + h\,(x - d)^+$. The next row's on hand is the leftover $(x - d)^+$ plus what was in transit.
# With $L = 2$, the order of period $t$ is on hand in period $t + 2$. Stock is conserved:

# %%
leftover = (by_hand.on_hand - by_hand.demand).clip(lower=0)
assert np.allclose(by_hand.on_hand[1:].values, leftover[:-1].values + by_hand.in_transit[:-1].values)
assert np.allclose(by_hand.sales + by_hand.lost, by_hand.demand)
assert np.allclose(by_hand.cost, 9 * by_hand.lost + leftover)

# %% [markdown]
# ## Fitting a base-stock level by gradient descent
#
# Now a backlogged store (Normal(5, 1.6) demand clipped at 0, $p = 9$, $h = 1$, $L = 4$), where ordering up to
# a level $S$ is optimal. Every operation of the simulator is differentiable almost everywhere, so the
# average cost of a whole simulated trajectory has a gradient with respect to $S$ — the **pathwise** gradient
# that HDPO uses. Training is plain stochastic gradient descent on simulated trajectories: a few lines.

# %%
setting = InventorySetting(stores=Store(ClippedNormal(5.0, 1.6), 9.0, 1.0, lead_time=4), unmet_demand="backlog")
train = sample_scenarios(setting, n=2048, periods=50, demand_seed=57, inventory_seed=4839)
policy = BaseStock()  # S = softplus(b), starting at S = 10
steps = {"smoke": 30, "quick": 300, "paper": 300}[profile]
optimizer = torch.optim.Adam(policy.parameters(), lr=0.5)
schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
batches = torch.Generator().manual_seed(seed)
path = []
for k in range(steps):
    batch = train[torch.randint(train.n, (256,), generator=batches)]
    loss = rollout(policy, batch).cost.mean()  # the average simulated cost (hybridrl.estimators.pathwise)
    optimizer.zero_grad()
    loss.backward()  # d loss / d S, through 50 periods of simulation
    optimizer.step()
    schedule.step()
    path.append(policy.level.item())

# %% [markdown]
# The exact answer is the critical fractile of the demand over $L + 1 = 5$ periods,
# $S^\star = F^{-1}(p / (p + h))$:

# %%
exact = backlog_base_stock(9.0, 1.0, 4, ClippedNormal(5.0, 1.6))
print(f"fitted S = {path[-1]:.2f}, optimal S* = {exact.level:.2f}; optimal cost {exact.cost:.4f}, "
      f"cost at the fitted level {backlog_base_stock_cost(path[-1], 9.0, 1.0, 4, ClippedNormal(5.0, 1.6)):.4f}")
if profile != "smoke":
    assert abs(path[-1] - exact.level) < 0.5

# %%
levels = np.linspace(15, 45, 121)
curve = [backlog_base_stock_cost(s, 9.0, 1.0, 4, ClippedNormal(5.0, 1.6)) for s in levels]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
ax1.plot(path)
ax1.axhline(exact.level, color="k", ls="--", lw=1, label=f"S* = {exact.level:.2f}")
ax1.set_xlabel("gradient step")
ax1.set_ylabel("base-stock level S")
ax1.legend()
ax2.plot(levels, curve, label="exact average cost C(S)")
ax2.axvline(path[-1], color="C1", label=f"fitted S = {path[-1]:.2f}")
ax2.axvline(exact.level, color="k", ls="--", lw=1, label="S*")
ax2.set_xlabel("base-stock level S")
ax2.set_ylabel("cost per period")
ax2.legend()
fig.suptitle("Fitting a base-stock level by differentiating through the simulator (backlog, L = 4, p = 9)")
fig.tight_layout()

# %% [markdown]
# The training loss averages over whole 50-period trajectories, including their first periods, which start from
# a random initial inventory; that does not bias the level, because a base-stock policy reaches its target with
# its first order and the cost of the first $L$ periods does not depend on $S$. The following chapters use the same gradient to train neural policies, with a proper training
# loop (`hybridrl.train.fit`): dev evaluation, model selection, and a test on long fresh trajectories.

# %%
stamp = reporting.provenance("notebooks/00_overview.py", profile, started)
reporting.save_figure(fig, "overview_base_stock_fit", stamp)
print(stamp.line())
