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
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._config import check_int
from .networks import Network, NetworkObservation
from .policies import MemberMLP


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
        receiver = self.network.tensor("receiver").to(shortfall.device)
        return shortfall[:, receiver] / self.in_degree[receiver]


class NetworkMLP(nn.Module):
    """The vanilla network policy (spec §6.2): an ELU MLP of all inventory vectors (each divided by its
    location's demand), one output ``z_e`` per edge, mapped as the reference maps it: an internal edge asks for
    ``sigmoid(z_e)`` times its supplier's on-hand, an outside edge for ``sigmoid(z_e)·U_k`` with ``U_k`` four times
    the demand through its receiver (the spec's outside-order bound ``U = 4·Σ mean``). Bounded requests keep a
    freshly initialised network from flooding the system. Its size grows with the network."""

    def __init__(self, network: Network, hidden: Sequence[int] = (256, 256, 256), init_seed: int = 0):
        super().__init__()
        self.network = network
        self.register_buffer("scale", location_demand(network))
        inputs = network.n_locations * network.n_slots
        self.mlp = MemberMLP([inputs, *hidden, network.n_edges], 1, [init_seed])
        supplier, receiver = network.tensor("supplier"), network.tensor("receiver")
        self.register_buffer("internal", supplier >= 0)
        self.register_buffer("source", supplier.clamp_min(0))
        self.register_buffer("bound", 4.0 * location_demand(network)[receiver])

    def forward(self, obs: NetworkObservation) -> Tensor:
        x = (obs.inventory / self.scale[:, None]).flatten(1)
        fraction = torch.sigmoid(self.mlp(x.unsqueeze(0))[0])  # [B, E]
        on_hand = obs.on_hand.clamp_min(0.0)[:, self.source]
        return fraction * torch.where(self.internal, on_hand, self.bound)


class SymmetryAware(nn.Module):
    """Shared store weights plus a state summary (spec §6.2, v2's symmetry-aware net; module docstring).

    * context ``c = sigmoid(MLP(all inventory vectors / demand))``, ``context`` numbers;
    * an edge into a **store**: the shared store head on ``[store's inventory vector / μ_s, μ_s, σ_s/μ_s, p_s,
      h_s, L_e, c]`` -> ``μ_s · softplus(z)``;
    * an edge into any other location: that location's own head on ``[its inventory vector / μ_k, c]`` ->
      ``μ_k · softplus(z)``.
    """

    def __init__(self, network: Network, context: int = 64, context_hidden: Sequence[int] = (128,),
                 store_hidden: Sequence[int] = (32, 32), upstream_hidden: Sequence[int] = (16, 16), init_seed: int = 0):
        super().__init__()
        self.network = network
        n = network.n_slots
        check_int("context", context, minimum=1)
        self.register_buffer("scale", location_demand(network))
        self.context = MemberMLP([network.n_locations * n, *context_hidden, context], 1, [init_seed])
        self.store_head = MemberMLP([n + 5 + context, *store_hidden, 1], 1, [init_seed + 1])
        receiver = network.tensor("receiver")
        is_store = network.tensor("is_store")
        self.register_buffer("store_edges", torch.nonzero(is_store[receiver]).flatten())
        self.register_buffer("upstream_edges", torch.nonzero(~is_store[receiver]).flatten())
        self.upstream_heads = nn.ModuleList(
            MemberMLP([n + context, *upstream_hidden, 1], 1, [init_seed + 2 + i]) for i in range(len(self.upstream_edges)))
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
        receiver = self.network.tensor("receiver").to(x.device)
        out = torch.zeros(B, self.network.n_edges, dtype=x.dtype, device=x.device)
        if len(self.store_edges):
            r = receiver[self.store_edges]
            E = len(self.store_edges)
            features = torch.cat([x[:, r], self.store_static.expand(B, E, -1),
                                  c.unsqueeze(1).expand(B, E, -1)], dim=-1)  # [B, E_s, F]
            z = self.store_head(features.reshape(1, B * E, -1))[0].view(B, E)
            out = out.index_copy(1, self.store_edges, self.scale[r] * F.softplus(z))
        for head, e in zip(self.upstream_heads, self.upstream_edges.tolist()):
            k = int(receiver[e])
            z = head(torch.cat([x[:, k], c], dim=-1).unsqueeze(0))[0, :, 0]
            out = out.index_copy(1, torch.tensor([e], device=x.device), (self.scale[k] * F.softplus(z)).unsqueeze(1))
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
    edge, ``softplus``, times the demand scale of the edge's receiver (for a keep edge, of its location).
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

        mlp = lambda fan_in, out, seed: MemberMLP([fan_in, H, H, out], 1, [init_seed + seed])  # noqa: E731
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
