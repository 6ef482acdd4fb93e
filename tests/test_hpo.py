"""The hybrid training loop: configuration checks, the HPO update's structure, determinism, and that training
reaches the exact optimum where one is known (the switched LQR with one mode)."""

from dataclasses import replace

import pytest
import torch

from hybridrl.hpo import HybridConfig, annealed, evaluate_hybrid, train_hybrid
from hybridrl.lqr import SwitchedLQR, riccati_cost, sample_splits

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lqr():
    problem = SwitchedLQR(dim=2, modes=2, horizon=8)
    return problem, sample_splits(problem, 256, 64, 256)


def _small(method, **kw):
    return HybridConfig(method=method, updates=4, batch_size=64, hidden=(16,), value_hidden=(16,), dev_every=2, **kw)


@pytest.mark.parametrize("field, value, match", [
    ("method", "sac", "method"), ("updates", 0, "updates"), ("gamma", 1.5, "gamma"), ("lr", -1.0, "lr"),
    ("minibatches", 200, "minibatches"),
])
def test_bad_configuration_is_rejected(field, value, match):
    with pytest.raises(ValueError, match=match):
        HybridConfig(**{field: value})
    with pytest.raises(ValueError, match="unknown"):
        HybridConfig.from_dict({"learning_rate": 1e-3})


def test_learning_rate_anneals_from_the_base_rate():
    config = HybridConfig(updates=10, lr=1.0)
    assert [annealed(1.0, k, config) for k in (1, 6, 10)] == pytest.approx([1.0, 0.5, 0.1])
    assert annealed(1.0, 10, replace(config, anneal=False)) == 1.0


def test_same_seed_same_run_and_seeds_differ(lqr):
    problem, splits = lqr
    a = train_hybrid(problem, splits.train, splits.dev, _small("hpo_full"))
    b = train_hybrid(problem, splits.train, splits.dev, _small("hpo_full"))
    c = train_hybrid(problem, splits.train, splits.dev, _small("hpo_full", seed=1))
    assert [h["dev_cost"] for h in a.history] == [h["dev_cost"] for h in b.history]
    assert [h["dev_cost"] for h in a.history] != [h["dev_cost"] for h in c.history]


def test_hpo_moves_the_continuous_network_once_per_batch(lqr):
    """Epochs after the first full-batch step update only the discrete head and the value network (spec R9)."""
    problem, splits = lqr
    one = train_hybrid(problem, splits.train, splits.dev, replace(_small("hpo_full", ppo_epochs=1), updates=1))
    many = train_hybrid(problem, splits.train, splits.dev, replace(_small("hpo_full", ppo_epochs=4), updates=1))
    for p, q in zip(one.policy.continuous_parameters(), many.policy.continuous_parameters()):
        assert torch.equal(p, q)
    assert any(not torch.equal(p, q) for p, q in zip(one.policy.discrete_parameters(), many.policy.discrete_parameters()))


def test_every_method_trains_and_evaluates_greedily(lqr):
    problem, splits = lqr
    for method in ("hpo_full", "hpo_decentralized", "exact_mixed", "exact_decentralized", "ppo", "gumbel_st"):
        result = train_hybrid(problem, splits.train, splits.dev, _small(method))
        assert len(result.history) == 2 and result.best_update in (2, 4)
        cost = evaluate_hybrid(result.policy, problem, splits.test)
        assert cost.shape == (256, 8) and torch.isfinite(cost).all()


def test_with_one_choice_training_reaches_the_riccati_optimum():
    """J = 1: the discrete head is trivial and HPO is the pathwise gradient; the optimum is the Riccati controller."""
    problem = SwitchedLQR(dim=2, modes=1, horizon=8)
    splits = sample_splits(problem, 512, 128, 512)
    optimal = float(riccati_cost(problem, splits.test, 0).simulated.mean())
    config = HybridConfig(method="exact_mixed", updates=300, batch_size=128, hidden=(32, 32), value_hidden=(16,),
                          lr=1e-2, dev_every=50)
    result = train_hybrid(problem, splits.train, splits.dev, config)
    cost = float(evaluate_hybrid(result.policy, problem, splits.test).sum(-1).mean())
    assert optimal <= cost * (1 + 1e-6)  # nothing beats the optimum
    assert cost <= 1.02 * optimal, (cost, optimal)


def test_callback_sees_every_checkpoint_and_does_not_change_training(lqr):
    problem, splits = lqr
    seen = []

    def callback(update, policy, value):
        seen.append(update)
        return {"marker": float(update)}

    plain = train_hybrid(problem, splits.train, splits.dev, _small("hpo_full"))
    watched = train_hybrid(problem, splits.train, splits.dev, _small("hpo_full"), callback=callback)
    assert seen == [2, 4] and [h["marker"] for h in watched.history] == [2.0, 4.0]
    assert [h["dev_cost"] for h in plain.history] == [h["dev_cost"] for h in watched.history]


def test_gumbel_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature_end"):
        HybridConfig(method="gumbel_st", temperature_end=0.0)


@pytest.mark.parametrize("method", ["hpo_full", "ppo", "gumbel_st"])
def test_an_interrupted_hybrid_training_resumes_from_its_checkpoint(method, lqr, tmp_path):
    """Interrupted at a dev evaluation (after the training state of the previous one was written), a run resumes
    there and ends exactly like an uninterrupted one: parameters, best update and history."""
    problem, data = lqr
    config = replace(_small(method), updates=6)  # 4 batches per pass: the run resumes mid-pass

    def quiet(update, policy, value):
        return {"seen": update}

    def dies_at_4(update, policy, value):
        if update == 4:
            raise KeyboardInterrupt
        return {"seen": update}

    whole = train_hybrid(problem, data.train, data.dev, config, callback=quiet)
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train_hybrid(problem, data.train, data.dev, config, callback=dies_at_4, checkpoint=ckpt)
    assert ckpt.exists()
    resumed = train_hybrid(problem, data.train, data.dev, config, callback=quiet, checkpoint=ckpt)
    assert [h["update"] for h in resumed.history] == [2, 4, 6]
    assert [h["dev_cost"] for h in resumed.history] == [h["dev_cost"] for h in whole.history]
    assert resumed.best_update == whole.best_update
    for a, b in zip(whole.policy.parameters(), resumed.policy.parameters()):
        assert torch.equal(a, b)


def _first_step_gradients(problem, episode, method, **kw):
    """The continuous parameters' gradient of HPO's first-step loss and of its pathwise part alone, on one
    rollout (the same choices for both)."""
    from hybridrl.hpo import hpo_first_loss
    from hybridrl.hybrid import HybridPolicy, hybrid_rollout, mlp

    config = _small(method, entropy_start=0.5, **kw)
    policy = HybridPolicy(problem.observation_dim, problem.n_choices, problem.action_dim, hidden=(16,), init_seed=3)
    value = mlp([problem.observation_dim, 16, 1], "tanh", torch.Generator().manual_seed(4), head_std=1.0)
    traj = hybrid_rollout(policy, problem, episode, generator=torch.Generator().manual_seed(5))
    loss, pathwise, _ = hpo_first_loss(traj, value, problem, episode, config, entropy_coef=0.5)
    params = policy.continuous_parameters()
    full = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    alone = torch.autograd.grad(pathwise, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, full)], alone


def test_decentralized_hpo_moves_the_continuous_network_by_the_pathwise_term_alone(lqr):
    """Spec §4.2, §5.7: without the cross term, θ_C gets G_PW only, also from the entropy bonus (states detached
    there too). Full HPO differs from it by the cross term and the entropy's path through the states."""
    problem, splits = lqr
    full, alone = _first_step_gradients(problem, splits.train[:64], "hpo_decentralized")
    for g, h in zip(full, alone):
        torch.testing.assert_close(g, h, rtol=1e-6, atol=1e-9)
    full, alone = _first_step_gradients(problem, splits.train[:64], "hpo_full")
    assert any(not torch.allclose(g, h, rtol=1e-3, atol=1e-6) for g, h in zip(full, alone))


def test_first_step_terms_add_up_to_the_hpo_full_step(lqr):
    """The cross-term study's practical terms (spec §5, item 12) are HPO-full's first step taken apart: pathwise
    plus cross is its gradient on θ_C, the discrete term its gradient on θ_D (entropy bonus off); and the cross
    term is exactly what the decentralized step leaves out."""
    from hybridrl.estimators import flat_grad
    from hybridrl.hpo import hpo_first_loss, hpo_first_terms
    from hybridrl.hybrid import HybridPolicy, hybrid_rollout, mlp

    problem, splits = lqr
    episode = splits.train[:64]
    policy = HybridPolicy(problem.observation_dim, problem.n_choices, problem.action_dim, hidden=(16,), init_seed=3)
    value = mlp([problem.observation_dim, 16, 1], "tanh", torch.Generator().manual_seed(4), head_std=1.0)
    traj = hybrid_rollout(policy, problem, episode, generator=torch.Generator().manual_seed(5))
    continuous, discrete = policy.continuous_parameters(), policy.discrete_parameters()
    terms = hpo_first_terms(traj, value, problem, episode, _small("hpo_decentralized"), continuous, discrete)
    full, _, _ = hpo_first_loss(traj, value, problem, episode, _small("hpo_full"), entropy_coef=0.0)
    decentral, _, _ = hpo_first_loss(traj, value, problem, episode, _small("hpo_decentralized"), entropy_coef=0.0)
    torch.testing.assert_close(terms["pathwise_plus_cross_ppo"], flat_grad(full, continuous))
    torch.testing.assert_close(terms["discrete_ppo"], flat_grad(full, discrete))
    torch.testing.assert_close(terms["pathwise_ppo"], flat_grad(decentral, continuous))
    assert terms["cross_ppo"].norm() > 1e-3 * terms["pathwise_ppo"].norm()


def test_ppo_epochs_stop_before_the_step_that_would_exceed_target_kl(lqr):
    """Spec §5.6: the PPO epochs stop when the approximate KL to the rollout's policy exceeds target_kl. After
    HPO's first step the discrete head has moved, so a target of 1e-12 stops the epochs at their first
    minibatch, with no step taken: the same update as with no PPO epochs at all."""
    problem, splits = lqr
    none = train_hybrid(problem, splits.train, splits.dev, replace(_small("hpo_full", ppo_epochs=1), updates=1))
    stopped = train_hybrid(problem, splits.train, splits.dev,
                           replace(_small("hpo_full", ppo_epochs=4, target_kl=1e-12), updates=1))
    moved = train_hybrid(problem, splits.train, splits.dev, replace(_small("hpo_full", ppo_epochs=4), updates=1))
    same = [torch.equal(p, q) for p, q in zip(none.policy.parameters(), stopped.policy.parameters())]
    assert all(same)
    assert not all(torch.equal(p, q) for p, q in zip(none.policy.parameters(), moved.policy.parameters()))


def test_exact_methods_clip_the_policy_gradient_as_one_vector():
    """Spec R1: the exact estimator keeps one common scale, so clipping may shorten the policy's gradient but
    not turn it (per-network clipping would rescale G_PW against G_SF)."""
    from hybridrl.hpo import _clip_groups, _one_policy_group

    a, b, v = (torch.nn.Parameter(torch.zeros(3)) for _ in range(3))
    groups = {"continuous": [a], "discrete": [b], "value": [v]}
    a.grad, b.grad, v.grad = torch.tensor([30.0, 0, 0]), torch.tensor([0, 40.0, 0]), torch.tensor([0, 0, 1.0])
    _clip_groups(_one_policy_group(groups), 5.0)
    torch.testing.assert_close(a.grad, torch.tensor([3.0, 0, 0]))  # the joint norm 50 -> 5: both scaled by 0.1
    torch.testing.assert_close(b.grad, torch.tensor([0, 4.0, 0]))
    torch.testing.assert_close(v.grad, torch.tensor([0, 0, 1.0]))


def test_reward_scaling_off_leaves_the_value_targets_in_cost_units(lqr):
    """Without ``reward_scaling`` (PPO on the S-LQR, spec §9) the GAE runs on the costs themselves."""
    from hybridrl.hpo import _advantages, _gae
    from hybridrl.hybrid import HybridPolicy, hybrid_rollout, mlp

    problem, splits = lqr
    policy = HybridPolicy(problem.observation_dim, problem.n_choices, problem.action_dim, hidden=(16,), init_seed=3)
    value = mlp([problem.observation_dim, 16, 1], "tanh", torch.Generator().manual_seed(4), head_std=1.0)
    batch = splits.train[:64]
    traj = hybrid_rollout(policy, problem, batch, generator=torch.Generator().manual_seed(5))
    config = _small("ppo")
    on = _advantages(traj, value, problem, batch, config)
    off = _advantages(traj, value, problem, batch, replace(config, reward_scaling=False))
    assert float(off[3]) == 1.0 and float(on[3]) == pytest.approx(float(traj.cost.detach().std()))
    with torch.no_grad():
        values = value(traj.observation).squeeze(-1)
        last = torch.zeros_like(values[:, 0])
        for scale, result in ((on[3], on), (1.0, off)):  # returns = GAE(costs / scale) + V
            expected = _gae(traj.cost / scale, values, last, config.gamma, config.gae_lambda) + values
            torch.testing.assert_close(result[1], expected)
