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
# # Chapter 8 — The serial system: HDPO against the exact Clark-Scarf optimum
#
# **Regenerates** `paper/tables/hdpo_serial.{csv,md}`, `paper/tables/hdpo_serial_runs.{csv,md}` and
# `paper/figures/hdpo_serial_learning.png` (HDPO spec §4.3, §9.3).
#
# Four locations in a chain: echelon 0 buys from an unlimited outside supplier and ships to echelon 1, which ships
# to a warehouse, which ships to one store facing Normal(5, 2) demand (truncated at 0, backlogged, $p = 9$). Lead
# times from each location's supplier are 2, 4, 3 and 4 periods; each location pays its own holding cost (0.1,
# 0.2, 0.5, 1.0) on the stock it has on hand after shipping, nobody pays for stock in transit, and no location
# can ship more than it has — the simulator enforces that (`hybridrl.networks`), whatever the policy asks.
#
# **The exact optimum.** Clark and Scarf (1960) proved that an *echelon base-stock* policy is optimal here: each
# location orders up to a level $S_k$ on its *echelon* inventory position (its own stock and pipeline plus
# everything downstream), shipping what its supplier can. Chen and Zheng (1994) turned the proof into a
# recursion over stages, from the store up: with $e_k$ the echelon holding cost ($h_k$ minus its supplier's)
# and $D^{(m)}$ the demand over $m$ periods,
#
# $$ G_1(y) = \mathbb E\big[e_1 (y - D^{(L_1+1)}) + (p + h_1)(y - D^{(L_1+1)})^-\big], \qquad S_1 = \arg\min G_1, $$
# $$ G_k(y) = e_k\,(y - (L_k + 1)\mu) + \mathbb E\big[G_{k-1}\big(\min(S_{k-1},\, y - D^{(L_k)})\big)\big],
#    \qquad S_k = \arg\min G_k, $$
#
# and the optimal cost is $G_4(S_4)$ (`hybridrl.references.serial_optimum`, on a demand grid of step 0.01). The
# recursion counts holding cost on echelon stock, which includes stock in transit; our simulator does not
# charge it, and the difference is a constant: every unit in transit towards location $k$ is charged, in the
# recursion, at its sender's rate, and on average $L_k \mu$ units are in transit there, so the simulator's cost
# is the recursion's minus $\mu\,(0.5 \cdot 4 + 0.2 \cdot 3 + 0.1 \cdot 4) = 3\mu$. The spec had only a simulation
# estimate, $10.74 \pm 0.03$.
#
# **HDPO** then learns two policies by gradient descent through the simulator: the echelon base-stock policy
# itself (four levels, built as partial sums so they stay ordered) and a vanilla neural network of the whole
# 15-number state, whose requests are fractions of the supplier's on-hand.

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

import pandas as pd

from hybridrl import experiments, network_experiments, plots, reporting, stats
from hybridrl.references import serial_optimum

experiments.check_profile(profile)
started = time.time()
pd.set_option("display.precision", 4)
budget = network_experiments.network_budget("serial", profile)
optimum = serial_optimum(9.0)
pd.DataFrame([dict(location=name, level=level) for name, level in
              zip(["echelon 0", "echelon 1", "warehouse", "store"], optimum.levels)]).assign(
    cost=optimum.cost, clark_scarf_cost=optimum.clark_scarf_cost, accounting_shift=optimum.accounting_shift)

# %% [markdown]
# ## Training
#
# Each policy is trained once per training seed (the profile's budget below); runs are cached under
# `build/cache/network/`. The test cost is per period over the test horizon after its warm-up.

# %%
methods = network_experiments.chapter_methods("serial", profile)  # echelon base stock and the vanilla network
pd.DataFrame({m: vars(c) for m, c in budget.configs.items() if m in methods})

# %%
runs = network_experiments.run_network_grid("serial", profile, methods=methods, workers=workers, force=force)
runs.table.assign(gap_pct=lambda d: 100 * (d.test_cost / optimum.cost - 1))[
    ["method", "seed", "test_cost", "test_se", "gap_pct", "best_epoch", "run_seconds"]]

# %% [markdown]
# ## Against the optimum
#
# The test scenarios are random, so a policy's test cost carries a standard error (`test_se` above, about
# 0.25 % of the cost) that would blur gaps of a tenth of a percent. As in chapters 1 and 2 we remove most of it
# with common random numbers: the exact optimal policy (echelon base stock at the Clark-Scarf levels) runs on
# the same test scenarios, and `cost_estimate = test_cost − optimal policy's test cost + exact optimum` is an
# unbiased estimate of the policy's expected cost with a much smaller error. Then the mean over seeds with a
# 95 % bootstrap interval, and the gap to the exact optimum.

# %%
from hybridrl.network_policies import EchelonBaseStock

optimal_policy_test, optimal_policy_se = network_experiments.test_cost_of(
    EchelonBaseStock(network_experiments.make_network("serial"), levels=optimum.levels), "serial", 1, profile)
runs.table["cost_estimate"] = runs.table.test_cost - optimal_policy_test + optimum.cost
print(f"optimal policy on the test scenarios: {optimal_policy_test:.4f} ± {optimal_policy_se:.4f} "
      f"(exact {optimum.cost:.4f})")
summary = stats.interval_table(runs.table, by=["method"], value="cost_estimate").rename(
    columns={"cost_estimate": "test_cost", "cost_estimate_low": "test_cost_low", "cost_estimate_high": "test_cost_high"}
).assign(optimal=optimum.cost, gap_pct=lambda d: 100 * (d.test_cost / optimum.cost - 1),
         gap_low=lambda d: 100 * (d.test_cost_low / optimum.cost - 1),
         gap_high=lambda d: 100 * (d.test_cost_high / optimum.cost - 1))
levels = runs.table[runs.table.method == "echelon_base_stock"].levels
learned = pd.DataFrame(levels.tolist(), columns=["echelon 0", "echelon 1", "warehouse", "store"]).assign(
    seed=runs.table[runs.table.method == "echelon_base_stock"].seed.values)
summary

# %% [markdown]
# The echelon levels HDPO found, beside the exact ones:

# %%
pd.concat([learned, pd.DataFrame([dict(zip(["echelon 0", "echelon 1", "warehouse", "store"], optimum.levels),
                                       seed="exact")])], ignore_index=True)

# %%
for r in summary.itertuples():
    print(f"This run ({profile}): {r.method} {r.gap_pct:+.3f} % [{r.gap_low:+.3f}, {r.gap_high:+.3f}] over the exact "
          f"optimum ({r.runs} runs)")

# %% [markdown]
# **What our `quick` runs show** (the `quick` profile's numbers; the lines above give this run's). HDPO recovers the optimal policy where it has the optimal form: the fitted
# echelon levels land within about 0.1 of the exact ones and their cost cannot be told from the optimum. The
# vanilla network, which knows nothing of echelons, comes within about 0.55 % of the optimum (+0.55 % [0.54, 0.56]
# over three seeds; issue target: 1 % in `quick`, 0.5 % in `paper`).
#
# **What the `paper` runs show** (the spec's protocol: 32768 scenarios per split, batch 8192, the paper's
# [32, 32] network, Adam at a constant rate with early stopping after 500 epochs without improvement; three seeds,
# one CPU thread each; `paper/tables/hdpo_serial*` hold these). The fitted echelon levels land within 0.31 of
# the exact ones (the cost is flat near its minimum), +0.05 % [0.048, 0.056] over the optimum. The vanilla
# network comes within +0.27 % [0.23, 0.32] (seeds +0.32, +0.25 and +0.23 %), inside the 0.5 %, after
# 2010-2670 epochs and 1.8-3.1 hours each (wall clock, pauses included).
# The wall-clock panel of these runs is stretched by pauses: they ran in slices beside other work on two cores,
# and a suspended run's clock kept going, so read its axis as an upper bound.

# %%
history = runs.history.assign(gap=lambda d: 100 * (d.dev_cost / optimum.cost - 1), task="serial")
curves = stats.curves_by_method(history, x="epoch", task="task", value="gap")
fig_learning = plots.learning_curves(curves, ylabel="dev cost over the optimum (%)",
                                     title=f"Serial system ({profile})", xlabel="epochs")

# %% [markdown]
# ## Writing the artifacts

# %%
stamp = reporting.provenance("notebooks/08_serial.py", profile, started, results=[runs])
table = summary.rename(columns={"test_cost": "test_cost"})[["method", "test_cost", "optimal", "gap_pct", "gap_low",
                                                             "gap_high", "runs"]]
exact_row = pd.DataFrame([dict(method="clark_scarf", test_cost=optimum.cost, optimal=optimum.cost, gap_pct=0.0,
                               gap_low=0.0, gap_high=0.0, runs=0)])
reporting.save_table(pd.concat([table, exact_row], ignore_index=True), "hdpo_serial", stamp, digits=4,
                     caption="Serial system (p = 9): mean cost per period over seeds (common-random-number estimate: "
                     "test cost minus the optimal policy's test cost on the same scenarios plus the exact optimum) "
                     "with a 95 % bootstrap interval of the gap to the exact Clark-Scarf optimum (`clark_scarf`, "
                     "simulator accounting).")
reporting.save_table(runs.table.drop(columns=["history"], errors="ignore"), "hdpo_serial_runs", stamp, digits=4,
                     caption="Every serial run: test cost and its standard error over the test scenarios.")
reporting.save_figure(fig_learning, "hdpo_serial_learning", stamp)
print(stamp.line())
