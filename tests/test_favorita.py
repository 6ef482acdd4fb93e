"""Real demand data: loading and validation, windows without leakage, the newsvendor family and the oracle."""

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hybridrl import favorita, newsvendor, stats
from hybridrl.favorita_build import week_calendar
from hybridrl.inventory import rollout
from hybridrl.train import TrainConfig, evaluate, fit

SHARED = Path(os.environ["HYBRIDRL_DATA"]) if os.environ.get("HYBRIDRL_DATA") else (
    Path(__file__).resolve().parents[2] / "shared" / "data")
needs_data = pytest.mark.skipif(not favorita.available(SHARED), reason=f"Favorita data not found under {SHARED}")


def write_dataset(folder: Path, sales: np.ndarray, weeks: pd.DataFrame | None = None) -> Path:
    target = folder / "favorita"
    target.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(target / favorita.SALES_FILE, sales=sales)
    (weeks if weeks is not None else week_calendar(sales.shape[2] + 2)).to_csv(target / favorita.WEEKS_FILE,
                                                                                index=False)
    return folder


def small_sales(weeks: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(20, size=(2, 3, weeks)).astype(np.int32)


# ---- loading and validation -----------------------------------------------------------------------------------
def test_missing_data_says_where_to_put_it(tmp_path):
    with pytest.raises(favorita.DataMissing, match="HYBRIDRL_DATA") as err:
        favorita.load_favorita(tmp_path)
    assert str(tmp_path / "favorita" / favorita.SALES_FILE) in str(err.value)
    assert "favorita_build" in str(err.value)
    assert isinstance(err.value, FileNotFoundError)


def test_a_small_valid_file_loads_from_either_folder(tmp_path):
    sales = small_sales()
    sales[0, 1, 3] = -4  # a return
    write_dataset(tmp_path, sales)
    for folder in (tmp_path, tmp_path / "favorita"):
        data = favorita.load_favorita(folder, shape=None)
        assert data.shape == (2, 3, 40) and len(data.weeks) == 40
    assert data.returns == {"entries": 1, "units": 4}
    assert data.demand()[0, 1, 3] == 0 and data.demand().dtype == np.float64
    assert data.series().shape == (6, 40) and np.array_equal(data.series()[1], data.demand()[0, 1])


def test_the_environment_variable_names_the_folder(tmp_path, monkeypatch):
    write_dataset(tmp_path, small_sales())
    monkeypatch.setenv("HYBRIDRL_DATA", str(tmp_path))
    assert favorita.data_folder() == tmp_path / "favorita"
    assert favorita.load_favorita(shape=None).shape == (2, 3, 40)


@pytest.mark.parametrize("corrupt, message", [
    (lambda s: s.astype(np.float32), "must be int32"),
    (lambda s: np.where(s > 25, np.nan, s.astype(np.float64)), "NaN"),
    (lambda s: s.astype(np.int64), "must be int32"),
    (lambda s: s[0], r"must be \[items, stores, weeks\]"),
])
def test_corrupted_arrays_are_named(tmp_path, corrupt, message):
    write_dataset(tmp_path, small_sales())
    np.savez_compressed(tmp_path / "favorita" / favorita.SALES_FILE, sales=corrupt(small_sales()))
    with pytest.raises(ValueError, match=message):
        favorita.load_favorita(tmp_path, shape=None)


def test_wrong_shape_truncated_file_and_missing_key(tmp_path):
    write_dataset(tmp_path, small_sales())
    with pytest.raises(ValueError, match=r"must have shape \(288, 21, 171\), got \(2, 3, 40\)"):
        favorita.load_favorita(tmp_path)
    path = tmp_path / "favorita" / favorita.SALES_FILE
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated"):
        favorita.load_favorita(tmp_path, shape=None)
    np.savez_compressed(path, demand=small_sales())
    with pytest.raises(ValueError, match="no array `sales`"):
        favorita.load_favorita(tmp_path, shape=None)


def test_calendar_problems_are_named(tmp_path):
    write_dataset(tmp_path, small_sales(), week_calendar(30))
    with pytest.raises(ValueError, match="has 30 weeks but the sales cover 40"):
        favorita.load_favorita(tmp_path, shape=None)
    weeks = week_calendar(40)
    weeks.loc[7, "date"] = "2013-02-20"
    write_dataset(tmp_path, small_sales(), weeks)
    with pytest.raises(ValueError, match="week 7 should start on 2013-02-19"):
        favorita.load_favorita(tmp_path, shape=None)
    write_dataset(tmp_path, small_sales(), week_calendar(40).drop(columns="days_from_christmas"))
    with pytest.raises(ValueError, match="days_from_christmas"):
        favorita.load_favorita(tmp_path, shape=None)
    weeks = week_calendar(40).astype({"month": float})
    weeks.loc[3, "month"] = np.nan
    write_dataset(tmp_path, small_sales(), weeks)
    with pytest.raises(ValueError, match="missing values"):
        favorita.load_favorita(tmp_path, shape=None)


@needs_data
def test_the_shared_file_is_the_documented_one():
    data = favorita.load_favorita(SHARED)
    assert data.shape == favorita.SHAPE and data.sales.dtype == np.int32
    assert data.returns["entries"] == 10 and data.sales.min() == -1632
    assert (data.demand() >= 0).all()


# ---- windows and leakage ----------------------------------------------------------------------------------------
def test_windows_are_typed_and_the_default_test_follows_train():
    assert favorita.TRAIN.periods == 95 and favorita.DEV.periods == 37 and favorita.TEST.periods == 37
    assert favorita.TRAIN.end <= favorita.TEST.start
    assert list(favorita.TEST.simulated)[:1] == [134] and favorita.TEST.simulated[-1] == 170
    with pytest.raises(ValueError, match="Window.end"):
        favorita.Window(10, 20)


def test_overlapping_train_and_test_windows_are_refused(tmp_path):
    data = favorita.load_favorita(write_dataset(tmp_path, small_sales(171)), shape=None)
    with pytest.raises(ValueError, match="overlaps the test window"):
        favorita.one_store_splits(data, train=favorita.Window(0, 130))


def _perturbed(data: favorita.FavoritaData, from_week: int, seed: int = 1) -> favorita.FavoritaData:
    sales = data.sales.copy()
    sales[..., from_week:] = np.random.default_rng(seed).integers(0, 10**4, size=sales[..., from_week:].shape)
    return favorita.FavoritaData(sales=sales, weeks=data.weeks, folder=data.folder)


def _fit_everything(data: favorita.FavoritaData, n: int = 24):
    """The whole training pipeline on the first ``n`` series: forecaster, a newsvendor and HDPO."""
    series = data.series()[:n]
    scale, calendar = favorita.training_mean(series), data.calendar()
    tr, dv = favorita.TRAIN, favorita.DEV
    fc = newsvendor.fit_forecaster(
        newsvendor.forecaster_samples(series, tr.start, tr.end, scale=scale, calendar=calendar),
        newsvendor.forecaster_samples(series, dv.start, dv.end, scale=scale, calendar=calendar),
        epochs=2, batch_size=256, progress=False)
    splits = favorita.one_store_splits(data, n_series=n)
    config = TrainConfig(epochs=3, batch_size=8, dev_every=1, progress=False)
    nv = fit(newsvendor.make_newsvendor("fixed_quantile", fc.forecaster), splits.train, splits.dev,
             TrainConfig(epochs=3, batch_size=8, lr=0.03, dev_every=1, progress=False), dev_warmup=16)
    hdpo = fit(newsvendor.DataDrivenPolicy(favorita.N_SLOTS), splits.train, splits.dev, config, dev_warmup=16)
    return splits, fc, nv, hdpo


@needs_data
def test_no_test_week_reaches_training_or_selection():
    """Rewrite every week after the dev window (test weeks only): everything fitted stays bit for bit the same;
    rewrite every week after the training window: the training scenarios and the forecaster's training pairs do
    not move either."""
    data = favorita.load_favorita(SHARED)
    splits, fc, nv, hdpo = _fit_everything(data)
    other_splits, other_fc, other_nv, other_hdpo = _fit_everything(_perturbed(data, favorita.DEV.end))
    for a, b in [(fc.forecaster, other_fc.forecaster), (nv.policy, other_nv.policy), (hdpo.policy, other_hdpo.policy)]:
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), name
    assert not torch.equal(splits.test.demand, other_splits.test.demand)  # the rewrite did reach the test window
    late = _perturbed(data, favorita.TRAIN.end)
    new = favorita.one_store_splits(late, n_series=24)
    for field in ("demand", "demand_history", "mean_demand", "calendar", "underage_cost", "lead_time"):
        assert torch.equal(getattr(splits.train, field), getattr(new.train, field)), field
    series, late_series = data.series()[:24], late.series()[:24]
    scale = favorita.training_mean(series)
    assert np.array_equal(scale, favorita.training_mean(late_series))
    a = newsvendor.forecaster_samples(series, 0, 111, scale=scale, calendar=data.calendar())
    b = newsvendor.forecaster_samples(late_series, 0, 111, scale=scale, calendar=data.calendar())
    for field in ("past", "target", "mask", "calendar"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


@needs_data
def test_policies_see_the_past_16_weeks_and_never_the_current_one():
    data = favorita.load_favorita(SHARED)
    test = favorita.one_store_splits(data, n_series=5).test
    seen = []

    def spy(obs):
        seen.append((obs.period, obs.past_demand.clone(), obs.calendar.clone()))
        return torch.zeros_like(obs.underage_cost)

    rollout(spy, test)
    series = data.series()[:5]
    for t, past, calendar in seen:
        week = favorita.TEST.start + favorita.TEST.history + t
        assert np.allclose(past[:, 0].numpy(), series[:, week - 16:week])
        assert np.allclose(calendar[:, 0].numpy(), data.calendar()[week])


def test_splits_draw_per_series_parameters_from_their_own_seeds(tmp_path):
    data = favorita.load_favorita(write_dataset(tmp_path, small_sales(171)), shape=None)
    splits = favorita.one_store_splits(data)
    margin, lead = favorita.series_parameters(6)
    assert np.allclose(splits.test.underage_cost[:, 0].numpy(), margin) and set(lead) <= {4, 5, 6}
    assert np.array_equal(splits.train.lead_time[:, 0].numpy(), lead)
    assert torch.equal(splits.train.underage_cost, splits.test.underage_cost)
    assert torch.equal(splits.train.mean_demand, splits.test.mean_demand)  # the static scale is the training mean
    assert np.allclose(margin, np.random.RandomState(28).uniform(6.3, 11.7, 6))
    assert (splits.test.initial_inventory == 0).all() and splits.test.setting.objective == "profit"


# ---- the newsvendor family and the oracle ---------------------------------------------------------------------
def test_quantile_interpolation():
    q = torch.linspace(1.0, 19.0, 19).repeat(2, 1)  # q_tau = 20 tau on the grid
    taus = torch.tensor([0.05, 0.5, 0.95])
    assert torch.allclose(newsvendor.interpolate_quantile(q[:1].expand(3, -1), taus), 20 * taus)
    assert torch.allclose(newsvendor.interpolate_quantile(q, torch.tensor([0.0, 1.0])), torch.tensor([0.0, 20.0]))
    assert torch.allclose(newsvendor.interpolate_quantile(q, torch.tensor([0.525, 0.9999])),
                          torch.tensor([10.5, 19.998]), atol=1e-4)
    tau = torch.tensor([0.33, 0.71], requires_grad=True)
    newsvendor.interpolate_quantile(q, tau).sum().backward()
    assert torch.allclose(tau.grad, torch.tensor([20.0, 20.0]))


def test_forecaster_quantiles_never_cross_and_pick_the_lead_time():
    model = newsvendor.QuantileForecaster(init_seed=3)
    past = torch.rand(50, 16) * 30
    q = model(past, torch.randint(-181, 183, (50,)).float(), past.mean(1) + 1)
    assert q.shape == (50, 3, 19) and (q.diff(dim=-1) >= 0).all()
    picked = model.for_lead_time(q, torch.tensor([4, 5, 6] * 16 + [4, 4]))
    assert torch.equal(picked[1], q[1, 1]) and torch.equal(picked[2], q[2, 2])
    with pytest.raises(ValueError, match="covers lead times"):
        model.for_lead_time(q, torch.full((50,), 2))


def test_returns_send_back_on_hand_stock_only(tmp_path):
    data = favorita.load_favorita(write_dataset(tmp_path, small_sales(171)), shape=None)
    test = favorita.one_store_splits(data).test

    class Dump(torch.nn.Module):
        sends_returns = True

        def forward(self, obs):
            return torch.where(torch.tensor(obs.period < 8), torch.full_like(obs.underage_cost, 100.0),
                               torch.full_like(obs.underage_cost, -1e6))

    traj = rollout(Dump(), test, record=True)
    assert (traj.inventory >= 0).all()
    # from period 8 on, everything on hand goes back at the start of the period: once the last orders (placed in
    # period 7, lead times <= 6) have arrived, nothing is left at the start of a period
    assert (traj.inventory[:, :, 14:].sum(-1) == 0).all()
    assert (traj.inventory[:, :, 8, 0] > 0).all() and (traj.sales[..., 14:] == 0).all()
    with pytest.raises(ValueError, match="negative order"):
        rollout(lambda obs: -torch.ones_like(obs.underage_cost), test)


@needs_data
def test_the_oracle_is_the_best_policy_on_the_test_weeks():
    data = favorita.load_favorita(SHARED)
    splits = favorita.one_store_splits(data, n_series=200)
    test = splits.test
    oracle = -evaluate(newsvendor.JustInTime(test.demand), test, favorita.WARMUP, batch_size=test.n)[:, 0]
    served = (test.underage_cost * test.demand[..., favorita.WARMUP:].mean(-1))[:, 0]
    assert torch.allclose(oracle, served, rtol=1e-5)  # it sells everything and holds nothing
    model = newsvendor.QuantileForecaster()
    candidates = [newsvendor.make_newsvendor(n, model) for n in newsvendor.NEWSVENDORS]
    candidates += [newsvendor.DataDrivenPolicy(favorita.N_SLOTS, init_seed=s) for s in range(2)]
    trained = fit(newsvendor.DataDrivenPolicy(favorita.N_SLOTS), splits.train, splits.dev,
                  TrainConfig(epochs=3, batch_size=50, dev_every=1, progress=False), dev_warmup=16).policy
    for policy in candidates + [trained]:
        profit = -evaluate(policy, test, favorita.WARMUP)[:, 0]
        assert (profit <= oracle + 1e-3).all(), type(policy).__name__
    with pytest.raises(ValueError, match="in one batch"):
        evaluate(newsvendor.JustInTime(test.demand), test, favorita.WARMUP, batch_size=50)


def test_paired_difference():
    x, y = np.array([3.0, 5.0, 7.0]), np.array([1.0, 1.0, 1.0])
    ci = stats.paired_difference(x, y, scale=np.array([2.0, 2.0, 2.0]))
    assert ci.estimate == pytest.approx(2.0) and ci.low <= 2.0 <= ci.high
    assert stats.paired_difference(x, x).estimate == 0 and stats.paired_difference(x, x).low == 0
    with pytest.raises(ValueError, match="paired"):
        stats.paired_difference(x, y[:2])


def test_the_smoke_profile_runs_on_the_shared_data(tmp_path, monkeypatch):
    if not favorita.available(SHARED):
        pytest.skip(f"Favorita data not found under {SHARED}")
    from hybridrl import paths, realdata_experiments

    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    result = realdata_experiments.run_one_store_grid("smoke", data=SHARED, workers=1, progress=False)
    table = result.table
    assert set(table.method) == set(realdata_experiments.ONE_STORE_METHODS)
    assert table[table.method == "just_in_time"].profit_vs_oracle_pct.item() == pytest.approx(100.0)
    assert table[table.method == "quantile_nv"].seed.isna().all()  # nothing trained, no training seed
    assert len(table[table.method == "hdpo"]) == 2  # the smoke profile trains two seeds
    assert (result.table.profit_vs_oracle_pct <= 100.0 + 1e-9).all()
    again = realdata_experiments.run_one_store_grid("smoke", data=SHARED, workers=1, progress=False)
    pd.testing.assert_frame_equal(result.table, again.table)  # cached: the same numbers
    shutil.rmtree(tmp_path / "cache")


def test_force_retrains_from_scratch_instead_of_resuming(tmp_path, monkeypatch):
    if not favorita.available(SHARED):
        pytest.skip(f"Favorita data not found under {SHARED}")
    from hybridrl import paths, realdata_experiments

    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    original = realdata_experiments.fit
    folder = tmp_path / "cache" / "real_data" / "one_store"

    def interrupted(policy, train, dev, config, **kwargs):
        original(policy, train, dev, config, **kwargs)  # its state is saved at every dev evaluation
        raise KeyboardInterrupt

    monkeypatch.setattr(realdata_experiments, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        realdata_experiments.run_one_store("hdpo", 0, "smoke", data=SHARED)
    assert len(list(folder.glob("*.ckpt"))) == 1  # the interrupted run's training state
    calls = []

    def spy(policy, train, dev, config, **kwargs):
        calls.append(kwargs["checkpoint"].exists())  # a forced run must not find the old state to resume from
        return original(policy, train, dev, config, **kwargs)

    monkeypatch.setattr(realdata_experiments, "fit", spy)
    first = realdata_experiments.run_one_store("hdpo", 0, "smoke", data=SHARED, force=True)
    assert calls == [False]
    assert not list(folder.glob("*.ckpt"))  # the record is stored: its training state is removed
    again = realdata_experiments.run_one_store("hdpo", 0, "smoke", data=SHARED, force=True)
    assert again["per_series"] == first["per_series"]  # deterministic: the same numbers from scratch


def test_the_pipeline_makes_a_relative_data_folder_absolute(monkeypatch, tmp_path):
    """Chapters run in notebooks/: `HYBRIDRL_DATA=../shared/data make reproduce` must mean the caller's folder."""
    from hybridrl import pipeline

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYBRIDRL_DATA", "relative/data")
    assert pipeline._absolute_data_folder("elsewhere") == str(tmp_path / "elsewhere")
    assert os.environ["HYBRIDRL_DATA"] == str(tmp_path / "relative" / "data")
    assert pipeline._absolute_data_folder(None) is None


def test_an_interrupted_forecaster_fit_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    data = favorita.load_favorita(write_dataset(tmp_path, small_sales(171)), shape=None)
    series = data.series()[:12]
    scale, calendar = favorita.training_mean(series), data.calendar()
    tr, dv = favorita.TRAIN, favorita.DEV
    train = newsvendor.forecaster_samples(series, tr.start, tr.end, scale=scale, calendar=calendar)
    dev = newsvendor.forecaster_samples(series, dv.start, dv.end, scale=scale, calendar=calendar)
    fit_args = dict(epochs=3, batch_size=256, progress=False)
    whole = newsvendor.fit_forecaster(train, dev, **fit_args)
    ckpt = tmp_path / "forecaster.ckpt"
    real_pinball, calls = newsvendor._pinball, []
    per_epoch = -(-train.past.shape[0] // 256) + 1  # training batches, then the dev loss

    def dies_in_epoch_2(model, samples, index=None):
        calls.append(1)
        if len(calls) == per_epoch + 1:
            raise KeyboardInterrupt
        return real_pinball(model, samples, index)

    monkeypatch.setattr(newsvendor, "_pinball", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        newsvendor.fit_forecaster(train, dev, checkpoint=ckpt, **fit_args)
    assert len(torch.load(ckpt, weights_only=False)["rows"]) == 1  # interrupted in its second epoch
    monkeypatch.setattr(newsvendor, "_pinball", real_pinball)
    resumed = newsvendor.fit_forecaster(train, dev, checkpoint=ckpt, **fit_args)
    assert resumed.history == whole.history and resumed.best_epoch == whole.best_epoch
    for a, b in zip(whole.forecaster.state_dict().values(), resumed.forecaster.state_dict().values()):
        assert torch.equal(a, b)
