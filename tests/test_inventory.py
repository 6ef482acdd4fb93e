"""The simulator: conservation, lead-time timing, lost vs backlog accounting, objectives, gradients."""

import pytest
import torch
from torch import nn

from hybridrl.inventory import (
    ClippedNormal,
    InventorySetting,
    Observation,
    Poisson,
    Store,
    arrival_slots,
    rollout,
    step,
)
from hybridrl.policies import VanillaMLP
from hybridrl.scenarios import Scenarios, sample_scenarios


class RandomOrders(nn.Module):
    """Orders drawn uniformly in [0, high) from its own generator (a policy that exercises every slot)."""

    def __init__(self, high: float, seed: int):
        super().__init__()
        self.high, self.gen = high, torch.Generator().manual_seed(seed)

    def forward(self, obs: Observation):
        return torch.rand(obs.inventory.shape[:2], generator=self.gen) * self.high


class FixedOrders(nn.Module):
    """Orders read from a ``[B, S, T]`` tensor."""

    def __init__(self, orders):
        super().__init__()
        self.orders = orders

    def forward(self, obs: Observation):
        return self.orders[..., obs.period]


def _random_setting(gen: torch.Generator) -> InventorySetting:
    n_stores = int(torch.randint(1, 4, (1,), generator=gen))
    stores = []
    for _ in range(n_stores):
        demand = Poisson(float(torch.rand(1, generator=gen) * 8 + 1)) if torch.rand(1, generator=gen) < 0.5 else \
            ClippedNormal(float(torch.rand(1, generator=gen) * 8 + 1), float(torch.rand(1, generator=gen) * 3 + 0.5))
        stores.append(Store(demand, float(torch.rand(1, generator=gen) * 20 + 0.5), float(torch.rand(1, generator=gen) + 0.1),
                            int(torch.randint(0, 6, (1,), generator=gen))))
    unmet = "lost" if torch.rand(1, generator=gen) < 0.5 else "backlog"
    return InventorySetting(stores=tuple(stores), unmet_demand=unmet, initial_inventory=float(torch.rand(1, generator=gen) * 3))


@pytest.mark.parametrize("instance", range(40))
def test_inventory_is_conserved_over_random_instances(instance):
    gen = torch.Generator().manual_seed(instance)
    setting = _random_setting(gen)
    scenarios = sample_scenarios(setting, 64, 30, demand_seed=instance, inventory_seed=instance + 1)
    traj = rollout(RandomOrders(12.0, instance), scenarios, record=True)
    total_start = scenarios.initial_inventory.sum(-1)
    total_end = traj.final_inventory.sum(-1)
    # whole-system balance: start + everything ordered - everything sold (lost demand never leaves stock)
    torch.testing.assert_close(total_start + traj.orders.sum(-1) - traj.sales.sum(-1), total_end, rtol=1e-5, atol=1e-3)
    # every unit of demand is either sold (or backlogged) or lost
    torch.testing.assert_close(traj.sales + traj.lost, scenarios.demand, rtol=1e-6, atol=1e-5)
    # period by period, on-hand: start + receipts - sales = end, and end + arrivals = next start
    on_hand = traj.inventory[..., 0]
    lead = scenarios.lead_time.unsqueeze(-1)
    received_now = traj.orders * (lead == 0)
    end = on_hand + received_now - traj.sales
    if setting.lost_sales:
        assert (end >= -1e-4).all()
    arriving = traj.inventory[..., 1] if setting.n_slots > 1 else torch.zeros_like(on_hand)
    arriving = arriving + traj.orders * (lead == 1)
    torch.testing.assert_close((end + arriving)[..., :-1], on_hand[..., 1:], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("lead_time", [0, 1, 2, 3, 5])
def test_an_order_is_on_hand_exactly_lead_time_periods_later(lead_time):
    setting = InventorySetting(stores=Store(Poisson(5.0), 9.0, 1.0, lead_time), unmet_demand="lost", initial_inventory=0.0)
    periods, placed = 12, 3
    scenarios = sample_scenarios(setting, 1, periods, demand_seed=0, inventory_seed=0)
    scenarios.demand.zero_()
    orders = torch.zeros(1, 1, periods)
    orders[..., placed] = 1.0
    traj = rollout(FixedOrders(orders), scenarios, record=True)
    # the unit is held (and charged h = 1) from period placed + L on, never before
    holding = traj.cost[0, 0]
    first = int(torch.nonzero(holding > 0)[0])
    assert first == placed + lead_time
    assert torch.all(holding[first:] == 1.0)
    # at the start of each period it sits in slot (placed + L - t) while in transit
    for t in range(placed + 1, placed + lead_time):
        assert traj.inventory[0, 0, t, placed + lead_time - t] == 1.0


def _one_period(unmet, profit=False):
    inventory = torch.tensor([[[3.0, 0.0]]])
    slots = arrival_slots(torch.tensor([[2]]), 2)
    p, h = torch.tensor([[9.0]]), torch.tensor([[1.0]])
    first = step(inventory, torch.zeros(1, 1), torch.tensor([[5.0]]), slots, p, h, lost_sales=unmet == "lost", profit=profit)
    second = step(first.inventory, torch.zeros(1, 1), torch.tensor([[0.0]]), slots, p, h, lost_sales=unmet == "lost", profit=profit)
    return first, second


def test_lost_sales_and_backlog_accounting():
    lost1, lost2 = _one_period("lost")
    assert lost1.cost.item() == 18.0 and lost1.lost.item() == 2.0 and lost1.sales.item() == 3.0
    assert lost1.inventory[0, 0, 0].item() == 0.0 and lost2.cost.item() == 0.0
    back1, back2 = _one_period("backlog")
    assert back1.cost.item() == 18.0 and back1.lost.item() == 0.0
    assert back1.inventory[0, 0, 0].item() == -2.0
    assert back2.cost.item() == 18.0  # the backlog is charged again while it persists


def test_profit_objective_is_margin_on_sales_minus_holding():
    first, _ = _one_period("lost", profit=True)
    assert first.cost.item() == -9.0 * 3.0  # sells 3 at margin 9, nothing left to hold
    inventory = torch.tensor([[[7.0]]])
    out = step(inventory, torch.zeros(1, 1), torch.tensor([[5.0]]), arrival_slots(torch.tensor([[1]]), 1),
               torch.tensor([[9.0]]), torch.tensor([[1.0]]), lost_sales=True, profit=True)
    assert out.cost.item() == -9.0 * 5.0 + 1.0 * 2.0


def test_negative_orders_are_rejected():
    setting = InventorySetting(stores=Store(Poisson(5.0), 9.0, 1.0, 1))
    scenarios = sample_scenarios(setting, 4, 5, demand_seed=0, inventory_seed=0)
    with pytest.raises(ValueError, match="negative order"):
        rollout(FixedOrders(-torch.ones(4, 1, 5)), scenarios)


def test_pathwise_gradient_matches_finite_differences():
    """On a smooth backlogged instance (continuous demand, interior stock), autograd through the rollout agrees
    with central finite differences of the simulated cost, in float64."""
    setting = InventorySetting(stores=(Store(ClippedNormal(5.0, 1.6), 9.0, 1.0, 2), Store(ClippedNormal(5.0, 1.6), 4.0, 1.0, 3)),
                               unmet_demand="backlog")
    scenarios = sample_scenarios(setting, 16, 12, demand_seed=1, inventory_seed=2).double()
    policy = VanillaMLP(setting.n_slots, hidden=(8, 8), members=2, init_seeds=[3, 4]).double()
    names = [name for name, _ in policy.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_(True) for p in policy.parameters())

    def hindsight_cost(*vals):
        act = lambda obs: torch.func.functional_call(policy, dict(zip(names, vals)), (obs,))  # noqa: E731
        return rollout(act, scenarios).cost.mean()

    assert torch.autograd.gradcheck(hindsight_cost, values, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_scenarios_validate_shapes_and_values():
    setting = InventorySetting(stores=Store(Poisson(5.0), 9.0, 1.0, 2))
    good = sample_scenarios(setting, 3, 4, demand_seed=0, inventory_seed=0)
    with pytest.raises(ValueError, match="demand must have shape"):
        Scenarios(setting, good.demand[:, 0], good.underage_cost, good.holding_cost, good.lead_time, good.mean_demand,
                  good.initial_inventory)
    bad = good.demand.clone()
    bad[0, 0, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        Scenarios(setting, bad, good.underage_cost, good.holding_cost, good.lead_time, good.mean_demand, good.initial_inventory)


def test_scenarios_reject_lead_times_outside_the_inventory_vector():
    setting = InventorySetting(stores=Store(Poisson(5.0), 9.0, 1.0, 2))
    good = sample_scenarios(setting, 3, 4, demand_seed=0, inventory_seed=0)
    with pytest.raises(ValueError, match=r"lead_time must be int64 in \[0, 2\], got \[5\]"):
        Scenarios(setting, good.demand, good.underage_cost, good.holding_cost, torch.full((3, 1), 5), good.mean_demand,
                  good.initial_inventory)


def test_compiled_rollout_matches_eager():
    setting = InventorySetting(stores=(Store(Poisson(5.0), 9.0, 1.0, 3), Store(Poisson(5.0), 4.0, 1.0, 0)),
                               unmet_demand="lost")
    scenarios = sample_scenarios(setting, 32, 8, demand_seed=3, inventory_seed=4)
    policy = VanillaMLP(setting.n_slots, members=2, init_seeds=[1, 2])
    grads = []
    for compile in (False, True):
        policy.zero_grad()
        traj = rollout(policy, scenarios, compile=compile)
        traj.cost.mean().backward()
        grads.append((traj.cost.detach(), [p.grad.clone() for p in policy.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-4, atol=1e-4)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
