"""Real data on a network (spec §4.8): the profit objective of the network simulator, the real-data fields of
network scenarios and observations, the 3-warehouse network and its splits, and the policies built for it
(data-driven net, scaled echelon stock, just-in-time oracle).

The tests that read the Favorita files skip, with the reason, when the data folder is missing; the simulator
tests run without it."""

import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from hybridrl.favorita import TEST, TRAIN, WARMUP, FavoritaData, Window, available, load_favorita
from hybridrl.favorita_network import (draw_real_data_network, network_splits, network_store_means,
                                       real_data_network)
from hybridrl.inventory import rollout
from hybridrl.network_policies import NetworkDataDriven, NetworkJustInTime, ScaledEchelonStock
from hybridrl.networks import (Edge, Location, Network, NetworkObservation, NetworkScenarios, network_step,
                               one_warehouse_network, sample_network_scenarios, serial_network)
from hybridrl.train import TrainConfig, evaluate, fit

torch.set_num_threads(1)

DATA = Path(os.environ.get("HYBRIDRL_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(scope="module")
def data():
    if not available(DATA):
        pytest.skip(f"Favorita data not found under {DATA} (favorita/weekly_sales_21_stores.npz and weeks.csv); "
                    f"set HYBRIDRL_DATA to the folder that contains favorita/")
    return load_favorita(DATA)


@pytest.fixture(scope="module")
def network():
    return real_data_network(0)


@pytest.fixture(scope="module")
def splits(data, network):
    return network_splits(data, network)


def tiny(objective="profit", store_lead=1):
    """A warehouse (h 0.3, outside lead 1, unit cost 0.5) and one or two lost-sales stores."""
    locations = (Location("w", 0.3), Location("a", 1.0, store=True, underage_cost=9.0, mean=4.0),
                 Location("b", 0.8, store=True, underage_cost=7.0, mean=3.0))
    edges = (Edge(None, 0, 1, unit_cost=0.5), Edge(0, 1, store_lead), Edge(0, 2, 2))
    return Network("tiny", locations, edges, unmet_demand="lost", initial_inventory=0.0, objective=objective)


# ----------------------------------------------------------------------------------------------------------------
# The profit objective of the network simulator
# ----------------------------------------------------------------------------------------------------------------
def test_profit_store_cost_by_hand():
    """Store cost -p·min(x, d) + h·(x - d)^+, upstream holding and procurement as under "cost"."""
    inventory = torch.tensor([[[10.0, 0.0], [4.0, 0.0], [6.0, 2.0]]])
    requests = torch.tensor([[5.0, 3.0, 9.0]])  # 12 asked of a warehouse holding 10: rationed
    demand = torch.tensor([[6.0, 2.0]])
    step = network_step(tiny("profit"), inventory, requests, demand)
    # warehouse ships all 10, keeps 0, buys 5 at 0.5; a: sells 4 of 6 (margin 9); b: sells 2, keeps 4 (h 0.8)
    torch.testing.assert_close(step.location_cost, torch.tensor([[2.5, -36.0, -14.0 + 3.2]]))
    torch.testing.assert_close(step.sold, torch.tensor([[4.0, 2.0]]))
    cost = network_step(tiny("cost"), inventory, requests, demand)
    torch.testing.assert_close(cost.location_cost, torch.tensor([[2.5, 18.0, 3.2]]))
    torch.testing.assert_close(step.inventory, cost.inventory)


def test_objective_is_checked_and_enters_the_repr_only_when_it_is_profit():
    net = one_warehouse_network(3)
    assert "objective" not in repr(net)
    assert repr(replace(net, objective="cost")) == repr(net)
    assert repr(replace(net, objective="profit")).endswith(", objective=profit)")
    with pytest.raises(ValueError, match="objective"):
        replace(net, objective="revenue")


def test_profit_rollout_equals_minus_the_profit_by_hand():
    """Two periods of a warehouse and one store (lead times 1) under a constant policy, by hand."""
    net = Network("one", (Location("w", 0.3), Location("s", 1.0, store=True, underage_cost=9.0, mean=3.0)),
                  (Edge(None, 0, 1, unit_cost=0.5), Edge(0, 1, 1)), initial_inventory=0.0, objective="profit")
    scenarios = NetworkScenarios(net, torch.tensor([[[4.0, 1.0]]]), torch.tensor([[[5.0], [3.0]]]))
    policy = lambda obs: torch.tensor([[4.0, 2.0]])  # noqa: E731  outside 4, warehouse -> store 2
    # t=0: store sells 3 (27), keeps 0; warehouse 5 - 2 = 3 kept (0.9), buys 4 (2.0)
    # t=1: warehouse 3 + 4 = 7, ships 2, keeps 5 (1.5), buys 4 (2.0); store 0 + 2: sells 1 (9), keeps 1 (1.0)
    profit = (27 - 0.9 - 2.0) + (9 - 1.0 - 1.5 - 2.0)
    trajectory = rollout(policy, scenarios, record=True)
    assert float(trajectory.cost.sum()) == pytest.approx(-profit)
    torch.testing.assert_close(trajectory.location_cost[0], torch.tensor([[2.9, 3.5], [-27.0, -8.0]]))


@pytest.mark.parametrize("seed", range(6))
def test_conservation_and_feasibility_under_profit(seed):
    """Per location: initial + receipts - shipments - sales = final (lost sales leave nothing behind); no
    warehouse ships more than its on-hand; store cost = -p·sold + h·(on-hand left)."""
    net = replace(one_warehouse_network(4, seed=seed), objective="profit")
    B, T = 8, 10
    scenarios = sample_network_scenarios(net, B, T, demand_seed=seed, inventory_seed=seed + 1)
    gen = torch.Generator().manual_seed(seed)
    inventory = scenarios.initial_inventory.double()
    start = inventory.sum(-1)
    moved = torch.zeros_like(start)
    supplier, receiver = net.tensor("supplier"), net.tensor("receiver")
    internal = supplier >= 0
    stores = net.tensor("store_index")
    p, h = net.tensor("underage_cost").double(), net.tensor("holding_cost").double()[stores]
    for t in range(T):
        requests = torch.rand(B, net.n_edges, generator=gen, dtype=torch.float64) * 30
        step = network_step(net, inventory, requests, scenarios.demand[..., t].double())
        on_hand = inventory[..., 0]
        out = torch.zeros_like(start).index_add(1, supplier[internal], step.shipped[:, internal])
        assert bool((out <= on_hand.clamp_min(0) + 1e-9).all())
        moved += torch.zeros_like(start).index_add(1, receiver, step.shipped) - out
        moved[:, stores] -= step.sold
        left = step.inventory[:, stores, 0] - inventory[:, stores, 1]  # store stock kept after demand
        torch.testing.assert_close(step.location_cost[:, stores], -p * step.sold + h * left)
        inventory = step.inventory
    torch.testing.assert_close(inventory.sum(-1), start + moved)


# ----------------------------------------------------------------------------------------------------------------
# Real-data fields of scenarios and observations
# ----------------------------------------------------------------------------------------------------------------
def small_scenarios(n=3, T=5, H=4):
    net = tiny()
    gen = torch.Generator().manual_seed(0)
    return NetworkScenarios(net, torch.rand(n, 2, T, generator=gen) * 5, torch.zeros(n, 3, net.n_slots),
                            demand_history=torch.rand(n, 2, H, generator=gen) * 5,
                            calendar=torch.arange(n * T * 2, dtype=torch.float32).view(n, T, 2),
                            mean_demand=torch.rand(n, 2, generator=gen) + 1)


def test_rollout_shows_past_demand_calendar_and_mean_but_never_current_demand():
    scenarios = small_scenarios()
    seen = []

    def spy(obs):
        seen.append(obs)
        return torch.zeros(obs.inventory.shape[0], obs.network.n_edges)

    rollout(spy, scenarios)
    known = torch.cat([scenarios.demand_history, scenarios.demand], dim=-1)
    for t, obs in enumerate(seen):
        torch.testing.assert_close(obs.past_demand, known[..., t:t + 4])
        torch.testing.assert_close(obs.calendar, scenarios.calendar[:, t])
        torch.testing.assert_close(obs.demand_scale(), scenarios.mean_demand)
    # without the real-data fields: None, and the scale falls back on the network's store means
    plain = NetworkScenarios(scenarios.setting, scenarios.demand, scenarios.initial_inventory)
    seen.clear()
    rollout(spy, plain, periods=1)
    assert seen[0].past_demand is None and seen[0].calendar is None and seen[0].mean_demand is None
    torch.testing.assert_close(seen[0].demand_scale(), torch.tensor([[4.0, 3.0]]).expand(3, -1))
    obs = NetworkObservation(scenarios.initial_inventory, scenarios.setting, 0)  # the 3-argument form
    assert obs.demand_scale().shape == (3, 2)


def test_scenario_fields_are_validated_and_follow_every_view():
    s = small_scenarios()
    part = s[1:]
    assert part.demand_history.shape == (2, 2, 4) and part.calendar.shape == (2, 5, 2)
    assert part.mean_demand.shape == (2, 2)
    short = s.with_periods(3)
    assert short.calendar.shape == (3, 3, 2) and short.demand_history.shape == (3, 2, 4)
    assert s.double().calendar.dtype == torch.float64 and s.to("cpu").mean_demand is not None
    net, d, inv = s.setting, s.demand, s.initial_inventory
    with pytest.raises(ValueError, match="demand_history"):
        NetworkScenarios(net, d, inv, demand_history=torch.zeros(3, 1, 4))
    with pytest.raises(ValueError, match="calendar"):
        NetworkScenarios(net, d, inv, calendar=torch.zeros(3, 4, 1))
    with pytest.raises(ValueError, match="mean_demand"):
        NetworkScenarios(net, d, inv, mean_demand=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="mean_demand"):
        NetworkScenarios(net, d, inv, mean_demand=torch.ones(2, 2))


# ----------------------------------------------------------------------------------------------------------------
# The network and its splits
# ----------------------------------------------------------------------------------------------------------------
def test_real_data_network(network):
    draws = draw_real_data_network(0)
    assert network.n_stores == 21 and network.n_locations == 24 and network.profit and network.lost_sales
    assert network.n_edges == 3 + 42 and network.n_slots == 6 and network.initial_inventory == 0
    assert (draws["adjacency"].sum(0) == 2).all() and draws["adjacency"].sum(1).min() >= 1
    assert not draws["adjacency"].all()
    ranges = {0: (5, 6), 1: (1, 2), 2: (4, 6)}
    for e in network.edges:
        if e.supplier is None:
            assert e.lead_time == 3 and e.unit_cost == (0.5, 1.5, 0.7)[e.receiver]
        else:
            low, high = ranges[e.supplier]
            assert low <= e.lead_time <= high and draws["adjacency"][e.supplier, e.receiver - 3]
    stores = [network.locations[i] for i in network.stores]
    assert all(0.7 <= s.holding_cost <= 1.3 and 6.3 <= s.underage_cost <= 11.7 for s in stores)
    assert repr(real_data_network(0)) == repr(network) and repr(real_data_network(1)) != repr(network)
    with pytest.raises(ValueError, match="store_means"):
        real_data_network(0, store_means=[1.0] * 20)


def test_network_splits(data, network, splits):
    demand = data.demand()
    train, dev, test = splits
    assert train.demand.shape == (288, 21, 95) and dev.demand.shape == test.demand.shape == (288, 21, 37)
    assert train.demand_history.shape == (288, 21, 16) and train.calendar.shape == (288, 95, 1)
    assert train.initial_inventory.shape == (288, 24, 6) and not train.initial_inventory.any()
    np.testing.assert_array_equal(train.demand.numpy(), demand[:, :, 16:111])
    np.testing.assert_array_equal(test.demand_history.numpy(), demand[:, :, 118:134])
    np.testing.assert_array_equal(dev.calendar[5, :, 0].numpy(), data.calendar()[104:141])
    expected = np.maximum(demand[:, :, :111].mean(-1), 1.0)
    for split in splits:
        np.testing.assert_allclose(split.mean_demand.numpy(), expected, rtol=1e-6)
    means = network_store_means(data)
    assert len(means) == 21 and 30 < min(means) and max(means) < 200
    assert len(network_splits(data, network, n_items=5).train) == 5
    with pytest.raises(ValueError, match="overlaps"):
        network_splits(data, network, train=Window(0, 130), test=TEST)


def test_no_week_after_training_reaches_the_training_scenarios(data, network, splits):
    """Changing every sale from week 111 on changes dev and test but neither the training scenarios nor any
    split's demand scale."""
    sales = data.sales.copy()
    sales[:, :, TRAIN.end:] += 1000
    changed = network_splits(FavoritaData(sales=sales, weeks=data.weeks, folder=data.folder), network)
    for name in ("demand", "demand_history", "calendar", "mean_demand"):
        torch.testing.assert_close(getattr(changed.train, name), getattr(splits.train, name))
    for before, after in zip(splits, changed):
        torch.testing.assert_close(after.mean_demand, before.mean_demand)
    assert not torch.equal(changed.test.demand, splits.test.demand)
    assert not torch.equal(changed.dev.demand, splits.dev.demand)


# ----------------------------------------------------------------------------------------------------------------
# Policies
# ----------------------------------------------------------------------------------------------------------------
class Zero(torch.nn.Module):
    def forward(self, obs):
        return torch.zeros(obs.inventory.shape[0], obs.network.n_edges)


def profit(policy, scenarios, warmup=WARMUP):
    """Profit per store and period after the warm-up."""
    return -float(evaluate(policy, scenarios, warmup, batch_size=len(scenarios)).mean())


def test_just_in_time_sells_every_demand_after_the_warm_up(network, splits):
    test = splits.test
    jit = NetworkJustInTime(test.demand)
    with torch.no_grad():
        trajectory = rollout(jit, test, record=True)
    torch.testing.assert_close(trajectory.sales[..., WARMUP:], test.demand[..., WARMUP:], rtol=1e-5, atol=1e-3)
    # no shipment is rationed: every edge carries what was requested
    requested = torch.stack([jit(NetworkObservation(test.initial_inventory, network, t)) for t in range(test.periods)],
                            dim=-1)
    torch.testing.assert_close(trajectory.orders[..., WARMUP:], requested[..., WARMUP:], rtol=1e-5, atol=1e-3)
    best = profit(jit, test)
    for other in (ScaledEchelonStock(network), NetworkDataDriven(network), Zero()):
        assert best >= profit(other, test)
    with pytest.raises(ValueError, match="batch of 10"):
        rollout(jit, test[:10])
    with pytest.raises(ValueError, match="two-level"):
        rollout(NetworkJustInTime(torch.ones(2, 1, 5)), sample_network_scenarios(serial_network(), 2, 5,
                                                                                   demand_seed=0, inventory_seed=0))


@pytest.mark.parametrize("make", [NetworkDataDriven, ScaledEchelonStock])
def test_requests_are_non_negative_per_edge_and_gradients_reach_every_parameter(make, network, splits):
    policy = make(network)
    for name, p in policy.named_parameters():
        assert p.shape[0] == 1, name
    batch = splits.train[:6].with_periods(20)
    seen = []
    original = policy.forward
    policy.forward = lambda obs: seen.append(original(obs)) or seen[-1]
    trajectory = rollout(policy, batch)
    requests = torch.stack(seen)
    assert requests.shape == (20, 6, network.n_edges) and bool((requests >= 0).all())
    # one output per edge of the network: a dense warehouse x store matrix is zero off the adjacency
    adjacency = torch.as_tensor(draw_real_data_network(0)["adjacency"])
    dense = torch.zeros(20, 6, 3, 21)
    for k, e in enumerate(network.edges):
        if e.supplier is not None:
            dense[:, :, e.supplier, e.receiver - 3] = requests[:, :, k].detach()
    assert not dense[:, :, ~adjacency].any() and dense[:, :, adjacency].any()
    if make is ScaledEchelonStock:  # only the fastest edge of each store is used
        assert int((requests[:, :, 3:].detach() > 0).any(0).any(0).sum()) <= 21
    trajectory.cost.mean().backward()
    for name, p in policy.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_data_driven_request_scales(network):
    """A fresh net asks about the demand in total: each of a store's two edges half its mean, each warehouse the
    sum of those halves over its stores (``share=False``: the whole mean on every edge)."""
    mean = torch.arange(1.0, 22.0).unsqueeze(0)
    adjacency = torch.as_tensor(draw_real_data_network(0)["adjacency"]).float()
    for share, factor in ((True, 0.5), (False, 1.0)):
        scale = (mean @ NetworkDataDriven(network, share=share).edge_matrix)[0]
        torch.testing.assert_close(scale[:3], factor * adjacency @ mean[0])
        stores = torch.tensor([e.receiver - 3 for e in network.edges[3:]])
        torch.testing.assert_close(scale[3:], factor * mean[0, stores])


def test_data_driven_net_needs_real_data_observations():
    with pytest.raises(ValueError, match="past demand"):
        rollout(NetworkDataDriven(tiny()), sample_network_scenarios(tiny(), 2, 3, demand_seed=0, inventory_seed=0))


def test_short_training_improves_the_data_driven_net(data, network):
    train, dev, _ = network_splits(data, network, n_items=16)
    policy = NetworkDataDriven(network, hidden=(64, 64))
    before = profit(policy, train, warmup=0)  # the training objective: every period
    config = TrainConfig(epochs=20, batch_size=8, lr=1e-3, dev_every=20, patience=None, progress=False)
    result = fit(policy, train, dev, config, dev_warmup=WARMUP)  # one dev evaluation: the final parameters
    after = profit(result.policy, train, warmup=0)
    assert math.isfinite(after) and after > before + 20  # 364 -> 424 per store and period
    assert profit(NetworkJustInTime(train.demand), train) >= after
    heuristic = fit(ScaledEchelonStock(network), train, dev, replace(config, epochs=2, dev_every=2, lr=0.05),
                    dev_warmup=WARMUP)
    assert math.isfinite(heuristic.best_dev[0])
