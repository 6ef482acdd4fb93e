"""Hybrid policies and the mixed gradient estimator: sub-ranges, rollouts, and unbiasedness against the exact
gradient of a problem small enough to enumerate every sequence of choices."""

import math

import pytest
import torch

from hybridrl import estimators
from hybridrl.hybrid import Episode, HybridPolicy, SubRanges, exact_objective, hybrid_rollout


class ToySwitched:
    """A tiny hybrid problem: x_{t+1} = 0.9 x + b_d u, cost |x|² + 0.5 |u|² + 0.3·d. Choice 1 has a weak actuator
    and a fixed cost, so the choices matter and the continuous actions move later choices (through x)."""

    n_choices, horizon = 2, 3

    def __init__(self, dim: int = 2):
        self.action_dim = self.observation_dim = dim

    def sample(self, batch, generator):
        return Episode(torch.randn(batch, self.action_dim, generator=generator, dtype=torch.float64))

    def observe(self, state, period, episode):
        return state

    def step(self, state, choice, action, period, episode):
        gain = torch.where(choice == 0, 1.0, 0.3).to(state.dtype)[:, None]
        cost = (state**2).sum(-1) + 0.5 * (action**2).sum(-1) + 0.3 * choice.to(state.dtype)
        return 0.9 * state + gain * action, cost


def _policy(dim=2, seed=0):
    policy = HybridPolicy(dim, 2, dim, hidden=(6,), head_std=0.5, init_seed=seed).double()
    return policy


def _flat_grad(loss, params):
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, retain_graph=True)])


# ---- sub-ranges ---------------------------------------------------------------------------------------------------
def test_subranges_keep_actions_inside_their_range():
    ranges = SubRanges((0.0, 0.0, 5.0, math.inf), values=(0.0, 64.0, 80.0))
    z = torch.randn(1000, 3, 4, generator=torch.Generator().manual_seed(0)) * 10
    u = ranges.map(z, scale=2.0)
    assert (u[:, 0] == 0.0).all()  # a degenerate range gives its point value
    assert ((u[:, 1] >= 0) & (u[:, 1] <= 5)).all() and u[:, 1].std() > 1
    assert (u[:, 2] >= 5).all() and torch.allclose(u[:, 2], 5 + 2 * torch.nn.functional.softplus(z[:, 2]))
    assert ranges.value(torch.tensor([0, 2, 1])).tolist() == [0.0, 80.0, 64.0]
    assert ranges.n_choices == 3


@pytest.mark.parametrize("thresholds, values, match", [
    ((0.0,), None, "at least two"),
    ((0.0, 5.0, 1.0), None, "non-decreasing"),
    ((0.0, math.inf, math.inf), None, "finite except the last"),
    ((0.0, 1.0), (1.0, 2.0), "one entry per sub-range"),
])
def test_subranges_reject_bad_thresholds(thresholds, values, match):
    with pytest.raises(ValueError, match=match):
        SubRanges(thresholds, values)


# ---- rollouts -----------------------------------------------------------------------------------------------------
def test_rollout_records_and_is_deterministic_given_the_generator():
    problem, policy = ToySwitched(), _policy()
    episode = problem.sample(64, torch.Generator().manual_seed(1))
    a = hybrid_rollout(policy, problem, episode, generator=torch.Generator().manual_seed(7))
    b = hybrid_rollout(policy, problem, episode, generator=torch.Generator().manual_seed(7))
    c = hybrid_rollout(policy, problem, episode, generator=torch.Generator().manual_seed(8))
    assert a.cost.shape == a.choice.shape == a.log_prob.shape == (64, 3) and a.action.shape == (64, 3, 2)
    assert torch.equal(a.choice, b.choice) and torch.equal(a.cost, b.cost)
    assert not torch.equal(a.choice, c.choice)
    greedy = hybrid_rollout(policy, problem, episode, greedy=True)
    logits, _ = policy(greedy.observation[:, 0])
    assert torch.equal(greedy.choice[:, 0], logits.argmax(-1))
    with pytest.raises(ValueError, match="generator is required"):
        hybrid_rollout(policy, problem, episode)


def test_rollout_without_grad_gives_the_same_fixed_state_values():
    """Under ``torch.no_grad()`` (PPO's rollouts, evaluation) the rollout skips the discrete network's second pass
    on the detached states: the same numbers. With grad, the fixed-state fields have a graph to θ_D alone."""
    problem, policy = ToySwitched(), _policy()
    episode = problem.sample(32, torch.Generator().manual_seed(1))
    full = hybrid_rollout(policy, problem, episode, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        quiet = hybrid_rollout(policy, problem, episode, generator=torch.Generator().manual_seed(7))
    assert torch.equal(quiet.cost, full.cost) and torch.equal(quiet.choice, full.choice)
    assert torch.equal(quiet.log_prob_fixed_state, full.log_prob_fixed_state)
    assert torch.equal(quiet.entropy_fixed_state, full.entropy_fixed_state)
    assert _flat_grad(full.log_prob_fixed_state.sum(), policy.discrete_parameters()).abs().sum() > 0
    assert all(g is None for g in torch.autograd.grad(full.log_prob_fixed_state.sum(), policy.continuous_parameters(),
                                                      allow_unused=True))


def test_exact_objective_equals_the_average_over_sampled_paths():
    problem, policy = ToySwitched(), _policy()
    episode = problem.sample(4, torch.Generator().manual_seed(2))
    exact = exact_objective(policy, problem, episode).detach()
    many = episode[torch.arange(4).repeat(20000)]
    with torch.no_grad():
        sampled = hybrid_rollout(policy, problem, many, generator=torch.Generator().manual_seed(3)).total_cost()
    assert abs(float(sampled.mean() - exact)) < 4 * float(sampled.std()) / math.sqrt(len(sampled))


# ---- the mixed estimator --------------------------------------------------------------------------------------------
def _estimates(estimator, policy, problem, episode, groups, repeats, seed=0, **rollout):
    """``groups`` independent gradient estimates, each from ``repeats`` rollouts of every episode."""
    params = list(policy.parameters())
    out = []
    generator = torch.Generator().manual_seed(seed)
    batch = episode[torch.arange(episode.size).repeat(repeats)]
    for _ in range(groups):
        traj = hybrid_rollout(policy, problem, batch, generator=generator, **rollout)
        out.append(_flat_grad(estimator(traj), params))
    return torch.stack(out)


def _z(estimates, exact):
    mean = estimates.mean(0)
    se = estimates.std(0) / math.sqrt(estimates.shape[0])
    return (mean - exact) / se


@pytest.fixture(scope="module")
def toy():
    problem, policy = ToySwitched(), _policy(seed=3)
    episode = problem.sample(8, torch.Generator().manual_seed(4))
    params = list(policy.parameters())
    exact = _flat_grad(exact_objective(policy, problem, episode), params)
    n_discrete = sum(p.numel() for p in policy.discrete_parameters())
    return problem, policy, episode, exact, n_discrete


def test_mixed_estimator_is_unbiased(toy):
    """Every coordinate of the averaged estimate is within Monte Carlo error of the exact gradient."""
    problem, policy, episode, exact, _ = toy
    est = _estimates(estimators.mixed, policy, problem, episode, groups=60, repeats=256)
    z = _z(est, exact)
    assert z.abs().max() < 4.5, z
    assert 0.4 < float((z**2).mean()) < 2.0  # standardised errors of the right size, not just small


def test_dropping_the_cross_term_is_biased_here(toy):
    """The decentralized estimator misses G_X: its continuous-parameter coordinates miss the exact gradient."""
    problem, policy, episode, exact, n_discrete = toy
    est = _estimates(estimators.decentralized, policy, problem, episode, groups=60, repeats=256)
    z = _z(est, exact)
    continuous = z[n_discrete:]  # parameters are ordered discrete first, then continuous
    assert continuous.abs().max() > 8, continuous
    assert z[:n_discrete].abs().max() < 4.5  # the discrete part is the same score-function term


def test_decentralized_is_full_minus_the_cross_term(toy):
    problem, policy, episode, _, n_discrete = toy
    batch = episode[torch.arange(8).repeat(32)]
    traj = hybrid_rollout(policy, problem, batch, generator=torch.Generator().manual_seed(5))
    params = list(policy.parameters())
    full = _flat_grad(estimators.mixed(traj), params)
    decentral = _flat_grad(estimators.decentralized(traj), params)
    returns = estimators.cost_to_go(traj.cost.detach())
    advantage = returns - estimators.leave_one_out_mean(returns)
    cross = _flat_grad(((traj.log_prob - traj.log_prob_fixed_state) * advantage).sum(-1).mean(), params)
    assert torch.allclose(full - decentral, cross, atol=1e-12)
    assert torch.equal(full[:n_discrete], decentral[:n_discrete])  # the cross term only reaches θ_C
    assert cross[n_discrete:].abs().max() > 0


def test_pathwise_term_matches_finite_differences(toy):
    """With the choices held fixed, the gradient of the total cost is the derivative of the simulator."""
    problem, policy, episode, _, n_discrete = toy
    choices = torch.tensor([[0, 1, 0]]).repeat(episode.size, 1)
    weight = policy.continuous[0].weight

    def total(w):
        with torch.no_grad():
            old = weight.clone()
            weight.copy_(w)
            value = hybrid_rollout(policy, problem, episode, choices=choices).total_cost().mean()
            weight.copy_(old)
        return value

    traj = hybrid_rollout(policy, problem, episode, choices=choices)
    (grad,) = torch.autograd.grad(traj.total_cost().mean(), [weight])
    eps, w0 = 1e-6, weight.detach().clone()
    for i, j in [(0, 0), (3, 1), (5, 0)]:
        e = torch.zeros_like(w0)
        e[i, j] = eps
        fd = (total(w0 + e) - total(w0 - e)) / (2 * eps)
        assert float(grad[i, j]) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)


def test_score_function_estimator_is_unbiased_for_the_gaussian_policy():
    """The pure score-function estimator is unbiased for the objective of the policy *with* exploration noise:
    its average matches the finite-difference slope of that objective along a random direction."""
    problem, policy = ToySwitched(dim=1), _policy(dim=1, seed=1)
    episode = problem.sample(8, torch.Generator().manual_seed(6))
    params = list(policy.parameters())
    direction = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    est = _estimates(estimators.score_function, policy, problem, episode, groups=40, repeats=512,
                     exploration_std=0.5) @ direction

    def objective(shift):
        with torch.no_grad():
            offset = 0
            for p in params:
                p += shift * direction[offset: offset + p.numel()].view_as(p)
                offset += p.numel()
            batch = episode[torch.arange(8).repeat(200_000)]
            value = hybrid_rollout(policy, problem, batch, generator=torch.Generator().manual_seed(11),
                                   exploration_std=0.5).total_cost().mean()  # common random numbers
            offset = 0
            for p in params:
                p -= shift * direction[offset: offset + p.numel()].view_as(p)
                offset += p.numel()
        return value

    slope = (objective(1e-3) - objective(-1e-3)) / 2e-3
    se = est.std() / math.sqrt(len(est))
    assert abs(float(est.mean() - slope)) < 4 * float(se), (est.mean(), slope, se)
    with pytest.raises(ValueError, match="Gaussian exploration"):
        estimators.score_function(hybrid_rollout(policy, problem, episode, greedy=True))


def test_mixed_terms_add_up_to_the_mixed_estimate(toy):
    """G_PW + G_X on θ_C and G_SF on θ_D, computed apart, are exactly the mixed estimator's gradient."""
    problem, policy, episode, _, n_discrete = toy
    batch = episode[torch.arange(8).repeat(16)]
    traj = hybrid_rollout(policy, problem, batch, generator=torch.Generator().manual_seed(6))
    full = _flat_grad(estimators.mixed(traj), list(policy.parameters()))
    terms = estimators.mixed_terms(traj, policy.continuous_parameters(), policy.discrete_parameters())
    assert torch.allclose(terms["score_function"], full[:n_discrete], atol=1e-12)
    assert torch.allclose(terms["pathwise"] + terms["cross"], full[n_discrete:], atol=1e-12)
    assert terms["cross"].abs().max() > 0 and terms["pathwise"].abs().max() > 0


def test_signal_and_noise_tells_signal_from_noise():
    generator = torch.Generator().manual_seed(0)
    signal = torch.ones(50) + 0.01 * torch.randn(8, 50, generator=generator)
    noise = torch.randn(8, 50, generator=generator)
    s, n = estimators.signal_and_noise(signal), estimators.signal_and_noise(noise)
    assert s["alignment"] > 0.99 and s["noise"] < 1e-3
    assert abs(n["alignment"]) < 0.3 and n["noise"] > 3
    with pytest.raises(ValueError, match="two"):
        estimators.signal_and_noise(signal[:1])


def test_relaxed_rollout_with_hard_choices_follows_the_simulator():
    """Straight-through: the forward pass is the exact simulator with the hard choices; gradients reach both
    networks (the discrete one only through the relaxation)."""
    from hybridrl.hybrid import relaxed_rollout
    from hybridrl.jrp import JointReplenishment
    from hybridrl.lqr import SwitchedLQR

    for problem in (JointReplenishment(3, horizon=6, warmup=1), SwitchedLQR(dim=3, modes=2, horizon=6)):
        policy = HybridPolicy(problem.observation_dim, problem.n_choices, problem.action_dim, hidden=(8,),
                              action_map=getattr(problem, "action_map", None), init_seed=1)
        episode = problem.sample(16, torch.Generator().manual_seed(2))
        cost = relaxed_rollout(policy, problem, episode, generator=torch.Generator().manual_seed(3), temperature=0.5)
        # replay the same hard choices through the exact simulator
        state, replay, generator = episode.state, [], torch.Generator().manual_seed(3)
        for t in range(problem.horizon):
            logits, actions = policy(problem.observe(state, t, episode))
            uniform = torch.rand(logits.shape, generator=generator)
            gumbel = -torch.log((-torch.log(uniform.clamp(min=1e-20))).clamp(min=1e-20))
            choice = (logits + gumbel).argmax(-1)
            state, c = problem.step(state, choice, actions[torch.arange(16), choice], t, episode)
            replay.append(c)
        assert torch.allclose(cost, torch.stack(replay, 1), rtol=1e-5)
        grads = torch.autograd.grad(cost.mean(), [*policy.discrete_parameters(), *policy.continuous_parameters()],
                                    allow_unused=True)
        assert all(g is not None and g.abs().max() > 0 for g in grads[:2])  # discrete weights get a gradient
    with pytest.raises(TypeError, match="relaxed_step"):
        relaxed_rollout(_policy(), ToySwitched(), ToySwitched().sample(2, torch.Generator()),
                        generator=torch.Generator(), temperature=1.0)
