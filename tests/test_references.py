"""Exact references: the DP and base-stock optima against the published tables and against simulation."""

import math

import pytest

from hybridrl.inventory import ClippedNormal, InventorySetting, Poisson, Store
from hybridrl.policies import BaseStock
from hybridrl.references import backlog_base_stock, backlog_base_stock_cost, lost_sales_optimum
from hybridrl.reproduction import BACKLOG_LEVEL_L4, BACKLOG_OPTIMUM, LOST_SALES_OPTIMUM
from hybridrl.scenarios import sample_scenarios
from hybridrl.train import evaluate


@pytest.mark.parametrize("lead_time,penalty", sorted(LOST_SALES_OPTIMUM))
def test_lost_sales_dp_reproduces_the_published_table(lead_time, penalty):
    result = lost_sales_optimum(penalty, 1.0, lead_time, Poisson(5.0))
    assert result.gap < 1e-8
    assert abs(result.cost - LOST_SALES_OPTIMUM[(lead_time, penalty)]) < 5e-4  # the table has 4 decimals


def test_lost_sales_dp_truncation_is_harmless():
    default = lost_sales_optimum(19.0, 1.0, 2)
    wider = lost_sales_optimum(19.0, 1.0, 2, max_position=default.max_position + 10)
    assert abs(default.cost - wider.cost) < 1e-7


def test_lost_sales_optimum_increases_with_lead_time():
    values = [lost_sales_optimum(9.0, 1.0, L).cost for L in (1, 2, 3)]
    assert values[0] < values[1] < values[2]


@pytest.mark.parametrize("lead_time,penalty", [(1, 9.0), (2, 9.0), (3, 4.0)])
def test_dp_policy_simulated_cost_equals_dp_value(lead_time, penalty):
    """The optimal table policy, run in the simulator, costs what the DP says: same timing conventions."""
    optimum = lost_sales_optimum(penalty, 1.0, lead_time)
    setting = InventorySetting(stores=Store(Poisson(5.0), penalty, 1.0, lead_time), unmet_demand="lost", initial_inventory=0.0)
    scenarios = sample_scenarios(setting, 2048, 600, demand_seed=11, inventory_seed=12)
    cost = evaluate(optimum.policy(), scenarios, warmup=100)[:, 0]
    se = cost.std().item() / math.sqrt(len(cost))
    assert abs(cost.mean().item() - optimum.cost) < 4 * se + 1e-3


@pytest.mark.parametrize("lead_time,penalty", sorted(BACKLOG_OPTIMUM))
def test_backlog_base_stock_reproduces_the_published_table(lead_time, penalty):
    result = backlog_base_stock(penalty, 1.0, lead_time, ClippedNormal(5.0, 1.6))
    assert abs(result.cost - BACKLOG_OPTIMUM[(lead_time, penalty)]) < 5e-4
    if lead_time == 4:
        assert abs(result.level - BACKLOG_LEVEL_L4[penalty]) < 0.006  # the table rounds to 2 decimals


@pytest.mark.parametrize("demand", [ClippedNormal(5.0, 1.6), Poisson(5.0)])
def test_base_stock_cost_equals_simulated_cost(demand):
    lead_time, penalty = 4, 9.0
    exact = backlog_base_stock(penalty, 1.0, lead_time, demand)
    setting = InventorySetting(stores=Store(demand, penalty, 1.0, lead_time), unmet_demand="backlog")
    scenarios = sample_scenarios(setting, 4096, 300, demand_seed=5, inventory_seed=6)
    policy = BaseStock(initial_level=exact.level)
    cost = evaluate(policy, scenarios, warmup=20)[:, 0]
    se = cost.std().item() / math.sqrt(len(cost))
    assert abs(cost.mean().item() - exact.cost) < 4 * se
    # and the optimum is a minimum of the exact cost curve
    for delta in (-1.0, 1.0):
        assert backlog_base_stock_cost(exact.level + delta, penalty, 1.0, lead_time, demand) > exact.cost


def test_base_stock_grid_cost_is_consistent_with_the_normal_approximation():
    # (h + p)·σ·sqrt(L + 1)·φ(Φ⁻¹(p/(p+h))): close for a normal that is rarely clipped
    from scipy import stats

    p, L = 9.0, 10
    approx = (1 + p) * 1.6 * math.sqrt(L + 1) * stats.norm.pdf(stats.norm.ppf(p / (p + 1)))
    assert abs(backlog_base_stock(p, 1.0, L).cost - approx) / approx < 0.005


def test_bounded_tuples_are_every_tuple_of_bounded_sum_in_lexicographic_order():
    from itertools import product

    from hybridrl.references import _bounded_tuples

    for length in range(4):
        for total in range(5):
            expected = [t for t in product(range(total + 1), repeat=length) if sum(t) <= total]
            assert _bounded_tuples(length, total).tolist() == [list(t) for t in expected]
