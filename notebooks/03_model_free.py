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
# # Chapter 3 — Model-free RL through the Gymnasium interface
#
# **Regenerates** `paper/tables/model_free_lost_sales{,_summary}.{csv,md}` and
# `paper/figures/model_free_lost_sales_learning.png`: a model-free agent from another library, trained on one
# lost-sales cell of chapter 1, against HDPO and the optimum.
#
# HDPO is not model-free: it differentiates the simulated cost through the simulator, so every simulated period
# tells it how the cost would change with each earlier order. Most of reinforcement learning works without that
# information: an agent only *samples* transitions — observation, action, reward, next observation — through a
# standard interface, [Gymnasium](https://gymnasium.farama.org)'s `Env.reset` / `Env.step`, and libraries such as
# Stable-Baselines3 or CleanRL implement their agents against it. `hybridrl.envs` offers our problems through
# that interface, so that any such agent can be trained on them and compared with HDPO on the same footing:
#
# * `InventoryEnv` is one store system as a `gymnasium.Env`; `InventoryVectorEnv` is a
#   `gymnasium.vector.VectorEnv` of `B` copies stepped together by the batched simulator of the other chapters
#   (`hybridrl.inventory.step`: no second implementation of the dynamics);
# * `ExternalPolicy` goes the other way: it turns an outside agent back into a policy of our simulator, so that
#   `hybridrl.train.evaluate` tests it on *exactly* the scenarios on which HDPO and the optimal policy were
#   tested.
#
# The agents themselves are an optional dependency. This chapter uses Stable-Baselines3 (SB3), installed with
# `pip install "hybridrl[agents]"` (Gymnasium alone: `pip install "hybridrl[gym]"`); without it the training
# section is skipped with a message and no artifact is written.

# %%
# On Colab, install the package first (does nothing anywhere else).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "hybridrl[agents] @ git+https://github.com/hybridrl/hybridrl"], check=True)

# %% tags=["parameters"]
profile = "quick"  # "smoke" (seconds, for tests), "quick" (laptop CPU, the default) or "paper" (larger budget)
seeds = None  # agent seeds (SB3 weights, exploration, minibatches; its episodes); None: the profile's, as for HDPO
device = "cpu"  # where HDPO's cached grid was computed ("cpu", "cuda" or "auto"); SB3 always runs on the CPU
force = False  # retrain the agent instead of reading it from build/cache/ (HDPO is chapter 1's: rerun it there)

# %%
import time

import numpy as np
import pandas as pd

from hybridrl import experiments, plots, reporting, stats
from hybridrl.inventory import rollout
from hybridrl.scenarios import Seeds, make_splits
from hybridrl.train import evaluate

experiments.check_profile(profile)
started = time.time()
pd.set_option("display.precision", 4)

try:
    from hybridrl import envs
except ImportError as err:  # Gymnasium is missing
    envs = None
    print(f"{err}\nThis chapter needs Gymnasium; every section below is skipped.")
HAVE_SB3 = envs is not None and envs.sb3_available()
if envs is not None and not HAVE_SB3:
    print('Stable-Baselines3 is not installed: the model-free agent below is skipped and no artifact is written.\n'
          'Install it with:  pip install "hybridrl[agents]"  (then rerun this notebook).')

# %% [markdown]
# ## One lost-sales cell as a Gymnasium environment
#
# We take the cell $L = 2$, $p = 9$ of chapter 1's grid (Poisson(5) demand, $h = 1$). $p = 9$ is the grid's
# middle penalty, the textbook critical ratio $p/(p+h) = 0.9$. A lead time of 2 keeps what makes lost sales
# hard — the optimal order depends on the whole pipeline, and base stock is not optimal (the fitted capped base
# stock of chapter 1 misses the optimum there) — with a state of only two numbers, the on-hand stock and the
# order in transit, which gives a model-free agent its best chance within a laptop budget. The optimum is known
# exactly, by dynamic programming.
#
# The environment is the Markov decision process of the simulator: the **observation** is the inventory
# vector (on-hand stock after arrivals, then the orders in transit), the **action** the order quantity in
# $[0, 4\mu]$ ($\mu = 5$ the mean demand; the optimal policy never orders more than $2\mu$ on this grid), the
# **reward** minus the period's cost. An episode starts from a random inventory and is *truncated* after
# `horizon` periods: the problem itself never ends (its objective is the long-run average cost), so `terminated`
# is always false and an agent should bootstrap its value at a truncation. Demand is drawn from the setting's
# Poisson model by generators seeded from `reset(seed=...)`.
#
# Gymnasium's own checker validates the environment: it raises on any violation of the API. It also gives two
# pieces of advice that do not apply, which we silence: the stock has no upper bound (with little demand it
# piles up), and the action box is in order quantities rather than normalised to $[-1, 1]$ — the agent below
# rescales it on its side.

# %%
LEAD_TIME, PENALTY = 2, 9
setting = experiments.lost_sales_grid(lead_times=(LEAD_TIME,), penalties=(PENALTY,))
if envs is not None:
    import warnings

    from gymnasium.utils.env_checker import check_env

    env = envs.InventoryEnv(setting, horizon=100)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(normalized space|maximum value is infinity)")
        check_env(env, skip_render_check=True)
    print("observation space:", env.observation_space, " action space:", env.action_space)
    observation, info = env.reset(seed=0)
    print("first observation (on hand, in transit):", observation)
    observation, reward, terminated, truncated, info = env.step(np.array([5.0]))
    print(f"after ordering 5: observation {observation}, reward {reward:.3f}, terminated {terminated}, "
          f"truncated {truncated}, info {info}")

# %% [markdown]
# ## The vector environment is the simulator
#
# `InventoryVectorEnv` steps `B` independent copies with one call of the batched simulator — the speed that
# makes HDPO cheap is available to model-free agents too. Its episodes' data are kept (`vec.scenarios`), so a
# whole episode can be replayed through `hybridrl.inventory.rollout`, with the same policy wrapped by
# `ExternalPolicy`: the per-period rewards and the simulator's costs agree to the last bit. (Its autoreset mode,
# `metadata["autoreset_mode"]`, is Gymnasium's default `NEXT_STEP`; `SAME_STEP` and `DISABLED` are available.)

# %%
if envs is not None:
    def order_up_to_16(observation):  # a base-stock rule on observations [B, S, n] -> orders [B, S]
        return np.maximum(16.0 - observation.sum(-1), 0.0)

    vec = envs.InventoryVectorEnv(setting, num_envs=256, horizon=50)
    observation, _ = vec.reset(seed=0)
    rewards, flags = [], []
    for t in range(vec.horizon):
        observation, reward, terminated, truncated, _ = vec.step(order_up_to_16(observation))
        rewards.append(reward)
        flags.append((terminated.any(), truncated.all()))
    replayed = rollout(envs.ExternalPolicy(order_up_to_16, setting), vec.scenarios).cost.sum(1).numpy()
    print(f"{vec.num_envs} environments x {vec.horizon} periods; largest |reward + simulator cost| = "
          f"{np.abs(np.stack(rewards, 1) + replayed).max():.1e}")
    print("terminated at some step:", any(f[0] for f in flags), "| truncated only at the last step:",
          [f[1] for f in flags] == [False] * (vec.horizon - 1) + [True])

# %% [markdown]
# ## Training a model-free agent: PPO from Stable-Baselines3
#
# We train **PPO** (proximal policy optimisation), the model-free baseline of the HPO paper and a common choice
# in the inventory literature. It is on-policy and cheap per step: stepping 16 environments at once through
# the batched simulator, SB3's PPO runs several thousand environment steps per second on one CPU core, where
# off-policy agents (SAC, TD3) take a gradient step per environment step and would see far fewer steps in the
# same time. `envs.train_agent` wraps the vector environment for SB3's own vector API
# (`envs.sb3_vec_env`, `SAME_STEP` autoreset: SB3 bootstraps at truncations from `TimeLimit.truncated`),
# and:
#
# * shows the agent the problem in **units of mean demand**, as HDPO's network sees it: observations $x/\mu$
#   and an action $a$ for the order $\mu(1 + a)$, so that the untrained Gaussian policy starts near "order the
#   mean demand" (`envs.mean_demand_view`; the environment itself stays in units);
# * scales rewards by a running estimate of the return's spread (SB3's `VecNormalize`), discounts by
#   $\gamma = 0.99$ (an effective horizon of about 100 periods, far beyond the lead time), and decays the
#   learning rate linearly to zero;
# * runs the agent on one thread, which is the fastest setting for such small networks on a CPU.
#
# The budget is counted in environment steps (simulated periods). As HDPO in chapter 1, the agent is trained
# once per seed of the profile, and its result is the spread over those runs. Trained models are cached under
# `build/cache/model_free/` (rerun with `force=True` to retrain).

# %%
if HAVE_SB3:
    budget = envs.agent_budget(profile)
    agent_seeds = experiments.budget("lost_sales", profile).seeds if seeds is None else tuple(seeds)
    display(pd.DataFrame([{k: v for k, v in vars(budget).items() if k != "hyperparameters"}]))
    print("hyperparameters:", budget.hyperparameters)
    agents = {}
    for s in agent_seeds:
        agents[s] = agent = envs.train_agent(setting, budget, seed=s, force=force)
        print(f"seed {s}: {budget.algorithm}, {agent.env_steps:,} environment steps in {agent.seconds:.1f} s "
              f"({agent.env_steps / agent.seconds:,.0f} steps/s){' (read from the cache)' if agent.cached else ''}")

# %% [markdown]
# ## Testing on HDPO's test scenarios
#
# The trained agent acts through `ExternalPolicy`: its deterministic policy (the mean of its Gaussian) orders,
# rounded to integers as in chapter 1 since demand is Poisson, on the very test scenarios of chapter 1's
# protocol for this profile (data seeds 65 / 4840 shifted by the cell, as for HDPO). The optimal DP policy runs
# on the same scenarios, which gives the same **common-random-numbers** estimate as chapter 1:
# $\hat C = \bar C_{\text{test}} - \bar C^\star_{\text{test}} + C^\star$, whose standard error is several times
# smaller than that of the raw test mean.

# %%
if HAVE_SB3:
    protocol = experiments.budget("lost_sales", profile).protocol
    test = make_splits(setting, protocol, Seeds()).test
    optimal_policy, (optimal,) = experiments.optimal_reference("lost_sales", setting)
    dp_costs = evaluate(optimal_policy, test, protocol.test_warmup, round_orders=True)[:, 0]
    t0 = time.time()
    agent_results = {
        s: envs.compare_to_optimum(evaluate(a.policy(), test, protocol.test_warmup, round_orders=True)[:, 0],
                                   dp_costs, optimal)
        for s, a in agents.items()
    }
    print(f"{len(agents)} agents tested on {test.n} scenarios x {test.periods} periods ({protocol.test_warmup} of "
          f"warm-up) in {time.time() - t0:.1f} s")
    display(pd.DataFrame(agent_results).T.rename_axis("seed"))

# %% [markdown]
# ## PPO against HDPO and the optimum
#
# HDPO's numbers are chapter 1's, read from its cached grid (one row per HDPO training seed). Its test ran on
# the same scenarios, which the cell below checks: the optimal policy's test cost must agree. HDPO trained all
# 16 cells of the grid in one batched run, so its time is the per-cell share of that run; its environment
# steps are the simulated training periods (epochs × training scenarios × periods), dev evaluations excluded.

# %%
if HAVE_SB3:
    hdpo = experiments.run_grid("lost_sales", "hdpo", profile, device=device)
    cell = hdpo.table[(hdpo.table.lead_time == LEAD_TIME) & (hdpo.table.penalty == PENALTY)]
    dp_test_cost = float(dp_costs.double().mean())
    assert np.allclose(cell.optimal_policy_test_cost, dp_test_cost, atol=1e-4), "HDPO was tested on other scenarios"
    columns = ["test_cost", "test_se", "cost_estimate", "estimate_se", "gap_pct"]
    steps_per_epoch = protocol.n_train * protocol.train_periods
    agent_name = f"SB3 {budget.algorithm}"
    rows = [dict(method="DP optimum", seed=None, test_cost=dp_test_cost,
                 test_se=float(dp_costs.double().std() / np.sqrt(len(dp_costs))), cost_estimate=optimal,
                 estimate_se=0.0, gap_pct=0.0, env_steps=None,
                 train_seconds=experiments.lost_sales_dp(LEAD_TIME, PENALTY).seconds)]
    for _, row in cell.iterrows():
        rows.append(dict(method="HDPO", seed=int(row.seed), **{c: row[c] for c in columns},
                         env_steps=int(row.epochs * steps_per_epoch), train_seconds=row.run_seconds / row.cells_in_run))
    for s, result in agent_results.items():
        rows.append(dict(method=agent_name, seed=s, **{c: result[c] for c in columns},
                         env_steps=agents[s].env_steps, train_seconds=agents[s].seconds))
    table = pd.DataFrame(rows).astype({"seed": "Int64", "env_steps": "Int64"})
    table.insert(1, "lead_time", LEAD_TIME)
    table.insert(2, "penalty", PENALTY)
    display(table)
    # no run beats the optimum by more than the Monte Carlo error
    assert (table.cost_estimate >= optimal - 4 * table.estimate_se).all(), "a run beat the DP optimum"

# %% [markdown]
# Over the seeds: each method's mean gap with a 95 % bootstrap interval over its runs, and the probability that
# an HDPO run costs less than a run of the model-free agent (the Mann–Whitney statistic with its bootstrap
# interval, `hybridrl.stats.probability_of_improvement`). With one cell and three runs each, the intervals are
# coarse; the ordering is what they can establish.

# %%
if HAVE_SB3:
    learned = table[table.method != "DP optimum"]
    summary = stats.interval_table(learned, by="method", value="gap_pct")
    summary["train_seconds"] = learned.groupby("method").train_seconds.mean().loc[summary.method].to_numpy()
    costs = {m: learned[learned.method == m].cost_estimate.to_numpy()[:, None] for m in ("HDPO", agent_name)}
    better = stats.probability_of_improvement(costs["HDPO"], costs[agent_name], lower_is_better=True)
    summary["p_hdpo_better"] = [np.nan if m == "HDPO" else better.estimate for m in summary.method]
    summary["p_low"] = [np.nan if m == "HDPO" else better.low for m in summary.method]
    summary["p_high"] = [np.nan if m == "HDPO" else better.high for m in summary.method]
    display(summary)
    hd, ag = summary.set_index("method").loc["HDPO"], summary.set_index("method").loc[agent_name]
    print(f"{agent_name}: gap {ag.gap_pct:+.2f}% [{ag.gap_pct_low:+.2f}, {ag.gap_pct_high:+.2f}] after "
          f"{budget.env_steps:,} steps; HDPO: {hd.gap_pct:+.2f}% [{hd.gap_pct_low:+.2f}, {hd.gap_pct_high:+.2f}] "
          f"({int(hd.runs)} seeds); P(HDPO better) = {better}")

# %% [markdown]
# The learning curve shows the average cost per period of the agent's recent *training* episodes, as a gap to
# the optimum: the IQM over seeds with a 95 % bootstrap band, against environment steps and against wall-clock
# seconds. It lies above the test gap for three reasons: training episodes include the start-up from a random
# inventory, the agent explores (its orders are noisy draws around the mean it will use at test time), and
# orders are not rounded. The dashed lines are the test gaps (mean over seeds) of the agent and of HDPO.

# %%
if HAVE_SB3:
    episodes = pd.concat([pd.DataFrame(a.curve).assign(seed=s) for s, a in agents.items()], ignore_index=True)
    episodes = episodes.assign(cell=0, gap=100 * (episodes.cost / optimal - 1))
    agent_curve = stats.curve(episodes, x="env_steps", task="cell", value="gap", statistic="iqm")
    agent_curve = agent_curve.merge(episodes.groupby("env_steps").seconds.median(), on="env_steps")
    fig = plots.learning_curves({f"{agent_name} (training episodes)": agent_curve.rename(columns={"env_steps": "step"})},
                                ylabel="training cost: gap to the optimum (%)",
                                title=f"Lost sales L = {LEAD_TIME}, p = {PENALTY}: model-free {budget.algorithm} "
                                f"({profile})")
    for ax in fig.axes[:2]:
        ax.axhline(ag.gap_pct, color="C0", ls="--", lw=1, label=f"{budget.algorithm}: test gap")
        ax.axhline(hd.gap_pct, color="C1", ls="--", lw=1, label="HDPO: test gap")
    fig.axes[0].set_xlabel("environment steps (simulated periods)")
    fig.axes[0].legend(fontsize=8)

# %% [markdown]
# ## Writing the artifacts

# %%
if HAVE_SB3:
    stamp = reporting.provenance(
        "notebooks/03_model_free.py", profile, started, device, results=[experiments.GridResult(cell, hdpo.history)]
    )
    reporting.save_table(
        table,
        "model_free_lost_sales",
        stamp,
        caption=f"Lost sales, Poisson(5), h = 1, L = {LEAD_TIME}, p = {PENALTY}: a model-free agent (SB3 "
        f"{budget.algorithm}) trained through the Gymnasium interface, against HDPO and the DP optimum, all tested "
        "on the same scenarios. `test_cost` ± `test_se` is the raw test mean; `cost_estimate` ± `estimate_se` the "
        "common-random-numbers estimate (test mean minus the optimal policy's test mean, plus the optimum); "
        "`gap_pct` its gap to the optimum in %; `env_steps` the simulated training periods; `train_seconds` the "
        "training wall-clock (HDPO: its per-cell share of a batched run of 16 cells; DP: the solve).",
        digits=4,
    )
    reporting.save_table(
        summary, "model_free_lost_sales_summary", stamp, digits=4,
        caption=f"Lost sales, L = {LEAD_TIME}, p = {PENALTY}: gap to the optimum (%) per method, mean over `runs` "
        "seeds with a 95 % bootstrap interval; `p_hdpo_better` is P(an HDPO run costs less than a run of the row's "
        "method) with its interval [`p_low`, `p_high`].",
    )
    reporting.save_figure(fig, "model_free_lost_sales_learning", stamp)
    print(stamp.line())
