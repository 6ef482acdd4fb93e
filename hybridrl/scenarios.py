"""Scenarios: the exogenous random data of a run, generated reproducibly (HDPO spec §3).

A scenario ξ is everything the simulator needs that the policy does not choose: demand traces, unit costs,
lead times and the initial inventory. Demand does not depend on actions, so any policy can be replayed exactly
("backtested") on any scenario.

Determinism. Every random component has its own ``torch.Generator`` seeded from :class:`Seeds`, and each store
draws from its own stream (seed + the store's ``demand_seed_shift``). The same seeds therefore give the same
numbers whatever else ran before, whatever the device, and whichever other stores are simulated alongside.

Splits (spec §3.2). Train and dev scenarios come from one draw with the train seeds (the first ``n_dev`` are
dev, the rest train), over ``max(train_periods, dev_periods)`` periods; test scenarios are drawn separately with
the test seeds, so training never sees them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import torch
from torch import Tensor

from ._config import check_int
from .inventory import DemandTrace, InventorySetting


@dataclass(frozen=True)
class Seeds:
    """One seed per random component (spec §3.1). Demand seeds are shifted per store (:class:`Store`)."""

    demand: int = 57
    """Train and dev demand traces."""
    test_demand: int = 65
    """Test demand traces."""
    initial_inventory: int = 4839
    """Train and dev initial inventories."""
    test_initial_inventory: int = 4840
    """Test initial inventories (the spec calls this seed setting-specific; it is irrelevant after warm-up)."""

    def __post_init__(self):
        for f in fields(self):
            check_int(f"seeds.{f.name}", getattr(self, f.name), minimum=0)


def check_history_and_calendar(demand: Tensor, history: Tensor | None, calendar: Tensor | None) -> None:
    """Shapes of the optional real-data fields beside ``demand [N, S, T]`` (single stores and networks alike):
    ``history [N, S, H ≥ 1]``, finite, and ``calendar [N, T, F]``."""
    n, s, t = demand.shape
    if history is not None and (history.dim() != 3 or tuple(history.shape[:2]) != (n, s) or history.shape[2] < 1
                                or not torch.isfinite(history).all()):
        raise ValueError(f"demand_history must be a finite [N, S, H] = [{n}, {s}, H ≥ 1] tensor, "
                         f"got shape {tuple(history.shape)}")
    if calendar is not None and (calendar.dim() != 3 or tuple(calendar.shape[:2]) != (n, t)):
        raise ValueError(f"calendar must have shape [N, T, F] = [{n}, {t}, F], got {tuple(calendar.shape)}")


def fill_from(buffers, source, index: Tensor) -> None:
    """Copy ``source[index]`` into the tensors of ``buffers`` (dataclasses of the same kind), field by field."""
    for f in fields(buffers):
        value = getattr(buffers, f.name)
        if isinstance(value, Tensor):
            torch.index_select(getattr(source, f.name), 0, index, out=value)


def observed_past(scenarios):
    """``past(t)``: what a policy may see of the demand in period ``t`` — the ``H`` demands of periods
    ``t − H .. t − 1`` ``[N, S, H]`` (from the history, then the simulated periods), or ``None`` when the
    scenarios have no history. Never the demand of period ``t`` or later."""
    history = getattr(scenarios, "demand_history", None)
    if history is None:
        return lambda t: None
    known = torch.cat([history, scenarios.demand], dim=-1)  # periods -H .. T-1
    window = history.shape[-1]
    return lambda t: known[..., t : t + window]


@dataclass
class Scenarios:
    """A batch of ``N`` scenarios for a setting with ``S`` stores, ``n`` slots and ``T`` periods."""

    setting: InventorySetting
    demand: Tensor  # [N, S, T]
    underage_cost: Tensor  # [N, S]
    holding_cost: Tensor  # [N, S]
    lead_time: Tensor  # [N, S], int64
    mean_demand: Tensor  # [N, S]
    initial_inventory: Tensor  # [N, S, n]
    demand_history: Tensor | None = None  # [N, S, H]: the H demands before period 0 (real data), seen by policies
    calendar: Tensor | None = None  # [N, T, F]: calendar features of each period (real data)

    def __post_init__(self):
        n, s = self.demand.shape[:2]
        if self.demand.dim() != 3:
            raise ValueError(f"demand must have shape [N, S, T], got {tuple(self.demand.shape)}")
        if s != self.setting.n_stores:
            raise ValueError(f"demand has {s} stores but the setting has {self.setting.n_stores}")
        for name in ("underage_cost", "holding_cost", "lead_time", "mean_demand"):
            if tuple(getattr(self, name).shape) != (n, s):
                raise ValueError(f"{name} must have shape {(n, s)}, got {tuple(getattr(self, name).shape)}")
        if tuple(self.initial_inventory.shape) != (n, s, self.setting.n_slots):
            raise ValueError(
                f"initial_inventory must have shape {(n, s, self.setting.n_slots)}, "
                f"got {tuple(self.initial_inventory.shape)}"
            )
        if not torch.isfinite(self.demand).all():
            raise ValueError("demand contains NaN or infinite values")
        check_history_and_calendar(self.demand, self.demand_history, self.calendar)
        if self.lead_time.dtype != torch.int64 or bool((self.lead_time < 0).any()) or bool(
            (self.lead_time > self.setting.n_slots).any()
        ):
            raise ValueError(f"lead_time must be int64 in [0, {self.setting.n_slots}], got {self.lead_time.unique().tolist()}")

    @property
    def n(self) -> int:
        return self.demand.shape[0]

    @property
    def periods(self) -> int:
        return self.demand.shape[2]

    def __len__(self) -> int:
        return self.n

    def _map(self, fn) -> "Scenarios":
        """Apply ``fn`` to every tensor. The result is not validated again: it is a view of valid data, and this
        runs for every minibatch, where a check would make the device wait."""
        out = copy.copy(self)
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                setattr(out, f.name, fn(value))
        return out

    def __getitem__(self, index) -> "Scenarios":
        """Select scenarios (rows) by slice, index tensor or boolean mask."""
        return self._map(lambda v: v[index])

    def fill_from(self, source: "Scenarios", index: Tensor) -> None:
        """Overwrite these scenarios' tensors in place with ``source[index]`` (the same shapes): the fixed input
        buffers of a recorded training step (:class:`hybridrl.train.TrainConfig` ``cuda_graph``)."""
        fill_from(self, source, index)

    def with_periods(self, periods: int) -> "Scenarios":
        if periods > self.periods:
            raise ValueError(f"periods={periods} exceeds the {self.periods} periods available")
        calendar = None if self.calendar is None else self.calendar[:, :periods]
        return replace(self, demand=self.demand[..., :periods], calendar=calendar)

    def to(self, device) -> "Scenarios":
        return self._map(lambda v: v.to(device))

    def double(self) -> "Scenarios":
        """Floating-point data in float64 (for gradient checks); lead times stay integers."""
        return self._map(lambda v: v.double() if v.is_floating_point() else v)


def sample_scenarios(
    setting: InventorySetting, n: int, periods: int, *, demand_seed: int, inventory_seed: int
) -> Scenarios:
    """Draw ``n`` scenarios of ``periods`` periods (on the CPU; move them with :meth:`Scenarios.to`)."""
    check_int("n", n, minimum=1)
    check_int("periods", periods, minimum=1)
    n_slots = setting.n_slots
    demands, inventories = [], []
    for index, store in enumerate(setting.stores):
        shift = index if store.demand_seed_shift is None else store.demand_seed_shift
        gen = torch.Generator().manual_seed(demand_seed + shift)
        demands.append(store.demand.sample((n, periods), gen))
        # the store's own slots are filled as if it were simulated alone; padding slots stay empty
        own_slots = max(store.lead_time, 1)
        gen = torch.Generator().manual_seed(inventory_seed + shift)
        start = torch.rand((n, own_slots), generator=gen, dtype=torch.float64).float()
        start = start * (setting.initial_inventory * store.demand.mean)
        inventories.append(torch.cat([start, torch.zeros(n, n_slots - own_slots)], dim=1))
    per_store = lambda attr: torch.tensor([float(attr(s)) for s in setting.stores]).expand(n, -1).clone()  # noqa: E731
    return Scenarios(
        setting=setting,
        demand=torch.stack(demands, dim=1),
        underage_cost=per_store(lambda s: s.underage_cost),
        holding_cost=per_store(lambda s: s.holding_cost),
        lead_time=per_store(lambda s: s.lead_time).long(),
        mean_demand=per_store(lambda s: s.demand.mean),
        initial_inventory=torch.stack(inventories, dim=1),
    )


@dataclass(frozen=True)
class Protocol:
    """Scenario counts, horizons and warm-ups of the train / dev / test splits (spec §3.2)."""

    n_train: int = 32768
    n_dev: int = 32768
    n_test: int = 32768
    train_periods: int = 50
    dev_periods: int = 100
    dev_warmup: int = 60
    test_periods: int = 5000
    test_warmup: int = 3000

    def __post_init__(self):
        for f in fields(self):
            check_int(f"protocol.{f.name}", getattr(self, f.name), minimum=0 if "warmup" in f.name else 1)
        for split in ("dev", "test"):
            if getattr(self, f"{split}_warmup") >= getattr(self, f"{split}_periods"):
                raise ValueError(
                    f"protocol.{split}_warmup must be smaller than {split}_periods, got "
                    f"{getattr(self, f'{split}_warmup')} >= {getattr(self, f'{split}_periods')}"
                )


class Splits(NamedTuple):
    train: Scenarios
    dev: Scenarios
    test: Scenarios


def make_splits(setting: InventorySetting, protocol: Protocol, seeds: Seeds = Seeds()) -> Splits:
    """Train, dev and test scenarios for ``setting`` (module docstring)."""
    if any(isinstance(s.demand, DemandTrace) for s in setting.stores):
        raise ValueError("make_splits draws synthetic demand; split real demand traces by period windows instead")
    both = sample_scenarios(
        setting,
        protocol.n_dev + protocol.n_train,
        max(protocol.train_periods, protocol.dev_periods),
        demand_seed=seeds.demand,
        inventory_seed=seeds.initial_inventory,
    )
    dev = both[: protocol.n_dev].with_periods(protocol.dev_periods)
    train = both[protocol.n_dev :].with_periods(protocol.train_periods)
    test = sample_scenarios(
        setting,
        protocol.n_test,
        protocol.test_periods,
        demand_seed=seeds.test_demand,
        inventory_seed=seeds.test_initial_inventory,
    )
    return Splits(train, dev, test)
