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
