"""The REINFORCE baseline (hybridrl.reinforce, estimators.reinforce): unbiased, deterministic when evaluated,
reproducible, trains through the same loop as HDPO, and much noisier than the pathwise gradient (spec §6.5, §8)."""

import math

import pytest
import torch

from hybridrl.estimators import gradient_variance, policy_gradient_samples, reinforce
from hybridrl.experiments import lost_sales_grid
from hybridrl.inventory import ClippedNormal, InventorySetting, Store, rollout
from hybridrl.network_policies import EchelonBaseStock, NetworkMLP
from hybridrl.networks import make_network_splits, one_warehouse_network, sample_network_scenarios
from hybridrl.policies import BaseStock, VanillaMLP
from hybridrl.reinforce import Reinforce
from hybridrl.scenarios import Protocol, make_splits, sample_scenarios
from hybridrl.train import TrainConfig, evaluate, fit

SMALL = Protocol(n_train=1024, n_dev=256, n_test=64, train_periods=30, dev_periods=60, dev_warmup=30,
                 test_periods=40, test_warmup=10)
LOST_SALES = lost_sales_grid((2,), (9,))  # Poisson(5), L = 2, p = 9, h = 1


def _config(**kw):
    base = dict(epochs=6, batch_size=256, lr=3e-3, dev_every=2, patience=None, progress=False, estimator="reinforce")
    base.update(kw)
    return TrainConfig(**base)


# ---- the estimator is unbiased --------------------------------------------------------------------------------------
@pytest.mark.parametrize("noise", ["lognormal", "normal"])
def test_reinforce_gradient_matches_finite_differences_of_the_noisy_policy_cost(noise):
    """Over many minibatches the REINFORCE gradient of a base-stock level agrees, within Monte-Carlo error, with a
    common-random-numbers finite difference of the exploring policy's expected cost; and it is resolved well
    enough (standard error < |gradient| / 4) that a wrong sign or a wrong scale would fail."""
    setting = InventorySetting(Store(ClippedNormal(5.0, 0.5), 9.0, 1.0, 1), unmet_demand="backlog")
    scenarios = sample_scenarios(setting, 40000, 4, demand_seed=1, inventory_seed=2)
    wrapped = Reinforce(BaseStock(initial_level=8.0), noise=noise, setting=setting, seed=3)  # optimum is ~ 11
    samples = policy_gradient_samples(wrapped, scenarios, "reinforce", batches=120, batch_size=4096, seed=5)[:, 0]
    estimate, error = float(samples.mean()), float(samples.std() / math.sqrt(len(samples)))

    h, costs = 1e-2, []
    for sign in (1.0, -1.0):  # the same demand and the same noise draws at θ ± h
        wrapped.train()
        wrapped.set_extra_state(torch.tensor([0]))
        with torch.no_grad():
            wrapped.policy.raw_level += sign * h
            costs.append(rollout(wrapped, scenarios[:20000]).cost.mean((1, 2)))
            wrapped.policy.raw_level -= sign * h
    differences = (costs[0] - costs[1]) / (2 * h)
    reference = float(differences.mean())
    error = math.hypot(error, float(differences.std() / math.sqrt(len(differences))))

    assert reference < -1.0  # raising a too-low level lowers the cost
    assert error < abs(reference) / 4
    assert abs(estimate - reference) < 4 * error, (estimate, reference, error)


def test_log_prob_is_the_exploration_density():
    wrapped_ln = Reinforce(BaseStock(), setting=LOST_SALES)
    wrapped_n = Reinforce(BaseStock(), noise="normal", setting=LOST_SALES)
    mean = torch.tensor([[0.5, 3.0, 8.0, 0.0]])
    unit = torch.full_like(mean, 5.0)
    a = wrapped_ln.sample(mean.expand(200000, -1))
    assert torch.allclose(a.mean(0), mean[0], rtol=0.01, atol=1e-6)  # E[a] = μ
    action = torch.tensor([[0.7, 2.0, 9.5, 0.0]])
    expected = torch.distributions.LogNormal(torch.log(mean[0, :3]) - 0.045, 0.3).log_prob(action[0, :3])
    assert torch.allclose(wrapped_ln.log_prob(action, mean)[0, :3], expected, atol=1e-5)
    assert wrapped_ln.log_prob(action, mean)[0, 3] == 0  # μ = 0: the action is 0 with certainty
    action = torch.tensor([[0.0, 2.0, 9.5, 0.0]])
    normal = torch.distributions.Normal(mean[0], 0.3 * unit[0])
    expected = torch.where(action[0] > 0, normal.log_prob(action[0]), torch.log(normal.cdf(torch.zeros(4))))
    assert torch.allclose(wrapped_n.log_prob(action, mean, unit)[0], expected, atol=1e-5)


# ---- deterministic in eval mode, recorded in training mode -----------------------------------------------------------
def test_eval_mode_returns_the_wrapped_policy_actions():
    scenarios = sample_scenarios(LOST_SALES, 64, 12, demand_seed=1, inventory_seed=2)
    policy = VanillaMLP(LOST_SALES.n_slots, init_seeds=[4])
    wrapped = Reinforce(policy).eval()
    bare, evaluated = rollout(policy, scenarios, record=True), rollout(wrapped, scenarios, record=True)
    assert torch.equal(bare.orders, evaluated.orders) and torch.equal(bare.cost, evaluated.cost)
    assert evaluated.log_prob is None and evaluated.value is None
    assert torch.equal(evaluate(wrapped, scenarios), evaluate(policy, scenarios))

    explored = rollout(wrapped.train(), scenarios, record=True)
    assert not torch.equal(explored.orders, bare.orders) and bool((explored.orders >= 0).all())
    assert explored.log_prob.shape == explored.value.shape == (64, 1, 12)
    assert explored.log_prob.requires_grad and not explored.cost.requires_grad  # states are data

    network = one_warehouse_network(3)
    net_scenarios = sample_network_scenarios(network, 32, 8, demand_seed=1, inventory_seed=2)
    net_policy = EchelonBaseStock(network)
    net_wrapped = Reinforce(net_policy, seed=1)
    assert torch.equal(rollout(net_wrapped.eval(), net_scenarios).cost, rollout(net_policy, net_scenarios).cost)
    explored = rollout(net_wrapped.train(), net_scenarios)
    assert explored.log_prob.shape == explored.value.shape == (32, 1, 8)
    loss = reinforce(explored)
    assert loss.dim() == 0 and math.isfinite(float(loss.detach()))


def test_estimators_refuse_the_wrong_kind_of_policy():
    splits = make_splits(LOST_SALES, SMALL)
    policy = VanillaMLP(LOST_SALES.n_slots)
    assert TrainConfig(estimator="reinforce").estimator == "reinforce"
    with pytest.raises(ValueError, match="wrap the policy in hybridrl.reinforce.Reinforce"):
        fit(policy, splits.train, splits.dev, _config(epochs=1), dev_warmup=30)
    with pytest.raises(ValueError, match="pathwise estimator got a rollout of a policy wrapped in"):
        fit(Reinforce(policy), splits.train, splits.dev, _config(epochs=1, estimator="pathwise"), dev_warmup=30)
    with pytest.raises(ValueError, match="pass setting="):
        Reinforce(BaseStock())
    network = one_warehouse_network(2)
    with pytest.raises(ValueError, match="built for a network"):
        rollout(Reinforce(EchelonBaseStock(network)).train(), splits.dev[:4])


# ---- reproducible training ----------------------------------------------------------------------------------------
def _flat(policy):
    return torch.cat([p.detach().flatten() for p in policy.parameters()])


def test_same_seed_same_training_and_checkpoints_continue_the_noise(tmp_path):
    splits = make_splits(LOST_SALES, SMALL)
    make = lambda seed=1: Reinforce(VanillaMLP(LOST_SALES.n_slots, init_seeds=[5]), seed=seed)  # noqa: E731
    runs = [fit(make(), splits.train, splits.dev, _config(epochs=4), dev_warmup=30) for _ in range(2)]
    assert torch.equal(_flat(runs[0].policy), _flat(runs[1].policy))
    assert [r["train_cost"] for r in runs[0].history] == [r["train_cost"] for r in runs[1].history]
    other = fit(make(seed=2), splits.train, splits.dev, _config(epochs=4), dev_warmup=30)
    assert not torch.equal(_flat(other.policy), _flat(runs[0].policy))

    # interrupted after 2 epochs and resumed: the same run, noise stream included
    checkpoint = tmp_path / "run.pt"
    fit(make(), splits.train, splits.dev, _config(epochs=2), dev_warmup=30, checkpoint=checkpoint)
    resumed = fit(make(), splits.train, splits.dev, _config(epochs=4), dev_warmup=30, checkpoint=checkpoint)
    assert [r["train_cost"] for r in resumed.history] == [r["train_cost"] for r in runs[0].history]


# ---- training through fit --------------------------------------------------------------------------------------------
def test_fit_with_reinforce_lowers_the_dev_cost_of_lost_sales():
    splits = make_splits(LOST_SALES, SMALL)
    policy = VanillaMLP(LOST_SALES.n_slots, init_seeds=[0])
    start = float(evaluate(policy, splits.dev, 30).mean())
    result = fit(Reinforce(policy), splits.train, splits.dev, _config(epochs=6), dev_warmup=30)
    assert start > 20  # the initial network overorders
    assert result.best_dev[0] < 8.0  # optimal long-run cost: 5.44 (spec §9.1)
    assert not result.policy.training


def test_fit_with_reinforce_lowers_the_dev_cost_of_a_network():
    network = one_warehouse_network(3)
    splits = make_network_splits(network, Protocol(n_train=512, n_dev=128, n_test=16, train_periods=30,
                                                   dev_periods=50, dev_warmup=20, test_periods=30, test_warmup=10))
    policy = NetworkMLP(network, hidden=(32, 32))
    start = float(evaluate(policy, splits.dev, 20).mean())
    result = fit(Reinforce(policy), splits.train, splits.dev, _config(epochs=30, batch_size=128, dev_every=5),
                 dev_warmup=20)
    assert result.best_dev[0] < 0.7 * start, (start, result.best_dev)


# ---- the paper's point: the pathwise gradient is far less noisy ------------------------------------------------------
def test_pathwise_gradient_has_much_lower_relative_variance_than_reinforce():
    splits = make_splits(LOST_SALES, Protocol(n_train=4096, n_dev=16, n_test=16, train_periods=30, dev_periods=30,
                                              dev_warmup=10, test_periods=30, test_warmup=10))
    wrapped = Reinforce(VanillaMLP(LOST_SALES.n_slots, init_seeds=[0]))
    draws = wrapped.get_extra_state()
    kw = dict(batches=12, batch_size=256, seed=0)
    path = gradient_variance(wrapped, splits.train, "pathwise", **kw)
    score = gradient_variance(wrapped, splits.train, "reinforce", **kw)
    assert path * 100 < score, (path, score)  # measured: 300-3000x over initialisation and noise seeds
    assert wrapped.training and torch.equal(wrapped.get_extra_state(), draws)  # measuring changed nothing
