"""Tests of the message-passing graph network policy (:class:`hybridrl.network_policies.GraphNetwork`)."""

import pytest
import torch
from torch.overrides import TorchFunctionMode

from hybridrl.inventory import rollout
from hybridrl.network_policies import GraphNetwork, SymmetryAware, location_demand
from hybridrl.networks import (Edge, Network, NetworkObservation, one_warehouse_network, sample_network_scenarios,
                               serial_network, transshipment_network)


def random_inventory(network, batch, seed, warehouse=3.0):
    """Inventories ``[B, N, n]`` of U[0, 3]·(demand through the location); upstream on hand up to
    ``warehouse`` × its demand."""
    gen = torch.Generator().manual_seed(seed)
    scale = location_demand(network)
    inv = torch.rand(batch, network.n_locations, network.n_slots, generator=gen) * 3.0 * scale[:, None]
    upstream = ~network.tensor("is_store")
    inv[:, upstream, 0] *= warehouse / 3.0
    return inv


def requests(policy, inventory):
    return policy(NetworkObservation(inventory, policy.network, 0))


def permuted_one_warehouse(network, perm):
    """The same one-warehouse network with stores in order ``perm`` (new store j = old store perm[j]) and the
    edges in another order too: the store edges first (in the new store order), the outside edge last."""
    warehouse, stores = network.locations[0], network.locations[1:]
    lead = {e.receiver: e.lead_time for e in network.edges if e.supplier == 0}
    locations = (warehouse,) + tuple(stores[k] for k in perm)
    edges = tuple(Edge(0, j + 1, lead[k + 1]) for j, k in enumerate(perm)) + (network.edges[0],)
    return Network(network.name, locations, edges, unmet_demand=network.unmet_demand,
                   correlation=network.correlation)


@pytest.mark.parametrize("warehouse", [0.05, 3.0])  # scarce stock (the keep scaling acts) and plenty
def test_permutation_equivariance_over_stores(warehouse):
    net = one_warehouse_network(6)
    perm = [3, 0, 5, 1, 4, 2]
    other = permuted_one_warehouse(net, perm)
    policy = GraphNetwork(net, init_seed=3)
    twin = GraphNetwork(other, init_seed=11)
    twin.load_state_dict(policy.state_dict())
    inv = random_inventory(net, 64, seed=0, warehouse=warehouse)
    inv_perm = torch.cat([inv[:, :1], inv[:, 1:][:, perm]], dim=1)
    r = requests(policy, inv)  # edges: out->0, 0->1 .. 0->6
    r_perm = requests(twin, inv_perm)  # edges: 0->1 .. 0->6 (permuted stores), out->0
    expected = torch.cat([r[:, 1:][:, perm], r[:, :1]], dim=1)
    assert r.std() > 0.01  # not a constant policy
    torch.testing.assert_close(r_perm, expected, atol=1e-5, rtol=1e-5)
    # and the weights matter: the twin's own initialisation gives other requests
    fresh = GraphNetwork(other, init_seed=11)
    assert not torch.allclose(requests(fresh, inv_perm), expected, atol=1e-3)


def test_size_independence():
    small = GraphNetwork(one_warehouse_network(3), init_seed=1)
    large = GraphNetwork(one_warehouse_network(20), init_seed=2)
    large.load_state_dict(small.state_dict())  # strict: same keys, same shapes
    for (name, a), b in zip(small.named_parameters(), large.parameters()):
        assert a.shape[0] == 1, name
        assert torch.equal(a, b), name
    for policy in (small, large):
        r = requests(policy, random_inventory(policy.network, 32, seed=4))
        assert r.shape == (32, policy.network.n_edges)
        assert torch.isfinite(r).all() and (r >= 0).all()
    # one set of weights for a serial and a one-warehouse network, given a common number of slots
    serial = GraphNetwork(serial_network(), slots=4)
    serial.load_state_dict(GraphNetwork(one_warehouse_network(5), slots=4, init_seed=7).state_dict())


@pytest.mark.parametrize("network, steps, keepers", [
    (serial_network(), 3, 3), (one_warehouse_network(5), 1, 1), (transshipment_network(4), 1, 0)])
def test_graph_of_each_network(network, steps, keepers):
    policy = GraphNetwork(network)
    assert policy.steps == steps  # spec §6.2: K = 1 for warehouse-store networks, 3 for the serial system
    assert len(policy.keepers) == keepers  # no keep self-loop on a transshipment center
    assert policy.n_graph_edges == network.n_edges + network.n_stores + keepers
    r = requests(policy, random_inventory(network, 16, seed=2))
    assert r.shape == (16, network.n_edges) and torch.isfinite(r).all() and (r >= 0).all()
    trajectory = rollout(policy, sample_network_scenarios(network, 8, 5, demand_seed=0, inventory_seed=1))
    assert torch.isfinite(trajectory.cost).all()


class CountCalls(TorchFunctionMode):
    """Counts the torch functions and tensor methods called inside the ``with`` block."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def count_forward_calls(stores, steps):
    policy = GraphNetwork(one_warehouse_network(stores), steps=steps)
    inventory = random_inventory(policy.network, 4, seed=0)
    with CountCalls() as counter:
        requests(policy, inventory)
    return counter.calls


def test_forward_has_no_loop_over_nodes_or_edges():
    """The forward pass makes the same torch calls whatever the size of the network (spec R14: vectorised
    segment sums); only the number of message-passing steps changes it."""
    assert count_forward_calls(3, 2) == count_forward_calls(50, 2)
    assert count_forward_calls(3, 3) > count_forward_calls(3, 2)  # the counter sees the step loop


def test_keep_edge_holds_back_scarce_stock():
    net = one_warehouse_network(5)
    keeping = GraphNetwork(net, init_seed=2)
    dropping = GraphNetwork(net, init_seed=0, keep=False)
    dropping.load_state_dict(keeping.state_dict())
    internal = net.tensor("internal_edges")
    plenty = random_inventory(net, 32, seed=5, warehouse=1e4)
    torch.testing.assert_close(requests(keeping, plenty), requests(dropping, plenty))
    scarce = random_inventory(net, 32, seed=5, warehouse=0.05)
    kept, dropped = requests(keeping, scarce), requests(dropping, scarce)
    on_hand = scarce[:, 0, 0]
    assert (kept[:, internal].sum(1) <= on_hand * (1 + 1e-5)).all()
    assert (dropped[:, internal].sum(1) > on_hand).all()  # the test is not vacuous
    assert (kept <= dropped + 1e-6).all()
    torch.testing.assert_close(kept[:, 0], dropped[:, 0])  # outside orders are never scaled


def test_gradients_reach_every_parameter():
    net = one_warehouse_network(4)
    policy = GraphNetwork(net, steps=2)
    scenarios = sample_network_scenarios(net, 32, 8, demand_seed=0, inventory_seed=1)
    scenarios.initial_inventory[:, 0, 0] = 2.0  # some warehouse stock: the keep scaling acts in period 0
    rollout(policy, scenarios).cost.mean().backward()
    for name, p in policy.named_parameters():
        assert p.shape[0] == 1, name  # hybridrl.train.fit's member dimension
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


def test_pathwise_training_lowers_the_cost():
    torch.manual_seed(0)
    net = one_warehouse_network(3)
    scenarios = sample_network_scenarios(net, 256, 30, demand_seed=0, inventory_seed=1)
    policy = GraphNetwork(net)
    with torch.no_grad():
        before = float(rollout(policy, scenarios).cost.mean())
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for _ in range(40):
        optimizer.zero_grad()
        rollout(policy, scenarios).cost.mean().backward()
        optimizer.step()
    with torch.no_grad():
        after = float(rollout(policy, scenarios).cost.mean())
    assert after < 0.8 * before, (before, after)


def test_moves_with_the_module():
    policy = GraphNetwork(one_warehouse_network(3)).double()
    inv = random_inventory(policy.network, 4, seed=0).double()
    assert requests(policy, inv).dtype == torch.float64


def reference_requests(policy, inventory):
    """The graph network written plainly, with Python loops over nodes and edges, for one state ``[N, n]``
    (the graph and the features derived here from the network's locations and edges, not from the policy)."""
    net = policy.network
    elu = torch.nn.functional.elu
    mlp = lambda m, *parts: m(torch.cat(parts).view(1, 1, -1))[0, 0]  # noqa: E731
    scale = location_demand(net)
    N, S = net.n_locations, policy.slots
    supplies = {e.supplier for e in net.edges if e.supplier is not None}
    edges = [(e.supplier, e.receiver, e.lead_time / S, e.unit_cost, 0 if e.supplier is not None else 1)
             for e in net.edges]
    edges += [(i, None, 0.0, 0.0, 2) for i, loc in enumerate(net.locations) if loc.store]
    keepers = [i for i, loc in enumerate(net.locations) if i in supplies and loc.holds_stock]
    edges += [(i, i, 0.0, 0.0, 3) for i in keepers]
    node = []
    for i, loc in enumerate(net.locations):
        x = torch.zeros(S)
        x[: net.n_slots] = inventory[i] / scale[i]
        static = [loc.holding_cost, loc.underage_cost / 10, loc.mean / 10, loc.std / loc.mean if loc.store else 0.0,
                  float(loc.store), float(not loc.store and loc.holds_stock), float(not loc.holds_stock)]
        node.append(elu(mlp(policy.node_init, x, torch.tensor(static))))
    zero = torch.zeros(policy.hidden)
    end = lambda k: zero if k is None else node[k]  # noqa: E731
    edge = [elu(mlp(policy.edge_init, end(u), end(v), torch.tensor([lead, cost]),
                    torch.nn.functional.one_hot(torch.tensor(kind), 4).float())) for u, v, lead, cost, kind in edges]
    degree = [sum((u == i) or (v == i) for u, v, *_ in edges) for i in range(N)]
    for _ in range(policy.steps):
        new = []
        for i in range(N):
            incoming = sum((edge[g] for g, (u, v, *_) in enumerate(edges) if v == i), zero) / degree[i] ** 0.5
            outgoing = sum((edge[g] for g, (u, v, *_) in enumerate(edges) if u == i), zero) / degree[i] ** 0.5
            new.append(node[i] + elu(mlp(policy.node_update, node[i], incoming, outgoing)))
        node = new
        edge = [edge[g] + elu(mlp(policy.edge_update, edge[g], end(u), end(v))) for g, (u, v, *_) in enumerate(edges)]
    flow = [torch.nn.functional.softplus(mlp(policy.output, edge[g]))[0] for g in range(len(edges))]
    out = [flow[g] * scale[v] for g, (u, v, *_) in enumerate(edges[: net.n_edges])]
    for k in keepers:  # the keep share: internal out-requests plus keep scaled by min(1, on-hand / sum)
        g_keep = next(g for g, (u, v, *_) in enumerate(edges) if u == v == k)
        mine = [g for g, (u, *_) in enumerate(edges[: net.n_edges]) if u == k]
        total = sum(out[g] for g in mine) + flow[g_keep] * scale[k]
        factor = min(1.0, max(float(inventory[k, 0]), 0.0) / float(total))
        for g in mine:
            out[g] = out[g] * factor
    return torch.stack(out)


@pytest.mark.parametrize("network", [serial_network(), one_warehouse_network(4), transshipment_network(3)],
                         ids=["serial", "one warehouse", "transshipment"])
def test_matches_a_plain_loop_implementation(network):
    policy = GraphNetwork(network, hidden=8, steps=2, init_seed=0, slots=network.n_slots + 1)
    with torch.no_grad():
        for p in policy.parameters():  # larger weights than the default, so that every term shows
            p.mul_(2.0)
    inventory = random_inventory(network, 3, seed=9, warehouse=0.3)
    with torch.no_grad():
        got = requests(policy, inventory)
        expected = [reference_requests(policy, inventory[b]) for b in range(3)]
    if network.locations[0].holds_stock:  # the keep scaling acts at location 0 (not vacuous)
        unscaled = GraphNetwork(network, hidden=8, steps=2, slots=network.n_slots + 1, keep=False)
        unscaled.load_state_dict(policy.state_dict())
        out_of_0 = network.tensor("supplier") == 0
        with torch.no_grad():
            assert (unscaled(NetworkObservation(inventory, network, 0))[:, out_of_0].sum(1) > inventory[:, 0, 0]).all()
        assert (got[:, out_of_0].sum(1) < inventory[:, 0, 0]).all()
    for b in range(3):
        torch.testing.assert_close(got[b], expected[b], atol=1e-5, rtol=1e-4)


def test_checkpointing_gives_the_same_gradients():
    net = one_warehouse_network(4)
    scenarios = sample_network_scenarios(net, 16, 6, demand_seed=0, inventory_seed=1)
    scenarios.initial_inventory[:, 0, 0] = 2.0
    grads = []
    for checkpoint in (False, True):
        policy = GraphNetwork(net, steps=2, checkpoint=checkpoint)
        rollout(policy, scenarios).cost.mean().backward()
        grads.append([p.grad for p in policy.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("make", [SymmetryAware, GraphNetwork], ids=lambda m: m.__name__)
def test_adjacent_training_seeds_share_no_initial_weights(make):
    """Seeds s and s + 1 are independent draws: no sub-network of one starts from another's weights (with
    ``init_seed + k`` the graph network's edge update of seed 0 was seed 1's node update)."""
    from hybridrl.networks import serial_network

    for network in (one_warehouse_network(3), serial_network()):
        first = [p for p in make(network, init_seed=0).parameters() if p.dim() >= 2]
        second = [p for p in make(network, init_seed=1).parameters() if p.dim() >= 2]
        for p in first:
            assert not any(p.shape == q.shape and torch.equal(p, q) for q in second)


def test_an_integer_seed_gives_the_members_of_adjacent_seeds_no_shared_weights():
    """``MemberMLP(..., members=M, init_seeds=s)``: the members of seed s and of seed s + 1 are all different
    draws (with ``s + m``, member 1 of seed 0 was member 0 of seed 1); one member keeps seed ``s`` itself."""
    from hybridrl.policies import MemberMLP

    first, second = (MemberMLP([3, 4, 1], members=3, init_seeds=s).weights[0] for s in (0, 1))
    for a in first:
        assert not any(torch.equal(a, b) for b in second)
    single = MemberMLP([3, 4, 1], members=1, init_seeds=7).weights[0][0]
    torch.testing.assert_close(single, MemberMLP([3, 4, 1], members=1, init_seeds=[7]).weights[0][0])
