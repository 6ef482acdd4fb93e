"""The training loop: determinism, stacked members, checkpoints, model selection, no test leakage."""

import math
import os

import pandas as pd
import pytest
import torch

from hybridrl.inventory import ClippedNormal, InventorySetting, Poisson, Store
from hybridrl.policies import BaseStock, VanillaMLP
from hybridrl.references import backlog_base_stock
from hybridrl.scenarios import Protocol, Seeds, make_splits, sample_scenarios
from hybridrl.train import TrainConfig, evaluate, fit

SMALL = Protocol(n_train=256, n_dev=128, n_test=128, train_periods=20, dev_periods=30, dev_warmup=10,
                 test_periods=40, test_warmup=10)


def _grid(*cells, unmet="lost"):
    return InventorySetting(
        stores=tuple(Store(Poisson(5.0), p, 1.0, L, demand_seed_shift=L + 10 * p) for L, p in cells),
        unmet_demand=unmet, inventory_slots=max(L for L, _ in cells),
    )


def _config(**kw):
    base = dict(epochs=4, batch_size=64, lr=1e-2, dev_every=1, patience=None, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def _params(policy):
    return [p.detach().clone() for p in policy.parameters()]


def test_same_seed_same_training():
    setting = _grid((2, 9))
    runs = []
    for _ in range(2):
        torch.rand(7)  # unrelated global random activity must not matter
        splits = make_splits(setting, SMALL)
        result = fit(VanillaMLP(setting.n_slots, init_seeds=[5]), splits.train, splits.dev, _config(), dev_warmup=10)
        runs.append((_params(result.policy), result.best_dev))
    for a, b in zip(runs[0][0], runs[1][0]):
        assert torch.equal(a, b)
    assert runs[0][1] == runs[1][1]


def test_seeds_give_the_same_scenarios_whatever_ran_before():
    setting = _grid((2, 9), (4, 39))
    a = make_splits(setting, SMALL, Seeds())
    torch.manual_seed(123)
    torch.poisson(torch.ones(1000))
    b = make_splits(setting, SMALL, Seeds())
    for x, y in zip(a, b):
        assert torch.equal(x.demand, y.demand) and torch.equal(x.initial_inventory, y.initial_inventory)
    c = make_splits(setting, SMALL, Seeds(demand=58))
    assert not torch.equal(a.train.demand, c.train.demand)
    # train, dev and test are different draws: the test set is never seen in training
    assert not torch.equal(a.test.demand[:, :, :20], a.train.demand[: SMALL.n_test])


def test_a_cell_gets_the_same_data_alone_or_in_a_grid():
    alone = make_splits(_grid((3, 19)), SMALL)
    together = make_splits(_grid((1, 4), (3, 19), (4, 39)), SMALL)
    assert torch.equal(alone.train.demand[:, 0], together.train.demand[:, 1])
    assert torch.equal(alone.test.initial_inventory[:, 0, :3], together.test.initial_inventory[:, 1, :3])


def test_stacked_members_train_like_separate_runs():
    """Independent stores with one member each: a batched run equals separate runs (up to float rounding)."""
    cells = [(1, 4), (3, 19)]
    grid = _grid(*cells)
    splits = make_splits(grid, SMALL)
    stacked = fit(VanillaMLP(grid.n_slots, members=2, init_seeds=[1, 2]), splits.train, splits.dev, _config(), dev_warmup=10)
    for m, cell in enumerate(cells):
        single = grid.replace(stores=(grid.stores[m],))
        alone_splits = make_splits(single, SMALL)
        alone = fit(VanillaMLP(grid.n_slots, members=1, init_seeds=[m + 1]), alone_splits.train, alone_splits.dev,
                    _config(), dev_warmup=10)
        for p_stacked, p_alone in zip(stacked.policy.parameters(), alone.policy.parameters()):
            torch.testing.assert_close(p_stacked[m], p_alone[0], rtol=1e-3, atol=1e-4)
        assert math.isclose(stacked.best_dev[m], alone.best_dev[0], rel_tol=1e-4)


def test_best_dev_parameters_are_kept_per_member(tmp_path):
    grid = _grid((1, 4), (2, 39))
    splits = make_splits(grid, SMALL)
    result = fit(VanillaMLP(grid.n_slots, members=2, init_seeds=[1, 2]), splits.train, splits.dev,
                 _config(epochs=6, lr=5e-2), dev_warmup=10)
    history = pd.read_csv(result.save_history(tmp_path / "history.csv"))
    assert list(history.columns) == ["epoch", "member", "step", "seconds", "train_cost", "dev_cost"]
    for m in range(2):
        dev = history[history.member == m].set_index("epoch").dev_cost
        assert result.best_epoch[m] == int(dev.idxmin())
        assert math.isclose(result.best_dev[m], float(dev.min()), rel_tol=1e-6)
        # the returned policy is the best one: re-evaluating it gives the best dev cost
        again = evaluate(result.policy, splits.dev, 10).mean(0)[m]
        assert math.isclose(float(again), result.best_dev[m], rel_tol=1e-5)


def test_evaluation_never_updates_the_policy():
    grid = _grid((2, 9))
    splits = make_splits(grid, SMALL)
    policy = VanillaMLP(grid.n_slots)
    before = _params(policy)
    cost = evaluate(policy, splits.test, 10)
    assert not cost.requires_grad
    assert all(torch.equal(a, b) and p.grad is None for a, b, p in zip(before, _params(policy), policy.parameters()))


def test_an_interrupted_training_resumes_from_its_checkpoint(tmp_path):
    grid = _grid((2, 9))
    splits = make_splits(grid, SMALL)
    full = fit(VanillaMLP(grid.n_slots, init_seeds=[3]), splits.train, splits.dev, _config(epochs=4), dev_warmup=10)
    ckpt = tmp_path / "run.ckpt"
    fit(VanillaMLP(grid.n_slots, init_seeds=[3]), splits.train, splits.dev, _config(epochs=4, max_seconds=1e-9),
        dev_warmup=10, checkpoint=ckpt)  # "interrupted" after its first epoch
    assert ckpt.exists()
    resumed = fit(VanillaMLP(grid.n_slots, init_seeds=[99]), splits.train, splits.dev, _config(epochs=4),
                  dev_warmup=10, checkpoint=ckpt)
    assert [h["epoch"] for h in resumed.history if h["member"] == 0] == [1, 2, 3, 4]
    for a, b in zip(full.policy.parameters(), resumed.policy.parameters()):
        torch.testing.assert_close(a, b)


def test_hdpo_fits_the_optimal_base_stock_level():
    """The pathwise gradient drives a base-stock level to S* (backlog, L = 2, p = 9)."""
    setting = InventorySetting(stores=Store(ClippedNormal(5.0, 1.6), 9.0, 1.0, 2), unmet_demand="backlog")
    protocol = Protocol(n_train=2048, n_dev=512, n_test=128, train_periods=40, dev_periods=60, dev_warmup=20,
                        test_periods=40, test_warmup=10)
    splits = make_splits(setting, protocol)
    result = fit(BaseStock(), splits.train, splits.dev,
                 TrainConfig(epochs=40, batch_size=256, lr=1.0, schedule="cosine", dev_every=40, progress=False),
                 dev_warmup=20)
    assert abs(result.policy.level.item() - backlog_base_stock(9.0, 1.0, 2).level) < 0.3


def test_training_rejects_a_policy_with_the_wrong_number_of_members():
    grid = _grid((1, 4), (2, 9), (3, 19))
    splits = make_splits(grid, SMALL)
    with pytest.raises(ValueError, match="members"):
        fit(VanillaMLP(grid.n_slots, members=2), splits.train, splits.dev, _config(), dev_warmup=10)


def test_sample_scenarios_fills_only_a_stores_own_slots():
    setting = _grid((1, 4), (4, 9))
    s = sample_scenarios(setting, 8, 5, demand_seed=0, inventory_seed=0)
    assert (s.initial_inventory[:, 0, 1:] == 0).all() and (s.initial_inventory[:, 1] > 0).all()


def test_gradient_clipping_bounds_each_member_separately():
    from hybridrl.train import _clip_per_member

    policy = VanillaMLP(2, hidden=(4,), members=3)
    for p in policy.parameters():
        p.grad = torch.ones_like(p)
        p.grad[1] *= 1e-4  # member 1 has a tiny gradient and must be left alone
    _clip_per_member(policy, 1.0, members=3)
    norms = torch.stack([p.grad.reshape(3, -1).pow(2).sum(1) for p in policy.parameters()]).sum(0).sqrt()
    assert torch.allclose(norms[[0, 2]], torch.ones(2), atol=1e-4)
    assert norms[1] < 1e-2


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_buffered_cuda_graph_step_trains_exactly_like_the_plain_loop(schedule, tmp_path):
    """``cuda_graph=True`` copies each minibatch into fixed buffers and (on a GPU) replays a recorded step; its
    warm-up steps are undone. On the CPU the same buffered step runs unrecorded: the numbers must be identical,
    from scratch, with two members and gradient clipping, and when resumed from a checkpoint."""
    grid = _grid((2, 9), (3, 4))
    splits = make_splits(grid, SMALL)
    config = dict(epochs=3, schedule=schedule, grad_clip=0.5)
    plain = fit(VanillaMLP(grid.n_slots, members=2, init_seeds=[3, 4]), splits.train, splits.dev,
                _config(**config), dev_warmup=10)
    buffered = fit(VanillaMLP(grid.n_slots, members=2, init_seeds=[3, 4]), splits.train, splits.dev,
                   _config(cuda_graph=True, **config), dev_warmup=10)
    assert buffered.best_dev == plain.best_dev
    assert [h["train_cost"] for h in buffered.history] == [h["train_cost"] for h in plain.history]
    for a, b in zip(plain.policy.parameters(), buffered.policy.parameters()):
        assert torch.equal(a, b)
    ckpt = tmp_path / "run.ckpt"
    fit(VanillaMLP(grid.n_slots, members=2, init_seeds=[3, 4]), splits.train, splits.dev,
        _config(max_seconds=1e-9, **config), dev_warmup=10, checkpoint=ckpt)  # interrupted, without buffers
    resumed = fit(VanillaMLP(grid.n_slots, members=2, init_seeds=[9, 9]), splits.train, splits.dev,
                  _config(cuda_graph=True, **config), dev_warmup=10, checkpoint=ckpt)
    for a, b in zip(plain.policy.parameters(), resumed.policy.parameters()):
        assert torch.equal(a, b)


def test_the_buffered_step_still_rejects_negative_orders_and_stochastic_policies():
    from hybridrl.reinforce import Reinforce

    grid = _grid((2, 9))
    splits = make_splits(grid, SMALL)

    class Negative(torch.nn.Module):
        members = 1

        def __init__(self):
            super().__init__()
            self.level = torch.nn.Parameter(torch.tensor([-1.0]))

        def forward(self, obs):
            return self.level.expand(obs.inventory.shape[:2])

    with pytest.raises(ValueError, match="negative order"):
        fit(Negative(), splits.train, splits.dev, _config(cuda_graph=True), dev_warmup=10)
    with pytest.raises(ValueError, match="cuda_graph=True needs a deterministic policy"):
        fit(Reinforce(VanillaMLP(grid.n_slots)), splits.train, splits.dev,
            _config(cuda_graph=True, estimator="reinforce"), dev_warmup=10)
    with pytest.raises(ValueError, match="cuda_graph must be True or False"):
        _config(cuda_graph="yes")


def test_what_the_callback_returns_is_kept_in_the_history_across_an_interruption(tmp_path):
    grid = _grid((2, 9))
    splits = make_splits(grid, SMALL)
    note = lambda epoch, policy, seconds: {"note": 10 * epoch}  # noqa: E731
    ckpt = tmp_path / "run.ckpt"
    fit(VanillaMLP(grid.n_slots, init_seeds=[3]), splits.train, splits.dev, _config(epochs=3, max_seconds=1e-9),
        dev_warmup=10, checkpoint=ckpt, callback=note)  # "interrupted" after its first epoch
    resumed = fit(VanillaMLP(grid.n_slots, init_seeds=[3]), splits.train, splits.dev, _config(epochs=3),
                  dev_warmup=10, checkpoint=ckpt, callback=note)
    assert [h["note"] for h in resumed.history] == [10, 20, 30]


def test_the_determinism_switch_is_read_strictly_and_sets_pytorch_flags(monkeypatch):
    from hybridrl import _device
    from hybridrl.train import resolve_device

    for value, expected in (("1", True), ("true", True), ("0", False), ("", False), ("off", False)):
        monkeypatch.setenv("HYBRIDRL_DETERMINISTIC", value)
        assert _device.deterministic_requested() is expected
    monkeypatch.setenv("HYBRIDRL_DETERMINISTIC", "maybe")
    for device in ("cpu", "auto"):
        with pytest.raises(ValueError, match="HYBRIDRL_DETERMINISTIC.*'maybe'"):
            resolve_device(device)  # a bad value fails before any training, on every device
    monkeypatch.setenv("HYBRIDRL_DETERMINISTIC", "1")
    assert resolve_device("cpu") == torch.device("cpu")
    assert not torch.are_deterministic_algorithms_enabled()  # the CPU needs no switch: its runs repeat already
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        _device.use_deterministic_cuda()
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
