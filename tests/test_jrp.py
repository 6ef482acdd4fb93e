"""The joint replenishment problem: fixed cost charged exactly when an order is placed, backlog accounting on the
shared simulator, explicit fixed-cost scaling, and hybrid rollouts through it."""

import math

import pytest
import torch

from hybridrl.hybrid import HybridPolicy, hybrid_rollout
from hybridrl.jrp import JointReplenishment, sample_jrp_splits


def test_items_are_drawn_once_from_the_parameter_seed():
    a, b, c = JointReplenishment(5), JointReplenishment(5), JointReplenishment(5, parameter_seed=1)
    assert torch.equal(a.mean, b.mean) and not torch.equal(a.mean, c.mean)
    assert ((a.mean >= 6) & (a.mean <= 14)).all() and ((a.holding_cost >= 0.7) & (a.holding_cost <= 1.3)).all()
    assert ((a.underage_cost >= 6.3) & (a.underage_cost <= 11.7)).all()


def test_fixed_cost_scaling_is_explicit():
    assert JointReplenishment(10).joint_fixed_cost == 640.0
    assert JointReplenishment(10, scale_fixed_cost_by_items=False).joint_fixed_cost == 64.0
    assert JointReplenishment(3, fixed_cost=320.0).joint_fixed_cost == 960.0


def test_fixed_cost_is_charged_exactly_when_an_order_is_placed():
    problem = JointReplenishment(3, horizon=5, warmup=1)
    episode = problem.sample(4, torch.Generator().manual_seed(0))
    choice = torch.tensor([0, 1, 0, 1])
    z = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(1))
    actions = problem.action_map(z)
    assert (actions[:, 0] == 0).all() and (actions[:, 1] > 0).all()  # no order / an order of every item
    action = actions[torch.arange(4), choice]
    _, cost = problem.step(episode.state, choice, action, 0, episode)
    _, cost_free = problem.step(episode.state, torch.zeros(4, dtype=torch.int64), action, 0, episode)
    assert torch.allclose(cost - cost_free, choice.float() * problem.joint_fixed_cost)


def test_backlog_accounting_and_lead_time():
    """An order arrives L = 2 periods later; unmet demand is backlogged and charged p per unit and period."""
    problem = JointReplenishment(1, horizon=4, warmup=0, history=2)
    episode = problem.sample(1, torch.Generator().manual_seed(0))
    episode.noise = torch.tensor([[[1.0], [1.0], [3.0], [3.0], [3.0], [3.0]]])  # two past, then the horizon
    state = episode.state
    p, h = float(problem.underage_cost[0]), float(problem.holding_cost[0])
    orders = [10.0, 0.0, 0.0, 0.0]
    costs = []
    for t, q in enumerate(orders):
        state, cost = problem.step(state, torch.tensor([int(q > 0)]), torch.tensor([[q]]), t, episode)
        costs.append(float(cost))
    # on hand: t0 -3 (backlog 3), t1 -6, t2 10 - 9 = 1, t3 1 - 3 = -2
    F = problem.joint_fixed_cost
    assert costs == pytest.approx([3 * p + F, 6 * p, 1 * h, 2 * p])
    assert state[0, 0, -2:].tolist() == [3.0, 3.0]  # the demand history


def test_observation_and_a_hybrid_rollout():
    problem = JointReplenishment(4, horizon=20, warmup=5)
    splits = sample_jrp_splits(problem, 16, 8, 8)
    assert splits.train.size == 16 and not torch.equal(splits.train.noise[:8], splits.test.noise)
    policy = HybridPolicy(problem.observation_dim, 2, 4, hidden=(16,), action_map=problem.action_map,
                          continuous_shift=1.0)
    traj = hybrid_rollout(policy, problem, splits.train, generator=torch.Generator().manual_seed(0))
    assert traj.observation.shape == (16, 20, problem.observation_dim)
    no_order = traj.choice == 0
    assert (traj.action[no_order] == 0).all() and (traj.action[~no_order] > 0).all()
    assert problem.reported(traj.cost).shape == (16,)
    assert torch.allclose(problem.reported(traj.cost), traj.cost[:, 5:].mean(-1) / 4)
    (g,) = torch.autograd.grad(traj.cost.sum(), [policy.continuous[0].weight], allow_unused=True)
    assert g is not None and g.abs().sum() > 0  # the pathwise gradient reaches the continuous network


@pytest.mark.parametrize("field, value, match", [
    ("items", 0, "items"), ("warmup", 100, "warmup"), ("fixed_cost", -1.0, "fixed_cost"),
    ("mean_range", (5.0, 1.0), "mean_range"),
])
def test_bad_configuration_is_rejected(field, value, match):
    with pytest.raises(ValueError, match=match):
        JointReplenishment(**{"items": 3, field: value})
