"""Inventory networks: serial chains, one warehouse with many stores, transshipment, several warehouses (HDPO
spec §1, §4.3-§4.6).

The single-store simulator of :mod:`hybridrl.inventory` generalised to a directed supply graph, with the same
conventions and the same order of events.

The network
-----------
A :class:`Network` is a set of :class:`Location` s and supply :class:`Edge` s. An edge carries goods from a
``supplier`` location (or from the unlimited outside supplier, ``supplier=None``) to a ``receiver`` with a lead
time ``L ≥ 1`` (an order placed in period ``t`` is on hand at the start of period ``t + L``; spec R4: a missing
edge is the absence of an edge, never a lead time 0) and, optionally, a procurement cost per unit. Stores face
customer demand and supply nobody; every other location supplies at least one receiver. A location that
``holds_stock=False`` (a transshipment center) ships everything it has every period.

Every location has an inventory vector of ``n = max L`` slots (slot 0 on hand after this period's arrivals,
negative only for a backlogging store; slot ``k`` arrives in ``k`` periods), so the state is ``[B, N, n]``.

Order of events in one period (:func:`network_step`)
----------------------------------------------------
1. **Decide.** The policy returns a non-negative *request* per edge, ``[B, E]`` (edges in the network's order).
2. **Feasibility** (spec R1), in the simulator, differentiably: at each supplying location the requests on its
   out-edges are scaled by ``min(1, on-hand / Σ requests)`` — proportional rationing, so no location ever ships
   more than it has. A transshipment center ships *all* its on-hand, split in proportion to the requests (plus a
   tiny equal share, so that stock is shipped even when nothing is requested). Outside requests are orders,
   never rationed.
3. **Demand** at the stores; store cost ``p·(d − x)^+ + h·(x − d)^+`` on on-hand ``x`` (objective ``"cost"``), or
   ``−p·min(x, d) + h·(x − d)^+`` with ``p`` the unit margin (objective ``"profit"``, real data: a negative
   cost is a profit, as in :func:`hybridrl.inventory.step`); the stock after demand is ``(x − d)^+`` under lost
   sales, ``x − d`` under backlog.
4. **Upstream cost.** Each other location pays ``h`` on its on-hand after shipping; every location pays the
   unit procurement cost of its outside orders.
5. **Advance.** Every vector shifts one slot, and each shipment or order joins its receiver's slot ``L − 1``
   (on hand in ``L`` periods). Stock in transit is charged to nobody (spec §4.3).

The cost tensor of a rollout is ``[B, S, T]`` like the single-store simulator's: column ``s`` holds store
``s``'s cost plus an equal ``1/S`` share of the upstream locations' cost, so that the mean over stores is the
network's **cost per store and period** (spec R13), and the training loop and evaluation of
:mod:`hybridrl.train` run on networks unchanged (:func:`hybridrl.inventory.rollout` dispatches here).

Real-data scenarios
-------------------
:class:`NetworkScenarios` may carry a **demand history** ``[N, S, H]`` (the ``H`` demands before period 0), a
**calendar** ``[N, T, F]`` (features of each simulated period) and a per-scenario **demand scale**
``mean_demand [N, S]`` (e.g. each item's training-window mean at each store; ``None``: the network's store means).
:func:`network_rollout` shows them to the policy as in :func:`hybridrl.inventory.rollout`: in period ``t``,
``NetworkObservation.past_demand`` holds the ``H`` demands of periods ``t − H .. t − 1``
(``cat(history, demand)[..., t : t + H]``), ``calendar`` the features of period ``t`` and ``mean_demand`` the
scale; never the demand of period ``t`` or later (spec R8). :mod:`hybridrl.favorita_network` builds them.

Instances
---------
:func:`serial_network` (spec §4.3), :func:`one_warehouse_network` (§4.4), :func:`transshipment_network` (§4.5).
Store parameters are the reference's own draws (spec §3.1): one legacy NumPy seed per component, each giving a
vector over the stores, so the first stores of a larger instance are the smaller instance (spec §4.4: "stores
1-5 form the S = 5 instance") and the S = 10 instance is the spec's table of check values (a test checks it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ._config import check_choice, check_int, check_nonnegative, check_positive
from ._device import on_device
from .inventory import OBJECTIVES, UNMET_DEMAND, Trajectory, check_lowest_order
from .scenarios import check_history_and_calendar, fill_from, observed_past


# ----------------------------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Location:
    """One location. Stores have ``underage_cost`` ``p`` and normal demand ``(mean, std)`` per period."""

    name: str
    holding_cost: float
    store: bool = False
    underage_cost: float = 0.0
    mean: float = 0.0
    std: float = 0.0
    holds_stock: bool = True

    def __post_init__(self):
        check_nonnegative(f"{self.name}.holding_cost", self.holding_cost)
        if self.store:
            check_positive(f"{self.name}.underage_cost", self.underage_cost)
            check_positive(f"{self.name}.mean", self.mean)
            check_nonnegative(f"{self.name}.std", self.std)
            if not self.holds_stock:
                raise ValueError(f"{self.name}: a store must hold stock (holds_stock=False is for centers)")


@dataclass(frozen=True)
class Edge:
    """A supply edge: ``supplier`` (location index, or ``None`` for the unlimited outside supplier) to
    ``receiver`` with ``lead_time`` periods and a procurement cost per unit shipped."""

    supplier: int | None
    receiver: int
    lead_time: int
    unit_cost: float = 0.0

    def __post_init__(self):
        if self.supplier is not None:
            check_int("Edge.supplier", self.supplier, minimum=0)
        check_int("Edge.receiver", self.receiver, minimum=0)
        check_int("Edge.lead_time", self.lead_time, minimum=1)  # spec R4: lead time 0 is not an edge
        check_nonnegative("Edge.unit_cost", self.unit_cost)
        if self.supplier == self.receiver:
            raise ValueError(f"an edge cannot supply its own supplier: {self.supplier} -> {self.receiver}")


@dataclass(frozen=True)
class Network:
    """A supply network (module docstring): locations, edges, unmet demand and the demand correlation.

    ``objective="profit"`` (real data) charges each store ``−p·min(x, d) + h·(x − d)^+`` (``p`` the unit
    margin) instead of ``p·(d − x)^+ + h·(x − d)^+``; upstream holding and procurement costs are the same.
    """

    name: str
    locations: tuple[Location, ...]
    edges: tuple[Edge, ...]
    unmet_demand: str = "lost"
    correlation: float = 0.0
    """Pairwise correlation of the stores' normal demands."""
    truncate_demand: bool = True
    """Clip demand at 0 (spec §4.4); the transshipment setting keeps negative demand (spec §4.5)."""
    initial_inventory: float = 1.0
    """Store slots start at U[0, 1] × this × the store's mean demand; upstream locations start empty."""
    objective: str = "cost"
    """``"cost"`` (minimise) or ``"profit"`` (maximise; simulated as a negative cost, see the class docstring)."""

    def __post_init__(self):
        check_choice("unmet_demand", self.unmet_demand, UNMET_DEMAND)
        check_choice("objective", self.objective, OBJECTIVES)
        check_nonnegative("initial_inventory", self.initial_inventory)
        n = len(self.locations)
        if n == 0 or not any(loc.store for loc in self.locations):
            raise ValueError(f"network {self.name!r} needs at least one store")
        names = [loc.name for loc in self.locations]
        if len(set(names)) != n:
            raise ValueError(f"location names must be unique, got {names}")
        seen = set()
        for e in self.edges:
            for end, index in (("supplier", e.supplier), ("receiver", e.receiver)):
                if index is not None and index >= n:
                    raise ValueError(f"edge {e}: {end} {index} is not a location (there are {n})")
            if (e.supplier, e.receiver) in seen:
                raise ValueError(f"duplicate edge {e.supplier} -> {e.receiver}")
            seen.add((e.supplier, e.receiver))
            if e.supplier is not None and self.locations[e.supplier].store:
                raise ValueError(f"store {self.locations[e.supplier].name!r} cannot supply other locations")
        for i, loc in enumerate(self.locations):
            if not any(e.receiver == i for e in self.edges):
                raise ValueError(f"location {loc.name!r} has no supply edge")
            if not loc.store and not any(e.supplier == i for e in self.edges):
                raise ValueError(f"location {loc.name!r} is not a store and supplies nobody")
        s = self.n_stores
        low = -1 / (s - 1) if s > 1 else -1.0
        if not low <= self.correlation <= 1:
            raise ValueError(f"correlation must be in [{low:.3g}, 1] for {s} stores, got {self.correlation!r}")
        if self.unmet_demand == "lost" and not self.truncate_demand:
            raise ValueError("lost sales need non-negative demand: set truncate_demand=True")
        self._build_tensors()

    # ---- sizes ---------------------------------------------------------------------------------------------------
    @property
    def n_locations(self) -> int:
        return len(self.locations)

    @property
    def stores(self) -> tuple[int, ...]:
        return tuple(i for i, loc in enumerate(self.locations) if loc.store)

    @property
    def n_stores(self) -> int:
        return len(self.stores)

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def n_slots(self) -> int:
        return max(e.lead_time for e in self.edges)

    @property
    def lost_sales(self) -> bool:
        return self.unmet_demand == "lost"

    @property
    def profit(self) -> bool:
        return self.objective == "profit"

    members = 1  # one policy for the whole network (the training loop's notion of members)

    def _build_tensors(self) -> None:
        """Index tensors of the graph, built once (frozen dataclass: set through ``object.__setattr__``)."""
        n = self.n_slots
        supplier = torch.tensor([-1 if e.supplier is None else e.supplier for e in self.edges])
        receiver = torch.tensor([e.receiver for e in self.edges])
        lead = torch.tensor([e.lead_time for e in self.edges])
        internal = supplier >= 0
        stores = torch.tensor(self.stores)
        # descendants[k, j] = 1 if location j is k itself or downstream of k (for echelon inventory positions)
        N = self.n_locations
        adjacency = np.zeros((N, N), dtype=bool)
        for e in self.edges:
            if e.supplier is not None:
                adjacency[e.supplier, e.receiver] = True
        reach = np.eye(N, dtype=bool)
        for _ in range(N):
            reach = reach | (reach.astype(int) @ adjacency.astype(int) > 0)
        tensors = dict(
            supplier=supplier, receiver=receiver, lead_time=lead, internal=internal,
            internal_edges=torch.nonzero(internal).flatten(), outside_edges=torch.nonzero(~internal).flatten(),
            arrival=receiver * n + lead - 1, store_index=stores,
            is_store=torch.tensor([loc.store for loc in self.locations]),
            holds_stock=torch.tensor([loc.holds_stock for loc in self.locations]),
            holding_cost=torch.tensor([loc.holding_cost for loc in self.locations]),
            underage_cost=torch.tensor([self.locations[i].underage_cost for i in self.stores]),
            store_mean=torch.tensor([self.locations[i].mean for i in self.stores]),
            store_std=torch.tensor([self.locations[i].std for i in self.stores]),
            unit_cost=torch.tensor([e.unit_cost for e in self.edges]),
            descendants=torch.tensor(reach, dtype=torch.float32),
        )
        object.__setattr__(self, "_tensors", tensors)

    def tensor(self, name: str, like: Tensor | None = None) -> Tensor:
        """One of the graph's tensors, on ``like``'s device (floating ones in its dtype).

        The copy for each device and dtype is made once and kept: a rollout asks for these tensors every period,
        and a fresh copy to a GPU each time would make the host wait for the device (the copy synchronises)."""
        value = self._tensors[name]
        if like is None:
            return value
        return on_device(self, name, value, like)

    @property
    def mean_demand(self) -> Tensor:
        """Mean demand per store ``[S]`` (of the normal before truncation)."""
        return self._tensors["store_mean"]

    def order_bound(self) -> float:
        """The spec's outside-order bound ``U = 4·Σ_s mean_s`` (spec §6.1)."""
        return 4.0 * float(self.mean_demand.sum())

    def __repr__(self) -> str:  # stable and complete: it keys the result cache
        locs = ", ".join(f"{loc.name}(h={loc.holding_cost:g}" + (f", p={loc.underage_cost:g}, mean={loc.mean:.6g}, "
                                                                  f"std={loc.std:.6g}" if loc.store else "")
                         + ("" if loc.holds_stock else ", center") + ")" for loc in self.locations)
        edges = ", ".join(f"{'out' if e.supplier is None else e.supplier}->{e.receiver}(L={e.lead_time}"
                          + (f", c={e.unit_cost:g}" if e.unit_cost else "") + ")" for e in self.edges)
        return (f"Network({self.name!r}, [{locs}], [{edges}], {self.unmet_demand}, rho={self.correlation:g}, "
                f"truncate={self.truncate_demand}, init={self.initial_inventory:g}"
                + ("" if self.objective == "cost" else f", objective={self.objective}") + ")")


# ----------------------------------------------------------------------------------------------------------------
# Instances of the spec
# ----------------------------------------------------------------------------------------------------------------
SERIAL_LEAD_TIMES = (2, 4, 3, 4)
"""Echelon 0 (from outside), echelon 1, warehouse, store (spec §4.3)."""
SERIAL_HOLDING = (0.1, 0.2, 0.5, 1.0)


def serial_network(penalty: float = 9.0, *, lead_times=SERIAL_LEAD_TIMES, holding=SERIAL_HOLDING, mean: float = 5.0,
                   std: float = 2.0) -> Network:
    """The serial system of spec §4.3: echelon 0 -> echelon 1 -> warehouse -> store, Normal(5, 2) demand
    truncated at 0, backlogged at the store. Location ``k`` buys from ``k − 1`` (location 0 from outside)."""
    if len(lead_times) != len(holding) or len(holding) < 2:
        raise ValueError(f"lead_times and holding need one entry per stage (at least 2), got {lead_times}, {holding}")
    k = len(holding)
    names = [f"echelon {i}" for i in range(k - 2)] + ["warehouse", "store"]
    locations = tuple(Location(names[i], float(holding[i])) for i in range(k - 1)) + (
        Location("store", float(holding[-1]), store=True, underage_cost=penalty, mean=mean, std=std),)
    edges = tuple(Edge(None if i == 0 else i - 1, i, int(lead_times[i])) for i in range(k))
    return Network("serial", locations, edges, unmet_demand="backlog", initial_inventory=0.0)


INSTANCE_SEEDS = {"mean": 33, "cv": 92, "underage_cost": 28, "holding_cost": 73, "lead_time": 41}
"""The reference's seed of each random component of a synthetic instance (spec §3.1)."""


def draw_stores(n_stores: int, seed: int = 0, *, mean=(2.5, 7.5), cv=(0.25, 0.5), underage=(6.3, 11.7),
                holding=(0.7, 1.3), lead_times=(2, 3)) -> list[dict]:
    """Store parameters of spec §3.1 and §4.4, drawn as the reference draws them: for each component, a legacy
    NumPy generator seeded with :data:`INSTANCE_SEEDS` (``+ seed``: ``seed = 0`` is the published instance,
    another value a different one) draws one vector over the stores. mean ~ U[2.5, 7.5] rounded to 3 decimals,
    cv ~ U[0.25, 0.5] with std = round(mean·cv, 3), p ~ U[6.3, 11.7], h ~ U[0.7, 1.3], L an integer in
    ``lead_times`` (a contiguous range). The first ``k`` stores are the same for every ``n_stores ≥ k``."""
    check_int("n_stores", n_stores, minimum=1)
    check_int("seed", seed, minimum=0)
    lo, hi = min(lead_times), max(lead_times)
    if tuple(lead_times) != tuple(range(lo, hi + 1)):
        raise ValueError(f"lead_times must be a contiguous range of integers, got {lead_times!r}")

    def draw(component: str):
        return np.random.RandomState(INSTANCE_SEEDS[component] + seed)

    means = np.round(draw("mean").uniform(*mean, n_stores), 3)
    stds = np.round(means * draw("cv").uniform(*cv, n_stores), 3)
    p = draw("underage_cost").uniform(*underage, n_stores)
    h = draw("holding_cost").uniform(*holding, n_stores)
    L = draw("lead_time").randint(lo, hi + 1, n_stores)
    return [dict(mean=float(means[i]), std=float(stds[i]), underage_cost=float(p[i]), holding_cost=float(h[i]),
                 lead_time=int(L[i])) for i in range(n_stores)]


def one_warehouse_network(n_stores: int = 5, *, seed: int = 0, warehouse_holding: float = 0.3,
                          warehouse_lead_time: int = 3, correlation: float = 0.5) -> Network:
    """One warehouse (outside lead time 3, h = 0.3) supplying ``n_stores`` lost-sales stores (spec §4.4)."""
    stores = draw_stores(n_stores, seed)
    locations = (Location("warehouse", warehouse_holding),) + tuple(
        Location(f"store {i + 1}", s["holding_cost"], store=True, underage_cost=s["underage_cost"], mean=s["mean"],
                 std=s["std"]) for i, s in enumerate(stores))
    edges = (Edge(None, 0, warehouse_lead_time),) + tuple(
        Edge(0, i + 1, s["lead_time"]) for i, s in enumerate(stores))
    return Network(f"one warehouse, {n_stores} stores", locations, edges, unmet_demand="lost",
                   correlation=correlation)


def transshipment_network(n_stores: int = 5, *, seed: int = 0, underage_cost: float = 4.0, holding_cost: float = 1.0,
                          store_lead_time: int = 2, center_holding: float = 0.5, center_lead_time: int = 3,
                          correlation: float = 0.5) -> Network:
    """A transshipment center that cannot hold stock supplying ``n_stores`` backlogging stores with equal costs
    and lead times; normal demand (means and cv as in §4.4), **not truncated** (spec §4.5)."""
    stores = draw_stores(n_stores, seed)
    locations = (Location("center", center_holding, holds_stock=False),) + tuple(
        Location(f"store {i + 1}", holding_cost, store=True, underage_cost=underage_cost, mean=s["mean"],
                 std=s["std"]) for i, s in enumerate(stores))
    edges = (Edge(None, 0, center_lead_time),) + tuple(Edge(0, i + 1, store_lead_time) for i in range(n_stores))
    return Network(f"transshipment, {n_stores} stores", locations, edges, unmet_demand="backlog",
                   correlation=correlation, truncate_demand=False)


# ----------------------------------------------------------------------------------------------------------------
# Scenarios
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class NetworkScenarios:
    """``N`` scenarios of a network: store demand ``[N, S, T]`` and initial inventories ``[N, L, n]``; for real
    data also the demand history ``[N, S, H]``, calendar features ``[N, T, F]`` and a per-scenario demand scale
    ``mean_demand [N, S]`` (module docstring, "Real-data scenarios"; ``None`` where absent)."""

    setting: Network
    demand: Tensor
    initial_inventory: Tensor
    demand_history: Tensor | None = None
    calendar: Tensor | None = None
    mean_demand: Tensor | None = None

    is_network = True

    def __post_init__(self):
        net = self.setting
        if self.demand.dim() != 3 or self.demand.shape[1] != net.n_stores:
            raise ValueError(f"demand must be [N, {net.n_stores}, T], got {tuple(self.demand.shape)}")
        n, s, t = self.demand.shape
        expected = (n, net.n_locations, net.n_slots)
        if tuple(self.initial_inventory.shape) != expected:
            raise ValueError(f"initial_inventory must be {expected}, got {tuple(self.initial_inventory.shape)}")
        if not torch.isfinite(self.demand).all():
            raise ValueError("demand contains NaN or infinite values")
        check_history_and_calendar(self.demand, self.demand_history, self.calendar)
        mean = self.mean_demand
        if mean is not None and (tuple(mean.shape) != (n, s) or not torch.isfinite(mean).all()
                                 or bool((mean <= 0).any())):
            raise ValueError(f"mean_demand must be a positive finite [N, S] = [{n}, {s}] tensor, "
                             f"got shape {tuple(mean.shape)}")

    @property
    def n(self) -> int:
        return self.demand.shape[0]

    @property
    def periods(self) -> int:
        return self.demand.shape[2]

    def __len__(self) -> int:
        return self.n

    def _map(self, fn) -> NetworkScenarios:
        """Apply ``fn`` to every tensor (not validated again: a view of valid data, run for every minibatch)."""
        out = copy.copy(self)
        out.demand, out.initial_inventory = fn(self.demand), fn(self.initial_inventory)
        for name in ("demand_history", "calendar", "mean_demand"):
            value = getattr(self, name)
            if value is not None:
                setattr(out, name, fn(value))
        return out

    def __getitem__(self, index) -> NetworkScenarios:
        return self._map(lambda v: v[index])

    def fill_from(self, source: NetworkScenarios, index: Tensor) -> None:
        """In place, ``self = source[index]`` (see :meth:`hybridrl.scenarios.Scenarios.fill_from`)."""
        fill_from(self, source, index)

    def with_periods(self, periods: int) -> NetworkScenarios:
        if periods > self.periods:
            raise ValueError(f"periods={periods} exceeds the {self.periods} periods available")
        calendar = None if self.calendar is None else self.calendar[:, :periods]
        return replace(self, demand=self.demand[..., :periods], calendar=calendar)

    def to(self, device) -> NetworkScenarios:
        return self._map(lambda v: v.to(device))

    def double(self) -> NetworkScenarios:
        return self._map(lambda v: v.double())


def sample_network_demand(network: Network, n: int, periods: int, generator: torch.Generator) -> Tensor:
    """Correlated normal store demand ``[n, S, periods]`` (equal pairwise correlation), truncated at 0 if the
    network says so. Drawn in float64 from ``generator`` through a Cholesky factor of the correlation matrix."""
    s = network.n_stores
    corr = torch.full((s, s), float(network.correlation), dtype=torch.float64)
    corr.fill_diagonal_(1.0)
    chol = torch.linalg.cholesky(corr + 1e-12 * torch.eye(s, dtype=torch.float64))
    z = torch.randn(n, periods, s, generator=generator, dtype=torch.float64) @ chol.T
    demand = network.mean_demand.double() + network.tensor("store_std").double() * z
    if network.truncate_demand:
        demand = demand.clamp_min(0.0)
    return demand.transpose(1, 2).float().contiguous()


def sample_network_scenarios(network: Network, n: int, periods: int, *, demand_seed: int,
                             inventory_seed: int) -> NetworkScenarios:
    """``n`` scenarios of ``periods`` periods: correlated demand, and store inventories U[0, 1]·mean per slot of
    the store's own lead time (upstream locations start empty)."""
    check_int("n", n, minimum=1)
    check_int("periods", periods, minimum=1)
    demand = sample_network_demand(network, n, periods, torch.Generator().manual_seed(demand_seed))
    inventory = torch.zeros(n, network.n_locations, network.n_slots)
    if network.initial_inventory > 0:
        gen = torch.Generator().manual_seed(inventory_seed)
        start = torch.rand(n, network.n_stores, network.n_slots, generator=gen, dtype=torch.float64).float()
        lead_in = torch.zeros(network.n_locations, dtype=torch.long)
        lead_in.scatter_reduce_(0, network.tensor("receiver"), network.tensor("lead_time"), "amax")
        own = (torch.arange(network.n_slots) < lead_in[network.tensor("store_index")][:, None]).float()
        inventory[:, network.tensor("store_index")] = start * own * network.initial_inventory * network.mean_demand[:, None]
    return NetworkScenarios(network, demand, inventory)


def make_network_splits(network: Network, protocol, seeds=None):
    """Train / dev / test scenarios of ``network`` with the protocol and seeds of :mod:`hybridrl.scenarios`
    (train and dev from one draw, test from its own seeds)."""
    from .scenarios import Seeds, Splits

    seeds = seeds or Seeds()
    both = sample_network_scenarios(network, protocol.n_dev + protocol.n_train,
                                    max(protocol.train_periods, protocol.dev_periods), demand_seed=seeds.demand,
                                    inventory_seed=seeds.initial_inventory)
    dev = both[: protocol.n_dev].with_periods(protocol.dev_periods)
    train = both[protocol.n_dev:].with_periods(protocol.train_periods)
    test = sample_network_scenarios(network, protocol.n_test, protocol.test_periods, demand_seed=seeds.test_demand,
                                    inventory_seed=seeds.test_initial_inventory)
    return Splits(train, dev, test)


# ----------------------------------------------------------------------------------------------------------------
# One period
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class NetworkObservation:
    """What a network policy sees: the inventory vectors ``[B, N, n]``, the network (static data) and the
    period; with real-data scenarios also the ``H`` demands before this period ``past_demand [B, S, H]``, this
    period's calendar features ``calendar [B, F]`` and the scenarios' demand scale ``mean_demand [B, S]``
    (``None`` where the scenarios have none; :meth:`demand_scale` falls back on the network's store means).
    Never the demand of this period or later (spec R8)."""

    inventory: Tensor
    network: Network
    period: int
    past_demand: Tensor | None = None
    calendar: Tensor | None = None
    mean_demand: Tensor | None = None

    def demand_scale(self) -> Tensor:
        """Mean demand per store ``[B, S]``: the scenarios' ``mean_demand``, else the network's store means."""
        if self.mean_demand is not None:
            return self.mean_demand.to(self.inventory.dtype)
        mean = self.network.tensor("store_mean", self.inventory)
        return mean.expand(self.inventory.shape[0], -1)

    @property
    def on_hand(self) -> Tensor:
        return self.inventory[..., 0]

    @property
    def inventory_position(self) -> Tensor:
        """On hand plus in transit, per location ``[B, N]``."""
        return self.inventory.sum(-1)

    @property
    def echelon_position(self) -> Tensor:
        """Echelon inventory position per location ``[B, N]``: its own position plus every downstream one's."""
        return self.inventory_position @ self.network.tensor("descendants", self.inventory).T


@dataclass
class NetworkStep:
    inventory: Tensor  # [B, N, n], next period's vectors
    location_cost: Tensor  # [B, N], this period's cost per location
    shipped: Tensor  # [B, E], what each edge actually carries (outside edges: the orders)
    shortage: Tensor  # [B, S], demand not met from stock
    sold: Tensor  # [B, S], demand met from stock this period


CENTER_FLOOR = 1e-6
"""The equal share added to a transshipment center's requests, so it ships its stock even when nothing is asked."""


def feasible_flows(network: Network, on_hand: Tensor, requests: Tensor) -> Tensor:
    """Requests ``[B, E]`` -> shipments: rationed proportionally at every supplier so that nobody ships more than
    its on-hand (a center ships all of it); outside orders pass unchanged (module docstring, event 2)."""
    supplier = network.tensor("supplier", requests)
    internal = network.tensor("internal_edges", requests)
    sup = supplier[internal]
    center = ~network.tensor("holds_stock", requests)[sup]
    asked = requests[:, internal] + CENTER_FLOOR * center.to(requests.dtype)
    total = torch.zeros_like(on_hand).index_add(1, sup, asked)
    available = on_hand.clamp_min(0.0)
    holds = network.tensor("holds_stock", on_hand)
    # min(1, a/t) for locations that hold stock, a/t (ship everything) for centers; safe at t = 0
    denominator = torch.where(holds, torch.maximum(available, total), total).clamp_min(1e-12)
    scale = available / denominator
    return requests.index_copy(1, internal, asked * scale[:, sup])


def network_step(network: Network, inventory: Tensor, requests: Tensor, demand: Tensor) -> NetworkStep:
    """One period for a batch (module docstring, events 2-5): ``inventory [B, N, n]``, ``requests [B, E] ≥ 0``,
    store ``demand [B, S]``."""
    B, N, n = inventory.shape
    on_hand = inventory[..., 0]
    flows = feasible_flows(network, on_hand, requests)
    internal = network.tensor("internal_edges", inventory)
    shipped_out = torch.zeros_like(on_hand).index_add(1, network.tensor("supplier", inventory)[internal],
                                                      flows[:, internal])
    post = on_hand - shipped_out
    # stores
    stores = network.tensor("store_index", inventory)
    x = on_hand[:, stores]
    surplus = x - demand
    excess = torch.relu(surplus)
    shortage = excess - surplus
    if network.profit:  # h (x-d)^+ - p min(x, d), with min(x, d) = d - (d-x)^+
        store_cost = torch.addcmul(network.tensor("holding_cost", x)[stores] * excess,
                                   network.tensor("underage_cost", x), shortage - demand)
    else:
        store_cost = network.tensor("underage_cost", x) * shortage + network.tensor("holding_cost", x)[stores] * excess
    post = post.index_copy(1, stores, excess if network.lost_sales else surplus)
    # every location: holding on post-shipment on-hand (stores: the store cost instead) + procurement
    is_store = network.tensor("is_store", inventory)
    holding = network.tensor("holding_cost", on_hand) * torch.relu(post)
    cost = torch.where(is_store, torch.zeros_like(holding), holding).index_add(1, stores, store_cost)
    cost = cost.index_add(1, network.tensor("receiver", inventory), flows * network.tensor("unit_cost", flows))
    # advance: shift every vector, then add each shipment to its receiver's slot L - 1
    padded = F.pad(inventory, (0, 1))
    shifted = torch.cat([(post + padded[..., 1]).unsqueeze(-1), padded[..., 2:]], dim=-1)
    following = shifted.reshape(B, N * n).index_add(1, network.tensor("arrival", inventory), flows)
    return NetworkStep(following.view(B, N, n), cost, flows, shortage, torch.minimum(x.clamp_min(0), demand))


def _network_period(policy, obs: NetworkObservation, demand: Tensor, round_orders: bool
                    ) -> tuple[Tensor, NetworkStep, Tensor]:
    """One period of a network rollout: decide, simulate, share the upstream cost among the stores. Kept apart so
    that it can be compiled as one unit (:func:`_compiled_network_period`). The observation is built outside:
    compiled, a policy that never reads ``obs.period`` then needs no recompilation from one period to the next."""
    network, inventory = obs.network, obs.inventory
    requests = policy(obs)
    if round_orders:
        requests = torch.round(requests)
    result = network_step(network, inventory, requests, demand)
    upstream = result.location_cost.masked_fill(network.tensor("is_store", inventory), 0.0).sum(-1, keepdim=True)
    cost = result.location_cost[:, network.tensor("store_index", inventory)] + upstream / network.n_stores
    return requests, result, cost


_compiled_network_unit = None


def _compiled_network_period():
    """:func:`_network_period` compiled by ``torch.compile`` (built on first use). One compilation per policy
    architecture, network and batch size, kept for the life of the process (and, by PyTorch, on disk): a new
    policy of the same architecture, e.g. the next training seed, reuses it."""
    global _compiled_network_unit
    if _compiled_network_unit is None:
        import torch._dynamo

        # every (architecture, network, batch size, grad mode) is a recompilation of this one function: a grid runs
        # dozens in one process, past PyTorch's default limit of 8, after which it would silently run eagerly
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
        _compiled_network_unit = torch.compile(_network_period)
    return _compiled_network_unit


def network_rollout(policy, scenarios: NetworkScenarios, periods: int | None = None, *, round_orders: bool = False,
                    record: bool = False, compile: bool = False, check_orders: bool = True) -> Trajectory:
    """Roll ``policy`` out on network scenarios; the :func:`hybridrl.inventory.rollout` of networks.

    ``Trajectory.cost`` is ``[B, S, T]`` (module docstring: store cost plus an equal share of the upstream cost).
    With ``record``, ``inventory`` is ``[B, N, T, n]``, ``orders`` the feasible flows ``[B, E, T]``, ``sales``
    and ``lost`` are per store, and ``location_cost`` ``[B, N, T]`` is added. With ``compile`` each period
    (policy, simulator and cost) runs as one ``torch.compile``d unit: the same numbers up to floating-point
    rounding, and on a CPU a fifth to two fifths less time per training step once compiled (the first call with a new
    policy architecture, network or batch size compiles, for 15-30 s on a 2-core CPU, a few seconds when
    PyTorch's on-disk cache has it). Requests must be non-negative (checked once, after the rollout;
    ``check_orders=False`` leaves the check to the caller, as in :func:`hybridrl.inventory.rollout`).

    Real-data scenarios (module docstring) also fill the observation's ``past_demand`` (the ``H`` demands before
    period ``t``), ``calendar`` (period ``t``'s features) and ``mean_demand``.
    """
    network = scenarios.setting
    periods = scenarios.periods if periods is None else periods
    if periods > scenarios.periods:
        raise ValueError(f"periods={periods} exceeds the {scenarios.periods} periods of demand in the scenarios")
    inventory = scenarios.initial_inventory
    past = observed_past(scenarios)
    calendar, mean = getattr(scenarios, "calendar", None), getattr(scenarios, "mean_demand", None)
    one_period = _compiled_network_period() if compile else _network_period
    costs, records, lowest = [], [], None
    for t in range(periods):
        obs = NetworkObservation(inventory, network, t, past(t), None if calendar is None else calendar[:, t], mean)
        # (the first period eagerly: its inventory carries no gradient, so compiled it would be a second graph)
        requests, result, cost = (one_period if t else _network_period)(policy, obs, scenarios.demand[..., t],
                                                                        round_orders)
        lowest = requests.detach().amin() if lowest is None else torch.minimum(lowest, requests.detach().amin())
        costs.append(cost)
        if record:
            lost = result.shortage if network.lost_sales else torch.zeros_like(result.shortage)
            records.append((inventory, result.shipped, result.sold, lost, result.location_cost))
        inventory = result.inventory
    if check_orders and lowest is not None:
        check_lowest_order(lowest, "requested a negative quantity", "requests")
    trajectory = Trajectory(cost=torch.stack(costs, dim=-1), lowest_order=lowest)
    recorded = policy.pop_record() if hasattr(policy, "pop_record") else None  # hybridrl.reinforce
    if recorded is not None:
        trajectory.log_prob, trajectory.value = recorded
    if record:
        inv, flows, sold, lost, location_cost = zip(*records)
        trajectory.inventory = torch.stack(inv, dim=2)
        trajectory.orders = torch.stack(flows, dim=-1)
        trajectory.sales = torch.stack(sold, dim=-1)
        trajectory.lost = torch.stack(lost, dim=-1)
        trajectory.final_inventory = inventory
        trajectory.location_cost = torch.stack(location_cost, dim=-1)
    return trajectory
