"""The joint replenishment problem (JRP) of the HPO paper, on the shared inventory simulator (HPO spec §7.2).

``n`` items share one ordering decision: in every period the planner either orders nothing, or orders any
quantities ``q ∈ R^n_+`` and pays a **joint fixed cost** ``F``. Each item is a backlogged store of
:mod:`hybridrl.inventory` (Poisson demand with its own mean, holding cost ``h_i``, backlog cost ``p_i``, lead
time 2), simulated by the same :func:`hybridrl.inventory.step`:

    c_t = Σ_i [ p_i (−y_{i,t})^+ + h_i (y_{i,t})^+ ] + F · 1{order at t}.

The fixed cost makes the cost jump in the action, so it is reformulated as a hybrid action with
:class:`hybridrl.hybrid.SubRanges` ``thresholds (0, 0, ∞)``, ``values (0, F)``: choice 0 orders exactly
nothing and pays nothing; choice 1 orders ``q = μ · softplus(z) ≥ 0`` per item (``μ`` the item's mean demand)
and pays ``F``. (The reference uses the sub-range ``[−0.0001, 0]`` for "no order"; a degenerate range at 0 is
the same decision without negative orders.)

The fixed cost's scaling is explicit (spec R3): ``joint_fixed_cost = fixed_cost × n`` when
``scale_fixed_cost_by_items`` (the main JRP: 64·n, so 64 per item and order), else ``fixed_cost``.

Items: means ~ U[6, 14], ``h`` ~ U[0.7, 1.3], ``p`` ~ U[6.3, 11.7], drawn once from ``parameter_seed`` and kept
for train, dev and test (new demand paths only). Episodes start empty and last ``horizon = 100`` periods; the
reported metric is the cost **per item and period** over periods ``t ≥ warmup = 16``. The policy observes, per
item and in units of its mean demand, the inventory pipeline and the last ``history = 16`` demands, plus
``p``, ``h``, ``μ / 10`` and the fixed cost per unit of the item's mean demand (spec §2.4; the reference
normalises by a running estimate of the mean demand, which converges to the same constant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ._config import check_int, check_nonnegative, check_positive
from .hybrid import Episode, SubRanges
from .inventory import arrival_slots, step


@dataclass(frozen=True)
class JointReplenishment:
    """A JRP instance: a :class:`hybridrl.hybrid.HybridProblem` (module docstring)."""

    items: int
    fixed_cost: float = 64.0
    scale_fixed_cost_by_items: bool = True
    lead_time: int = 2
    horizon: int = 100
    warmup: int = 16
    history: int = 16
    parameter_seed: int = 0
    mean_range: tuple[float, float] = (6.0, 14.0)
    holding_range: tuple[float, float] = (0.7, 1.3)
    underage_range: tuple[float, float] = (6.3, 11.7)

    def __post_init__(self):
        n = check_int("items", self.items, minimum=1)
        check_nonnegative("fixed_cost", self.fixed_cost)
        check_int("lead_time", self.lead_time, minimum=1)
        check_int("horizon", self.horizon, minimum=1)
        check_int("warmup", self.warmup, minimum=0)
        if self.warmup >= self.horizon:
            raise ValueError(f"warmup ({self.warmup}) must be below horizon ({self.horizon})")
        check_int("history", self.history, minimum=0)
        check_int("parameter_seed", self.parameter_seed, minimum=0)
        for name in ("mean_range", "holding_range", "underage_range"):
            lo, hi = getattr(self, name)
            check_positive(f"{name}[0]", lo)
            if hi < lo:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {getattr(self, name)!r}")
        rng = np.random.default_rng(self.parameter_seed)
        draw = {name: torch.as_tensor(rng.uniform(*getattr(self, name), size=n), dtype=torch.float32)
                for name in ("mean_range", "holding_range", "underage_range")}
        object.__setattr__(self, "mean", draw["mean_range"])
        object.__setattr__(self, "holding_cost", draw["holding_range"])
        object.__setattr__(self, "underage_cost", draw["underage_range"])

    # ---- sizes ---------------------------------------------------------------------------------------------------
    @property
    def joint_fixed_cost(self) -> float:
        """F, charged once per period in which anything is ordered."""
        return self.fixed_cost * self.items if self.scale_fixed_cost_by_items else self.fixed_cost

    @property
    def sub_ranges(self) -> SubRanges:
        return SubRanges((0.0, 0.0, math.inf), values=(0.0, self.joint_fixed_cost))

    n_choices = 2

    @property
    def action_dim(self) -> int:
        return self.items

    @property
    def observation_dim(self) -> int:
        return self.items * (self.lead_time + self.history + 4)

    def action_map(self, z: Tensor) -> Tensor:
        """Pre-activations ``[B, 2, n]`` -> orders in each choice's sub-range, in units of the mean demand."""
        return self.sub_ranges.map(z, scale=self.mean.to(z))

    # ---- simulation ----------------------------------------------------------------------------------------------
    def sample(self, batch: int, generator: torch.Generator) -> Episode:
        """Empty pipelines and Poisson demand ``[B, history + horizon, n]`` (the first ``history`` are the past)."""
        check_int("batch", batch, minimum=1)
        rates = self.mean.expand(batch, self.history + self.horizon, self.items)
        demand = torch.poisson(rates, generator=generator)
        state = torch.cat([torch.zeros(batch, self.items, self.lead_time), demand[:, : self.history].transpose(1, 2)],
                          dim=-1)
        return Episode(state=state, noise=demand)

    def observe(self, state: Tensor, period: int, episode: Episode) -> Tensor:
        mean = self.mean.to(state)
        per_item = torch.cat([
            state / mean[:, None],
            self.underage_cost.to(state).expand(state.shape[0], -1)[..., None] / 10,
            self.holding_cost.to(state).expand(state.shape[0], -1)[..., None],
            (mean / 10).expand(state.shape[0], -1)[..., None],
            (self.joint_fixed_cost / (self.items * mean)).expand(state.shape[0], -1)[..., None],
        ], dim=-1)
        return per_item.flatten(1)

    def step(self, state: Tensor, choice: Tensor, action: Tensor, period: int, episode: Episode
             ) -> tuple[Tensor, Tensor]:
        """One period for all items: order ``action [B, n]`` (0 under choice 0), serve demand, backlog; the cost
        ``[B]`` sums the items' holding and backlog costs and the joint fixed cost of choice 1."""
        L = self.lead_time
        inventory, past = state[..., :L], state[..., L:]
        demand = episode.noise[:, self.history + period].to(state)
        B, n = demand.shape
        slots = arrival_slots(torch.full((B, n), L, dtype=torch.int64, device=state.device), L, state.dtype)
        result = step(inventory, action, demand, slots, self.underage_cost.to(state).expand(B, n),
                      self.holding_cost.to(state).expand(B, n), lost_sales=False)
        cost = result.cost.sum(-1) + self.joint_fixed_cost * (choice == 1).to(state.dtype)
        history = torch.cat([past[..., 1:], demand[..., None]], dim=-1) if self.history else past
        return torch.cat([result.inventory, history], dim=-1), cost

    def reported(self, cost: Tensor) -> Tensor:
        """The paper's metric per episode ``[B]``: cost per item and period over ``t ≥ warmup``."""
        return cost[:, self.warmup:].mean(-1) / self.items


class JRPSplits(NamedTuple):
    train: Episode
    dev: Episode
    test: Episode


def sample_jrp_splits(problem: JointReplenishment, n_train: int = 1024, n_dev: int = 1024, n_test: int = 1024,
                      train_seed: int = 57, test_seed: int = 65) -> JRPSplits:
    """Train and dev from one draw with ``train_seed``, test from ``test_seed`` (HPO spec §7.2: 57 / 65)."""
    both = problem.sample(n_train + n_dev, torch.Generator().manual_seed(train_seed))
    test = problem.sample(n_test, torch.Generator().manual_seed(test_seed))
    return JRPSplits(both[:n_train], both[n_train:], test)
