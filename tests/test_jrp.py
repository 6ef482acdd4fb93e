"""The joint replenishment problem: fixed cost charged exactly when an order is placed, backlog accounting on the
shared simulator, explicit fixed-cost scaling, hybrid rollouts through it, and the can-order benchmark."""

import math

import pytest
import torch

from hybridrl.hybrid import Episode, HybridPolicy, hybrid_rollout
from hybridrl import references
from hybridrl.inventory import Poisson
from hybridrl.jrp import (CanOrderLevels, CanOrderParams, JointReplenishment, fixed_cycle_policy, rollout_can_order,
                           rollout_fixed_cycle, sample_jrp_splits, simulate_can_order, tune_can_order)


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


# ---- the can-order benchmark ---------------------------------------------------------------------------------------
def _hand_rolled_can_order(problem, demand, s, c, S):
    """Plain-Python can-order policy and backlog dynamics, lead time 2: costs, choices and positions per period."""
    n, L, F = problem.items, problem.lead_time, problem.joint_fixed_cost
    p, h = problem.underage_cost.tolist(), problem.holding_cost.tolist()
    net = [0.0] * n  # on hand minus backlog after the last period's demand
    outstanding = [[] for _ in range(n)]  # (arrival period, quantity)
    costs, choices, positions = [], [], []
    for t, d in enumerate(demand):
        position = [net[i] + sum(q for a, q in outstanding[i] if a >= t) for i in range(n)]
        order = any(position[i] <= s[i] for i in range(n))
        for i in range(n):
            if order and position[i] <= c[i]:
                outstanding[i].append((t + L, S[i] - position[i]))
        cost = F * order
        for i in range(n):
            net[i] += sum(q for a, q in outstanding[i] if a == t) - d[i]
            cost += p[i] * max(-net[i], 0.0) + h[i] * max(net[i], 0.0)
        costs.append(cost)
        choices.append(int(order))
        positions.append(position)
    return costs, choices, positions


def test_can_order_costs_match_a_hand_rolled_simulation():
    problem = JointReplenishment(2, horizon=8, warmup=2, history=2)
    levels = CanOrderLevels(torch.tensor([5.0, 4.0]), torch.tensor([9.0, 12.0]), torch.tensor([20.0, 16.0]))
    demand = torch.tensor([
        [[3, 1], [2, 2], [4, 6], [9, 3], [1, 2], [6, 5], [7, 1], [0, 4], [5, 5], [2, 8]],
        [[0, 0], [0, 0], [0, 0], [7, 2], [8, 3], [2, 9], [3, 3], [10, 0], [1, 6], [4, 4]],
    ], dtype=torch.float32)  # two past demands, then the horizon
    episode = Episode(torch.cat([torch.zeros(2, 2, 2), demand[:, :2].transpose(1, 2)], dim=-1), demand)
    run = rollout_can_order(problem, episode, levels)
    assert torch.equal(simulate_can_order(problem, episode, levels), run.cost)
    s, c, S = levels.must_order.tolist(), levels.can_order.tolist(), levels.order_up_to.tolist()
    saw = {"idle": 0, "can-ordered": 0, "left out": 0}
    for b in range(2):
        costs, choices, positions = _hand_rolled_can_order(problem, demand[b, 2:].tolist(), s, c, S)
        assert run.cost[b].tolist() == pytest.approx(costs, rel=1e-6)
        assert run.choice[b].tolist() == choices
        assert torch.allclose(run.position[b], torch.tensor(positions))
        for t, x in enumerate(positions):
            saw["idle"] += not choices[t]
            saw["can-ordered"] += choices[t] and any(s[i] < x[i] <= c[i] for i in range(2))
            saw["left out"] += choices[t] and any(x[i] > c[i] for i in range(2))
    assert all(saw.values()), saw  # the instance exercises every branch of the policy
    # the joint fixed cost is charged exactly in the ordering periods, once per period
    state, item_costs = episode.state, []  # the item costs alone: choice 0 with the same orders
    for t in range(problem.horizon):
        state, cost = problem.step(state, torch.zeros(2, dtype=torch.int64), run.order[:, t], t, episode)
        item_costs.append(cost)
    fixed = run.cost - torch.stack(item_costs, 1)
    assert torch.allclose(fixed, run.choice.float() * problem.joint_fixed_cost)
    assert ((run.order.sum(-1) > 0) == (run.choice == 1)).all()


def test_independent_s_S_orders_only_when_an_item_is_at_or_below_s():
    problem = JointReplenishment(3, horizon=40, warmup=5)
    episode = problem.sample(32, torch.Generator().manual_seed(3))
    levels = CanOrderParams(0.5, 2.0, 0.0).levels(problem)
    assert levels.independent and not CanOrderParams(0.5, 2.0, 0.5).levels(problem).independent
    run = rollout_can_order(problem, episode, levels)
    below = run.position <= levels.must_order
    assert torch.equal(run.choice == 1, below.any(-1))
    assert 0 < run.choice.float().mean() < 1
    # only the items at or below s order, and they are raised to S
    assert torch.equal(run.order > 0, below & (run.position < levels.order_up_to))
    expected = torch.where(below, levels.order_up_to - run.position, torch.zeros_like(run.position))
    assert torch.allclose(run.order, expected)
    # some ordering periods leave an item out, which a can-order policy with c > s would have topped up
    assert ((run.choice[..., None] == 1) & ~below).any()


def test_tuning_improves_on_its_starting_point_on_train():
    problem = JointReplenishment(2, horizon=30, warmup=5)
    train = problem.sample(64, torch.Generator().manual_seed(0))
    fit = tune_can_order(problem, train)
    start = CanOrderParams.initial(problem)
    start_cost = problem.reported(simulate_can_order(problem, train, start.levels(problem))).mean().item()
    tuned_cost = problem.reported(simulate_can_order(problem, train, fit.levels)).mean().item()
    assert fit.initial_cost == pytest.approx(start_cost, rel=1e-6)
    assert fit.train_cost == pytest.approx(tuned_cost, rel=1e-6)  # the batched search scores what it returns
    assert tuned_cost < 0.95 * start_cost
    grid_only = tune_can_order(problem, train, refinements=0)  # the best of the coarse grid and the start
    assert grid_only.train_cost < fit.initial_cost and fit.train_cost < grid_only.train_cost  # both stages help
    assert fit.train_cost <= tune_can_order(problem, train, starts=1).train_cost  # the best of several starts
    again = fit.params.levels(problem)
    assert all(torch.equal(getattr(fit.levels, k), getattr(again, k)) for k in ("must_order", "can_order",
                                                                                 "order_up_to"))
    independent = tune_can_order(problem, train, independent=True)
    assert independent.params.can_order == 0.0 and independent.levels.independent
    assert independent.train_cost <= independent.initial_cost


def test_can_order_simulation_and_tuning_are_deterministic():
    problem = JointReplenishment(3, horizon=20, warmup=4)
    train = problem.sample(32, torch.Generator().manual_seed(1))
    grid = {"safety": (0.0, 1.0), "cycle": (2.0, 4.0), "can_order": (0.0, 0.5)}
    a = tune_can_order(problem, train, grid=grid, max_rounds=10)
    b = tune_can_order(problem, train, grid=grid, max_rounds=10)
    assert a.params == b.params and a.train_cost == b.train_cost and a.evaluations == b.evaluations
    costs = simulate_can_order(problem, train, a.levels)
    assert torch.equal(costs, simulate_can_order(problem, train, b.levels))
    # batching over episodes changes nothing per episode
    assert torch.equal(costs[5:9], simulate_can_order(problem, train[5:9], a.levels))


@pytest.mark.parametrize("make, match", [
    (lambda: CanOrderLevels(torch.tensor([5.0]), torch.tensor([4.0]), torch.tensor([9.0])), "must_order <= can_order"),
    (lambda: CanOrderLevels(torch.tensor([1.0]), torch.tensor([4.0]), torch.tensor([3.0])), "order_up_to"),
    (lambda: CanOrderLevels(torch.tensor([1.0]), torch.tensor([math.nan]), torch.tensor([3.0])), "can_order"),
    (lambda: CanOrderLevels(torch.ones(2), torch.ones(3), torch.ones(2)), "shapes"),
    (lambda: CanOrderParams(can_order=1.5), "can_order"),
    (lambda: CanOrderParams(cycle=-1.0), "cycle"),
    (lambda: CanOrderParams(safety=math.inf), "safety"),
    (lambda: simulate_can_order(JointReplenishment(2), JointReplenishment(2).sample(2, torch.Generator()),
                                CanOrderParams().levels(JointReplenishment(3))), "3 items"),
    (lambda: tune_can_order(JointReplenishment(1), JointReplenishment(1).sample(2, torch.Generator()),
                            grid={"safety": (0.0,)}), "grid"),
    (lambda: tune_can_order(JointReplenishment(1), JointReplenishment(1).sample(2, torch.Generator()),
                            refinements=-1), "refinements"),
])
def test_bad_can_order_input_is_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_the_cross_term_study_refuses_an_interval_between_dev_evaluations(monkeypatch):
    """The study runs at dev evaluations, so its interval must be a multiple of the run's: refused before any
    training starts."""
    from dataclasses import replace

    from hybridrl import hpo_experiments as hx

    smoke = hx.JRP_BUDGETS["smoke"]
    monkeypatch.setitem(hx.ALIGNMENT_BUDGETS, "smoke", replace(hx.ALIGNMENT_BUDGETS["smoke"], every=3))
    monkeypatch.setitem(hx.JRP_BUDGETS, "smoke", replace(smoke, configs={
        m: replace(c, dev_every=2) for m, c in smoke.configs.items()}))
    with pytest.raises(ValueError, match="every = 3 must be a multiple of the run's dev_every = 2"):
        hx.run_alignment(2, 0, "smoke")


def test_a_jrp_run_refuses_a_batch_larger_than_the_training_set():
    from hybridrl import hpo_experiments as hx

    with pytest.raises(ValueError, match="batch must be at most the 32 training scenarios, got 64"):
        hx.run_jrp(1, "hpo_full", 0, "smoke", batch=64)


def test_a_table_sweep_summary_sets_ours_beside_the_published_numbers():
    import pandas as pd

    from hybridrl.reproduction import JRP_PUBLISHED, JRP_REFERENCE_TOP5, jrp_sweep_summary

    costs = [40.0, 41.0, 42.0, 43.0, 44.0, 45.0]
    runs = pd.DataFrame(dict(n_items=30, method=["hpo_full"] * 6 + ["ppo"] * 6, seed=list(range(6)) * 2,
                             test_cost=costs + [2 * c for c in costs]))
    wide = jrp_sweep_summary("batch512", runs.assign(batch=512)).set_index("method")
    assert wide.loc["hpo_full", "top5"] == 42.0 and wide.loc["ppo", "top5"] == 84.0  # the five best runs
    assert wide.loc["hpo_full", "vs_reference_pct"] == 100 * (42.5 / JRP_REFERENCE_TOP5[30] - 1)
    assert pd.isna(wide.loc["hpo_full", "published_gap_pct"]) and wide.loc["ppo", "published_gap_pct"] == 121.1
    table = jrp_sweep_summary("batch16", runs.assign(batch=16)).set_index("method")
    assert "top5" not in table.columns and table.loc["ppo", "published"] == JRP_PUBLISHED[30][2]
    assert table.loc["hpo_full", "vs_published_pct"] == 100 * (42.5 / JRP_PUBLISHED[30][0] - 1)
    with pytest.raises(ValueError, match="name"):
        jrp_sweep_summary("batch64", runs.assign(batch=64))


def test_fixed_cycle_cost_matches_a_simulation_of_the_policy():
    """The closed form against :func:`rollout_fixed_cycle` on the JRP simulator, at the cheapest cycle and at two
    others, in every phase of the order rhythm (the reported periods hold a whole number of cycles)."""
    problem = JointReplenishment(4, horizon=16 + 12 * 20, warmup=16)
    episodes = problem.sample(512, torch.Generator().manual_seed(7))
    best = fixed_cycle_policy(problem, max_cycle=8)
    assert best.cost == min(best.cost_by_cycle) == best.cost_by_cycle[best.cycle - 1]
    for cycle in {best.cycle, 2, 3}:
        policy = fixed_cycle_policy(problem, cycle=cycle)
        assert policy.cycle == cycle and policy.cost == pytest.approx(best.cost_by_cycle[cycle - 1], rel=1e-12)
        for phase in range(cycle):
            cost = problem.reported(rollout_fixed_cycle(problem, episodes, policy, phase=phase))
            se = float(cost.std()) / math.sqrt(len(cost))
            assert abs(float(cost.mean()) - policy.cost) < 4 * se, (cycle, phase, float(cost.mean()), policy.cost)
        if cycle != best.cycle:  # and a worse cycle is worse in simulation too, on the same demand
            assert float(problem.reported(rollout_fixed_cycle(problem, episodes, policy)).mean()) > best.cost


def test_fixed_cycle_without_a_fixed_cost_is_the_base_stock_optimum():
    """F = 0: ordering every period (k = 1) is best and each item's level and cost are the backlogged store's
    exact base-stock optimum (:mod:`hybridrl.references`, an independent implementation)."""
    problem = JointReplenishment(3, fixed_cost=0.0)
    policy = fixed_cycle_policy(problem, max_cycle=4)
    assert policy.cycle == 1
    costs = []
    for i in range(3):
        mean, p, h = (float(getattr(problem, name)[i]) for name in ("mean", "underage_cost", "holding_cost"))
        level = references.backlog_level_poisson(mean, p, h, problem.lead_time)
        assert policy.order_up_to[i] == level
        costs.append(references.backlog_base_stock_cost(level, p, h, problem.lead_time, Poisson(mean)))
    assert policy.cost == pytest.approx(sum(costs) / 3, rel=1e-9)


@pytest.mark.parametrize("kwargs, match", [(dict(max_cycle=0), "max_cycle"), (dict(cycle=0), "cycle"),
                                           (dict(cycle=2.5), "cycle")])
def test_bad_fixed_cycle_input_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fixed_cycle_policy(JointReplenishment(2), **kwargs)
