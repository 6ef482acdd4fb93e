"""The batched, differentiable inventory simulator (HDPO spec §1).

One simulator for every inventory problem of the package. A *setting* (:class:`InventorySetting`) is the
static description of a problem: its stores, how unmet demand is treated and the objective. The random data of
one run (demand traces, costs, lead times, initial inventory) are *scenarios* (:mod:`hybridrl.scenarios`).

Shapes and conventions
----------------------
``B`` scenarios in a batch, ``S`` stores, ``n`` inventory slots, ``T`` periods. All tensors are batch first.

* **Inventory vector** ``inventory[b, s, :]`` of length ``n``: slot 0 is the on-hand stock at the start of the
  period, after this period's arrivals (negative = backlog); slot ``k >= 1`` is the quantity that will arrive
  ``k`` periods from now. ``n = max(L_max, 1)`` unless a setting asks for more slots.
* **Lead time** ``L``: an order placed in period ``t`` is on hand at the start of period ``t + L``, before that
  period's demand (Zipkin's convention; ``L = 1`` arrives next period). ``L = 0`` is supported and means the
  order is added to on-hand before the same period's demand.
* **Stores without a warehouse are independent.** A setting with several stores and no upstream location is a
  set of independent single-store systems simulated side by side; the notebooks use this to train a whole grid
  of single-store problems in one batched run (one store per grid cell).

Order of events in period ``t`` (:func:`step`)
----------------------------------------------
1. **Observe.** The policy sees the inventory vector and the static scenario data (costs, lead time, mean
   demand); never future demand (spec §11 R8).
2. **Decide.** The policy returns orders ``q[b, s] >= 0``.
3. **Place.** The order joins the pipeline ``L`` slots ahead (for ``L = 0``: on hand now).
4. **Demand.** ``d[b, s] = demand[b, s, t]``; with ``x`` the on-hand stock, the period's cost is
   ``p·(d - x)^+ + h·(x - d)^+`` (objective ``"cost"``) or ``-p·min(x, d) + h·(x - d)^+`` (``"profit"``, a
   negative cost; ``p`` is then the unit margin).
5. **Unmet demand.** The stock after demand is ``(x - d)^+`` under lost sales and ``x - d`` under backlog,
   where the backlog is charged ``p`` again in every period it persists.
6. **Advance.** The vector shifts one slot: ``[post + inv[1], inv[2], ..., inv[n-1], 0]`` (plus the order).

Holding cost is charged on on-hand stock after demand only, never on stock in transit. Everything is built from
``+``, ``*``, ``relu`` and ``cat``, so the cost of a whole rollout is differentiable almost everywhere in the
orders; gradients vanish on flat pieces (for instance, earlier orders get no gradient through a stock-out under
lost sales), and no gradient flows to lead times, which only select slots (spec §2).

Extension points for later issues (networks, fixed ordering costs): upstream locations add their own inventory
vectors and costs to :func:`step`, and a discrete order/no-order choice adds a fixed cost term; the event
order above stays the same.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ._config import check_choice, check_int, check_nonnegative, check_positive, from_dict

UNMET_DEMAND = ("lost", "backlog")
OBJECTIVES = ("cost", "profit")


# ----------------------------------------------------------------------------------------------------------------
# Demand models
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Poisson:
    """I.i.d. Poisson demand with the given mean per period (integer demand)."""

    mean: float

    def __post_init__(self):
        check_positive("Poisson.mean", self.mean)

    @property
    def std(self) -> float:
        return self.mean**0.5

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        return torch.poisson(torch.full(shape, float(self.mean), dtype=torch.float64), generator=generator).float()


@dataclass(frozen=True)
class ClippedNormal:
    """I.i.d. ``max(0, N(mean, std^2))`` demand: a normal draw clipped at zero (point mass at 0)."""

    mean: float
    std: float

    def __post_init__(self):
        check_positive("ClippedNormal.mean", self.mean)
        check_positive("ClippedNormal.std", self.std)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        z = torch.randn(shape, generator=generator, dtype=torch.float64)
        return (self.mean + self.std * z).clamp_min(0.0).float()


@dataclass(frozen=True, eq=False)
class DemandTrace:
    """Given demand traces ``values[N, T]`` (one row per scenario), e.g. real sales data.

    Scenarios take the first ``N`` rows and ``T`` periods they need. Values must be finite; negative values are
    rejected (handle returns explicitly before building the trace).
    """

    values: Tensor

    def __post_init__(self):
        v = self.values
        if not isinstance(v, Tensor):
            raise ValueError(f"DemandTrace.values must be a torch.Tensor, got {type(v).__name__}")
        if v.dim() != 2:
            raise ValueError(f"DemandTrace.values must have shape [N, T], got shape {tuple(v.shape)}")
        if not torch.isfinite(v).all():
            raise ValueError(f"DemandTrace.values contains {int((~torch.isfinite(v)).sum())} NaN or infinite entries")
        if (v < 0).any():
            raise ValueError(f"DemandTrace.values contains {int((v < 0).sum())} negative entries")

    @property
    def mean(self) -> float:
        """Mean over the whole trace. Policies see it as a static feature, so for real data build the trace
        from the training window only (or the mean leaks future demand)."""
        return float(self.values.float().mean())

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        n, periods = shape
        if n > self.values.shape[0] or periods > self.values.shape[1]:
            raise ValueError(
                f"DemandTrace has shape {tuple(self.values.shape)}, too small for {n} scenarios x {periods} periods"
            )
        return self.values[:n, :periods].float().clone()


Demand = Union[Poisson, ClippedNormal, DemandTrace]
DEMAND_MODELS = {"poisson": Poisson, "clipped_normal": ClippedNormal}


# ----------------------------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Store:
    """One store: its demand, its unit costs and the lead time of its orders.

    Attributes:
        demand: the demand model.
        underage_cost: ``p``, the unit shortage penalty per period (objective ``"cost"``) or the unit margin
            (objective ``"profit"``).
        holding_cost: ``h``, the unit holding cost per period on on-hand stock after demand.
        lead_time: ``L >= 0``, periods between placing an order and having it on hand.
        demand_seed_shift: added to the demand and initial-inventory seeds for this store (``None``: the store's
            index). The one-store grids use ``L + 10·p`` as in the authors' manuscript (spec §3.1), so a grid
            cell's data does not depend on which other cells are simulated beside it.
    """

    demand: Demand
    underage_cost: float
    holding_cost: float
    lead_time: int
    demand_seed_shift: int | None = None

    def __post_init__(self):
        if not isinstance(self.demand, (Poisson, ClippedNormal, DemandTrace)):
            raise ValueError(f"Store.demand must be Poisson, ClippedNormal or DemandTrace, got {self.demand!r}")
        check_positive("underage_cost", self.underage_cost)
        check_positive("holding_cost", self.holding_cost)
        check_int("lead_time", self.lead_time, minimum=0)
        if self.demand_seed_shift is not None:
            check_int("demand_seed_shift", self.demand_seed_shift, minimum=0)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Store":
        """``{"demand": {"poisson": {"mean": 5}}, "underage_cost": 9, ...}``; unknown keys raise."""
        values = dict(values)
        demand = values.get("demand")
        if isinstance(demand, dict):
            if len(demand) != 1 or next(iter(demand)) not in DEMAND_MODELS:
                raise ValueError(f"demand must be one of {sorted(DEMAND_MODELS)} with its fields, got {demand!r}")
            (kind, fields), = demand.items()
            values["demand"] = from_dict(DEMAND_MODELS[kind], fields, where=f"demand.{kind}")
        return from_dict(cls, values, where="store")


@dataclass(frozen=True)
class InventorySetting:
    """The static description of an inventory problem.

    Attributes:
        stores: the stores; without a warehouse they are independent systems.
        unmet_demand: ``"lost"`` (lost sales) or ``"backlog"``.
        objective: ``"cost"`` (minimise) or ``"profit"`` (maximise; simulated as a negative cost).
        initial_inventory: every slot of the initial inventory vector is ``U[0, 1] · initial_inventory ·
            mean demand`` (spec §1.3: factor 1); 0 starts empty.
        inventory_slots: length of the inventory vector, at least ``max(L, 1)`` (``None``: exactly that).
    """

    stores: tuple[Store, ...]
    unmet_demand: str = "lost"
    objective: str = "cost"
    initial_inventory: float = 1.0
    inventory_slots: int | None = None

    def __post_init__(self):
        if isinstance(self.stores, Store):
            object.__setattr__(self, "stores", (self.stores,))
        object.__setattr__(self, "stores", tuple(self.stores))
        if not self.stores or not all(isinstance(s, Store) for s in self.stores):
            raise ValueError(f"stores must be a non-empty sequence of Store, got {self.stores!r}")
        check_choice("unmet_demand", self.unmet_demand, UNMET_DEMAND)
        check_choice("objective", self.objective, OBJECTIVES)
        check_nonnegative("initial_inventory", self.initial_inventory)
        if self.inventory_slots is not None:
            check_int("inventory_slots", self.inventory_slots, minimum=1)
            if self.inventory_slots < self.max_lead_time:
                raise ValueError(
                    f"inventory_slots must be at least the largest lead time {self.max_lead_time}, "
                    f"got {self.inventory_slots}"
                )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "InventorySetting":
        """Build a setting from plain data (e.g. YAML); unknown keys raise a ``ValueError``."""
        values = dict(values)
        if "stores" in values:
            values["stores"] = tuple(s if isinstance(s, Store) else Store.from_dict(s) for s in values["stores"])
        return from_dict(cls, values, where="setting")

    def replace(self, **changes) -> "InventorySetting":
        return dataclasses.replace(self, **changes)

    @property
    def n_stores(self) -> int:
        return len(self.stores)

    @property
    def max_lead_time(self) -> int:
        return max(s.lead_time for s in self.stores)

    @property
    def n_slots(self) -> int:
        return self.inventory_slots or max(self.max_lead_time, 1)

    @property
    def lost_sales(self) -> bool:
        return self.unmet_demand == "lost"

    @property
    def integer_demand(self) -> bool:
        """True when every store has Poisson demand: orders are then rounded to integers at test time."""
        return all(isinstance(s.demand, Poisson) for s in self.stores)


# ----------------------------------------------------------------------------------------------------------------
# One period
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Observation:
    """What a policy may see in period ``t``: the state and static scenario data, never future demand."""

    inventory: Tensor  # [B, S, n]
    underage_cost: Tensor  # [B, S]
    holding_cost: Tensor  # [B, S]
    lead_time: Tensor  # [B, S], int64
    mean_demand: Tensor  # [B, S]
    period: int
    past_demand: Tensor | None = None  # [B, S, H], the H demands before this period (real data only)
    calendar: Tensor | None = None  # [B, F], calendar features of this period (real data only)

    @property
    def inventory_position(self) -> Tensor:
        """On-hand plus everything in transit, before this period's order: ``[B, S]``."""
        return self.inventory.sum(-1)


@dataclass
class StepResult:
    """What :func:`step` returns. ``sales`` and ``lost`` are derived on demand (the training loop never needs them)."""

    inventory: Tensor  # [B, S, n], the next period's inventory vector
    cost: Tensor  # [B, S], this period's cost (negative profit under objective "profit")
    demand: Tensor  # [B, S]
    shortage: Tensor  # [B, S], (d - x)^+: demand not met from stock this period
    lost_sales: bool

    @property
    def lost(self) -> Tensor:
        """Demand lost this period (zero under backlog, where the shortage waits)."""
        return self.shortage if self.lost_sales else torch.zeros_like(self.shortage)

    @property
    def sales(self) -> Tensor:
        """Demand served from stock this period; under backlog, the demand (filled now or later)."""
        return self.demand - self.shortage if self.lost_sales else self.demand


def arrival_slots(lead_time: Tensor, n_slots: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """One-hot ``[B, S, n + 1]`` mask of the pipeline slot each store's order joins (slot ``L``)."""
    return F.one_hot(lead_time, n_slots + 1).to(dtype)


def step(
    inventory: Tensor,
    order: Tensor,
    demand: Tensor,
    arrival_slot: Tensor,
    underage_cost: Tensor,
    holding_cost: Tensor,
    *,
    lost_sales: bool,
    profit: bool = False,
) -> StepResult:
    """Simulate one period for a batch (events 3-6 of the module docstring).

    Args:
        inventory: ``[B, S, n]`` inventory vectors at the start of the period.
        order: ``[B, S]`` non-negative order quantities.
        demand: ``[B, S]`` this period's demand.
        arrival_slot: ``[B, S, n + 1]`` one-hot slot of each order (:func:`arrival_slots`).
        underage_cost, holding_cost: ``[B, S]``.
    """
    # (few, fused operations: this runs B x S times per period, forward and backward)
    pipeline = F.pad(inventory, (0, 1)).addcmul_(order.unsqueeze(-1), arrival_slot)  # place the order in slot L
    on_hand = pipeline[..., 0]
    surplus = on_hand - demand
    excess = torch.relu(surplus)  # (x - d)^+, stock left after demand
    shortage = excess - surplus  # (d - x)^+
    if profit:
        cost = torch.addcmul(holding_cost * excess, underage_cost, shortage - demand)  # h (x-d)^+ - p min(x, d)
    else:
        cost = torch.addcmul(underage_cost * shortage, holding_cost, excess)
    post = excess if lost_sales else surplus
    next_inventory = torch.cat([(post + pipeline[..., 1]).unsqueeze(-1), pipeline[..., 2:]], dim=-1)
    return StepResult(next_inventory, cost, demand, shortage, lost_sales)


# ----------------------------------------------------------------------------------------------------------------
# A whole rollout
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Trajectory:
    """The record of a rollout. ``cost`` is ``[B, S, T]``; the others are filled when ``record=True``."""

    cost: Tensor
    inventory: Tensor | None = None  # [B, S, T, n], at the start of each period
    orders: Tensor | None = None  # [B, S, T]
    sales: Tensor | None = None  # [B, S, T]
    lost: Tensor | None = None  # [B, S, T]
    final_inventory: Tensor | None = None  # [B, S, n]
    location_cost: Tensor | None = None  # [B, N, T], networks only (hybridrl.networks)
    log_prob: Tensor | None = None  # [B, S, T] (networks: [B, 1, T]), log π(a_t | s_t) of a stochastic policy
    value: Tensor | None = None  # like log_prob: its learned baseline V(s_t) (hybridrl.reinforce)
    lowest_order: Tensor | None = None  # the smallest order (networks: request) placed, a 0-d tensor, detached

    def hindsight_cost(self, warmup: int = 0) -> Tensor:
        """C(θ; ξ) per scenario and store, averaged over the periods ``t >= warmup``: ``[B, S]``."""
        return self.cost[..., warmup:].mean(-1)


def _period(policy, inventory, demand, slots, underage, holding, lead_time, mean_demand, period, lost_sales, profit,
            round_orders, past_demand=None, calendar=None, returns=False):
    """One period of a rollout: observe, decide, simulate. Kept apart so that it can be compiled as one unit."""
    order = policy(Observation(inventory, underage, holding, lead_time, mean_demand, period, past_demand, calendar))
    if round_orders:
        order = torch.round(order)
    if returns:  # a negative order sends back on-hand stock now (at most all of it), unpaid
        sent_back = torch.minimum(torch.relu(-order), torch.relu(inventory[..., 0]))
        inventory = torch.cat([(inventory[..., 0] - sent_back).unsqueeze(-1), inventory[..., 1:]], dim=-1)
        order = torch.relu(order)
    return order, step(inventory, order, demand, slots, underage, holding, lost_sales=lost_sales, profit=profit)


def check_lowest_order(lowest: Tensor, what: str = "placed a negative order", name: str = "orders") -> None:
    """Raise if the smallest order of a rollout is negative (one look at the device, after the rollout)."""
    if bool(lowest < 0):
        raise ValueError(f"the policy {what} ({float(lowest):.4g}); {name} must be >= 0")


_compiled_period = None


def _compiled():
    """``_period`` compiled by ``torch.compile`` (built on first use: importing the package stays cheap)."""
    global _compiled_period
    if _compiled_period is None:
        _compiled_period = torch.compile(_period, dynamic=None)
    return _compiled_period


def rollout(
    policy,
    scenarios,
    periods: int | None = None,
    *,
    round_orders: bool = False,
    record: bool = False,
    compile: bool = False,
    check_orders: bool = True,
) -> Trajectory:
    """Roll ``policy`` out on a batch of scenarios for ``periods`` periods (default: all the scenarios have).

    The rollout is differentiable in the policy parameters unless it runs under ``torch.no_grad()``. With
    ``round_orders`` (test time, integer demand) orders are rounded to the nearest integer. Orders must be
    non-negative: the check happens once, after the rollout, so the loop never waits for the device
    (``check_orders=False`` leaves it to the caller, with ``Trajectory.lowest_order``: a rollout captured in a
    CUDA graph cannot look at its results). With
    ``compile=True`` each period (policy and simulator) runs as one ``torch.compile``d unit: the same numbers
    up to floating-point rounding, faster once compiled (the first call compiles, for some seconds).

    Scenarios with a demand history (real data) show the policy the last ``H`` demands before each period
    (``Observation.past_demand``) and the period's calendar features (``Observation.calendar``); never the
    period's own demand or later ones.

    A policy with the attribute ``sends_returns = True`` (the *returns-allowed newsvendor*, a non-admissible
    reference, spec §6.4) may place negative orders: an order ``-r`` sends ``min(r, on-hand)`` units back at the
    start of the period, unpaid and at no cost, and the non-negative check is skipped. (The reference
    implementation instead adds the negative quantity to the pipeline, which can make later on-hand, and hence
    sales, negative.) Recorded orders are then the positive parts.
    """
    if getattr(scenarios, "is_network", False):  # the same loop for a supply network (hybridrl.networks)
        from .networks import network_rollout

        return network_rollout(policy, scenarios, periods, round_orders=round_orders, record=record, compile=compile,
                               check_orders=check_orders)
    setting = scenarios.setting
    periods = scenarios.periods if periods is None else periods
    if periods > scenarios.periods:
        raise ValueError(f"periods={periods} exceeds the {scenarios.periods} periods of demand in the scenarios")
    one_period = _compiled() if compile else _period
    allow_returns = bool(getattr(policy, "sends_returns", False))
    inventory = scenarios.initial_inventory
    slots = arrival_slots(scenarios.lead_time, inventory.shape[-1], inventory.dtype)
    from .scenarios import observed_past  # (scenarios imports this module)

    past, calendar = observed_past(scenarios), getattr(scenarios, "calendar", None)
    costs, records = [], []
    min_order = None
    for t in range(periods):
        order, result = one_period(
            policy, inventory, scenarios.demand[..., t], slots, scenarios.underage_cost, scenarios.holding_cost,
            scenarios.lead_time, scenarios.mean_demand, t, setting.lost_sales, setting.objective == "profit",
            round_orders, past(t), None if calendar is None else calendar[:, t], allow_returns,
        )
        min_order = order.detach() if min_order is None else torch.minimum(min_order, order.detach())
        costs.append(result.cost)
        if record:
            records.append((inventory, order, result.sales, result.lost))
        inventory = result.inventory
    lowest = None if min_order is None else min_order.amin()
    if check_orders and not allow_returns and lowest is not None:
        check_lowest_order(lowest)
    trajectory = Trajectory(cost=torch.stack(costs, dim=-1), lowest_order=None if allow_returns else lowest)
    recorded = policy.pop_record() if hasattr(policy, "pop_record") else None  # hybridrl.reinforce
    if recorded is not None:
        trajectory.log_prob, trajectory.value = recorded
    if record:
        inv, orders, sales, lost = zip(*records)
        trajectory.inventory = torch.stack(inv, dim=2)
        trajectory.orders = torch.stack(orders, dim=-1)
        trajectory.sales = torch.stack(sales, dim=-1)
        trajectory.lost = torch.stack(lost, dim=-1)
        trajectory.final_inventory = inventory
    return trajectory
