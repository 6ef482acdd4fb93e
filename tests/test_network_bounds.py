"""Lower bounds for the one-warehouse (spec §4.4) and transshipment (spec §4.5) networks: valid (below every
feasible policy we simulate), exact where they should be, and rejecting networks they do not cover."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from hybridrl import references as R
from hybridrl.inventory import Poisson, rollout
from hybridrl.network_policies import EchelonBaseStock
from hybridrl.networks import (Edge, Location, Network, one_warehouse_network, sample_network_scenarios,
                               serial_network, transshipment_network)

COARSE = 60  # max_units for the one-warehouse bounds in these tests: valid at any resolution, and fast


def simulate(policy, network, n=1024, periods=300, warmup=100, seed=7):
    """Mean cost per store and period over ``t >= warmup`` and its standard error (one value per scenario)."""
    scenarios = sample_network_scenarios(network, n, periods, demand_seed=seed, inventory_seed=seed + 1)
    with torch.no_grad():
        per_scenario = rollout(policy, scenarios).cost[..., warmup:].mean(dim=(1, 2)).double()
    return float(per_scenario.mean()), float(per_scenario.std()) / math.sqrt(n)


def tune(policy, network, steps=30, lr=0.3, n=256, periods=100, warmup=30, seed=3):
    """A few Adam steps on the pathwise gradient of the rollout cost (training scenarios of their own seeds)."""
    scenarios = sample_network_scenarios(network, n, periods, demand_seed=seed, inventory_seed=seed + 1)
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        rollout(policy, scenarios).cost[..., warmup:].mean().backward()
        optimizer.step()
    return policy


class CappedBaseStock(nn.Module):
    """Capped base stock at the stores, ``min((S_s - IP_s)^+, cap_s)`` (good for lost sales), echelon base stock
    ``(S_w - echelon IP_w)^+`` at the warehouse with ``S_w = Σ S_s + softplus(y)``; every level a softplus."""

    def __init__(self, network):
        super().__init__()
        self.network = network
        mu, sd = network.mean_demand, network.tensor("store_std")
        lead = torch.tensor([e.lead_time for e in network.edges if e.supplier is not None], dtype=torch.float32)
        z = 1.0
        inv = lambda v: v + torch.log(-torch.expm1(-v))  # softplus⁻¹
        self.store = nn.Parameter(inv((lead + 1) * mu + z * sd * torch.sqrt(lead + 1)))
        self.cap = nn.Parameter(inv(mu + sd))
        outside = [e.lead_time for e in network.edges if e.supplier is None][0]
        self.extra = nn.Parameter(inv(torch.tensor(outside * float(mu.sum()))))

    def forward(self, obs):
        stores = self.network.tensor("store_index")
        ip = obs.inventory_position[:, stores]
        store_req = torch.minimum(torch.relu(nn.functional.softplus(self.store) - ip), nn.functional.softplus(self.cap))
        level_w = nn.functional.softplus(self.store).sum() + nn.functional.softplus(self.extra)
        warehouse_req = torch.relu(level_w - obs.echelon_position[:, :1])
        out = torch.zeros(ip.shape[0], self.network.n_edges, dtype=ip.dtype)
        receivers = self.network.tensor("receiver")
        for e, edge in enumerate(self.network.edges):
            if edge.supplier is None:
                out[:, e] = warehouse_req[:, 0]
            else:
                out[:, e] = store_req[:, int((stores == receivers[e]).nonzero())]
        return out


class StoreTable(nn.Module):
    """The relaxed grid model's optimal order table as a policy for a one-store network with a free warehouse:
    the warehouse orders plenty; the store orders ``δ·table[⌈state/δ⌉]`` (nothing outside the table)."""

    def __init__(self, network, bound, warehouse_order):
        super().__init__()
        self.network, self.step, self.table = network, bound.step, torch.from_numpy(bound.orders.astype(np.int64))
        self.lead, self.warehouse_order = bound.lead_time, warehouse_order

    def forward(self, obs):
        state = obs.inventory[:, 1, : self.lead].double()
        grid = torch.ceil(state / self.step - 1e-6).clamp_min(0).long()
        top = self.table.shape[0] - 1
        inside = grid.sum(1) <= top
        q = self.table[tuple(grid.clamp(max=top).T)].clamp_min(0)
        store = torch.where(inside, q, torch.zeros_like(q)).float() * self.step
        return torch.stack([torch.full_like(store, self.warehouse_order), store], dim=1)


# ---- the DP machinery behind the one-warehouse bound ---------------------------------------------------------
@pytest.mark.parametrize("lead_time,penalty", [(1, 9.0), (2, 4.0), (3, 9.0)])
def test_grid_dp_reproduces_the_poisson_lost_sales_dp(lead_time, penalty):
    """Without the relaxation (no disposal, exact stage cost) the grid DP is the exact lost-sales DP."""
    ref = R.lost_sales_optimum(penalty, 1.0, lead_time, Poisson(5.0))
    M = ref.max_position
    k = np.arange(M + 1)
    pmf, tail = stats.poisson.pmf(k, 5.0), stats.poisson.sf(k - 1, 5.0)
    over = np.array([(np.clip(v - k, 0, None) * pmf).sum() for v in k])
    stage = over + penalty * (5.0 - k + over)
    lo, hi, _, _, table = R._grid_rvi(R._lost_sales_kernel(pmf, tail, M + 1), stage, lead_time, M, 0, tol=1e-10,
                                      max_iterations=5000, orders=True)
    assert lo <= ref.cost + 1e-9 and abs(lo - ref.cost) < 1e-8 and hi - lo < 1e-9
    np.testing.assert_array_equal(table, np.where(ref.orders >= 0, ref.orders, -1))


@pytest.mark.parametrize("lead_time,penalty", [(2, 4.0), (2, 39.0), (3, 9.0)])
def test_optimal_lost_sales_policy_never_orders_above_the_backlog_level(lead_time, penalty):
    """The cap the bound relies on (Morton 1971): the optimal position after ordering stays <= S_backlog."""
    level = R.backlog_level_poisson(5.0, penalty, 1.0, lead_time)
    orders = R.lost_sales_optimum(penalty, 1.0, lead_time, Poisson(5.0), max_position=level + 8).orders
    states = np.argwhere(orders >= 0)
    position = states.sum(1)
    after = position + orders[tuple(states.T)]
    assert after[position <= level].max() == level  # reaches it, never beyond
    assert (orders[tuple(states[position >= level].T)] == 0).all()


# ---- one warehouse ----------------------------------------------------------------------------------------------
def test_store_bound_is_below_a_simulated_store_policy_and_tightens():
    """One store, a warehouse that holds plenty at no cost: the network is the single store with unlimited
    supply. The bound is below the simulated cost of the grid model's policy, within 4 %, and rises as δ shrinks."""
    network = one_warehouse_network(1, warehouse_holding=0.0)
    store = network.locations[1]
    fine = R.lost_sales_store_lower_bound(store.mean, store.std, store.underage_cost, store.holding_cost, 2,
                                          orders=True)
    coarse = R.lost_sales_store_lower_bound(store.mean, store.std, store.underage_cost, store.holding_cost, 2,
                                            step=4 * fine.step)
    assert coarse.cost < fine.cost < fine.grid_cost + 1e-9
    assert R.one_warehouse_lower_bound(network) == pytest.approx(fine.cost)
    mean, se = simulate(StoreTable(network, fine, 3.0 * store.mean), network, n=2048, periods=500)
    assert fine.cost <= mean + 3 * se
    assert (mean - fine.cost) / mean < 0.04, (fine.cost, mean)


@pytest.mark.parametrize("n_stores", [3, 5])
def test_one_warehouse_bound_is_below_feasible_policies(n_stores):
    network = one_warehouse_network(n_stores)
    bound = R.one_warehouse_lower_bound(network, max_units=COARSE)
    stores = R.one_warehouse_store_bounds(network, max_units=COARSE)
    assert bound == pytest.approx(np.mean([b.cost for b in stores]))
    costs = {
        "echelon, default": simulate(EchelonBaseStock(network), network),
        "echelon, tuned": simulate(tune(EchelonBaseStock(network), network), network),
        "capped, tuned": simulate(tune(CappedBaseStock(network), network, lr=0.1), network),
    }
    for name, (mean, se) in costs.items():
        assert bound <= mean + 3 * se, (name, bound, mean, se)
    best = min(mean for mean, _ in costs.values())
    assert bound > 0.6 * best  # not vacuous


# ---- transshipment ----------------------------------------------------------------------------------------------
def test_transshipment_bound_is_exact_with_one_store():
    """With one store the center only passes stock through: echelon base stock at the pooled level y* is
    feasible and optimal, and its simulated cost is the bound (lead time L_w + L_s = 5, 6 periods of demand)."""
    network = transshipment_network(1)
    result = R.transshipment_bound(network)
    store = network.locations[1]
    p, h = store.underage_cost, store.holding_cost
    closed = (p + h) * store.std * math.sqrt(6) * stats.norm.pdf(stats.norm.ppf(p / (p + h)))
    assert result.lead_time == 5 and result.cost == pytest.approx(closed)
    assert R.transshipment_lower_bound(network) == result.cost
    policy = EchelonBaseStock(network, levels=[result.level, result.level / 2])
    mean, se = simulate(policy, network, n=4096, periods=200, warmup=20)
    assert abs(mean - result.cost) < 3 * se + 1e-3, (mean, se, result.cost)
    # and the level is optimal: moving it either way costs more
    for shift in (-0.25, 0.25):
        other = EchelonBaseStock(network, levels=[result.level * (1 + shift), result.level / 2])
        assert simulate(other, network, n=4096, periods=200, warmup=20)[0] > mean + 3 * se


@pytest.mark.parametrize("n_stores", [3, 5])
def test_transshipment_bound_is_below_feasible_policies(n_stores):
    network = transshipment_network(n_stores)
    bound = R.transshipment_lower_bound(network)
    result = R.transshipment_bound(network)
    assert result.system_cost == pytest.approx(bound * n_stores)
    z = stats.norm.ppf(4 / 5)
    stores = (3 * network.mean_demand + z * network.tensor("store_std") * math.sqrt(3)).tolist()
    pooled = [result.level] + stores  # the relaxed system's optimal level at the center
    costs = {
        "echelon, default": simulate(EchelonBaseStock(network), network),
        "echelon, pooled level": simulate(EchelonBaseStock(network, levels=pooled), network),
        "echelon, tuned": simulate(tune(EchelonBaseStock(network, levels=pooled), network, lr=0.05), network),
    }
    for name, (mean, se) in costs.items():
        assert bound <= mean + 3 * se, (name, bound, mean, se)
    best = min(mean for mean, _ in costs.values())
    assert bound > 0.75 * best  # not vacuous


# ---- bad input ----------------------------------------------------------------------------------------------------
def test_bad_input_raises():
    with pytest.raises(ValueError, match="lost-sales"):
        R.one_warehouse_lower_bound(transshipment_network(3))
    with pytest.raises(ValueError, match="lost-sales"):
        R.one_warehouse_lower_bound(serial_network())
    with pytest.raises(ValueError, match="backlogged"):
        R.transshipment_lower_bound(one_warehouse_network(3))
    with pytest.raises(ValueError, match="untruncated"):
        R.transshipment_lower_bound(serial_network())
    with pytest.raises(TypeError):
        R.one_warehouse_lower_bound("one warehouse")
    with pytest.raises(TypeError):
        R.transshipment_lower_bound(None)
    # a warehouse that can hold stock is not a transshipment center (holding back could beat the bound)
    net = transshipment_network(3)
    holding = Network("holding", (Location("warehouse", 0.5),) + net.locations[1:], net.edges,
                      unmet_demand="backlog", correlation=0.5, truncate_demand=False)
    with pytest.raises(ValueError, match="holds stock"):
        R.transshipment_lower_bound(holding)
    # stores with different lead times from the center
    uneven = Network("uneven", net.locations, net.edges[:1] + (Edge(0, 1, 3),) + net.edges[2:],
                     unmet_demand="backlog", correlation=0.5, truncate_demand=False)
    with pytest.raises(ValueError, match="common lead time"):
        R.transshipment_lower_bound(uneven)
    for kwargs, field in [(dict(step=0.0), "step"), (dict(step=-1.0), "step"), (dict(lead_time=0), "lead_time"),
                          (dict(std=0.0), "std"), (dict(mean=float("nan")), "mean"), (dict(max_units=3), "max_units"),
                          (dict(underage_cost=-1.0), "underage_cost")]:
        args = dict(mean=5.0, std=1.5, underage_cost=9.0, holding_cost=1.0, lead_time=2) | kwargs
        with pytest.raises(ValueError, match=field):
            R.lost_sales_store_lower_bound(**args)
