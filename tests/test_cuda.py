"""The same numbers on a GPU as on the CPU, and no host synchronisation inside the per-period loop.

These run only where CUDA is available (or where ``HYBRIDRL_TEST_DEVICE`` names another device, e.g. ``cpu`` to
exercise the tests themselves); elsewhere they are skipped. Tolerances: the CPU and the GPU sum in different
orders, so float32 results agree to about 1e-5 relatively per period; over a rollout of 50-100 periods we
allow 1e-4 relative on mean costs, and 1e-3 after a few training steps (the parameters drift apart slightly).
"""

import os
import warnings

import pytest
import torch

from hybridrl import favorita, inventory, networks, newsvendor
from hybridrl.experiments import lost_sales_grid
from hybridrl.network_policies import GraphNetwork, NetworkMLP, SymmetryAware
from hybridrl.policies import VanillaMLP
from hybridrl.scenarios import Protocol, make_splits
from hybridrl.train import TrainConfig, evaluate, fit

TARGET = os.environ.get("HYBRIDRL_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else None)
pytestmark = pytest.mark.skipif(TARGET is None, reason="no CUDA device (set HYBRIDRL_TEST_DEVICE to force one)")
ROLLOUT_RTOL = 1e-4
TRAINED_RTOL = 1e-3

PROTOCOL = Protocol(n_train=512, n_dev=256, n_test=256, train_periods=50, dev_periods=100, dev_warmup=50,
                    test_periods=200, test_warmup=100)


def close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> bool:
    return bool(torch.allclose(a.double().cpu(), b.double().cpu(), rtol=rtol, atol=rtol * float(b.abs().mean())))


def test_single_store_rollout_and_training_match_the_cpu():
    setting = lost_sales_grid((2, 4), (9,))
    splits = make_splits(setting, PROTOCOL)
    policy = VanillaMLP(setting.n_slots, members=setting.n_stores, init_seeds=[3, 4])
    on_cpu = evaluate(policy, splits.test, 100)
    on_target = evaluate(policy.to(TARGET), splits.test, 100, device=TARGET)
    assert close(on_target, on_cpu, ROLLOUT_RTOL)
    config = dict(epochs=3, batch_size=128, lr=3e-3, dev_every=1, progress=False)
    a = fit(VanillaMLP(setting.n_slots, members=2, init_seeds=[3, 4]), splits.train, splits.dev,
            TrainConfig(**config), dev_warmup=50)
    b = fit(VanillaMLP(setting.n_slots, members=2, init_seeds=[3, 4]), splits.train, splits.dev,
            TrainConfig(device=TARGET, **config), dev_warmup=50)
    assert close(torch.tensor(b.best_dev), torch.tensor(a.best_dev), TRAINED_RTOL)
    c = fit(VanillaMLP(setting.n_slots, members=2, init_seeds=[3, 4]), splits.train, splits.dev,
            TrainConfig(device=TARGET, cuda_graph=True, **config), dev_warmup=50)  # the recorded step
    assert close(torch.tensor(c.best_dev), torch.tensor(a.best_dev), TRAINED_RTOL)


@pytest.mark.parametrize("make", [NetworkMLP, SymmetryAware, GraphNetwork], ids=lambda m: m.__name__)
def test_network_rollouts_match_the_cpu(make):
    network = networks.one_warehouse_network(5)
    splits = networks.make_network_splits(network, PROTOCOL)
    policy = make(network)
    on_cpu = evaluate(policy, splits.test, 100)
    on_target = evaluate(policy.to(TARGET), splits.test, 100, device=TARGET)
    assert close(on_target, on_cpu, ROLLOUT_RTOL)
    config = dict(epochs=2, batch_size=128, lr=1e-3, dev_every=1, progress=False)
    a = fit(make(network), splits.train, splits.dev, TrainConfig(**config), dev_warmup=50)
    b = fit(make(network), splits.train, splits.dev, TrainConfig(device=TARGET, cuda_graph=True, **config),
            dev_warmup=50)
    assert close(torch.tensor(b.best_dev), torch.tensor(a.best_dev), TRAINED_RTOL)


def test_hybrid_training_runs_and_greedy_evaluation_matches_the_cpu():
    from dataclasses import replace

    from hybridrl.hpo import HybridConfig, evaluate_hybrid, train_hybrid
    from hybridrl.jrp import JointReplenishment, sample_jrp_splits

    problem = JointReplenishment(5, horizon=40, warmup=10)
    data = sample_jrp_splits(problem, 64, 32, 32)
    for method in ("hpo_full", "hpo_decentralized", "ppo", "gumbel_st"):
        config = HybridConfig(method=method, updates=2, batch_size=32, hidden=(32,), value_hidden=(32,),
                              dev_every=1, device=TARGET)
        result = train_hybrid(problem, data.train, data.dev, config)
        policy = result.policy
        on_target = evaluate_hybrid(policy, problem, data.test)
        on_cpu = evaluate_hybrid(policy.to("cpu"), problem, data.test)
        assert close(on_target, on_cpu, ROLLOUT_RTOL), method
        assert replace(config, device="cpu")  # the same config runs on the CPU


def test_real_data_policies_match_the_cpu(tmp_path):
    shared = os.environ.get("HYBRIDRL_DATA")
    if not favorita.available(shared):
        pytest.skip("Favorita data not found (HYBRIDRL_DATA)")
    test = favorita.one_store_splits(favorita.load_favorita(shared), n_series=300).test
    model = newsvendor.QuantileForecaster(init_seed=1)
    for policy in (newsvendor.DataDrivenPolicy(favorita.N_SLOTS, init_seed=2),
                   newsvendor.make_newsvendor("transformed_nv", model),
                   newsvendor.make_newsvendor("returns_nv", model)):
        on_cpu = evaluate(policy, test, favorita.WARMUP)
        on_target = evaluate(policy.to(TARGET), test, favorita.WARMUP, device=TARGET)
        assert close(on_target, on_cpu, ROLLOUT_RTOL), type(policy).__name__
    oracle = newsvendor.JustInTime(test.demand)
    on_cpu = evaluate(oracle, test, favorita.WARMUP, batch_size=test.n)
    on_target = evaluate(oracle.to(TARGET), test, favorita.WARMUP, batch_size=test.n, device=TARGET)
    assert close(on_target, on_cpu, ROLLOUT_RTOL)


def test_the_quantile_forecaster_trains_to_the_cpus_numbers():
    data = favorita.load_favorita(os.environ.get("HYBRIDRL_DATA")) if favorita.available(
        os.environ.get("HYBRIDRL_DATA")) else None
    if data is None:
        pytest.skip("Favorita data not found (HYBRIDRL_DATA)")
    series = data.series()[:200]
    scale, calendar = favorita.training_mean(series), data.calendar()
    tr, dv = favorita.TRAIN, favorita.DEV
    train = newsvendor.forecaster_samples(series, tr.start, tr.end, scale=scale, calendar=calendar)
    dev = newsvendor.forecaster_samples(series, dv.start, dv.end, scale=scale, calendar=calendar)
    fits = [newsvendor.fit_forecaster(train, dev, epochs=3, batch_size=1024, progress=False, device=on)
            for on in ("cpu", TARGET)]
    assert next(fits[1].forecaster.parameters()).device.type == "cpu"  # returned on the CPU, wherever it trained
    history = [torch.tensor([[r["train_pinball"], r["dev_pinball"]] for r in f.history]) for f in fits]
    assert close(history[1], history[0], TRAINED_RTOL)


def _single_store_periods(policy_of):
    setting = lost_sales_grid((4,), (9,))
    scenarios = make_splits(setting, PROTOCOL).train.to(TARGET)
    policy = policy_of(setting).to(TARGET)
    slots = inventory.arrival_slots(scenarios.lead_time, setting.n_slots)

    def run():
        state = scenarios.initial_inventory
        for t in range(5):
            _, result = inventory._period(policy, state, scenarios.demand[..., t], slots, scenarios.underage_cost,
                                          scenarios.holding_cost, scenarios.lead_time, scenarios.mean_demand, t,
                                          True, False, False)
            state = result.inventory
    return run


def _network_periods(policy_of):
    network = networks.one_warehouse_network(5)
    scenarios = networks.make_network_splits(network, PROTOCOL).train.to(TARGET)
    policy = policy_of(network).to(TARGET)

    def run():
        state = scenarios.initial_inventory
        for t in range(5):
            requests = policy(networks.NetworkObservation(state, network, t))
            state = networks.network_step(network, state, requests, scenarios.demand[..., t]).inventory
    return run


def _hybrid_rollout(problem_of):
    from hybridrl.hybrid import HybridPolicy, hybrid_rollout

    problem = problem_of()
    policy = HybridPolicy(problem.observation_dim, problem.n_choices, problem.action_dim, hidden=(32,),
                          action_map=getattr(problem, "action_map", None)).to(TARGET)
    generator = torch.Generator(device=TARGET).manual_seed(0)
    episode = problem.sample(64, torch.Generator().manual_seed(1)).to(TARGET)
    return lambda: hybrid_rollout(policy, problem, episode, generator=generator, exploration_std=0.1)


def _reinforce(make):
    from hybridrl.reinforce import Reinforce

    return lambda setting: Reinforce(make(setting))


LOOPS = {
    "single store, VanillaMLP": lambda: _single_store_periods(lambda s: VanillaMLP(s.n_slots)),
    "single store, REINFORCE": lambda: _single_store_periods(_reinforce(lambda s: VanillaMLP(s.n_slots))),
    "network, NetworkMLP": lambda: _network_periods(NetworkMLP),
    "network, SymmetryAware": lambda: _network_periods(SymmetryAware),
    "network, GraphNetwork": lambda: _network_periods(GraphNetwork),
    "network, REINFORCE": lambda: _network_periods(_reinforce(NetworkMLP)),
    "JRP n = 5, hybrid rollout": lambda: _hybrid_rollout(lambda: __import__("hybridrl.jrp").jrp.JointReplenishment(
        5, horizon=10, warmup=2)),
    "switched LQR, hybrid rollout": lambda: _hybrid_rollout(lambda: __import__("hybridrl.lqr").lqr.SwitchedLQR(
        dim=4, modes=2)),
}


@pytest.mark.skipif(not str(TARGET).startswith("cuda"), reason="host synchronisation is a CUDA notion")
@pytest.mark.parametrize("loop", list(LOOPS))
def test_no_host_synchronisation_inside_the_period_loop(loop):
    """Run periods of each simulator with its policies under CUDA's sync debug mode: any operation that makes
    the host wait for the device warns. The set-up (and one warm-up run, which makes the one-off copies of
    constant tensors to the device) runs outside it."""
    run = LOOPS[loop]()
    run()
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [f"{w.filename}:{w.lineno}: {str(w.message)[:80]}" for w in caught
             if "called a synchronizing" in str(w.message)]  # (not the mode's own "prototype" notice)
    assert not syncs, "\n".join(syncs[:10])


DETERMINISM_SCRIPT = r"""
import sys, warnings
import torch
from hybridrl import networks
from hybridrl.hpo import HybridConfig, train_hybrid
from hybridrl.jrp import JointReplenishment, sample_jrp_splits
from hybridrl.network_policies import GraphNetwork
from hybridrl.scenarios import Protocol
from hybridrl.train import TrainConfig, fit

device = sys.argv[1]
protocol = Protocol(n_train=256, n_dev=128, n_test=128, train_periods=30, dev_periods=40, dev_warmup=10,
                    test_periods=40, test_warmup=10)
network = networks.one_warehouse_network(5)
splits = networks.make_network_splits(network, protocol)
problem = JointReplenishment(5, horizon=30, warmup=5)
data = sample_jrp_splits(problem, 64, 32, 32)

def parameters():
    graph = fit(GraphNetwork(network), splits.train, splits.dev,
                TrainConfig(epochs=2, batch_size=64, lr=1e-3, dev_every=1, device=device, progress=False,
                            cuda_graph=device.startswith("cuda")),  # as the paper budgets run
                dev_warmup=10).policy
    hybrid = train_hybrid(problem, data.train, data.dev, HybridConfig(
        method="hpo_full", updates=3, batch_size=32, hidden=(32,), value_hidden=(32,), dev_every=1,
        device=device)).policy
    return [p.detach().cpu().clone() for m in (graph, hybrid) for p in m.parameters()]

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    first, second = parameters(), parameters()
assert torch.are_deterministic_algorithms_enabled() == device.startswith("cuda"), "flags not set"
lacking = sorted({str(w.message)[:160] for w in caught if "deterministic" in str(w.message)})
assert not lacking, "operations without a deterministic kernel:\n" + "\n".join(lacking)
assert all(torch.equal(a, b) for a, b in zip(first, second)), "two runs with the same seed differ"
print("identical", len(first), "tensors")
"""


def test_deterministic_mode_gives_identical_runs():
    """``HYBRIDRL_DETERMINISTIC=1``: two trainings with the same seed (the graph network, whose message passing
    sums by index, and HPO) give bit-identical parameters on the device, and no operation lacks a deterministic
    kernel. In a fresh process, because cuBLAS reads its setting when it starts."""
    import subprocess
    import sys

    env = {**os.environ, "HYBRIDRL_DETERMINISTIC": "1"}
    done = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT, str(TARGET)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "identical" in done.stdout
