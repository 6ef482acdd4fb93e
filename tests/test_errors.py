"""Bad input raises a ValueError naming the field and the value, before any long work starts."""

import time

import pytest
import torch

from hybridrl import experiments
from hybridrl.inventory import ClippedNormal, DemandTrace, InventorySetting, Poisson, Store
from hybridrl.pipeline import main as pipeline_main
from hybridrl.scenarios import Protocol
from hybridrl.train import TrainConfig

POISSON = Poisson(5.0)


@pytest.mark.parametrize(
    "kwargs,field,value",
    [
        (dict(lead_time=-1), "lead_time", "-1"),
        (dict(lead_time=2.5), "lead_time", "2.5"),
        (dict(lead_time="4"), "lead_time", "'4'"),
        (dict(underage_cost=0.0), "underage_cost", "0.0"),
        (dict(underage_cost=-3), "underage_cost", "-3"),
        (dict(holding_cost=float("nan")), "holding_cost", "nan"),
        (dict(holding_cost=-1.0), "holding_cost", "-1.0"),
    ],
)
def test_bad_store_fields(kwargs, field, value):
    fields = dict(demand=POISSON, underage_cost=9.0, holding_cost=1.0, lead_time=2)
    fields.update(kwargs)
    with pytest.raises(ValueError) as err:
        Store(**fields)
    assert field in str(err.value) and value in str(err.value)


@pytest.mark.parametrize(
    "make,field",
    [
        (lambda: Poisson(-1.0), "Poisson.mean"),
        (lambda: ClippedNormal(5.0, 0.0), "ClippedNormal.std"),
        (lambda: InventorySetting(stores=Store(POISSON, 9.0, 1.0, 2), unmet_demand="lost_sales"), "unmet_demand"),
        (lambda: InventorySetting(stores=Store(POISSON, 9.0, 1.0, 2), objective="revenue"), "objective"),
        (lambda: InventorySetting(stores=Store(POISSON, 9.0, 1.0, 4), inventory_slots=2), "inventory_slots"),
        (lambda: Protocol(dev_periods=50, dev_warmup=60), "dev_warmup"),
        (lambda: TrainConfig(batch_size=0), "batch_size"),
        (lambda: TrainConfig(lr=-1.0), "lr"),
        (lambda: TrainConfig(schedule="linear"), "schedule"),
        (lambda: TrainConfig(estimator="reinforce_me"), "estimator"),
        (lambda: TrainConfig(device="tpu"), "device"),
    ],
)
def test_bad_configuration_fields(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_demand_traces_of_the_wrong_shape_or_with_nan():
    with pytest.raises(ValueError, match=r"shape \[N, T\].*\(5,\)"):
        DemandTrace(torch.ones(5))
    bad = torch.ones(4, 10)
    bad[1, 3] = float("nan")
    with pytest.raises(ValueError, match="1 NaN"):
        DemandTrace(bad)
    with pytest.raises(ValueError, match="negative"):
        DemandTrace(-torch.ones(4, 10))


def test_unknown_setting_keys():
    store = dict(demand={"poisson": {"mean": 5}}, underage_cost=9, holding_cost=1, lead_time=4)
    setting = InventorySetting.from_dict(dict(stores=[store], unmet_demand="lost"))
    assert setting.stores[0].demand == Poisson(5)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['lead'\]"):
        InventorySetting.from_dict(dict(stores=[store], lead=3))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['penalty'\]"):
        InventorySetting.from_dict(dict(stores=[dict(store, penalty=9)]))
    with pytest.raises(ValueError, match="demand must be one of"):
        InventorySetting.from_dict(dict(stores=[dict(store, demand={"gamma": {"mean": 5}})]))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['learning_rate'\]"):
        TrainConfig.from_dict(dict(learning_rate=1e-3))


def test_unknown_profile_fails_before_any_work(capsys):
    started = time.perf_counter()
    with pytest.raises(ValueError, match="profile must be one of .* got 'fast'"):
        experiments.run_grid("lost_sales", "hdpo", "fast")
    with pytest.raises(ValueError, match="experiment"):
        experiments.run_grid("lost_sale", "hdpo", "smoke")
    with pytest.raises(ValueError, match="method"):
        experiments.run_grid("lost_sales", "ppo", "smoke")
    with pytest.raises(SystemExit):
        pipeline_main(["reproduce", "--profile", "fast"])
    assert "fast" in capsys.readouterr().err
    assert time.perf_counter() - started < 5
