"""Real data on a network: 3 warehouses supplying the 21 Favorita stores, lost sales, profit (HDPO spec §4.8).

The network (:func:`real_data_network`)
---------------------------------------
Locations ``0, 1, 2`` are the warehouses ``W0, W1, W2``; location ``3 + s`` is store ``s`` of the data (the
second axis of :meth:`hybridrl.favorita.FavoritaData.demand`, ``s = 0 .. 20``).

Known from the spec (§4.8): warehouse holding costs ``h_w = (0.3, 0.4, 0.2)``, outside lead time ``L_w = 3``,
per-unit procurement cost ``(0.5, 1.5, 0.7)``; stores with ``h ~ U[0.7, 1.3]`` and margin ``p ~ U[6.3, 11.7]``
drawn per store; lost sales; the profit objective ``p·min(x, d) − h·(x − d)^+`` (simulated as its negative,
:class:`hybridrl.networks.Network` ``objective="profit"``); store–warehouse lead times 5–6 from W0, 1–2 from
W1 and 4–6 from W2; "not every store is linked to every warehouse".

**Unknown in the spec, and our choices** (spec §10.3, §10.6: the reference's adjacency and lead-time matrices
are not published):

* *Adjacency.* Every store is linked to exactly **2 of the 3 warehouses**, the third chosen uniformly at random
  per store. This satisfies "not every store is linked to every warehouse", gives every store a choice of
  supplier (so the network is a real multi-sourcing problem) and, with 21 stores, leaves every warehouse with
  stores to supply (the network check raises otherwise).
* *Edge lead times.* Uniform integers on the stated ranges, drawn per (warehouse, store) pair whether or not the
  edge exists (so a pair's lead time does not depend on the adjacency draw).
* *Draws.* One ``numpy.random.default_rng(seed)``, in this order: ``h`` for the 21 stores
  (``uniform(0.7, 1.3, 21)``), ``p`` for the 21 stores (``uniform(6.3, 11.7, 21)``), the excluded warehouse per
  store (``integers(0, 3, 21)``), then the lead times from W0 (``integers(5, 7, 21)``), W1 (``integers(1, 3,
  21)``) and W2 (``integers(4, 7, 21)``). The reference's own draws are unknown, so ours are our own; seed 0
  is the default instance.
* *Costs per store, not per item.* The spec draws ``h`` and ``p`` "per store"; items are the scenarios
  (below), so every item at a store has that store's economics, and the costs live in the network.
* *Start.* Every location starts empty (spec §1.3: real data starts at 0); stock in transit is charged to
  nobody and upstream holding is charged on on-hand after shipping (as for every network,
  :mod:`hybridrl.networks`).
* *Store means.* :class:`~hybridrl.networks.Location` requires a positive mean per store, but the demand scale
  of real data is per (item, store) and lives in the scenarios (``NetworkScenarios.mean_demand``, below), which
  :class:`~hybridrl.network_policies.NetworkDataDriven`, :class:`~hybridrl.network_policies.ScaledEchelonStock`
  and :class:`~hybridrl.network_policies.NetworkJustInTime` use. The network's own store means are therefore
  a **placeholder of 1.0** (std 0) unless ``store_means`` is given: :func:`network_store_means` gives each
  store's training-window mean over items, which puts the policies that read the network's means (the
  synthetic-data policies of :mod:`hybridrl.network_policies`) on the right order of magnitude. The means only
  enter the network's ``repr`` (the result-cache key) and those policies; they never enter the simulation.

Scenarios (:func:`network_splits`)
----------------------------------
**One scenario per item** (288): item ``i``'s weekly demand at the 21 stores, ``[items, 21, T]``, over the
simulated weeks of a :class:`~hybridrl.favorita.Window` (spec §4.7 windows: train ``(0, 111)``, dev
``(88, 141)``, test ``(118, 171)``, each with 16 weeks of history; returns clipped to 0, spec R6). Each scenario
also holds the window's first 16 weeks as ``demand_history`` (policies see the 16 demands before each period),
``calendar`` = days_from_christmas of each simulated week ``[N, T, 1]`` (raw, −181 … 182; the data-driven net
divides it by 182) and ``mean_demand`` = each (item, store)'s mean weekly demand over the **training window**
(history included), at least 1 unit (spec R11), the same in every split, so that no split leaks its own
demand level. The first 16 simulated periods of every split are warm-up (:data:`hybridrl.favorita.WARMUP`):
in the training loss, not in reported profits. A training window that overlaps the test window raises. The
spec's train batch is 72 items (4 minibatches per epoch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ._config import check_int
from .favorita import DEV, TEST, TRAIN, FavoritaData, Window, first, training_mean
from .networks import Edge, Location, Network, NetworkScenarios
from .scenarios import Splits

WAREHOUSE_HOLDING = (0.3, 0.4, 0.2)
WAREHOUSE_LEAD_TIME = 3
PROCUREMENT_COST = (0.5, 1.5, 0.7)
"""Per-unit cost of each warehouse's outside orders (spec §4.8 ``edge_cost``)."""
EDGE_LEAD_TIMES = ((5, 6), (1, 2), (4, 6))
"""Inclusive ranges of the warehouse -> store lead times, per warehouse (spec §4.8)."""
STORE_HOLDING = (0.7, 1.3)
STORE_MARGIN = (6.3, 11.7)
N_STORES = 21
LINKS_PER_STORE = 2
"""Each store is linked to this many of the 3 warehouses (our choice; module docstring)."""


def draw_real_data_network(seed: int = 0) -> dict[str, np.ndarray]:
    """The random parts of :func:`real_data_network` (module docstring, "Draws"): store ``holding`` and
    ``margin`` ``[21]``, ``adjacency`` bool ``[3, 21]`` and ``lead_time`` int ``[3, 21]`` (0 where no edge)."""
    check_int("seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    holding = rng.uniform(*STORE_HOLDING, N_STORES)
    margin = rng.uniform(*STORE_MARGIN, N_STORES)
    excluded = rng.integers(0, len(WAREHOUSE_HOLDING), N_STORES)
    lead = np.stack([rng.integers(low, high + 1, N_STORES) for low, high in EDGE_LEAD_TIMES])
    adjacency = np.arange(len(WAREHOUSE_HOLDING))[:, None] != excluded[None, :]
    return dict(holding=holding, margin=margin, adjacency=adjacency, lead_time=np.where(adjacency, lead, 0))


def real_data_network(seed: int = 0, *, store_means: Sequence[float] | None = None) -> Network:
    """The 3-warehouse, 21-store real-data network of spec §4.8 (module docstring): warehouses ``W0..W2`` are
    locations 0-2, data store ``s`` is location ``3 + s``; edges: the 3 outside edges (lead time 3, procurement
    costs 0.5, 1.5, 0.7), then each store's 2 warehouse edges in store order. ``store_means`` (21 positive
    numbers, e.g. :func:`network_store_means`) replaces the placeholder store means of 1.0."""
    draws = draw_real_data_network(seed)
    if store_means is None:
        means = np.ones(N_STORES)
    else:
        means = np.asarray(store_means, dtype=np.float64).reshape(-1)
        if means.shape != (N_STORES,) or not np.all(np.isfinite(means)) or not np.all(means > 0):
            raise ValueError(f"store_means must be {N_STORES} positive numbers, got {store_means!r}")
    n_w = len(WAREHOUSE_HOLDING)
    locations = tuple(Location(f"W{w}", WAREHOUSE_HOLDING[w]) for w in range(n_w)) + tuple(
        Location(f"store {s}", float(draws["holding"][s]), store=True, underage_cost=float(draws["margin"][s]),
                 mean=float(means[s]), std=0.0) for s in range(N_STORES))
    edges = tuple(Edge(None, w, WAREHOUSE_LEAD_TIME, unit_cost=PROCUREMENT_COST[w]) for w in range(n_w)) + tuple(
        Edge(w, n_w + s, int(draws["lead_time"][w, s])) for s in range(N_STORES) for w in range(n_w)
        if draws["adjacency"][w, s])
    return Network(f"real data, 3 warehouses, {N_STORES} stores (seed {seed})", locations, edges,
                   unmet_demand="lost", initial_inventory=0.0, objective="profit")


def _items(data: FavoritaData, n_items: int | None) -> np.ndarray:
    return first(data.demand(), n_items, "n_items", "items")


def item_means(demand: np.ndarray, train: Window = TRAIN) -> np.ndarray:
    """Each (item, store)'s mean weekly demand over the training window, history included, at least 1
    (:func:`hybridrl.favorita.training_mean`): ``[items, stores]``."""
    items, stores, weeks = demand.shape
    return training_mean(demand.reshape(items * stores, weeks), train).reshape(items, stores)


def network_store_means(data: FavoritaData, *, n_items: int | None = None, train: Window = TRAIN) -> list[float]:
    """Each store's mean over items of the (item, store) training means (:func:`item_means`): the optional
    ``store_means`` of :func:`real_data_network`."""
    return [float(v) for v in item_means(_items(data, n_items), train).mean(axis=0)]


def network_window(demand: np.ndarray, window: Window, network: Network, *, mean_demand: np.ndarray,
                   calendar: np.ndarray) -> NetworkScenarios:
    """Scenarios of one window for ``demand [items, stores, weeks]`` (one scenario per item) with the weekly
    ``calendar [weeks, F]``. Only weeks ``window.start .. window.end - 1`` are read."""
    if window.end > demand.shape[2]:
        raise ValueError(f"window {window} needs {window.end} weeks, the data have {demand.shape[2]}")
    n, h = demand.shape[0], window.history
    cut = torch.as_tensor(demand[:, :, window.start:window.end], dtype=torch.float32)
    features = torch.as_tensor(calendar[window.start + h:window.end], dtype=torch.float32)
    return NetworkScenarios(
        network,
        demand=cut[..., h:].contiguous(),
        initial_inventory=torch.zeros(n, network.n_locations, network.n_slots),
        demand_history=cut[..., :h].contiguous(),
        calendar=features.unsqueeze(0).expand(n, -1, -1).contiguous(),
        mean_demand=torch.as_tensor(mean_demand, dtype=torch.float32),
    )


def network_splits(data: FavoritaData, network: Network, *, n_items: int | None = None, train: Window = TRAIN,
                   dev: Window = DEV, test: Window = TEST) -> Splits:
    """Train / dev / test scenarios of the real-data network (module docstring, "Scenarios"): one scenario per
    item, ``n_items`` keeps the first items (smoke tests)."""
    demand = _items(data, n_items)
    if demand.shape[1] != network.n_stores:
        raise ValueError(f"the data have {demand.shape[1]} stores, the network {network.n_stores}")
    if not train.end <= test.start:
        raise ValueError(f"the training window {train} overlaps the test window {test}")
    mean = item_means(demand, train)
    calendar = data.calendar("days_from_christmas")[:, None]
    make = lambda w: network_window(demand, w, network, mean_demand=mean, calendar=calendar)  # noqa: E731
    return Splits(make(train), make(dev), make(test))
