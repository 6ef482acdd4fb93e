"""The `paper` profile is the published protocol: its budgets checked against the spec's tables (HDPO spec §3.2
splits and §6.2 / §7 optimiser settings; HPO spec §8 and §9). Each number below is copied from the spec, not from
the package, so a budget that drifts from the published protocol fails here."""

from types import SimpleNamespace

import pytest

from hybridrl import experiments, hpo_experiments, network_experiments, realdata_experiments, reproduction

# HDPO spec §3.2: train N / batch / T; dev N / T / warm-up; test N / T / warm-up
SPLITS = {
    "one store": (32768, 8192, 50, 32768, 100, 60, 32768, 5000, 3000),
    "serial": (32768, 8192, 50, 32768, 100, 60, 32768, 5000, 3000),
    "one_warehouse": (8192, 1024, 50, 8192, 100, 60, 8192, 5000, 3000),
    "transshipment": (32768, 1024, 50, 32768, 100, 60, 32768, 5000, 3000),
}
# HDPO spec §7: learning rate and epoch cap (every policy: Adam, no schedule, dev every 10, patience 500)
SINGLE_STORE_LR = {"hdpo": 3e-3, "base_stock": 0.5, "capped_base_stock": 1.0}
NETWORK_LR = {
    "serial": {"vanilla": 1e-2, "echelon_base_stock": 0.5},
    "one_warehouse": {"vanilla": 3e-4, "echelon_base_stock": 0.5, "symmetry_aware": 1e-3, "gnn": 1e-3,
                      "symmetry_aware_narrow": 1e-3},
    "transshipment": {"vanilla": 1e-4, "symmetry_aware": 1e-3, "gnn": 1e-3},
}
VANILLA_HIDDEN = {"serial": (32, 32), "one_warehouse": (512, 512, 512), "transshipment": (256, 256, 256)}  # §6.2


def _splits(protocol, batch):
    p = protocol
    return (p.n_train, batch, p.train_periods, p.n_dev, p.dev_periods, p.dev_warmup, p.n_test, p.test_periods,
            p.test_warmup)


def _no_splits(network, protocol):
    return SimpleNamespace(train=None, dev=None, test=None)


def _published_optimiser(config, lr, epochs=20000, dev_every=10, patience=500):
    assert (config.lr, config.epochs, config.dev_every, config.patience, config.schedule) == (
        lr, epochs, dev_every, patience, "constant")


@pytest.mark.parametrize("experiment", ["lost_sales", "backlogged"])
def test_single_store_paper_budget_is_the_published_protocol(experiment):
    budget = experiments.budget(experiment, "paper")
    for method, lr in SINGLE_STORE_LR.items():
        if method in budget.train:
            config = budget.train[method]
            assert _splits(budget.protocol, config.batch_size) == SPLITS["one store"]
            _published_optimiser(config, lr)
    assert budget.seeds == (0, 1, 2)


@pytest.mark.parametrize("setting", list(NETWORK_LR))
def test_network_paper_budgets_are_the_published_protocol(setting):
    budget = network_experiments.network_budget(setting, "paper")
    assert budget.hidden == VANILLA_HIDDEN[setting]
    for method, lr in NETWORK_LR[setting].items():
        config = budget.configs[method]
        assert _splits(budget.protocol, config.batch_size) == SPLITS[setting], method
        if method.startswith("symmetry_aware"):  # §7: 1000 epochs, dev every 5, no early stopping (and our
            # narrow-context ablation of it likewise)
            _published_optimiser(config, lr, epochs=1000, dev_every=5, patience=None)
        else:
            _published_optimiser(config, lr)
        assert config.grad_clip == (1.0 if method == "gnn" else None), method  # §6.2: clipping for the GNN only
        assert config.device == "auto", method  # a GPU when there is one (not silently the CPU)


def test_network_runs_use_the_budgets_device(monkeypatch):
    """``run_network`` without ``device`` trains on the budget's device ("auto" in paper), not on the CPU."""
    seen = {}

    def fake_fit(policy, train, dev, config, **kwargs):
        seen["device"] = config.device
        raise RuntimeError("stop here")

    monkeypatch.setattr(network_experiments, "fit", fake_fit)
    monkeypatch.setattr(network_experiments, "make_network_splits", _no_splits)
    monkeypatch.setattr(network_experiments, "cached", lambda namespace, description, compute, force: compute())
    with pytest.raises(RuntimeError, match="stop here"):
        network_experiments.run_network("serial", 1, "vanilla", 0, "paper")
    assert seen["device"] == "auto"


def test_data_efficiency_study_scales_dev_evaluations_and_patience_with_the_epochs(monkeypatch):
    """Fewer training scenarios mean more epochs for the same gradient steps; the dev evaluations and the
    early-stopping patience scale with them, so they stay the same number of steps apart."""
    seen = {}

    def fake_fit(policy, train, dev, config, **kwargs):
        seen["config"] = config
        raise RuntimeError("stop here")

    monkeypatch.setattr(network_experiments, "fit", fake_fit)
    monkeypatch.setattr(network_experiments, "make_network_splits", _no_splits)
    monkeypatch.setattr(network_experiments, "make_network_policy", lambda *args, **kwargs: None)
    monkeypatch.setattr(network_experiments, "cached", lambda namespace, description, compute, force: compute())
    assert {2, 4, 8, 16, 256, 8192} <= set(network_experiments.network_budget("one_warehouse", "paper").data_sizes)
    base = network_experiments.network_budget("one_warehouse", "paper").configs["vanilla"]
    with pytest.raises(RuntimeError):
        network_experiments.run_network("one_warehouse", 5, "vanilla", 0, "paper", n_train=128)
    config = seen["config"]  # 8 steps per epoch of 8192 scenarios (batch 1024), 1 per epoch of 128 (batch 128)
    assert (config.batch_size, config.epochs) == (128, base.epochs * 8)
    assert (config.dev_every, config.patience) == (base.dev_every * 8, base.patience * 8)


def test_comparison_paper_budgets_use_the_settings_splits():
    lost_sales = network_experiments.COMPARISON_BUDGETS[("lost_sales", "paper")]
    warehouse = network_experiments.COMPARISON_BUDGETS[("one_warehouse", "paper")]
    assert _splits(lost_sales.protocol, lost_sales.config.batch_size) == SPLITS["one store"]
    assert _splits(warehouse.protocol, warehouse.config.batch_size) == SPLITS["one_warehouse"]
    assert (lost_sales.config.lr, warehouse.config.lr) == (3e-3, 3e-4)
    assert lost_sales.config.device == warehouse.config.device == "auto"


def test_real_data_paper_budget():
    budget = realdata_experiments.budget("paper")
    _published_optimiser(budget.hdpo, 3e-3)
    _published_optimiser(budget.newsvendor, 0.03)
    assert budget.hdpo.batch_size == budget.newsvendor.batch_size == 8192
    assert budget.network_hdpo.batch_size == budget.network_heuristic.batch_size == 72  # §3.2: 288 items / 72
    assert budget.n_series is None and budget.network_items is None  # every product
    _published_optimiser(budget.network_hdpo, 3e-3)  # §7: the data-driven net, lr 3e-3 ...
    assert budget.network_hidden == (64, 64)  # ... layers [64, 64] (§6.2)


def test_hpo_paper_budgets_are_the_published_protocol():
    jrp, lqr = hpo_experiments.jrp_budget("paper"), hpo_experiments.lqr_budget("paper")
    assert jrp.items == (1, 3, 5, 7, 10, 15, 20, 30, 40, 50) and jrp.seeds == tuple(range(11))  # §7.2; §8: seeds 0-10
    assert (jrp.n_train, jrp.horizon, jrp.warmup) == (1024, 100, 16)
    assert lqr.seeds == tuple(range(11)) and lqr.n_train == 1024
    for budget, updates, lrs in ((jrp, 1600, (1e-3, 1e-4)), (lqr, 4000, (1e-3, 2e-4))):  # §8, §9
        for method, config in budget.configs.items():
            assert (config.updates, config.batch_size, config.hidden) == (updates, 128, (512, 512)), method
            assert config.lr == (lrs[1] if method == "ppo" else lrs[0]), method
            assert config.device == "auto", method
            assert config.dev_every == 1024 // 128, method  # a dev evaluation every pass over the 1024 (§8)
    # §9: reward scaling off for PPO on the S-LQR, std scaling for HPO on the JRP
    assert not lqr.configs["ppo"].reward_scaling and jrp.configs["hpo_full"].reward_scaling
    # §10.3's table: batch 16 for 25 epochs (the same 1600 updates), n up to 70, the cross-term ablation, 10 trials
    sweeps = {sweep.name: sweep for sweep in hpo_experiments.JRP_TABLE_SWEEPS["paper"]}
    table = sweeps["batch16"]
    assert table.items == (1, 3, 5, 10, 20, 30, 40, 50, 60, 70) and table.seeds == tuple(range(10))
    assert table.batch == 16 and jrp.n_train // table.batch * 25 == jrp.configs["hpo_full"].updates
    assert table.methods == ("hpo_full", "hpo_decentralized", "ppo")
    # §10.2's batch-512 row: 800 epochs (the same 1600 updates), its ten numbers of items, at least 5 runs for the
    # mean of the five best
    wide = sweeps["batch512"]
    assert wide.batch == 512 and jrp.n_train // wide.batch * 800 == jrp.configs["hpo_full"].updates
    assert wide.items == (1, 3, 5, 7, 10, 15, 20, 30, 40, 50) and len(wide.seeds) >= 5
    assert set(wide.items) == set(reproduction.JRP_REFERENCE_TOP5) == set(reproduction.JRP_PPO_GAP_B512)
    assert {(d, j) for d, j, _ in lqr.cells} == {(d, j) for d in (1, 3, 5, 7, 8, 10, 13, 16, 20, 24, 32, 40, 48)
                                                  for j in (1, 2, 4, 6, 8)}
