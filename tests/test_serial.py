"""The serial system (HDPO spec §4.3, §9.3): the exact Clark–Scarf / Chen–Zheng optimum against brute force,
against simulation, across grid steps, and its input checks."""

import itertools

import numpy as np
import pytest
import torch

from hybridrl.inventory import ClippedNormal
from hybridrl.references import (
    _serial_step,
    backlog_base_stock,
    serial_cost,
    serial_cost_pmf,
    serial_optimum,
    serial_optimum_pmf,
    simulate_serial,
)

# a small two-stage instance (warehouse -> store), integer demand on {0, 1, 2, 3}, upstream first
PMF = np.array([0.15, 0.35, 0.3, 0.2])
LEADS = (1, 2)
HOLD = (0.4, 1.0)
PENALTY = 6.0


def _markov_chain_cost(levels, pmf, penalty, lead_times, holding):
    """Exact average cost of echelon base stock, independently of the recursion: enumerate the simulator's
    states reachable from the empty system (the spec's dynamics, :func:`_serial_step`), solve for the stationary
    distribution, and average the one-period cost over it and the demand."""
    sizes = list(lead_times)
    split = np.cumsum([0] + sizes)
    values = np.arange(len(pmf), dtype=np.float64)

    def step(states, d):
        inv = [torch.from_numpy(states[:, split[i] : split[i + 1]].copy()) for i in range(len(sizes))]
        new, cost = _serial_step(inv, levels, torch.full((len(states),), d, dtype=torch.float64), penalty, holding, lead_times)
        return torch.cat(new, 1).numpy(), cost.sum(1).numpy()

    index = {}
    states = [np.zeros(sum(sizes))]
    index[tuple(states[0])] = 0
    rows, cols, probs = [], [], []
    expected = []
    done = 0
    while done < len(states):  # breadth first: expand every state found in the previous round
        frontier = list(range(done, len(states)))
        done = len(states)
        batch = np.array([states[j] for j in frontier])
        exp_cost = np.zeros(len(frontier))
        for d, prob in zip(values, pmf):
            nxt, cost = step(batch, d)
            exp_cost += prob * cost
            for j, s in zip(frontier, map(tuple, nxt)):
                if s not in index:
                    index[s] = len(states)
                    states.append(np.array(s))
                rows.append(j)
                cols.append(index[s])
                probs.append(prob)
        expected.append((frontier, exp_cost))
    n = len(states)
    assert n < 3000
    P = np.zeros((n, n))
    np.add.at(P, (rows, cols), probs)
    c = np.zeros(n)
    for js, ec in expected:
        c[js] = ec
    A = P.T - np.eye(n)
    A[-1] = 1.0
    b = np.zeros(n)
    b[-1] = 1.0
    pi = np.linalg.solve(A, b)
    assert np.allclose(pi @ P, pi, atol=1e-10) and pi.min() > -1e-10
    return float(pi @ c)


def test_recursion_is_the_brute_force_optimum_of_a_two_stage_system():
    """Search every integer pair of echelon levels (monotone or not) by exact Markov-chain evaluation: the
    recursion's levels are the unique best and its cost (simulator accounting) equals the best found."""
    opt = serial_optimum_pmf(PMF, PENALTY, lead_times=LEADS, holding=HOLD)
    mu = float(np.dot(np.arange(4), PMF))
    assert opt.accounting_shift == pytest.approx(HOLD[0] * LEADS[1] * mu)  # transit to the store at the sender's rate
    costs = {}
    for wh, store in itertools.product(range(4, 15), range(2, 12)):
        costs[(wh, store)] = _markov_chain_cost((float(wh), float(store)), PMF, PENALTY, LEADS, HOLD)
        # the recursion, evaluated at arbitrary levels, is exact too
        assert serial_cost_pmf((wh, store), PMF, PENALTY, lead_times=LEADS, holding=HOLD) == pytest.approx(costs[(wh, store)], abs=1e-9)
    ranked = sorted(costs, key=costs.get)
    best = ranked[0]
    assert costs[ranked[1]] - costs[best] > 1e-6  # a unique optimum on this instance
    assert 4 < best[0] < 14 and 2 < best[1] < 11  # interior: the search box is wide enough
    assert opt.levels == (float(best[0]), float(best[1]))
    assert opt.cost == pytest.approx(costs[best], abs=1e-9)
    assert opt.clark_scarf_cost - opt.cost == pytest.approx(opt.accounting_shift)


def test_recursion_is_the_brute_force_optimum_of_a_three_stage_system():
    pmf, leads, hold, penalty = np.array([0.2, 0.5, 0.3]), (2, 1, 2), (0.2, 0.5, 1.0), 4.0
    opt = serial_optimum_pmf(pmf, penalty, lead_times=leads, holding=hold)
    costs = {
        levels: _markov_chain_cost(tuple(map(float, levels)), pmf, penalty, leads, hold)
        for levels in itertools.product(range(6, 12), range(3, 9), range(2, 7))
    }
    ranked = sorted(costs, key=costs.get)
    assert costs[ranked[1]] - costs[ranked[0]] > 1e-6
    assert opt.levels == tuple(map(float, ranked[0]))
    assert opt.cost == pytest.approx(costs[ranked[0]], abs=1e-9)
    assert opt.accounting_shift == pytest.approx(1.1 * (hold[1] * leads[2] + hold[0] * leads[1]))


def test_single_stage_reduces_to_the_backlogged_base_stock_reference():
    one = serial_optimum(9.0, lead_times=(4,), holding=(1.0,), std=1.6, step=0.005)
    ref = backlog_base_stock(9.0, 1.0, 4, ClippedNormal(5.0, 1.6))
    assert one.accounting_shift == 0.0
    assert one.cost == pytest.approx(ref.cost, abs=1e-6)
    assert one.levels[0] == pytest.approx(ref.level, abs=1e-3)


def test_grid_step_convergence():
    fine, coarse = serial_optimum(9.0, step=0.005), serial_optimum(9.0, step=0.02)
    assert abs(fine.cost - coarse.cost) < 1e-4
    assert max(abs(a - b) for a, b in zip(fine.levels, coarse.levels)) < 1e-3
    assert fine.levels[0] > fine.levels[1] > fine.levels[2] > fine.levels[3] > 0  # monotone echelon levels
    # the optimum beats nearby levels, e.g. the spec's simulation-search point (§9.3), evaluated exactly
    spec = serial_cost((83.17, 72.81, 48.99, 32.35), 9.0, step=0.005)
    assert fine.cost < spec < fine.cost + 1e-3
    for i in range(4):
        moved = list(fine.grid_levels)
        moved[i] += 2.0
        assert serial_cost(tuple(moved), 9.0, step=0.005) > fine.cost + 1e-4


def test_long_simulation_of_the_optimum_agrees_with_the_exact_cost():
    opt = serial_optimum(9.0)
    assert opt.accounting_shift == pytest.approx(3.0 * opt.mean_demand)  # 0.5·4 + 0.2·3 + 0.1·4
    sim = simulate_serial(opt.levels, 9.0, paths=4000, periods=700, warmup=300, seed=2024)
    assert 0.01 < sim.se < 0.03
    assert abs(sim.mean - opt.cost) < 3 * sim.se
    assert abs(opt.cost - 10.74) < 0.03  # the spec's noisy simulation-search estimate, 10.74 ± 0.03


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(penalty=0.0), "penalty"),
        (dict(penalty=-9.0), "penalty"),
        (dict(lead_times=(2, 4, 0, 4)), "lead_times[2]"),
        (dict(lead_times=(2, 4, 3.0, 4)), "lead_times[2]"),
        (dict(lead_times=()), "lead_times"),
        (dict(holding=(0.1, 0.2, 0.5)), "holding"),
        (dict(holding=(0.1, 0.2, -0.5, 1.0)), "holding[2]"),
        (dict(holding=(0.1, 0.5, 0.2, 1.0)), "holding"),
        (dict(mean=float("nan")), "mean"),
        (dict(std=0.0), "std"),
        (dict(step=0.0), "step"),
        (dict(step=1.0), "step"),
    ],
)
def test_bad_input_raises(kwargs, field):
    with pytest.raises(ValueError, match=r"^" + field.replace("[", r"\[").replace("]", r"\]")):
        serial_optimum(**kwargs)


def test_bad_levels_pmf_and_simulation_input_raise():
    with pytest.raises(ValueError, match=r"levels\[1\]"):
        serial_cost((80.0, -1.0, 40.0, 30.0))
    with pytest.raises(ValueError, match="levels"):
        serial_cost((80.0, 70.0))
    with pytest.raises(ValueError, match="pmf"):
        serial_optimum_pmf([0.5, 0.6], 9.0, lead_times=(1,), holding=(1.0,))
    with pytest.raises(ValueError, match="warmup"):
        simulate_serial((80.0, 70.0, 50.0, 30.0), periods=10, warmup=10)
    with pytest.raises(ValueError, match="paths"):
        simulate_serial((80.0, 70.0, 50.0, 30.0), paths=1)
