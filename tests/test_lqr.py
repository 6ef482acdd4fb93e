"""The switched LQR (HPO spec §7.3): matrices, the simulator, the Riccati references and the Gymnasium wrapper."""

import itertools
import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from hybridrl.hybrid import Episode, HybridPolicy, exact_objective, hybrid_rollout
from hybridrl.lqr import (
    LQRSeeds,
    SwitchedLQR,
    best_fixed_mode_cost,
    dare_controller,
    finite_horizon_riccati,
    relaxed_lower_bound,
    riccati_cost,
    sample_splits,
    simulate_linear_controller,
    switched_optimum,
)
from hybridrl.lqr import _prune_dominated


# ---- matrices --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [1, 5, 12])
def test_a_is_a_diag_plus_normalised_symmetric_gaussian(p):
    problem = SwitchedLQR(p, 2, a_diag=1.1, a_noise=0.05, matrix_seed=3)
    noise = (problem.A - 1.1 * torch.eye(p, dtype=torch.float64)) / 0.05
    torch.testing.assert_close(noise, noise.T)
    g = torch.randn(p, p, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(noise, (g + g.T) / math.sqrt(2 * p))  # the documented normalisation


def test_matrix_seed_makes_the_matrices():
    a, b = SwitchedLQR(6, 3, matrix_seed=0), SwitchedLQR(6, 3, matrix_seed=0)
    assert torch.equal(a.A, b.A) and torch.equal(a.b, b.b)
    assert not torch.allclose(a.A, SwitchedLQR(6, 3, matrix_seed=1).A)
    assert torch.equal(a.A, SwitchedLQR(6, 3, variant="single_mode").A)  # the variant does not change A


def test_spectrum_of_g_sym_is_order_one_whatever_p():
    eig = np.linalg.eigvalsh(((SwitchedLQR(200, 1).A - 1.1 * torch.eye(200, dtype=torch.float64)) / 0.05).numpy())
    assert 1.5 < eig.max() < 2.5 and -2.5 < eig.min() < -1.5  # semicircle on [-2, 2]


@pytest.mark.parametrize("p, modes", [(7, 3), (8, 2), (3, 5), (1, 4)])
def test_input_gains_follow_array_split_groups(p, modes):
    problem = SwitchedLQR(p, modes, b_high=1.0, b_low=0.15)
    groups = np.array_split(np.arange(p), modes)
    assert problem.groups == tuple(tuple(g.tolist()) for g in groups)
    for m, group in enumerate(groups):
        expected = np.full(p, 0.15)
        expected[group] = 1.0
        np.testing.assert_array_equal(problem.b[m].numpy(), expected)
        np.testing.assert_array_equal(problem.input_matrix(m), np.diag(expected))
    if modes > p:  # empty groups: no strong actuator
        assert problem.groups[-1] == () and (problem.b[-1] == 0.15).all()


def test_number_of_choices_per_variant():
    assert SwitchedLQR(4, 3).n_choices == 3
    single = SwitchedLQR(4, 3, variant="single_mode")
    assert single.n_choices == 1 and single.groups == ((0, 1), (2,), (3,))  # groups still split by J
    state = torch.ones(2, 4)
    nxt, _ = single.step(state, torch.zeros(2, dtype=torch.long), torch.ones(2, 4), 0, Episode(state))
    torch.testing.assert_close(nxt, state @ single.A.float().T + single.b[0].float())  # mode 0 applied
    with pytest.raises(IndexError):
        single.step(state, torch.ones(2, dtype=torch.long), torch.ones(2, 4), 0, Episode(state))


# ---- the simulator ---------------------------------------------------------------------------------------------
def test_step_by_hand():
    problem = SwitchedLQR(2, 2, q=2.0, r=0.5, b_high=1.0, b_low=0.25, a_noise=0.0, a_diag=1.5)
    x = torch.tensor([[1.0, -2.0], [0.5, 0.0]], dtype=torch.float64)
    u = torch.tensor([[3.0, 1.0], [-1.0, 2.0]], dtype=torch.float64)
    nxt, cost = problem.step(x, torch.tensor([0, 1]), u, 0, Episode(x))
    torch.testing.assert_close(cost, torch.tensor([2 * 5 + 0.5 * 10, 2 * 0.25 + 0.5 * 5], dtype=torch.float64))
    expected = torch.tensor([[1.5 + 3.0, -3.0 + 0.25], [0.75 - 0.25, 0.0 + 2.0]], dtype=torch.float64)
    torch.testing.assert_close(nxt, expected)


def test_clamp_and_gradients():
    problem = SwitchedLQR(3, 2, clamp=5.0)
    x = torch.tensor([[1.0, 2.0, -1.0]], dtype=torch.float64, requires_grad=True)
    u = torch.tensor([[100.0, 0.0, -100.0]], dtype=torch.float64, requires_grad=True)
    nxt, cost = problem.step(x, torch.tensor([1]), u, 0, Episode(x))
    assert nxt.abs().max() == 5.0 and nxt[0, 0] == 5.0 and nxt[0, 2] == -5.0
    (nxt.sum() + cost.sum()).backward()
    assert u.grad is not None and x.grad is not None and torch.isfinite(u.grad).all()
    assert u.grad[0, 1] == 0.0 + 2 * problem.r * 0.0 + problem.b[1, 1]  # unclamped coordinate: through B
    x2 = torch.ones(1, 3, dtype=torch.float64, requires_grad=True)
    problem.step(x2, torch.tensor([0]), torch.zeros(1, 3, dtype=torch.float64), 0, Episode(x2))[0].sum().backward()
    torch.testing.assert_close(x2.grad[0], problem.A.sum(0))


def test_initial_states_and_splits():
    problem = SwitchedLQR(4, 2)
    x0 = problem.sample(5000, torch.Generator().manual_seed(0)).state
    assert x0.abs().max() <= 10 / 2 and x0.abs().max() > 4.9
    splits = sample_splits(problem, 64, 32, 48)
    assert [s.size for s in splits] == [64, 32, 48]
    again = sample_splits(problem, 64, 32, 48)
    assert all(torch.equal(a.state, b.state) for a, b in zip(splits, again))
    assert not torch.equal(splits.train.state[:32], splits.dev.state)
    first = problem.sample(8, torch.Generator().manual_seed(1)).state  # chunk 0 of train is seed 1
    torch.testing.assert_close(splits.train.state[:8], first)
    with pytest.raises(ValueError, match="seed 3 is used by both"):
        LQRSeeds(train=(1, 2, 3), test=(3, 4))


# ---- Riccati references ----------------------------------------------------------------------------------------
def test_riccati_cost_is_x0_p0_x0_and_beats_perturbed_controllers():
    problem = SwitchedLQR(3, 2, horizon=8)
    episode = problem.sample(16, torch.Generator().manual_seed(5))
    result = riccati_cost(problem, episode, mode=1)
    assert not result.clamp_active.any() and result.optimal.all()
    torch.testing.assert_close(result.simulated, result.exact, rtol=1e-10, atol=1e-10)
    gains, _ = finite_horizon_riccati(problem, 1)
    rng = np.random.default_rng(0)
    for scale in (1e-3, 1e-2, 1e-1):
        worse = simulate_linear_controller(problem, episode, gains + scale * rng.standard_normal(gains.shape), 1)
        assert (worse.cost >= result.exact - 1e-9).all() and worse.cost.mean() > result.exact.mean()


def test_riccati_reports_the_clamp():
    problem = SwitchedLQR(2, 1, clamp=3.0)
    episode = Episode(torch.tensor([[2.9, 2.9], [0.01, 0.01]]))
    run = simulate_linear_controller(problem, episode, np.zeros((2, 2)))  # open loop, unstable: hits the clamp
    assert run.clamp_active.tolist() == [True, False]
    result = riccati_cost(problem, Episode(torch.tensor([[0.1, 0.1]])))
    assert not result.clamp_active.any()


def test_long_horizon_gain_approaches_dare():
    problem = SwitchedLQR(3, 2, horizon=400)
    gains, cost_to_go = finite_horizon_riccati(problem, 0)
    k, p = dare_controller(problem, 0)
    a, b = problem.A.numpy(), problem.input_matrix(0)
    q, r = problem.cost_matrices()
    np.testing.assert_allclose(p, scipy.linalg.solve_discrete_are(a, b, q, r))
    np.testing.assert_allclose(gains[0], k, atol=1e-8)
    np.testing.assert_allclose(cost_to_go[0], p, atol=1e-6)
    assert np.abs(np.linalg.eigvals(a - b @ k)).max() < 1  # the closed loop is stable


def test_dare_controller_cost_for_one_mode():
    """Spec R5: J = 1, the DARE controller on the finite clamped problem costs at least the exact optimum."""
    problem = SwitchedLQR(4, 1)
    episode = problem.sample(64, torch.Generator().manual_seed(2))
    k, _ = dare_controller(problem)
    dare = simulate_linear_controller(problem, episode, k)
    exact = riccati_cost(problem, episode)
    assert (dare.cost >= exact.exact - 1e-9).all() and not dare.clamp_active.any()
    assert dare.cost.mean() < 1.05 * exact.exact.mean()  # and is close to it


def test_references_for_the_switched_problem():
    switched = SwitchedLQR(4, 2, horizon=6)
    episode = switched.sample(32, torch.Generator().manual_seed(7))
    best, mode = best_fixed_mode_cost(switched, episode)
    per_mode = torch.stack([riccati_cost(switched, episode, m).exact for m in range(2)])
    torch.testing.assert_close(best.exact, per_mode.min(0).values)
    assert set(mode.tolist()) <= {0, 1} and not best.optimal.any()
    bound = relaxed_lower_bound(switched, episode)
    assert (bound <= best.exact + 1e-9).all()
    # any policy, e.g. a random hybrid one, costs at least the bound
    policy = HybridPolicy(4, 2, 4, hidden=(8,), head_std=1.0)
    with torch.no_grad():
        traj = hybrid_rollout(policy, switched, episode, generator=torch.Generator().manual_seed(0))
    assert (traj.total_cost().double() >= bound - 1e-4).all()
    # with one choice the bound is the exact optimum
    single = SwitchedLQR(4, 2, horizon=6, variant="single_mode")
    torch.testing.assert_close(relaxed_lower_bound(single, episode), riccati_cost(single, episode).exact)
    with pytest.raises(ValueError, match="mode must be .* got 1"):
        finite_horizon_riccati(single, 1)


# ---- the exact optimum of the switched problem ----------------------------------------------------------------
def _sequence_riccati(problem, sequence):
    """Gains [T, p, p] and P_0 of the unclamped problem with the mode of period t fixed to sequence[t]."""
    a, (q, r) = problem.A.numpy(), problem.cost_matrices()
    nxt, gains = np.zeros_like(a), []
    for mode in reversed(sequence):
        b = problem.input_matrix(int(mode))
        gain = np.linalg.solve(r + b.T @ nxt @ b, b.T @ nxt @ a)
        nxt = q + gain.T @ r @ gain + (a - b @ gain).T @ nxt @ (a - b @ gain)  # the Joseph form, for independence
        gains.append(gain)
    return np.stack(gains[::-1]), nxt


@pytest.mark.parametrize("p, modes, horizon", [(2, 2, 8), (2, 3, 5), (3, 3, 5), (3, 2, 7)])
def test_switched_optimum_is_the_minimum_over_all_mode_sequences(p, modes, horizon):
    problem = SwitchedLQR(p, modes, horizon=horizon, matrix_seed=1, b_low=0.4)
    episode = problem.sample(64, torch.Generator().manual_seed(0))
    x = episode.state.double().numpy()
    brute = np.full(64, np.inf)
    for sequence in itertools.product(range(modes), repeat=horizon):  # all J^T sequences
        _, p0 = _sequence_riccati(problem, sequence)
        brute = np.minimum(brute, np.einsum("bi,ij,bj->b", x, p0, x))
    result = switched_optimum(problem, episode)
    np.testing.assert_allclose(result.exact.numpy(), brute, rtol=1e-9)
    assert result.modes.shape == (64, horizon) and len(result.n_matrices) == horizon
    assert max(result.n_matrices) < modes**horizon
    # the returned sequence attains it, and its Riccati gains on the clamped simulator cost `simulated`
    for b in range(0, 64, 8):
        gains, p0 = _sequence_riccati(problem, result.modes[b].tolist())
        np.testing.assert_allclose(x[b] @ p0 @ x[b], brute[b], rtol=1e-9)
        state, total = episode.state[b:b + 1].double(), 0.0
        for t in range(horizon):
            control = -state @ torch.as_tensor(gains[t]).T
            state, cost = problem.step(state, result.modes[b:b + 1, t], control, t, episode)
            total += cost.item()
        np.testing.assert_allclose(result.simulated[b].item(), total, rtol=1e-12)


def test_switching_beats_every_fixed_mode_on_a_two_dimensional_example():
    problem = SwitchedLQR(2, 2, horizon=6)
    episode = Episode(torch.tensor([[3.0, 3.0], [3.0, -1.0]], dtype=torch.float64))
    result = switched_optimum(problem, episode)
    best, _ = best_fixed_mode_cost(problem, episode)
    assert (result.exact < best.exact * (1 - 1e-3)).all()  # alternating actuators is strictly better
    assert (result.modes[:, :-1] != result.modes[:, :1]).any(1).all()  # and the optimum switches


@pytest.mark.parametrize("problem", [SwitchedLQR(3, 1), SwitchedLQR(3, 3, variant="single_mode"),
                                     SwitchedLQR(2, 1, clamp=3.0)])
def test_switched_optimum_with_one_choice_is_the_riccati_cost(problem):
    episode = problem.sample(32, torch.Generator().manual_seed(4))
    result, riccati = switched_optimum(problem, episode), riccati_cost(problem, episode)
    torch.testing.assert_close(result.exact, riccati.exact, rtol=1e-12, atol=0)
    torch.testing.assert_close(result.simulated, riccati.simulated, rtol=1e-12, atol=0)
    assert torch.equal(result.clamp_active, riccati.clamp_active) and torch.equal(result.optimal, riccati.optimal)
    assert (result.modes == 0).all() and result.n_matrices == (1,) * problem.horizon


@pytest.mark.parametrize("p", [2, 3, 4])
def test_switched_optimum_lies_between_the_bounds(p):
    problem = SwitchedLQR(p, 2)  # T = 20
    episode = sample_splits(problem, 256, 1, 1).train
    result = switched_optimum(problem, episode)
    assert max(result.n_matrices) < 200  # with T = 20: 87, 107 and 124 for p = 2, 3, 4
    lower, (upper, _) = relaxed_lower_bound(problem, episode), best_fixed_mode_cost(problem, episode)
    assert (lower <= result.exact).all() and (result.exact <= upper.exact * (1 + 1e-12)).all()
    assert (result.exact < 0.95 * upper.exact).float().mean() > 0.5  # switching is worth more than 5 % usually
    assert result.optimal.all() and (result.simulated <= upper.simulated * (1 + 1e-12)).all()
    torch.testing.assert_close(result.simulated, result.exact, rtol=1e-10, atol=0)


def test_switched_optimum_certificate_under_the_clamp():
    problem = SwitchedLQR(2, 2, horizon=10, clamp=3.0, r=10.0)  # expensive control: the state drifts outwards
    episode = Episode(torch.tensor([[2.9, 2.9], [0.5, -0.5], [2.9, 0.0]], dtype=torch.float64))
    result = switched_optimum(problem, episode)
    assert result.clamp_active.tolist() == [True, False, False]
    assert result.optimal.tolist() == [False, True, False]  # the last one costs more than q·clamp² = 9
    assert result.exact[2] > 9 and result.simulated[0] != result.exact[0]
    torch.testing.assert_close(result.simulated[1:], result.exact[1:], rtol=1e-12, atol=0)  # clamp inactive
    assert (result.simulated >= relaxed_lower_bound(problem, episode) - 1e-9).all()


def test_prune_dominated_keeps_one_of_equal_matrices_and_the_minimum():
    eye = np.eye(2)
    matrices = np.stack([2 * eye, eye, eye, np.diag([1.0, 3.0]), np.diag([3.0, 1.0]), np.diag([0.5, 5.0]),
                         np.diag([0.5, 5.0]) + 1e-14])
    assert sorted(_prune_dominated(matrices).tolist()) == [1, 5]
    rng = np.random.default_rng(0)
    g = rng.standard_normal((300, 3, 3))
    matrices = g @ g.swapaxes(1, 2) + np.eye(3)
    matrices = np.concatenate([matrices, matrices[:100]])  # duplicates
    kept = _prune_dominated(matrices, rtol=0.0)
    assert len(set(kept.tolist())) == len(kept) and not set(kept.tolist()) & set(range(300, 400))
    x = rng.standard_normal((2000, 3))
    values = np.einsum("bi,nij,bj->bn", x, matrices, x)
    np.testing.assert_allclose(values[:, kept].min(1), values.min(1), rtol=1e-15)
    smallest = np.linalg.eigvalsh(matrices[kept][:, None] - matrices[kept][None])[..., 0]  # [k, l]: P_k - P_l
    assert (smallest[~np.eye(len(kept), dtype=bool)] < 0).all()  # no kept matrix dominates another
    dropped = np.setdiff1d(np.arange(400), kept)
    assert (np.linalg.eigvalsh(matrices[dropped][:, None] - matrices[kept][None])[..., 0].max(1) >= -1e-12).all()
    assert len(_prune_dominated(matrices, limit=3)) == 4


def test_switched_optimum_errors_name_the_field():
    problem = SwitchedLQR(3, 3, horizon=8)
    episode = problem.sample(2, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"unavailable for dim=3, modes=3, horizon=8: .*max_matrices=10 "):
        switched_optimum(problem, episode, max_matrices=10)
    with pytest.raises(ValueError, match="max_matrices must be an integer >= 1, got 0"):
        switched_optimum(problem, episode, max_matrices=0)
    with pytest.raises(ValueError, match="rtol must be a non-negative finite number, got -1.0"):
        switched_optimum(problem, episode, rtol=-1.0)


# ---- with the hybrid machinery ---------------------------------------------------------------------------------
def test_hybrid_rollout_and_exact_objective():
    problem = SwitchedLQR(2, 2, horizon=3)
    episode = problem.sample(4, torch.Generator().manual_seed(0))
    policy = HybridPolicy(problem.observation_dim, problem.n_choices, problem.action_dim, hidden=(8,))
    traj = hybrid_rollout(policy, problem, episode, generator=torch.Generator().manual_seed(1))
    assert traj.cost.shape == (4, 3) and traj.action.shape == (4, 3, 2)
    objective = exact_objective(policy, problem, episode)
    objective.backward()
    assert torch.isfinite(objective) and all(p.grad is not None for p in policy.parameters())
    # it is the probability-weighted average over the 2^3 choice paths
    with torch.no_grad():
        paths = torch.cartesian_prod(*[torch.arange(2)] * 3)
        total = 0.0
        for path in paths:
            t = hybrid_rollout(policy, problem, episode, choices=path.expand(4, 3))
            total = total + (t.log_prob.sum(-1).exp() * t.total_cost()).mean()
    torch.testing.assert_close(objective.detach(), total)


# ---- Gymnasium -------------------------------------------------------------------------------------------------
ADVISORIES = ("recommend using a symmetric and normalized space", "maximum value is infinity",
              "minimum value is -infinity")


@pytest.mark.parametrize("variant", ["switched", "single_mode"])
def test_gymnasium_check_env_passes(variant):
    pytest.importorskip("gymnasium")
    from gymnasium.utils.env_checker import check_env

    from hybridrl import envs

    env = envs.SwitchedLQREnv(SwitchedLQR(3, 2, horizon=5, variant=variant))
    assert env.action_space["mode"].n == env.problem.n_choices
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    problems = [str(w.message) for w in caught if not any(a in str(w.message) for a in ADVISORIES)]
    assert not problems, problems


def test_vector_env_rewards_are_minus_step_costs():
    pytest.importorskip("gymnasium")
    from hybridrl import envs

    problem = SwitchedLQR(3, 3, horizon=4)
    env = envs.SwitchedLQRVectorEnv(problem, num_envs=5)
    obs, _ = env.reset(seed=11)
    state = env.initial_state.clone()
    np.testing.assert_array_equal(obs, state.numpy())
    rng = np.random.default_rng(0)
    for t in range(problem.horizon):
        action = {"mode": rng.integers(0, 3, size=5), "control": rng.normal(size=(5, 3)).astype(np.float32)}
        obs, reward, terminated, truncated, _ = env.step(action)
        state, cost = problem.step(state, torch.as_tensor(action["mode"]), torch.as_tensor(action["control"]), t,
                                   Episode(state))
        np.testing.assert_allclose(reward, -cost.double().numpy(), rtol=1e-6)
        np.testing.assert_allclose(obs, state.numpy(), rtol=1e-6)
        assert not terminated.any() and truncated.all() == (t == problem.horizon - 1)
    with pytest.raises(ValueError, match="mode"):
        env.step({"mode": np.full(5, 3), "control": np.zeros((5, 3))})


# ---- errors ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(dim=0, modes=2), "dim must be an integer >= 1, got 0"),
    (dict(dim=2, modes=0), "modes must be an integer >= 1, got 0"),
    (dict(dim=2, modes=2, variant="mixed"), "variant must be one of .*, got 'mixed'"),
    (dict(dim=2, modes=2, r=0.0), "r must be a positive finite number, got 0.0"),
    (dict(dim=2, modes=2, clamp=-1.0), "clamp must be a positive number .*, got -1.0"),
    (dict(dim=2, modes=2, horizon=2.0), "horizon must be an integer, got 2.0"),
])
def test_bad_configurations_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SwitchedLQR(**kwargs)
