"""Policies: ``nn.Module``s that map an :class:`~hybridrl.inventory.Observation` to orders ``[B, S]``.

All policies here are deterministic, as HDPO requires (spec §2), and every learned one is trained by the same
pathwise gradient through the simulator.

Members. A policy has ``members`` independent parameter copies: ``members = 1`` shares one set of parameters
across all stores, ``members = S`` gives store ``s`` its own. Because stores without a warehouse never interact,
training ``S`` members on ``S`` stores is exactly ``S`` separate trainings run in one batch; the notebooks use it
to fit a whole grid of single-store problems at once. Parameters are laid out member-first (``[M, ...]``) so
that the trainer can keep the best parameters of each member separately.

Initialisation is seeded explicitly: ``init_seeds`` gives one seed per member, so a member starts from the same
weights whether it is trained alone or beside others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._config import check_int
from .inventory import Observation


def _init_seeds(init_seeds: Sequence[int] | int | None, members: int) -> list[int]:
    """One initialisation seed per member: a list as given; one integer ``s`` (``None``: 0) gives ``[s]`` to a
    single member and :func:`subnetwork_seeds` (``1000·s + m``) to several, so that the members of seed ``s``
    and of seed ``s + 1`` never share a seed (``s + m`` would give member 1 of seed ``s`` the weights of member
    0 of seed ``s + 1``)."""
    if init_seeds is None:
        init_seeds = 0
    if isinstance(init_seeds, int):
        return [init_seeds] if members == 1 else subnetwork_seeds(init_seeds, members)
    init_seeds = [int(s) for s in init_seeds]
    if len(init_seeds) != members:
        raise ValueError(f"init_seeds must have one seed per member ({members}), got {len(init_seeds)}")
    return init_seeds


SUBNETWORK_STRIDE = 1000


def subnetwork_seeds(init_seed: int, count: int) -> list[int]:
    """Seeds for the ``count`` separately initialised sub-networks of one policy: ``1000·init_seed + k``.

    Policies trained from seeds ``s`` and ``s + 1`` then never start a sub-network from the same seed; with
    ``init_seed + k``, seed ``s``'s second sub-network would get seed ``s + 1``'s first one's seed, and the same
    weights wherever their shapes agree, so the training seeds would not be independent draws."""
    check_int("init_seed", init_seed, minimum=0)
    if not 1 <= count <= SUBNETWORK_STRIDE:
        raise ValueError(f"count must be between 1 and {SUBNETWORK_STRIDE} sub-networks, got {count}")
    return [SUBNETWORK_STRIDE * init_seed + k for k in range(count)]


def _per_member(values: Tensor, obs: Observation) -> Tensor:
    """Broadcast a ``[M]`` parameter vector against ``[B, S]`` (``M`` is 1 or ``S``)."""
    if values.shape[0] not in (1, obs.inventory.shape[1]):
        raise ValueError(f"policy has {values.shape[0]} members but the setting has {obs.inventory.shape[1]} stores")
    return values


class MemberMLP(nn.Module):
    """``members`` independent MLPs evaluated in one batched matmul per layer: ``[M, B, in] -> [M, B, out]``.

    Hidden layers use ELU (spec §6.1); weights and biases start as in ``nn.Linear`` (uniform in
    ``±1/sqrt(fan_in)``), drawn from one generator per member.
    """

    def __init__(self, sizes: Sequence[int], members: int = 1, init_seeds: Sequence[int] | int | None = None):
        super().__init__()
        sizes = [check_int("layer size", s, minimum=1) for s in sizes]
        self.members = check_int("members", members, minimum=1)
        seeds = _init_seeds(init_seeds, members)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            self.weights.append(nn.Parameter(torch.empty(members, fan_in, fan_out)))
            self.biases.append(nn.Parameter(torch.empty(members, 1, fan_out)))
        for m, seed in enumerate(seeds):
            gen = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for w, b in zip(self.weights, self.biases):
                    bound = 1.0 / math.sqrt(w.shape[1])
                    w[m].copy_(torch.rand(w.shape[1:], generator=gen) * 2 * bound - bound)
                    b[m].copy_(torch.rand(b.shape[1:], generator=gen) * 2 * bound - bound)

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                # in place on the fresh matmul output: autograd then differentiates ELU from its result,
                # which avoids recomputing exp() in the backward pass (about 15% of an HDPO epoch on a CPU)
                x = F.elu(x, inplace=True)
        return x


class VanillaMLP(nn.Module):
    """The vanilla HDPO policy for a store (spec §6.2): an ELU MLP of the store's inventory vector.

    ``order = μ · softplus(z + 1)`` with ``z`` the network output on the inventory vector divided by the store's
    mean demand ``μ`` (a static, admissible scenario parameter). The division and the factor ``μ`` only fix
    the units, so that one learning rate suits stores of any size; the reference feeds raw units and outputs
    ``softplus(z + 1)`` directly.
    """

    def __init__(
        self,
        n_slots: int,
        hidden: Sequence[int] = (32, 32, 32),
        members: int = 1,
        init_seeds: Sequence[int] | int | None = None,
    ):
        super().__init__()
        self.members = check_int("members", members, minimum=1)
        self.mlp = MemberMLP([check_int("n_slots", n_slots, minimum=1), *hidden, 1], members, init_seeds)

    def forward(self, obs: Observation) -> Tensor:
        b, s, n = obs.inventory.shape
        scale = obs.mean_demand
        x = obs.inventory / scale.unsqueeze(-1)
        if self.members == 1:
            z = self.mlp(x.reshape(1, b * s, n)).reshape(b, s)
        elif self.members == s:
            z = self.mlp(x.transpose(0, 1)).squeeze(-1).transpose(0, 1)
        else:
            raise ValueError(f"policy has {self.members} members but the setting has {s} stores")
        return scale * F.softplus(z + 1.0)


def _raw_parameter(value: float | Sequence[float] | None, members: int, name: str) -> Tensor:
    """``b`` with ``softplus(b) = value`` per member; ``None`` gives the paper's ``b₀ = 10``."""
    if value is None:
        return torch.full((members,), 10.0)
    values = torch.as_tensor(value, dtype=torch.float64).flatten()
    if values.numel() == 1:
        values = values.expand(members)
    if values.shape != (members,) or not bool((values > 0).all()):
        raise ValueError(f"{name} must be a positive number or one per member ({members}), got {value!r}")
    return (values + torch.log(-torch.expm1(-values))).float()


class BaseStock(nn.Module):
    """Order up to a level: ``q = max(S - IP, 0)`` with ``S = softplus(b)`` (spec §6.3; ``b₀ = 10``).

    ``IP`` is the inventory position (on-hand plus in transit). Optimal for the backlogged single store.
    """

    def __init__(self, members: int = 1, initial_level: float | Sequence[float] | None = None):
        super().__init__()
        self.members = check_int("members", members, minimum=1)
        self.raw_level = nn.Parameter(_raw_parameter(initial_level, members, "initial_level"))

    @property
    def level(self) -> Tensor:
        return F.softplus(self.raw_level)

    def forward(self, obs: Observation) -> Tensor:
        return torch.relu(_per_member(self.level, obs) - obs.inventory_position)


class CappedBaseStock(nn.Module):
    """Base stock with an order cap: ``q = min(max(S - IP, 0), c)``, ``(S, c) = softplus(b)``, ``b₀ = 10``.

    A strong heuristic for lost sales (Xin 2021; spec §6.3).
    """

    def __init__(
        self,
        members: int = 1,
        initial_level: float | Sequence[float] | None = None,
        initial_cap: float | Sequence[float] | None = None,
    ):
        super().__init__()
        self.members = check_int("members", members, minimum=1)
        self.raw_level = nn.Parameter(_raw_parameter(initial_level, members, "initial_level"))
        self.raw_cap = nn.Parameter(_raw_parameter(initial_cap, members, "initial_cap"))

    @property
    def level(self) -> Tensor:
        return F.softplus(self.raw_level)

    @property
    def cap(self) -> Tensor:
        return F.softplus(self.raw_cap)

    def forward(self, obs: Observation) -> Tensor:
        up_to = torch.relu(_per_member(self.level, obs) - obs.inventory_position)
        return torch.minimum(up_to, _per_member(self.cap, obs))


class TablePolicy(nn.Module):
    """A lookup-table policy over integer states, e.g. the optimal lost-sales policy from dynamic programming.

    ``table`` has one axis per inventory slot, each of length ``max_position + 1``; states whose inventory
    position exceeds ``max_position`` order nothing. Inventory must be integral (integer demand and orders).
    """

    def __init__(self, table: Tensor, max_position: int):
        super().__init__()
        self.register_buffer("table", table.flatten().float())
        self.n_slots = table.dim()
        self.max_position = int(max_position)
        strides = [(self.max_position + 1) ** (self.n_slots - 1 - k) for k in range(self.n_slots)]
        self.register_buffer("strides", torch.tensor(strides, dtype=torch.long))

    def forward(self, obs: Observation) -> Tensor:
        state = torch.round(obs.inventory[..., : self.n_slots]).long().clamp(0, self.max_position)
        orders = self.table[(state * self.strides).sum(-1)]
        return torch.where(state.sum(-1) <= self.max_position, orders, torch.zeros_like(orders))


class StoreWise(nn.Module):
    """One policy per store: store ``s`` is run by ``policies[s]`` on its own slice of the observation.

    Used for references whose form differs by store, such as a grid of DP table policies.
    """

    def __init__(self, policies: Sequence[nn.Module]):
        super().__init__()
        self.policies = nn.ModuleList(policies)

    def forward(self, obs: Observation) -> Tensor:
        if len(self.policies) != obs.inventory.shape[1]:
            raise ValueError(f"StoreWise has {len(self.policies)} policies for {obs.inventory.shape[1]} stores")
        orders = []
        for s, policy in enumerate(self.policies):
            part = Observation(
                obs.inventory[:, s : s + 1], obs.underage_cost[:, s : s + 1], obs.holding_cost[:, s : s + 1],
                obs.lead_time[:, s : s + 1], obs.mean_demand[:, s : s + 1], obs.period,
                None if obs.past_demand is None else obs.past_demand[:, s : s + 1], obs.calendar,
            )
            orders.append(policy(part))
        return torch.cat(orders, dim=1)
