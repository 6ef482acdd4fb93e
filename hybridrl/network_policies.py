"""Policies for inventory networks (HDPO spec §6.2-§6.3): ``nn.Module``s mapping a
:class:`~hybridrl.networks.NetworkObservation` to non-negative requests ``[B, E]``, one per supply edge.

The simulator makes any request feasible (proportional rationing at each supplier, :mod:`hybridrl.networks`),
so a policy only has to say how much each edge *asks* for; none of them needs its own allocation map.

* :class:`EchelonBaseStock` — order up to a level on the echelon inventory position; optimal for the serial
  system (Clark-Scarf), and with proportional rationing the standard heuristic for one warehouse and many stores.
* :class:`NetworkMLP` — the vanilla policy: one MLP of every location's inventory vector, one output per edge.
* :class:`SymmetryAware` — weight sharing across sibling stores plus a summary of the whole state (spec §6.2,
  "symmetry-aware net"): a context network reads the whole state; one store head, **shared by all stores**, maps
  a store's own inventory, its parameters and the context to its request; upstream locations have their own
  heads. The number of its parameters does not depend on the number of stores.

Every learned policy works in units of demand: inventories are divided by the mean demand flowing through their
location, and requests are that mean times a softplus, so one learning rate suits networks of any size.
Parameters carry the leading member dimension of size 1 that :func:`hybridrl.train.fit` expects.

For real data on a network (:mod:`hybridrl.favorita_network`; the demand scale is per scenario, read from
``NetworkObservation.demand_scale()``):

* :class:`NetworkDataDriven` — the data-driven net ("HDPO end-to-end", spec §6.2) on inventories, past demands and
  the calendar;
* :class:`ScaledEchelonStock` — an admissible echelon heuristic with levels in weeks of mean demand;
* :class:`NetworkJustInTime` — the non-admissible perfect-foresight reference (spec §6.5).

The last two need a *two-level* network (warehouses buying from outside, stores supplied by warehouses), in
which every store is assigned its **fastest** warehouse (minimum lead time; ties go to the warehouse whose edge
comes first in the network's edge order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._config import check_int
from .networks import Network, NetworkObservation
from .policies import MemberMLP, subnetwork_seeds


def location_demand(network: Network) -> Tensor:
    """Mean demand per period flowing through each location ``[N]``: the sum over the stores it (eventually)
    supplies. For a location with several suppliers this counts the stores' demand once per supplier."""
    store_mean = torch.zeros(network.n_locations).index_copy(0, network.tensor("store_index"), network.mean_demand)
    return network.tensor("descendants") @ store_mean


class EchelonBaseStock(nn.Module):
    """Echelon base stock (spec §6.3): the request on an edge into location ``k`` is ``max(B_k − IP^e_k, 0)``,
    split equally among ``k``'s suppliers, with ``IP^e_k`` the echelon inventory position of ``k`` (its own
    position plus every downstream location's) and levels built so that they can never be inconsistent:
    ``B_k = softplus(y_k) + Σ_{children c} B_c`` (for a chain: the partial sums of spec §6.3). The simulator
    rations a supplier's stock proportionally, which for one warehouse and many stores is the usual
    proportional-allocation heuristic. ``levels`` (optional) sets the initial levels ``B`` directly.
    """

    def __init__(self, network: Network, levels: Sequence[float] | None = None):
        super().__init__()
        self.network = network
        N = network.n_locations
        children = torch.zeros(N, N)
        for e in network.edges:
            if e.supplier is not None:
                children[e.supplier, e.receiver] = 1.0
        self.register_buffer("child_matrix", children)
        # B = y + children @ B  ->  B = (I - children)^{-1} y
        self.register_buffer("to_levels", torch.linalg.inv(torch.eye(N) - children))
        if levels is None:
            lead_in = torch.zeros(N)
            for e in network.edges:
                lead_in[e.receiver] = max(lead_in[e.receiver], e.lead_time)
            increments = location_demand(network) * (lead_in + 1)
        else:
            levels = torch.as_tensor(levels, dtype=torch.float32)
            if levels.shape != (N,):
                raise ValueError(f"levels must have one entry per location ({N}), got shape {tuple(levels.shape)}")
            increments = levels - children @ levels
            if bool((increments <= 0).any()):
                raise ValueError(f"levels must exceed the sum of their children's levels, got {levels.tolist()}")
        self.raw = nn.Parameter((increments + torch.log(-torch.expm1(-increments))).unsqueeze(0))  # [1, N]
        self.register_buffer("in_degree", torch.zeros(N).index_add(0, network.tensor("receiver"),
                                                                   torch.ones(network.n_edges)))

    @property
    def levels(self) -> Tensor:
        """Echelon base-stock levels ``[N]``."""
        return self.to_levels @ F.softplus(self.raw[0])

    def forward(self, obs: NetworkObservation) -> Tensor:
        shortfall = torch.relu(self.levels - obs.echelon_position)  # [B, N]
        receiver = self.network.tensor("receiver", shortfall)
        return shortfall[:, receiver] / self.in_degree[receiver]


class NetworkMLP(nn.Module):
    """The vanilla network policy (spec §6.2): an ELU MLP of all inventory vectors (each divided by its
    location's demand), one output ``z_e`` per edge, mapped as the reference maps it:

    * the internal edges out of a supplier ``k`` share its on-hand by a **softmax** over their logits, plus a
      "keep" option of weight ``e^0 = 1`` when ``k`` holds stock: edge ``e`` asks for
      ``e^{z_e} / (Σ_{e' out of k} e^{z_e'} + 1) · on-hand_k``, which never exceeds what ``k`` has. A transshipment
      center, which cannot hold stock, has no keep option and ships everything. With one receiver this is
      ``sigmoid(z_e)·on-hand_k``, the serial system's map, so one mechanism covers every network;
    * an outside edge asks for ``sigmoid(z_e)·U_k``, with ``U_k`` four times the demand through its receiver (the
      spec's outside-order bound ``U = 4·Σ mean``).

    Bounded requests keep a freshly initialised network from flooding the system. Its size grows with the
    network."""

    def __init__(self, network: Network, hidden: Sequence[int] = (256, 256, 256), init_seed: int = 0):
        super().__init__()
        self.network = network
        self.register_buffer("scale", location_demand(network))
        inputs = network.n_locations * network.n_slots
        self.mlp = MemberMLP([inputs, *hidden, network.n_edges], 1, [init_seed])
        supplier, receiver = network.tensor("supplier"), network.tensor("receiver")
        self.register_buffer("bound", 4.0 * location_demand(network)[receiver])
        # the edges' structure, derived from the network (not part of the state)
        internal_edges = torch.nonzero(supplier >= 0).flatten()
        supplies = torch.zeros(network.n_locations, dtype=torch.bool).index_fill(0, supplier[internal_edges], True)
        for name, value in dict(internal_edges=internal_edges, outside_edges=torch.nonzero(supplier < 0).flatten(),
                                internal_source=supplier[internal_edges], supplies=supplies,
                                keeps=supplies & network.tensor("holds_stock")).items():  # keeps: a keep option
            self.register_buffer(name, value, persistent=False)

    def forward(self, obs: NetworkObservation) -> Tensor:
        x = (obs.inventory / self.scale[:, None]).flatten(1)
        z = self.mlp(x.unsqueeze(0))[0]  # [B, E]
        out = torch.zeros_like(z).index_copy(1, self.outside_edges,
                                             torch.sigmoid(z[:, self.outside_edges]) * self.bound[self.outside_edges])
        if not len(self.internal_edges):
            return out
        # softmax over each supplier's out-edges (and keep, logit 0), shifted by the supplier's largest logit
        logits, src = z[:, self.internal_edges], self.internal_source
        B, N = z.shape[0], self.network.n_locations
        with torch.no_grad():
            top = torch.full((B, N), -math.inf, dtype=z.dtype, device=z.device).scatter_reduce(
                1, src.expand(B, -1), logits, "amax")
            top = torch.where(self.keeps, top.clamp_min(0.0), torch.where(self.supplies, top, torch.zeros_like(top)))
        weight = torch.exp(logits - top[:, src])
        total = torch.zeros_like(top).index_add(1, src, weight) + self.keeps * torch.exp(-top)
        on_hand = obs.on_hand.clamp_min(0.0)[:, src]
        return out.index_copy(1, self.internal_edges, weight / total[:, src] * on_hand)


class SymmetryAware(nn.Module):
    """Shared store weights plus a state summary (spec §6.2, v2's symmetry-aware net; module docstring).

    * context ``c = sigmoid(MLP(all inventory vectors / demand))``: hidden [256], 256 numbers;
    * an edge into a **store**: one store head shared by all stores (hidden [32, 32]) on ``[store's inventory
      vector / μ_s, μ_s, σ_s/μ_s, p_s, h_s, L_e, c]`` -> ``μ_s · softplus(z)``;
    * an edge into any other location: that location's own head (hidden [16, 16]) on ``[its inventory vector /
      μ_k, c]`` -> ``sigmoid(z)·U_k``, with ``U_k`` four times the demand through it (the outside-order bound).

    The store requests are rationed to the warehouse's on-hand proportionally by the simulator. Two documented
    departures from the spec's description: the store head's output is in units of the store's mean demand
    (``μ_s·softplus``, as every network here is scaled), and it also sees ``h_s``, which the spec's input list
    leaves out (the stores' holding costs differ, so the shared head needs it to tell them apart).
    """

    def __init__(self, network: Network, context: int = 256, context_hidden: Sequence[int] = (256,),
                 store_hidden: Sequence[int] = (32, 32), upstream_hidden: Sequence[int] = (16, 16), init_seed: int = 0):
        super().__init__()
        self.network = network
        n = network.n_slots
        check_int("context", context, minimum=1)
        self.register_buffer("scale", location_demand(network))
        self.register_buffer("bound", 4.0 * location_demand(network))
        receiver = network.tensor("receiver")
        is_store = network.tensor("is_store")
        self.register_buffer("store_edges", torch.nonzero(is_store[receiver]).flatten())
        self.register_buffer("upstream_edges", torch.nonzero(~is_store[receiver]).flatten())
        # their receivers as Python numbers: the forward pass reads them without asking the device
        self.upstream_receivers = receiver[self.upstream_edges].tolist()
        seeds = subnetwork_seeds(init_seed, 2 + len(self.upstream_receivers))
        self.context = MemberMLP([network.n_locations * n, *context_hidden, context], 1, [seeds[0]])
        self.store_head = MemberMLP([n + 5 + context, *store_hidden, 1], 1, [seeds[1]])
        self.upstream_heads = nn.ModuleList(
            MemberMLP([n + context, *upstream_hidden, 1], 1, [seed]) for seed in seeds[2:])
        stores = network.tensor("store_index")
        position = torch.full((network.n_locations,), -1, dtype=torch.long).index_copy(
            0, stores, torch.arange(network.n_stores))
        s_of_edge = position[receiver[self.store_edges]]
        static = torch.stack([network.mean_demand[s_of_edge] / 10,
                              network.tensor("store_std")[s_of_edge] / network.mean_demand[s_of_edge],
                              network.tensor("underage_cost")[s_of_edge] / 10,
                              network.tensor("holding_cost")[stores][s_of_edge],
                              network.tensor("lead_time")[self.store_edges].float() / n], dim=-1)
        self.register_buffer("store_static", static)  # [E_s, 5]

    def forward(self, obs: NetworkObservation) -> Tensor:
        B = obs.inventory.shape[0]
        x = obs.inventory / self.scale[:, None]  # [B, N, n]
        c = torch.sigmoid(self.context(x.flatten(1).unsqueeze(0))[0])  # [B, C]
        receiver = self.network.tensor("receiver", x)
        out = torch.zeros(B, self.network.n_edges, dtype=x.dtype, device=x.device)
        if len(self.store_edges):
            r = receiver[self.store_edges]
            E = len(self.store_edges)
            features = torch.cat([x[:, r], self.store_static.expand(B, E, -1),
                                  c.unsqueeze(1).expand(B, E, -1)], dim=-1)  # [B, E_s, F]
            z = self.store_head(features.reshape(1, B * E, -1))[0].view(B, E)
            out = out.index_copy(1, self.store_edges, self.scale[r] * F.softplus(z))
        for i, (head, k) in enumerate(zip(self.upstream_heads, self.upstream_receivers)):
            z = head(torch.cat([x[:, k], c], dim=-1).unsqueeze(0))[0, :, 0]
            out = out.index_copy(1, self.upstream_edges[i: i + 1], (self.bound[k] * torch.sigmoid(z)).unsqueeze(1))
        return out


class GraphNetwork(nn.Module):
    """The message-passing graph network of spec §6.2 ("GNN (v3)"), written with vectorised segment sums
    (``index_add``; spec R14): no Python loop over nodes or edges in :meth:`forward`, only over the ``K``
    message-passing steps.

    **Graph** (index tensors built once, as non-persistent buffers, so that a ``state_dict`` holds weights only
    and loads into a ``GraphNetwork`` of any network with the same number of inventory slots):

    * nodes: the locations; a *virtual* endpoint (index ``N``, a zero embedding) stands for the outside supplier
      and for the customers;
    * directed edges, in this order: the network's supply edges in its own edge order (internal edges
      supplier -> receiver, outside edges virtual -> receiver), then a "keep" self-loop on every location that
      supplies others and holds stock (none on a transshipment center, ``holds_stock=False``), then a customer
      edge store -> virtual for every store (this order makes the output edges one slice).

    **Features** (all in units of demand, :func:`location_demand`): a node reads its inventory vector divided by
    its demand scale (zero-padded to ``slots``) and ``[h, p/10, mean/10, std/mean, store, upstream, center]``
    (the store entries zero elsewhere; "upstream" = a non-store that holds stock, "center" = one that does not);
    an edge reads ``[lead time / slots, unit cost, internal, outside, customer, keep]`` (lead time and cost 0 on
    customer and keep edges).

    **Maps**: initial node map, initial edge map (on ``[source, target, edge features]`` with the initial node
    embeddings, spec: "edge features: [source embedding, target embedding, lead time]"), node update and edge
    update are MLPs ``[hidden, hidden] -> hidden`` with ELU output; the same two update maps serve every step.
    ``K = steps`` message-passing steps; default ``depth − 1`` with ``depth`` the number of locations on the
    longest supply chain — 1 for warehouse–store networks and 3 for the 4-stage serial system, the values of
    spec §6.2. Each step: per node, the incoming and the outgoing edge embeddings are summed separately and
    each sum is divided by ``sqrt(degree)`` (all incident edges, virtual and keep edges included; a self-loop
    counts once); ``node ← node + node_update([node, in, out])``; ``edge ← edge + edge_update([edge, source,
    target])`` (virtual endpoints are zeros).

    **Output**: an MLP ``[hidden, hidden] -> 1`` on the final embedding of every supply edge and every keep
    edge, ``softplus``, times the demand scale of the edge's receiver (for a keep edge, of its location). The
    reference starts the output bias at 5.0 in units, about one period's mean demand (store means 2.5-7.5); our
    outputs are in units of the receiver's demand, where the default initialisation starts near softplus(0) ≈
    0.7 of it, so we keep the default rather than carry 5.0 over into a scale where it would mean five periods.
    Requests are returned in the network's edge order ``[B, E]``. With ``keep=True`` (the default, spec §6.2:
    "the internal out-edge flows plus the self-loop are scaled by min(1, on-hand/Σ)"), the internal requests
    out of each location with a keep edge are multiplied by ``min(1, on-hand / (Σ out-requests + keep))``, so
    the kept share is held back when stock is scarce; the simulator's own rationing then finds nothing left to
    ration. With ``keep=False`` the keep output is dropped and the simulator's proportional rationing
    (``min(1, on-hand / Σ out-requests)``) acts alone; the keep edge then stays in the graph as a carrier of
    messages only. A transshipment center has no keep edge and ships everything (the simulator).

    Shared weights make the policy permutation-equivariant over the stores and independent of the network's
    size; every parameter has the leading member dimension of size 1 of :func:`hybridrl.train.fit`. ``slots``
    (default: the network's) zero-pads the inventory vectors, so that one set of weights can serve networks with
    different longest lead times.

    **Memory.** A rollout keeps every period's activations for the backward pass, about a dozen ``[G, B, H]``
    tensors per period: about 180 MB per period for one warehouse with 50 stores (``G = 102``) and 1024
    scenarios (float32, ``H = 32``), so 9 GB over 50 periods. ``checkpoint=True`` keeps only each period's input and recomputes the policy in the backward
    pass (:func:`torch.utils.checkpoint.checkpoint`): the same gradients for about one more forward pass.
    """

    STATIC = 7  # node static features
    EDGE = 6  # edge features

    def __init__(self, network: Network, hidden: int = 32, steps: int | None = None, init_seed: int = 0, *,
                 keep: bool = True, slots: int | None = None, checkpoint: bool = False):
        super().__init__()
        self.network = network
        H = self.hidden = check_int("hidden", hidden, minimum=1)
        N, E, S = network.n_locations, network.n_edges, network.n_stores
        self.slots = network.n_slots if slots is None else check_int("slots", slots, minimum=network.n_slots)
        self.keep = bool(keep)
        self.checkpoint = bool(checkpoint)

        supplier, receiver = network.tensor("supplier"), network.tensor("receiver")
        internal = network.tensor("internal")
        is_store, holds = network.tensor("is_store"), network.tensor("holds_stock")
        stores = network.tensor("store_index")
        supplies = torch.zeros(N, dtype=torch.bool)
        supplies[supplier[internal]] = True
        keepers = torch.nonzero(supplies & holds).flatten()
        K = len(keepers)
        virtual = N
        src = torch.cat([torch.where(internal, supplier, torch.full_like(supplier, virtual)), keepers, stores])
        dst = torch.cat([receiver, keepers, torch.full((S,), virtual, dtype=torch.long)])
        G = E + K + S
        kind = torch.cat([torch.where(internal, 0, 1), torch.full((K,), 3), torch.full((S,), 2)])
        zeros = torch.zeros(K + S)
        edge_static = torch.cat([
            torch.stack([torch.cat([network.tensor("lead_time").float() / self.slots, zeros]),
                         torch.cat([network.tensor("unit_cost").float(), zeros])], dim=-1),
            F.one_hot(kind, 4).float()], dim=-1)  # [G, EDGE]
        # degree: every incident edge once (a self-loop is both incoming and outgoing, counted once)
        ones = torch.ones(G)
        degree = (torch.zeros(N + 1).index_add(0, src, ones).index_add(0, dst, ones)[:N]
                  .index_add(0, keepers, -torch.ones(K)))
        # node static features
        store_values = torch.zeros(N, 3)
        mean, std = network.mean_demand, network.tensor("store_std")
        store_values[stores] = torch.stack([network.tensor("underage_cost") / 10, mean / 10, std / mean], dim=-1)
        node_static = torch.cat([network.tensor("holding_cost").float().unsqueeze(-1), store_values,
                                 torch.stack([is_store, ~is_store & holds, ~holds], dim=-1).float()], dim=-1)
        # the longest supply chain, in locations (a DAG's longest path; capped at N for safety)
        level = torch.zeros(N, dtype=torch.long)
        sup, rec = supplier[internal], receiver[internal]
        for _ in range(N):
            level = level.scatter_reduce(0, rec, level[sup] + 1, "amax")
        self.depth = int(level.max()) + 1
        self.steps = max(1, self.depth - 1) if steps is None else check_int("steps", steps, minimum=0)

        for name, value in dict(
            scale=location_demand(network), node_static=node_static, edge_static=edge_static, src=src, dst=dst,
            inv_sqrt_degree=degree.rsqrt(), keepers=keepers, internal_edges=torch.nonzero(internal).flatten(),
            internal_supplier=sup, receiver=receiver,
            # the supplier of each edge, N for an outside edge (its rationing factor is 1)
            edge_supplier=torch.where(internal, supplier, torch.full_like(supplier, N)),
            is_keeper=torch.zeros(N, dtype=torch.bool).index_fill(0, keepers, True),
        ).items():
            self.register_buffer(name, value, persistent=False)
        self.n_graph_edges = G

        seeds = subnetwork_seeds(init_seed, 5)
        mlp = lambda fan_in, out, k: MemberMLP([fan_in, H, H, out], 1, [seeds[k]])  # noqa: E731
        self.node_init = mlp(self.slots + self.STATIC, H, 0)
        self.edge_init = mlp(2 * H + self.EDGE, H, 1)
        self.node_update = mlp(3 * H, H, 2)
        self.edge_update = mlp(3 * H, H, 3)
        self.output = mlp(H, 1, 4)

    # Internally every embedding is node- or edge-major, ``[N, B, H]`` and ``[G, B, H]``: gathers, segment sums
    # (``index_add`` along dim 0) and slices of edges then move contiguous blocks of ``B·H`` numbers.
    @staticmethod
    def _run(mlp: MemberMLP, x: Tensor, activation: bool = True) -> Tensor:
        """An MLP on the last dimension of ``x [R, B, F]`` (rows flattened into MemberMLP's batch)."""
        R, B, _ = x.shape
        y = mlp(x.reshape(1, R * B, -1))[0].view(R, B, -1)
        return F.elu(y, inplace=True) if activation else y

    @staticmethod
    def _rest(mlp: MemberMLP, first: Tensor) -> Tensor:
        """``elu(mlp(input))`` given the first layer's output ``first [R, B, H]`` (before its activation)."""
        R, B, _ = first.shape
        x = F.elu(first.reshape(1, R * B, -1), inplace=True)
        for i in range(1, len(mlp.weights)):
            x = F.elu(torch.baddbmm(mlp.biases[i], x, mlp.weights[i]), inplace=True)
        return x[0].view(R, B, -1)

    def _endpoint_terms(self, node: Tensor, weight: Tensor) -> Tensor:
        """``[source, target] @ weight`` per graph edge ``[G, B, H]`` from the node embeddings ``[N, B, H]``: each
        node is multiplied once and the products gathered (the virtual endpoint is a zero row), so the edge maps
        never build the concatenated ``[G, B, 2H]`` input. ``weight`` is ``[2H, H]``: source rows, then target
        rows."""
        H = self.hidden
        both = F.pad(node @ torch.cat([weight[:H], weight[H:]], dim=1), (0, 0, 0, 0, 0, 1))  # [N + 1, B, 2H]
        return both[self.src, :, :H] + both[self.dst, :, H:]

    def forward(self, obs: NetworkObservation) -> Tensor:
        B, N, n = obs.inventory.shape
        if N != self.network.n_locations:
            raise ValueError(f"observation has {N} locations, the policy's network {self.network.n_locations}")
        if self.checkpoint and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(self._requests, obs.inventory, use_reentrant=False)
        return self._requests(obs.inventory)

    def _requests(self, inventory: Tensor) -> Tensor:
        B, N, n = inventory.shape
        dtype = inventory.dtype
        H = self.hidden
        x = (inventory / self.scale.to(dtype)[:, None]).transpose(0, 1)  # [N, B, n]
        if self.slots > n:
            x = F.pad(x, (0, self.slots - n))
        node = self._run(self.node_init, torch.cat([x, self.node_static.to(dtype)[:, None].expand(N, B, -1)], -1))
        # initial edge map on [source, target, edge features]: its first layer split by input block
        w, b = self.edge_init.weights[0][0], self.edge_init.biases[0][0]
        edge = self._rest(self.edge_init, self._endpoint_terms(node, w[:2 * H])
                          + (self.edge_static.to(dtype) @ w[2 * H:] + b)[:, None])
        norm = self.inv_sqrt_degree.to(dtype)[:, None, None]
        w, b = self.edge_update.weights[0][0], self.edge_update.biases[0][0]
        for _ in range(self.steps):
            incoming = node.new_zeros(N + 1, B, H).index_add(0, self.dst, edge)[:N] * norm
            outgoing = node.new_zeros(N + 1, B, H).index_add(0, self.src, edge)[:N] * norm
            node = node + self._run(self.node_update, torch.cat([node, incoming, outgoing], dim=-1))
            # edge update on [edge, source, target], split likewise
            G = edge.shape[0]
            own = torch.addmm(b, edge.reshape(G * B, H), w[:H]).view(G, B, H)
            edge = edge + self._rest(self.edge_update, own + self._endpoint_terms(node, w[H:]))
        E = self.network.n_edges
        K = len(self.keepers) if self.keep else 0
        # supply edges, then keep edges: one contiguous slice
        flow = F.softplus(self._run(self.output, edge[:E + K], activation=False)[..., 0]).T  # [B, E + K]
        scale = self.scale.to(dtype)
        requests = flow[:, :E] * scale[self.receiver]
        if not K:
            return requests
        kept = flow[:, E:] * scale[self.keepers]  # [B, K]
        total = (torch.zeros_like(inventory[..., 0]).index_add(1, self.internal_supplier,
                                                               requests[:, self.internal_edges])
                 .index_add(1, self.keepers, kept))
        on_hand = inventory[..., 0].clamp_min(0.0)
        ratio = (on_hand / total.clamp_min(1e-12)).clamp_max(1.0)
        factor = torch.where(self.is_keeper, ratio, torch.ones_like(ratio))
        factor = F.pad(factor, (0, 1), value=1.0)  # outside edges: orders, never scaled
        return requests * factor[:, self.edge_supplier]


# ----------------------------------------------------------------------------------------------------------------
# Real data on a network
# ----------------------------------------------------------------------------------------------------------------
def two_level_structure(network: Network) -> dict[str, Tensor]:
    """The index tensors of a two-level network (module docstring): for every store its fastest in-edge
    ``store_edge [S]``, that edge's lead time ``store_lead [S]`` and supplier ``store_supplier [S]`` (a location
    index); for every supplying location (``warehouses [W]``, in location order) its single outside edge
    ``warehouse_edge [W]`` and lead time ``warehouse_lead [W]``; ``serves [W, S]`` (1 where the warehouse is the
    store's fastest). Raises a ``ValueError`` for any other network shape."""
    supplier, receiver = network.tensor("supplier"), network.tensor("receiver")
    lead, is_store = network.tensor("lead_time"), network.tensor("is_store")
    warehouses = torch.nonzero(~is_store).flatten()
    if len(warehouses) == 0:
        raise ValueError(f"{network.name!r}: a two-level network needs warehouses between the outside and the stores")
    for k in warehouses.tolist():
        into = [e for e in network.edges if e.receiver == k]
        if len(into) != 1 or into[0].supplier is not None:
            raise ValueError(f"{network.name!r}: warehouse {network.locations[k].name!r} must have exactly one edge, "
                             f"from the outside supplier (a two-level network), got {into}")
    if any(e.receiver in network.stores and e.supplier is None for e in network.edges):
        raise ValueError(f"{network.name!r}: in a two-level network stores are supplied by warehouses only")
    stores = network.tensor("store_index")
    # fastest in-edge per store: minimum lead time, ties to the first edge (key = lead · E + edge index)
    E = network.n_edges
    key = torch.where(is_store[receiver], lead * E + torch.arange(E), torch.full((E,), 2**62))
    best = torch.full((network.n_locations,), 2**62).scatter_reduce(0, receiver, key, "amin")
    store_edge = best[stores] % E
    position = torch.full((network.n_locations,), -1, dtype=torch.long).index_copy(
        0, warehouses, torch.arange(len(warehouses)))
    warehouse_edge = torch.zeros(network.n_locations, dtype=torch.long).index_copy(
        0, receiver[network.tensor("outside_edges")], network.tensor("outside_edges"))[warehouses]
    store_supplier = supplier[store_edge]
    serves = torch.zeros(len(warehouses), network.n_stores)
    serves[position[store_supplier], torch.arange(network.n_stores)] = 1.0
    return dict(store_edge=store_edge, store_lead=lead[store_edge], store_supplier=store_supplier,
                warehouses=warehouses, warehouse_edge=warehouse_edge, warehouse_lead=lead[warehouse_edge],
                serves=serves)


def _scale_matrix(network: Network) -> Tensor:
    """``[S, N]``: a location's demand scale is ``mean_demand @ this``: a store's own mean, for any other location
    the sum over the stores it (eventually) supplies (:func:`location_demand` with per-scenario means)."""
    return network.tensor("descendants")[:, network.tensor("store_index")].T.contiguous()


class NetworkDataDriven(nn.Module):
    """The data-driven net for networks, "HDPO end-to-end" (spec §6.2, real data, multi-warehouse).

    **Input** per scenario (one vector): every location's inventory vector divided by its demand scale (a
    store: its ``mean_demand``; any other location: the sum of ``mean_demand`` over the stores it supplies), every
    store's ``history`` past demands divided by its ``mean_demand``, and the first calendar feature
    (days_from_christmas) divided by 182. The spec also lists ``p``, ``h`` and lead times: on one network they
    are the same in every scenario, so as inputs they would be constants that the first layer's bias absorbs;
    they are left out.

    **Network**: one ELU MLP (:class:`~hybridrl.policies.MemberMLP`, ``hidden`` layers, one member), one output
    ``z_e`` per edge, with output bias initialised to 1.0 (spec: ReLU output, initial bias 1); by default the
    spec's layers [64, 64].

    **Requests**: ``scale_e · relu(z_e)``. With ``share=False``, ``scale_e`` is the demand scale of the edge's
    receiver (a store edge: the store's ``mean_demand``; an outside edge into a warehouse: the sum of its stores'
    ``mean_demand``). With ``share=True`` (the default) a location's demand is shared equally among its
    suppliers: an edge into a store with ``k_s`` suppliers has scale ``mean_demand_s / k_s``, and an outside edge
    into a warehouse the sum of those shares over the stores it supplies (in general ``flow_r / k_r`` with
    ``flow_r`` the store mean, or the sum of the shares ``flow_c / k_c`` of ``r``'s receivers). Both are the same
    when every location has one supplier. Why the default shares: with the initial bias 1, the unshared scales
    make a fresh net order about ``k_s`` times the demand (2× on the real-data network, where every store has
    two warehouses); the holding cost that piles up pushes outputs below 0 within a few Adam steps at the spec's
    lr 3e-3, and a ReLU output below 0 for every state has no gradient and never recovers. On the 3-warehouse
    real-data network (288 items, batch 72, lr 3e-3, 60 epochs) two of the three outside orders died that way
    (dev profit 254 per store and period, fill rate 47 %); with shared scales the same run reached about 490
    within 40 epochs.

    An output exists only for an edge of the network, so nothing is ever requested on a missing edge (the
    adjacency mask of the spec, by construction). Feasibility is the simulator's: shipments out of a warehouse
    are scaled proportionally to its **on-hand** (spec R1, R2), so the policy needs no allocation map.

    Needs observations with ``past_demand`` and ``calendar`` (real-data scenarios,
    :func:`hybridrl.favorita_network.network_splits`).
    """

    def __init__(self, network: Network, hidden: Sequence[int] = (64, 64), history: int = 16, init_seed: int = 0,
                 *, share: bool = True):
        super().__init__()
        self.network = network
        self.history = check_int("history", history, minimum=1)
        self.share = bool(share)
        inputs = network.n_locations * network.n_slots + network.n_stores * self.history + 1
        self.mlp = MemberMLP([inputs, *hidden, network.n_edges], 1, [init_seed])
        with torch.no_grad():
            self.mlp.biases[-1].fill_(1.0)
        receiver = network.tensor("receiver")
        self.register_buffer("scale_matrix", _scale_matrix(network), persistent=False)
        self.register_buffer("receiver", receiver, persistent=False)
        # output scale of every edge = mean_demand @ edge_matrix  ([S, E])
        N = network.n_locations
        in_degree = torch.zeros(N).index_add(0, receiver, torch.ones(network.n_edges))
        if self.share:
            share_of = torch.zeros(N, N)  # share_of[r, c] = 1/k_c for an edge r -> c
            for e in network.edges:
                if e.supplier is not None:
                    share_of[e.supplier, e.receiver] = 1.0 / in_degree[e.receiver]
            stores = network.tensor("store_index")
            flow = torch.linalg.inv(torch.eye(N) - share_of)[:, stores]  # [N, S]: flow = share_of @ flow + store mean
            edges = (flow / in_degree[:, None])[receiver].T
        else:
            edges = self.scale_matrix[:, receiver]
        self.register_buffer("edge_matrix", edges.contiguous(), persistent=False)

    def forward(self, obs: NetworkObservation) -> Tensor:
        if obs.past_demand is None or obs.calendar is None:
            raise ValueError("NetworkDataDriven needs past demand and calendar features in the observation: run it "
                             "on real-data scenarios (hybridrl.favorita_network.network_splits)")
        if obs.past_demand.shape[-1] != self.history:
            raise ValueError(f"NetworkDataDriven was built for {self.history} past demands, the observation has "
                             f"{obs.past_demand.shape[-1]}")
        dtype = obs.inventory.dtype
        mean = obs.demand_scale()  # [B, S]
        scale = mean @ self.scale_matrix.to(dtype)  # [B, N]
        x = torch.cat([(obs.inventory / scale.unsqueeze(-1)).flatten(1),
                       (obs.past_demand.to(dtype) / mean.unsqueeze(-1)).flatten(1),
                       obs.calendar[:, :1].to(dtype) / 182.0], dim=1)
        z = self.mlp(x.unsqueeze(0))[0]  # [B, E]
        return (mean @ self.edge_matrix.to(dtype)) * torch.relu(z)


class ScaledEchelonStock(nn.Module):
    """An echelon base-stock heuristic with levels in units of each scenario's demand scale (admissible; fitted
    by HDPO like any policy). Two-level networks only (module docstring).

    * store ``s`` requests ``max(b_s·μ_s − IP_s, 0)`` from its fastest warehouse (nothing on its other edges);
    * warehouse ``w`` orders ``max(B_w·Σ_{s served by w} μ_s − IP^e_w, 0)`` from outside, with the echelon
      position ``IP^e_w`` = its own inventory position plus the positions of the stores it serves (as their
      fastest warehouse).

    ``μ_s`` is the observation's demand scale (real data: the item's training mean at the store). Levels are
    ``softplus`` of parameters ``[1, S]`` and ``[1, W]``, initialised to ``b_s = L_s + 1`` and ``B_w = L_w + 1 +``
    the mean lead time of the stores it serves (weeks of mean demand covered). The simulator rations a short
    warehouse proportionally. A warehouse that is nobody's fastest orders nothing.
    """

    def __init__(self, network: Network):
        super().__init__()
        self.network = network
        plan = two_level_structure(network)
        for name in ("store_edge", "warehouses", "warehouse_edge", "serves"):
            self.register_buffer(name, plan[name], persistent=False)
        self.register_buffer("store_location", network.tensor("store_index"), persistent=False)
        store_level = plan["store_lead"].double() + 1.0
        served = plan["serves"].double().sum(1)
        mean_lead = (plan["serves"].double() @ plan["store_lead"].double()) / served.clamp_min(1.0)
        warehouse_level = plan["warehouse_lead"].double() + 1.0 + mean_lead
        inverse = lambda v: (v + torch.log(-torch.expm1(-v))).float().unsqueeze(0)  # noqa: E731  softplus⁻¹
        self.raw_store = nn.Parameter(inverse(store_level))  # [1, S]
        self.raw_warehouse = nn.Parameter(inverse(warehouse_level))  # [1, W]

    @property
    def store_levels(self) -> Tensor:
        """``b_s`` ``[S]``, in periods of mean demand."""
        return F.softplus(self.raw_store[0])

    @property
    def warehouse_levels(self) -> Tensor:
        """``B_w`` ``[W]``, in periods of the mean demand of the stores each serves."""
        return F.softplus(self.raw_warehouse[0])

    def forward(self, obs: NetworkObservation) -> Tensor:
        dtype = obs.inventory.dtype
        mean = obs.demand_scale()  # [B, S]
        position = obs.inventory_position  # [B, N]
        store_position = position[:, self.store_location]
        store = torch.relu(self.store_levels.to(dtype) * mean - store_position)
        serves = self.serves.to(dtype)
        echelon = position[:, self.warehouses] + store_position @ serves.T
        warehouse = torch.relu(self.warehouse_levels.to(dtype) * (mean @ serves.T) - echelon)
        out = position.new_zeros(position.shape[0], self.network.n_edges)
        return out.index_copy(1, self.store_edge, store).index_copy(1, self.warehouse_edge, warehouse)


class NetworkJustInTime(nn.Module):
    """The just-in-time oracle on a two-level network (spec §6.5; **non-admissible**: it reads future demand).

    In period ``t`` each store ``s`` requests ``d[s, t + L_s]`` from its fastest warehouse (lead time ``L_s``;
    nothing on its other edges) and each warehouse ``w`` orders ``Σ_{s served by w} d[s, t + L_w + L_s]`` from
    outside (0 past the horizon). Every unit ordered from outside then reaches its store exactly when it is
    demanded: after the first ``L_w + max L_s`` periods no shipment is rationed and every store sells its whole
    demand with no stock left over, so it is the perfect-foresight reference of the real-data comparison. (It
    is not a strict upper bound on profit: it always buys through the fastest warehouse, not the cheapest.)

    ``future_demand [N, S, T]`` is the demand of exactly the scenarios it will be run on, in the same order and
    all in one batch (e.g. ``evaluate(policy, scenarios, batch_size=len(scenarios))``); a batch of another size
    raises.
    """

    non_admissible = True

    def __init__(self, future_demand: Tensor):
        super().__init__()
        if not isinstance(future_demand, Tensor) or future_demand.dim() != 3:
            shape = getattr(future_demand, "shape", future_demand)
            raise ValueError(f"future_demand must be a [N, S, T] tensor, got {shape!r}")
        self.register_buffer("future_demand", future_demand, persistent=False)
        self._network = None

    def _plan(self, network: Network) -> Tensor:
        """Requests of every period ``[N, E, T]`` (built once per network)."""
        N, S, T = self.future_demand.shape
        if S != network.n_stores:
            raise ValueError(f"future_demand has {S} stores, the network {network.n_stores}")
        plan = two_level_structure(network)
        store_lead = plan["store_lead"]
        position = torch.full((network.n_locations,), -1, dtype=torch.long).index_copy(
            0, plan["warehouses"], torch.arange(len(plan["warehouses"])))
        upstream = plan["warehouse_lead"][position[plan["store_supplier"]]]  # [S], L_w of each store's warehouse
        d = self.future_demand
        padded = F.pad(d, (0, int((store_lead + upstream).max())))
        t = torch.arange(T, device=d.device)
        pick = lambda shift: padded.gather(2, (t[None, :] + shift.to(d.device)[:, None]).expand(N, S, T))  # noqa: E731
        out = d.new_zeros(N, network.n_edges, T)
        out.index_add_(1, plan["store_edge"].to(d.device), pick(store_lead))
        out.index_add_(1, plan["warehouse_edge"][position[plan["store_supplier"]]].to(d.device),
                       pick(store_lead + upstream))
        return out

    def forward(self, obs: NetworkObservation) -> Tensor:
        B = obs.inventory.shape[0]
        if B != self.future_demand.shape[0]:
            raise ValueError(f"NetworkJustInTime holds the future demand of {self.future_demand.shape[0]} scenarios "
                             f"but was run on a batch of {B}: run it on exactly those scenarios, in one batch")
        if self._network is not obs.network or self._requests.device != obs.inventory.device:
            self._requests = self._plan(obs.network).to(obs.inventory.device)
            self._network = obs.network
        if obs.period >= self._requests.shape[2]:
            raise ValueError(f"NetworkJustInTime knows {self._requests.shape[2]} periods of demand, asked for period "
                             f"{obs.period}")
        return self._requests[:, :, obs.period].to(obs.inventory.dtype)
