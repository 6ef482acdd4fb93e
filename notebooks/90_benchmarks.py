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
# # Chapter 90 — Benchmarks
#
# **Regenerates** `paper/benchmarks.md` on a CPU (`make bench`) or `paper/benchmarks_gpu.md` on a GPU
# (`make bench DEVICE=cuda`); not run by `make reproduce`: timings describe a machine, not the papers.
#
# HDPO's cost is the rollout: every minibatch is simulated for 50 periods through the policy network, forward
# and backward. The authors' reference implementation needs about **1.7 s per epoch** of the paper's
# lost-sales setup on a 2-core CPU (dev evaluation every 10 epochs included) and is no faster on an H100,
# because Python overhead, not arithmetic, bounds it. We time the same epoch with `hybridrl.train.fit`:
# 32768 training scenarios of 50 periods, minibatches of 8192, an MLP 32×32×32, L = 4, plus one dev
# evaluation (32768 scenarios of 100 periods) amortised over 10 epochs. Target: at most 0.5 s on 2 CPU cores.
#
# The second measurement is what a user cares about: the training time until the test cost of the HDPO
# policy is within 0.5 % of the DP optimum (L = 4, p = 9), with the `quick` budget.
#
# With `device = "cuda"` (`make bench DEVICE=cuda`) every measurement runs on the CPU **and** on the GPU, in the
# same run, so that each GPU figure has the CPU figure of the same machine beside it. The GPU target of the
# paper-scale issue: one HDPO epoch of this setup in at most 0.05 s on an H100. On a GPU the arithmetic is
# small and launching kernels is the cost: an eager epoch (about 0.25 s on an H200) launches thousands of small
# kernels one by one (every period, forward and backward); recorded as a CUDA graph
# (`TrainConfig(cuda_graph=True)`) each minibatch is one launch.

# %%
# On Colab, install the package first (does nothing anywhere else).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "hybridrl @ git+https://github.com/hybridrl/hybridrl"], check=True)

# %% tags=["parameters"]
profile = "quick"  # "smoke" shrinks every size so the chapter runs in seconds (tests)
device = "cpu"  # "cpu", "cuda" or "auto"; a GPU is measured beside the CPU
repeats = 3  # each timing is repeated this many times; the median and the range are reported

# %%
import time

import pandas as pd
import torch

from hybridrl import bench, experiments, paths, reporting
from hybridrl.references import lost_sales_optimum
from hybridrl.train import resolve_device

experiments.check_profile(profile)
device = str(resolve_device(device))
devices = ["cpu"] if device == "cpu" else ["cpu", device]
started = time.time()
smoke = profile == "smoke"
print("measuring on", ", ".join(reporting.device_name(d) for d in devices))

# Each part's numbers are written as soon as they are measured, stamped partial until the last: a run stopped
# midway (say, by the time limit of a GPU lease) keeps what it measured.
target = paths.BENCHMARKS if devices == ["cpu"] else paths.BENCHMARKS_GPU  # a CPU run and a GPU run: one each
measured = {}


def save() -> str:
    stamp = reporting.provenance("notebooks/90_benchmarks.py", profile, started, device)
    text = bench.write_benchmarks(target, stamp, devices, repeats, **measured)
    print(f"wrote {target.name}: {', '.join(part for part, key in bench.PARTS.items() if key in measured)}")
    return text

# %% [markdown]
# ## One HDPO epoch
#
# A shared 2-core machine does not run at a constant speed, so we repeat each measurement `repeats` times (three
# by default; each the median of several epochs) and report the median and the range. The training loop runs in up to four ways:
#
# * **eager** — plain PyTorch, the default;
# * **compiled** — `TrainConfig(compile=True)`: each simulated period (policy and simulator) runs through
#   `torch.compile`, after a compilation of some seconds;
# * **CUDA graph** (GPU only) — `TrainConfig(cuda_graph=True)`: one whole training step (50 periods forward and
#   backward, the Adam step) is recorded once and replayed for every minibatch. On a GPU the arithmetic of an
#   8192-scenario minibatch is tiny; launching its thousands of small kernels one by one from Python is what
#   takes the time, and a replay launches them all at once;
# * **CUDA graph + compiled** — both: fewer, fused kernels, launched at once.

# %%
import traceback

sizes = dict(n_train=1024, n_dev=1024, batch_size=256, epochs=3) if smoke else dict(epochs=8)
repeats = 1 if smoke else repeats
LOOPS = {"eager": dict(compile=False, cuda_graph=False),
         "compiled": dict(compile=True, cuda_graph=False),
         "CUDA graph": dict(compile=False, cuda_graph=True),
         "CUDA graph + compiled": dict(compile=True, cuda_graph=True)}


def measure(on, loop):
    runs = [bench.time_hdpo_epochs(device=on, **LOOPS[loop], **sizes) for _ in range(repeats)]
    table = pd.DataFrame([dict(train=t.train_seconds, dev=t.dev_seconds, amortized=t.amortized_seconds) for t in runs])
    return table.median(), {k: f"{table[k].min():.3f}–{table[k].max():.3f}" for k in table}


epochs, failed = {}, {}
for on in devices:
    for loop in LOOPS if on != "cpu" else ("eager", "compiled"):  # a CUDA graph needs a GPU
        try:
            epochs[(on, loop)] = measure(on, loop)
        except Exception as err:  # an optional loop that fails on this machine is reported, not fatal
            if loop == "eager":
                raise
            traceback.print_exc()
            failed[(on, loop)] = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
            print(f"{on}, {loop}: FAILED ({failed[(on, loop)]})")
            continue
        e, spread = epochs[(on, loop)]
        print(f"{on}, {loop}: {e.train:.3f} s per training epoch, {e.dev:.3f} s per dev evaluation, "
              f"{e.amortized:.3f} s per epoch with dev every 10 epochs (ranges: {spread})")
measured.update(epochs=epochs, failed=failed)
save();

# %% [markdown]
# ## Time to reach 0.5 % of the optimum (L = 4, p = 9)
#
# On the chapter's main device only (the GPU when there is one, with `cuda_graph=True`): this is a user's
# figure, not a comparison of devices.

# %%
optimum = lost_sales_optimum(9.0, 1.0, 4).cost
gaps = {}
for on in devices[-1:]:
    if smoke:
        from hybridrl.scenarios import Protocol
        from hybridrl.train import TrainConfig

        gaps[on] = bench.time_to_gap(optimum, device=on,
                                     protocol=Protocol(n_train=256, n_dev=128, n_test=128, test_periods=100,
                                                       test_warmup=50),
                                     config=TrainConfig(epochs=2, batch_size=128, lr=2e-2, dev_every=1, progress=False))
    else:
        gaps[on] = bench.time_to_gap(optimum, device=on, cuda_graph=on != "cpu")
curve = pd.concat([pd.DataFrame(g.curve, columns=["epoch", "seconds", "test_gap_pct"]).assign(device=on)
                   for on, g in gaps.items()], ignore_index=True)
curve

# %%
for on, g in gaps.items():
    print(f"{on}: within {g.target_pct}% of the optimum after "
          + ("(not reached)" if g.seconds is None else f"{g.seconds:.1f} s"))
measured["gaps"] = gaps
save();

# %% [markdown]
# ## One hybrid policy update (HPO)
#
# The HPO paper's speed question: how long one policy update takes for HPO and for PPO at the largest published
# sizes — the joint replenishment problem with $n = 50$ items (episodes of 100 periods) and the switched LQR with
# $p = 48$, $J = 8$ (20 periods) — with the `paper` profile's configurations: networks [512, 512], batches of 128
# episodes, HPO's full-batch step plus its PPO epochs for the discrete head, PPO's epochs for both heads, and
# the Gumbel-softmax baseline's single pathwise step (`hybridrl.bench.time_hybrid_updates`). Then the JRP's two
# table sweeps at their own batch sizes and largest numbers of items (spec §10.3: batch 16, up to $n = 70$;
# §10.2: batch 512, up to $n = 50$), so the estimate at the end covers them too.

# %%
from dataclasses import replace

from hybridrl import hpo_experiments
from hybridrl.jrp import JointReplenishment, sample_jrp_splits
from hybridrl.lqr import SwitchedLQR, sample_splits

jrp_budget, lqr_budget = hpo_experiments.jrp_budget("paper"), hpo_experiments.lqr_budget("paper")
items, (dim, modes) = (5, (4, 2)) if smoke else (50, (48, 8))
jrp = JointReplenishment(items, horizon=jrp_budget.horizon, warmup=jrp_budget.warmup)
lqr = SwitchedLQR(dim=dim, modes=modes)
small = dict(hidden=(16,), value_hidden=(16,), minibatches=2)  # the smoke profile's networks
# (part of the sweep plan, problem, its splits, the configurations, methods, batch size)
cases = [("JRP", f"JRP n = {items}", jrp, sample_jrp_splits(jrp, 256, 8, 8), jrp_budget.configs,
          ("hpo_full", "ppo", "gumbel_st"), 32 if smoke else None),
         ("switched LQR", f"S-LQR p = {dim}, J = {modes}", lqr, sample_splits(lqr, 256, 8, 8), lqr_budget.configs,
          ("hpo_full", "ppo", "gumbel_st"), 32 if smoke else None)]
for sweep in hpo_experiments.JRP_TABLE_SWEEPS["paper"]:  # at the sweep's largest n (smoke: small, same labels)
    n, batch = (5, 8) if smoke else (max(sweep.items), sweep.batch)
    sweep_jrp = JointReplenishment(n, horizon=jrp_budget.horizon, warmup=jrp_budget.warmup)
    cases.append((f"JRP, batch {sweep.batch}", f"JRP n = {n}", sweep_jrp,
                  sample_jrp_splits(sweep_jrp, max(256, batch), 8, 8), jrp_budget.configs,
                  tuple(m for m in sweep.methods if m != "hpo_decentralized"), batch))
update_rows = []
for part, name, problem, splits, configs, methods, batch in cases:
    for method in methods:
        for on in devices:
            config = replace(configs[method], device=on, **(small if smoke else {}))
            config = replace(config, batch_size=batch or config.batch_size)
            t = bench.time_hybrid_updates(problem, splits, config, updates=1 if smoke else 3, repeats=repeats,
                                          name=name)
            update_rows.append(dict(part=part, problem=name, method=method, device=on, batch=t.batch_size,
                                    hidden=str(t.hidden), seconds_per_update=t.seconds, low=t.spread[0],
                                    high=t.spread[1]))
updates = pd.DataFrame(update_rows)
measured["updates"] = updates
save()
updates

# %% [markdown]
# ## One HDPO epoch on a network
#
# One warehouse with 50 stores (spec §4.4; the benchmark): 8192 training scenarios of 50 periods, one
# epoch in minibatches of 1024 (the `paper` profile's), for every policy of the network chapters, the vanilla
# network with the `paper` profile's layers ([512] × 3); on a GPU also with `cuda_graph=True`, as the `paper`
# budgets train. Then the other networks of the `paper` profile at their largest size and batch: the serial
# system (32768 scenarios, steps of 8192) and transshipment with 10 stores (steps of 1024; 8192 scenarios are
# enough to time a step). The graph network runs small MLPs on every node and edge of every period, so its
# activations grow with scenarios × periods × edges; at 1024 scenarios it keeps them within memory only with
# `checkpoint=True` (recompute in the backward pass).

# %%
from hybridrl import network_experiments

network_rows = []
for setting in network_experiments.SETTINGS:  # each at the `paper` budget's largest size and batch
    paper_budget = network_experiments.network_budget(setting, "paper")
    batch = paper_budget.configs["vanilla"].batch_size
    network_sizes = dict(setting=setting, n_stores=max(paper_budget.stores), batch_size=batch,
                         n_train=min(paper_budget.protocol.n_train, 8 * batch))  # enough steps to time one
    if smoke:
        network_sizes.update(n_stores=min(network_sizes["n_stores"], 3), n_train=256, batch_size=128, periods=10)
    for method in network_experiments.chapter_methods(setting, "paper"):
        extra = dict(checkpoint=True) if method == "gnn" else {}
        for on in devices:
            for graph in (False, True) if on != "cpu" else (False,):
                try:
                    t = bench.time_network_epoch(method, device=on, cuda_graph=graph, **network_sizes, **extra)
                except Exception as err:  # a recorded loop that fails here is reported, not fatal
                    if not graph:
                        raise
                    traceback.print_exc()
                    print(f"{setting} {method} with a CUDA graph on {on}: FAILED ({type(err).__name__})")
                    continue
                network_rows.append(dict(setting=setting, policy=method + (", CUDA graph" if graph else ""),
                                         device=on, stores=t.n_stores, scenarios=t.n_train, batch=t.batch_size,
                                         periods=t.periods, seconds_per_epoch=t.seconds,
                                         seconds_per_step=t.seconds * t.batch_size / t.n_train))
network_epochs = pd.DataFrame(network_rows)
measured["network_epochs"] = network_epochs
save()
network_epochs

# %% [markdown]
# ## The `paper` profile on this device: an estimate
#
# How long would `make reproduce PROFILE=paper` train here, one run at a time? `hybridrl.sweeps.plan` counts
# each chapter's runs and the most gradient steps (HDPO) or policy updates (HPO) they take, from the budgets the
# grids run. Multiplying by the seconds per step measured above gives an estimate where a measurement stands
# for the workload: a single-store step is a quarter of the lost-sales epoch (32768 scenarios in steps of 8192,
# on the loop the `paper` budgets use: a CUDA graph on a GPU), an HPO or PPO update is the update timed above
# at the largest published size and the grid's batch (decentralized HPO counted as full HPO, and the cross-term
# study as its JRP training alone), and a network step is one minibatch of the epochs above at the largest size,
# for every store count (chapter 11's HDPO steps likewise: the single-store step and the one-warehouse vanilla
# step). It is an upper bound in the number of steps (early stopping ends most HDPO runs far sooner) and in the
# instance size (smaller instances are cheaper), and a lower bound where a single-store run trains four cells at
# once; the workloads not measured here are listed, not guessed.

# %%
from hybridrl import sweeps

plan = sweeps.plan("paper")


def seconds_per_step(on: str) -> dict:
    """Seconds per step measured on ``on``, keyed by the plan's ``(part, method)``."""
    loop = "CUDA graph" if (on, "CUDA graph") in epochs else "eager"
    single_store = epochs[(on, loop)][0].amortized / 4
    seconds = {(part, m): single_store for part in ("lost_sales", "backlogged")
               for m in ("hdpo", "base_stock", "capped_base_stock")}
    for r in updates[updates.device == on].itertuples():
        seconds[(r.part, r.method)] = r.seconds_per_update
    for part in set(updates.part):
        seconds[(part, "hpo_decentralized")] = seconds[(part, "hpo_full")]
    seconds[("cross-term study (JRP)", "hpo_full")] = seconds[("JRP", "hpo_full")]
    mine = network_epochs[network_epochs.device == on]
    for r in mine.sort_values("policy").itertuples():  # a CUDA graph's row after (and over) the eager one
        for part in (r.setting, f"{r.setting}, data study"):
            seconds[(part, r.policy.split(",")[0])] = r.seconds_per_step
    # chapter 11's HDPO runs: the vanilla policies above (REINFORCE's sampled steps are not measured)
    seconds[("HDPO vs REINFORCE, lost_sales", "hdpo")] = single_store
    seconds[("HDPO vs REINFORCE, one_warehouse", "hdpo")] = seconds[("one_warehouse", "vanilla")]
    return seconds


estimates = pd.concat([sweeps.estimate_hours(plan, seconds_per_step(on)).assign(device=on) for on in devices],
                      ignore_index=True)
estimates[["device", "chapter", "runs", "steps", "measured_steps_pct", "hours", "not_measured"]]

# %% [markdown]
# ## The whole file
#
# The last part completes `paper/benchmarks.md` (or `benchmarks_gpu.md`), no longer stamped partial:

# %%
measured["estimates"] = estimates
print(save())
