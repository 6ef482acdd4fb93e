"""The network simulator: feasibility and conservation over random networks, lead-time timing, gradients against
finite differences, the serial system against its exact optimum, and the instances of the spec."""

import math

import numpy as np
import pytest
import torch

from hybridrl.inventory import rollout
from hybridrl.network_policies import EchelonBaseStock, NetworkMLP, SymmetryAware
from hybridrl.networks import (Edge, Location, Network, NetworkObservation, make_network_splits, network_step,
                               one_warehouse_network, sample_network_scenarios, serial_network,
                               transshipment_network)
from hybridrl.references import serial_optimum
from hybridrl.scenarios import Protocol

torch.set_num_threads(1)


def random_network(rng: np.random.Generator) -> Network:
    """A random supply network: 1-3 upstream locations (some of them centers), 1-6 stores, every store supplied
    by 1-2 upstream locations or from outside, random lead times, lost sales or backlog."""
    n_up, n_st = int(rng.integers(1, 4)), int(rng.integers(1, 7))
    locations, edges = [], []
    for k in range(n_up):
        center = bool(rng.random() < 0.25) and k > 0
        locations.append(Location(f"u{k}", float(rng.uniform(0, 1)), holds_stock=not center))
        supplier = None if k == 0 or rng.random() < 0.4 else int(rng.integers(0, k))
        edges.append(Edge(supplier, k, int(rng.integers(1, 5)), unit_cost=float(rng.uniform(0, 0.5))))
    for s in range(n_st):
        locations.append(Location(f"s{s}", float(rng.uniform(0.5, 1.5)), store=True,
                                  underage_cost=float(rng.uniform(2, 12)), mean=float(rng.uniform(2, 8)),
                                  std=float(rng.uniform(0.5, 3))))
        suppliers = rng.choice(n_up, size=int(rng.integers(1, min(2, n_up) + 1)), replace=False)
        for k in suppliers:
            edges.append(Edge(int(k), n_up + s, int(rng.integers(1, 5))))
    for k in range(n_up):  # every upstream location must supply somebody
        if not any(e.supplier == k for e in edges):
            edges.append(Edge(k, n_up + int(rng.integers(0, n_st)), int(rng.integers(1, 5))))
    lost = bool(rng.random() < 0.5)
    return Network("random", tuple(locations), tuple(edges), unmet_demand="lost" if lost else "backlog",
                   correlation=float(rng.uniform(0, 0.6)), truncate_demand=True)


@pytest.mark.parametrize("seed", range(120))
def test_feasibility_and_conservation_on_random_networks(seed):
    """No location ever ships more than its on-hand (requests are random, often far too large), every unit is
    accounted for (initial + receipts - shipments - sales - lost = final, per location), and stock in transit
    arrives exactly after its lead time."""
    rng = np.random.default_rng(seed)
    network = random_network(rng)
    B, T = 16, 12
    scenarios = sample_network_scenarios(network, B, T, demand_seed=seed, inventory_seed=seed + 1)
    generator = torch.Generator().manual_seed(seed)
    inventory = scenarios.initial_inventory.double()
    stores = network.tensor("store_index")
    supplier, receiver = network.tensor("supplier"), network.tensor("receiver")
    lead = network.tensor("lead_time")
    total_start = inventory.sum()
    ordered_from_outside = torch.zeros(())
    sold_total = torch.zeros(())
    pending = []  # (arrival period, receiver, amount [B])
    for t in range(T):
        requests = 30 * torch.rand(B, network.n_edges, generator=generator, dtype=torch.float64) ** 3
        on_hand = inventory[..., 0]
        step = network_step(network, inventory, requests, scenarios.demand[..., t].double())
        flows = step.shipped
        internal = supplier >= 0
        shipped_out = torch.zeros_like(on_hand).index_add(1, supplier[internal], flows[:, internal])
        assert bool((shipped_out <= on_hand.clamp_min(0) + 1e-9).all()), "a location shipped more than it had"
        assert bool((flows >= -1e-12).all())
        centers = ~network.tensor("holds_stock")
        if bool(centers.any()):  # a center ships everything it has
            assert torch.allclose(shipped_out[:, centers], on_hand[:, centers].clamp_min(0), atol=1e-6)
        for e in range(network.n_edges):
            pending.append((t + int(lead[e]), int(receiver[e]), flows[:, e]))
        ordered_from_outside = ordered_from_outside + flows[:, ~internal].sum()
        sold_total = sold_total + step.sold.sum()
        # arrival timing: on hand at the start of period t+1 is the stock left after period t plus exactly what
        # was shipped L periods before (and the initial pipeline's slot t+1)
        post = (on_hand - shipped_out).index_copy(
            1, stores, (on_hand[:, stores] - scenarios.demand[..., t].double()).clamp_min(0) if network.lost_sales
            else on_hand[:, stores] - scenarios.demand[..., t].double())
        arriving = scenarios.initial_inventory.double()[..., t + 1] if t + 1 < network.n_slots \
            else torch.zeros_like(post)
        for due, r, amount in pending:
            if due == t + 1:
                arriving[:, r] += amount
        inventory = step.inventory
        assert torch.allclose(inventory[..., 0], post + arriving, atol=1e-6)
    if network.lost_sales:
        # every unit that entered (initial stock + outside orders) is sold, or still in the network
        assert torch.allclose(total_start + ordered_from_outside, sold_total + inventory.sum(), rtol=1e-9, atol=1e-6)
    else:
        # backlog: stock balance with the demand itself (backlogged demand is paid later)
        demand = scenarios.demand.double().sum()
        assert torch.allclose(total_start + ordered_from_outside - demand, inventory.sum(), rtol=1e-9, atol=1e-6)


def test_an_order_arrives_exactly_after_its_lead_time():
    net = serial_network(9.0)
    B = 1
    inventory = torch.zeros(B, net.n_locations, net.n_slots)
    requests = torch.zeros(B, net.n_edges)
    requests[0, 0] = 7.0  # echelon 0 orders from outside, lead time 2
    demand = torch.zeros(B, 1)
    for t in range(3):
        step = network_step(net, inventory, requests if t == 0 else torch.zeros_like(requests), demand)
        inventory = step.inventory
        assert float(inventory[0, 0, 0]) == (7.0 if t == 1 else (7.0 if t == 2 else 0.0))


def test_pathwise_gradient_matches_finite_differences_on_a_backlogged_network():
    """Interior (backlogged, stock rarely hits zero at the warehouse): autograd equals central differences."""
    net = transshipment_network(3)
    scenarios = sample_network_scenarios(net, 64, 10, demand_seed=3, inventory_seed=4).double()
    policy = EchelonBaseStock(net).double()
    loss = lambda: rollout(policy, scenarios).cost.mean()  # noqa: E731
    grad = torch.autograd.grad(loss(), policy.raw)[0]
    eps = 1e-6
    for i in range(net.n_locations):
        with torch.no_grad():
            policy.raw[0, i] += eps
            up = float(loss())
            policy.raw[0, i] -= 2 * eps
            down = float(loss())
            policy.raw[0, i] += eps
        assert abs((up - down) / (2 * eps) - float(grad[0, i])) < 1e-5 * max(1.0, abs(float(grad[0, i])))


def test_the_serial_optimum_simulated_on_the_network_simulator():
    """The Clark-Scarf levels on the network simulator cost the exact optimum, within the simulation's error."""
    optimum = serial_optimum(9.0)
    net = serial_network(9.0)
    policy = EchelonBaseStock(net, levels=optimum.levels)
    scenarios = sample_network_scenarios(net, 2000, 600, demand_seed=11, inventory_seed=12)
    with torch.no_grad():
        cost = rollout(policy, scenarios).cost[..., 250:].mean(-1).squeeze(1).double()
    se = float(cost.std() / math.sqrt(len(cost)))
    assert abs(float(cost.mean()) - optimum.cost) < 3 * se, (float(cost.mean()), optimum.cost, se)
    # and a clearly worse policy is clearly worse
    worse = EchelonBaseStock(net, levels=[lvl + 6 for lvl in optimum.levels])
    with torch.no_grad():
        assert float(rollout(worse, scenarios[:500]).cost[..., 250:].mean()) > optimum.cost + 0.3


def test_spec_instances():
    net = one_warehouse_network(10)
    assert net.n_stores == 10 and net.n_locations == 11 and net.lost_sales
    five = one_warehouse_network(5)
    assert repr(five.locations[1:]) == repr(net.locations[1:6])  # the first stores of a larger instance
    means = net.mean_demand
    assert bool(((means >= 2.5) & (means <= 7.5)).all())
    cv = net.tensor("store_std") / means
    assert bool(((cv >= 0.25) & (cv <= 0.5)).all())
    assert {e.lead_time for e in net.edges[1:]} <= {2, 3} and net.edges[0].lead_time == 3
    # the spec's check values of the S = 10 instance (§4.4): the reference's own draws (§3.1)
    published = {
        "mean": [3.743, 4.75, 4.555, 3.801, 6.852, 3.425, 2.598, 7.266, 5.902, 4.933],
        "std": [1.765, 2.124, 1.622, 1.405, 1.714, 1.59, 0.879, 2.701, 2.127, 2.391],
        "underage_cost": [10.237, 9.331, 6.975, 8.447, 10.519, 9.059, 7.287, 10.909, 11.459, 11.615],
        "holding_cost": [1.086, 1.023, 1.007, 1.066, 0.996, 0.829, 0.846, 1.043, 1.164, 0.886],
    }
    stores = net.locations[1:]
    for field, values in published.items():
        assert [round(getattr(s, field), 3) for s in stores] == values, field
    assert [e.lead_time for e in net.edges[1:]] == [2, 3, 2, 2, 2, 3, 3, 3, 3, 3]
    assert [s.mean for s in transshipment_network(10).locations[1:]] == published["mean"]  # §4.5: same seeds
    assert repr(one_warehouse_network(5, seed=1).locations[1:]) != repr(five.locations[1:])  # another instance
    ts = transshipment_network(5)
    assert not ts.locations[0].holds_stock and not ts.lost_sales and not ts.truncate_demand
    demand = sample_network_scenarios(ts, 4000, 20, demand_seed=0, inventory_seed=0).demand
    assert bool((demand < 0).any())  # not truncated (spec §4.5)
    flat = demand.permute(1, 0, 2).reshape(5, -1)
    assert abs(float(torch.corrcoef(flat)[0, 1]) - 0.5) < 0.03
    serial = serial_network()
    assert [e.lead_time for e in serial.edges] == [2, 4, 3, 4]


@pytest.mark.parametrize("bad, match", [
    (lambda: Edge(0, 1, 0), "lead_time"),
    (lambda: Edge(1, 1, 2), "own"),
    (lambda: Network("x", (Location("s", 1.0, store=True, underage_cost=1, mean=1, std=1),), ()), "supply edge"),
    (lambda: Network("x", (Location("s", 1.0, store=True, underage_cost=1, mean=1, std=1),), (Edge(None, 0, 1),),
                     unmet_demand="sold"), "unmet_demand"),
    (lambda: Network("x", (Location("s", 1.0, store=True, underage_cost=1, mean=1, std=1),), (Edge(None, 0, 1),),
                     unmet_demand="lost", truncate_demand=False), "lost sales"),
    (lambda: Location("s", 1.0, store=True, underage_cost=-1, mean=1, std=1), "underage_cost"),
])
def test_bad_networks_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_negative_requests_are_rejected_after_the_rollout():
    net = one_warehouse_network(3)
    scenarios = sample_network_scenarios(net, 4, 5, demand_seed=0, inventory_seed=0)
    with pytest.raises(ValueError, match="negative"):
        rollout(lambda obs: -torch.ones(obs.inventory.shape[0], net.n_edges), scenarios)


@pytest.mark.parametrize("make", [EchelonBaseStock, NetworkMLP, SymmetryAware])
def test_policies_run_train_and_evaluate_through_the_training_loop(make):
    from hybridrl.train import TrainConfig, evaluate, fit

    net = one_warehouse_network(3)
    splits = make_network_splits(net, Protocol(n_train=128, n_dev=64, n_test=64, train_periods=20, dev_periods=30,
                                               dev_warmup=10, test_periods=30, test_warmup=10))
    policy = make(net) if make is EchelonBaseStock else make(net, init_seed=0)
    before = float(evaluate(policy, splits.dev, 10).mean())
    result = fit(policy, splits.train, splits.dev, TrainConfig(epochs=6, batch_size=64, lr=1e-2 if make is
                                                               EchelonBaseStock else 3e-3, dev_every=2,
                                                               progress=False), dev_warmup=10)
    assert result.best_dev[0] < before
    test = evaluate(result.policy, splits.test, 10)
    assert test.shape == (64, 3) and bool(torch.isfinite(test).all())


def test_the_narrow_context_ablation_is_the_symmetry_aware_net_with_a_narrow_context():
    """``symmetry_aware_narrow``: the same shared store head, a context of 8 numbers from a hidden layer of 32
    instead of the spec's 256 from 256; everything else the symmetry-aware net's."""
    from hybridrl.network_experiments import NARROW_CONTEXT, make_network_policy

    net = one_warehouse_network(5)
    spec, narrow = (make_network_policy(m, net, seed=3) for m in ("symmetry_aware", "symmetry_aware_narrow"))
    assert type(narrow) is SymmetryAware and NARROW_CONTEXT == dict(context=8, context_hidden=(32,))
    assert [tuple(w.shape[-2:]) for w in spec.context.weights] == [(net.n_locations * net.n_slots, 256), (256, 256)]
    assert [tuple(w.shape[-2:]) for w in narrow.context.weights] == [(net.n_locations * net.n_slots, 32), (32, 8)]
    # the store head reads the same inputs but the context: 256 - 8 fewer
    assert spec.store_head.weights[0].shape[-2] - narrow.store_head.weights[0].shape[-2] == 248
    scenarios = sample_network_scenarios(net, 4, 5, demand_seed=0, inventory_seed=0)
    assert bool(torch.isfinite(rollout(narrow, scenarios).cost).all())


def test_compiled_network_rollout_matches_eager(monkeypatch):
    """``compile=True`` runs each period as one compiled unit: the same costs and gradients up to rounding, and it
    really compiles (a silent fall-back to eager would make the comparison pass trivially). The unit is traced and
    differentiated by PyTorch's compiler as in training, but lowered by its ``aot_eager`` backend: the C++ code
    generation of the default backend would add some 25 s to the test suite (the single-store test covers it)."""
    from torch._dynamo.utils import counters

    from hybridrl import networks

    monkeypatch.setattr(networks, "_compiled_network_unit",
                        torch.compile(networks._network_period, backend="aot_eager"))
    net = one_warehouse_network(3)
    scenarios = sample_network_scenarios(net, 16, 6, demand_seed=1, inventory_seed=2)
    policy = NetworkMLP(net, hidden=(16, 16), init_seed=0)
    outcomes = []
    for compile in (False, True):
        compiled_before = counters["stats"]["unique_graphs"]
        policy.zero_grad()
        trajectory = rollout(policy, scenarios, compile=compile)
        trajectory.cost.mean().backward()
        outcomes.append((trajectory.cost.detach(), [p.grad.clone() for p in policy.parameters()]))
    assert counters["stats"]["unique_graphs"] > compiled_before
    torch.testing.assert_close(outcomes[0][0], outcomes[1][0], rtol=1e-4, atol=1e-4)
    for eager, compiled in zip(outcomes[0][1], outcomes[1][1]):
        torch.testing.assert_close(eager, compiled, rtol=1e-3, atol=1e-5)


def test_observation_echelon_position():
    net = serial_network()
    inventory = torch.arange(net.n_locations * net.n_slots, dtype=torch.float32).view(1, net.n_locations, -1)
    obs = NetworkObservation(inventory, net, 0)
    ip = inventory.sum(-1)[0]
    expected = torch.stack([ip[k:].sum() for k in range(net.n_locations)])
    assert torch.allclose(obs.echelon_position[0], expected)


def test_data_efficiency_runs_take_the_same_number_of_gradient_steps(tmp_path, monkeypatch):
    """Fewer training scenarios mean more epochs over them, never fewer gradient steps (the comparison is about
    data, not about training time)."""
    from hybridrl import network_experiments, paths

    monkeypatch.setattr(paths, "CACHE", tmp_path)
    budget = network_experiments.network_budget("one_warehouse", "smoke")
    full = network_experiments.run_network("one_warehouse", 3, "vanilla", 0, "smoke")
    small = network_experiments.run_network("one_warehouse", 3, "vanilla", 0, "smoke", n_train=8)
    steps = lambda r, n: r["epochs"] * max(1, n // min(budget.configs["vanilla"].batch_size, n))  # noqa: E731
    assert small["train_scenarios"] == 8 and full["train_scenarios"] == budget.protocol.n_train
    assert steps(small, 8) >= steps(full, budget.protocol.n_train)
    assert small["epochs"] > full["epochs"]
    with pytest.raises(ValueError, match="method"):
        network_experiments.run_network("one_warehouse", 3, "mlp", 0, "smoke")
    with pytest.raises(ValueError, match="setting"):
        network_experiments.make_network("two_warehouses", 3)


def test_an_interrupted_network_run_resumes_from_its_training_state(tmp_path, monkeypatch):
    """A network run keeps its training state at every dev evaluation: a run that dies after training (here, in
    its test evaluation) resumes from that state instead of training again, gives the uninterrupted run's record,
    and leaves no state behind once the record is stored."""
    from hybridrl import network_experiments, paths

    monkeypatch.setattr(paths, "CACHE", tmp_path / "whole")
    whole = network_experiments.run_network("serial", 1, "vanilla", 0, "smoke")
    monkeypatch.setattr(paths, "CACHE", tmp_path / "interrupted")
    real_evaluate = network_experiments.evaluate

    def dies(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(network_experiments, "evaluate", dies)
    with pytest.raises(KeyboardInterrupt):
        network_experiments.run_network("serial", 1, "vanilla", 0, "smoke")
    assert len(list((tmp_path / "interrupted").rglob("*.ckpt"))) == 1
    monkeypatch.setattr(network_experiments, "evaluate", real_evaluate)
    from hybridrl import train

    training_rollouts = []
    real_rollout = train.rollout
    monkeypatch.setattr(train, "rollout", lambda *a, **k: training_rollouts.append(torch.is_grad_enabled())
                        or real_rollout(*a, **k))
    resumed = network_experiments.run_network("serial", 1, "vanilla", 0, "smoke")
    assert not any(training_rollouts)  # resumed at its last epoch: no gradient step taken again
    assert resumed["test_cost"] == whole["test_cost"] and resumed["epochs"] == whole["epochs"]
    assert [h["dev_cost"] for h in resumed["history"]] == [h["dev_cost"] for h in whole["history"]]
    assert not list((tmp_path / "interrupted").rglob("*.ckpt"))


def test_vanilla_network_shares_each_suppliers_on_hand_by_a_softmax():
    """Spec §6.2: per supplier, a softmax over its receivers' logits (plus a keep option unless it cannot hold
    stock) times its on-hand; sigmoid(z)·on-hand with one receiver (the serial map); sigmoid(z)·U outside."""
    from hybridrl.network_policies import location_demand

    torch.manual_seed(0)
    for net in (one_warehouse_network(4), transshipment_network(3), serial_network()):
        policy = NetworkMLP(net, hidden=(8,), init_seed=1)
        inventory = 10 * torch.rand(6, net.n_locations, net.n_slots)
        obs = NetworkObservation(inventory, net, 0)
        z = policy.mlp((inventory / policy.scale[:, None]).flatten(1).unsqueeze(0))[0]
        requests = policy(obs)
        supplier, receiver = net.tensor("supplier"), net.tensor("receiver")
        on_hand = obs.on_hand.clamp_min(0)
        for k in range(net.n_locations):
            out = torch.nonzero(supplier == k).flatten()
            if not len(out):
                continue
            keep = [torch.zeros(6, 1)] if net.locations[k].holds_stock else []
            share = torch.softmax(torch.cat([z[:, out], *keep], dim=1), dim=1)[:, :len(out)]
            torch.testing.assert_close(requests[:, out], share * on_hand[:, k:k + 1])
            if len(out) == 1 and keep:
                torch.testing.assert_close(requests[:, out[0]], torch.sigmoid(z[:, out[0]]) * on_hand[:, k])
            if not keep:  # a transshipment center ships everything
                torch.testing.assert_close(requests[:, out].sum(1), on_hand[:, k])
        outside = torch.nonzero(supplier < 0).flatten()
        bound = 4 * location_demand(net)[receiver[outside]]
        torch.testing.assert_close(requests[:, outside], torch.sigmoid(z[:, outside]) * bound)


def test_data_needed_finds_the_smallest_size_that_matches_the_reference():
    import pandas as pd

    from hybridrl.network_experiments import data_needed

    efficiency = pd.DataFrame(dict(
        method=["vanilla"] * 3 + ["symmetry_aware"] * 3 + ["gnn"] * 3,
        train_scenarios=[16, 256, 1024] * 3,
        gap_pct=[20.0, 14.0, 12.0, 15.0, 12.5, 11.9, 12.0, 11.0, 10.0]))
    claim = data_needed(efficiency).set_index("method")
    assert claim.loc["gnn", "scenarios"] == 16 and claim.loc["gnn", "fraction"] == 16 / 1024  # equal gap counts
    assert claim.loc["symmetry_aware", "scenarios"] == 1024 and claim.loc["symmetry_aware", "fraction"] == 1.0
    never = data_needed(efficiency.assign(gap_pct=lambda d: d.gap_pct.where(d.method == "vanilla", 99.0)))
    assert never.scenarios.isna().all() and never.fraction.isna().all()
    with pytest.raises(ValueError, match="reference"):
        data_needed(efficiency, reference="ppo")
