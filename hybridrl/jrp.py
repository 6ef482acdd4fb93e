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

A classical benchmark for the learned policies: the **can-order** policy (must-order, can-order and order-up-to
levels per item, on the inventory position) and its special case the independent (s, S) policy,
:class:`CanOrderLevels`, simulated on the same :meth:`JointReplenishment.step` by :func:`simulate_can_order`,
with three scalars shared by the items (:class:`CanOrderParams`) tuned on the training episodes by
:func:`tune_can_order`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ._config import check_int, check_nonnegative, check_positive
from ._device import on_device
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
        """Choice 0 orders nothing, choice 1 any positive amount (one object per instance)."""
        if "_sub_ranges" not in self.__dict__:
            ranges = SubRanges((0.0, 0.0, math.inf), values=(0.0, self.joint_fixed_cost))
            object.__setattr__(self, "_sub_ranges", ranges)
        return self.__dict__["_sub_ranges"]

    n_choices = 2

    @property
    def action_dim(self) -> int:
        return self.items

    @property
    def observation_dim(self) -> int:
        return self.items * (self.lead_time + self.history + 4)

    def action_map(self, z: Tensor) -> Tensor:
        """Pre-activations ``[B, 2, n]`` -> orders in each choice's sub-range, in units of the mean demand."""
        return self.sub_ranges.map(z, scale=on_device(self, "mean", self.mean, z))

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
        mean = on_device(self, "mean", self.mean, state)
        per_item = torch.cat([
            state / mean[:, None],
            on_device(self, "underage_cost", self.underage_cost, state).expand(state.shape[0], -1)[..., None] / 10,
            on_device(self, "holding_cost", self.holding_cost, state).expand(state.shape[0], -1)[..., None],
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
        underage = on_device(self, "underage_cost", self.underage_cost, state).expand(B, n)
        holding = on_device(self, "holding_cost", self.holding_cost, state).expand(B, n)
        result = step(inventory, action, demand, slots, underage, holding, lost_sales=False)
        cost = result.cost.sum(-1) + self.joint_fixed_cost * (choice == 1).to(state.dtype)
        history = torch.cat([past[..., 1:], demand[..., None]], dim=-1) if self.history else past
        return torch.cat([result.inventory, history], dim=-1), cost

    def relaxed_step(self, state: Tensor, weights: Tensor, actions: Tensor, period: int, episode: Episode
                     ) -> tuple[Tensor, Tensor]:
        """The step with the order / no-order choice relaxed to weights ``[B, 2]`` (spec §2.3): the order is
        ``Σ_k w_k·u_k`` over the choices' actions ``[B, 2, n]`` and the joint fixed cost ``w_1·F``. A one-hot ``w``
        gives exactly :meth:`step` (the Gumbel-softmax baseline, :mod:`hybridrl.hpo`)."""
        order = (weights[..., None] * actions).sum(1)
        state, cost = self.step(state, torch.zeros_like(weights[:, 0], dtype=torch.int64), order, period, episode)
        return state, cost + self.joint_fixed_cost * weights[:, 1]

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


# ----------------------------------------------------------------------------------------------------------------
# A classical benchmark: the can-order policy
# ----------------------------------------------------------------------------------------------------------------
# The standard heuristic for the stochastic JRP (Balintfy 1964; Silver 1974), the "can-order" column of the Ata et
# al. table in HPO spec §7.4, with the "independent (s, S)" policy as its special case c = s. It is a benchmark for
# the learned policies, not part of the paper's method.


@dataclass(frozen=True, eq=False)
class CanOrderLevels:
    """Per-item levels ``[n]`` of a can-order policy, on the inventory position.

    The **inventory position** of item ``i`` at the start of a period is everything it owns or is owed: on hand
    minus backlog plus every pipeline slot, ``x_i = Σ_l state[i, l]`` over the ``L`` inventory slots. In each
    period, before demand:

    * if some item is at or below its **must-order** level, ``x_i ≤ s_i``, a joint order is placed (choice 1,
      paying ``F`` once), and every item at or below its **can-order** level, ``x_i ≤ c_i``, is raised to its
      **order-up-to** level: ``q_i = S_i − x_i``; the other items order nothing;
    * otherwise nothing is ordered (choice 0).

    Requires ``s ≤ c ≤ S`` item by item. ``c = s`` is the **independent (s, S)** policy: each item follows its own
    (s, S) rule and only the fixed cost of simultaneous orders is shared.
    """

    must_order: Tensor  # s, [n]
    can_order: Tensor  # c, [n]
    order_up_to: Tensor  # S, [n]

    def __post_init__(self):
        values = {}
        for name in ("must_order", "can_order", "order_up_to"):
            value = getattr(self, name)
            try:
                tensor = torch.as_tensor(value, dtype=torch.float32)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"{name} must be a 1-D tensor of per-item levels, got {value!r}") from None
            if tensor.dim() != 1 or tensor.numel() == 0:
                raise ValueError(f"{name} must be a non-empty 1-D tensor of per-item levels, got shape "
                                 f"{tuple(tensor.shape)}: {value!r}")
            if not torch.isfinite(tensor).all():
                raise ValueError(f"{name} must be finite, got {tensor.tolist()!r}")
            values[name] = tensor
        s, c, S = values["must_order"], values["can_order"], values["order_up_to"]
        if not s.shape == c.shape == S.shape:
            raise ValueError(f"must_order, can_order and order_up_to need one level per item each, got shapes "
                             f"{tuple(s.shape)}, {tuple(c.shape)}, {tuple(S.shape)}")
        for low, high, lo_name, hi_name in ((s, c, "must_order", "can_order"), (c, S, "can_order", "order_up_to")):
            bad = (low > high).nonzero().flatten().tolist()
            if bad:
                i = bad[0]
                raise ValueError(f"{lo_name} <= {hi_name} is required item by item; item {i} has {lo_name} "
                                 f"{float(low[i])!r} > {hi_name} {float(high[i])!r}")
        for name, tensor in values.items():
            object.__setattr__(self, name, tensor)

    @property
    def items(self) -> int:
        return self.must_order.numel()

    @property
    def independent(self) -> bool:
        """Whether this is an independent (s, S) policy (``c = s`` for every item)."""
        return bool(torch.equal(self.must_order, self.can_order))


@dataclass(frozen=True)
class CanOrderParams:
    """Three scalars shared by all items, scaled per item by its demand (the levels of :meth:`levels`).

    With ``μ_i`` the item's mean demand per period, ``m_i = μ_i (L + 1)`` its mean demand over the lead time
    plus the review period (what an order placed now must cover before the next one can arrive) and
    ``σ_i = √m_i`` its standard deviation (Poisson):

    * ``s_i = m_i + safety · σ_i`` — must-order level, ``safety`` standard deviations of safety stock;
    * ``S_i = s_i + cycle · μ_i`` — order-up-to level, ``cycle`` periods of demand above ``s_i`` (roughly the
      time between joint orders);
    * ``c_i = s_i + can_order · (S_i − s_i)`` — can-order level, a fraction ``can_order ∈ [0, 1]`` of the band:
      0 is the independent (s, S) policy, 1 tops up every item below its order-up-to level in each joint order.

    The levels ignore the items' ``h_i`` and ``p_i`` (only their mean demands differ in the scaling); the tuned
    scalars absorb the average cost ratio.
    """

    safety: float = 1.0
    cycle: float = 3.0
    can_order: float = 0.5

    def __post_init__(self):
        for name in ("safety", "cycle", "can_order"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        check_nonnegative("cycle", self.cycle)
        if not 0.0 <= self.can_order <= 1.0:
            raise ValueError(f"can_order must be a fraction in [0, 1], got {self.can_order!r}")

    @classmethod
    def initial(cls, problem: JointReplenishment, *, independent: bool = False) -> CanOrderParams:
        """An analytic starting point: the newsvendor safety factor ``Φ⁻¹(p̄ / (p̄ + h̄))`` of the average costs,
        the deterministic JRP's optimal common cycle ``√(2F / Σ_i h_i μ_i)`` (the EOQ of the joint order), and
        ``can_order = 0.5`` (0 when ``independent``)."""
        p, h = float(problem.underage_cost.mean()), float(problem.holding_cost.mean())
        safety = NormalDist().inv_cdf(p / (p + h))
        cycle = math.sqrt(2 * problem.joint_fixed_cost / float((problem.holding_cost * problem.mean).sum()))
        return cls(safety, cycle, 0.0 if independent else 0.5)

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.safety, self.cycle, self.can_order)

    def levels(self, problem: JointReplenishment) -> CanOrderLevels:
        """The per-item levels of these scalars for ``problem``."""
        s, c, S = _levels_of(problem, torch.tensor([self.as_tuple()], dtype=torch.float64))
        return CanOrderLevels(s[0], c[0], S[0])


def _levels_of(problem: JointReplenishment, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``theta [G, 3]`` rows ``(safety, cycle, can_order)`` -> levels ``s, c, S``, each ``[G, n]`` (float32)."""
    mu = problem.mean.to(torch.float64)
    m = mu * (problem.lead_time + 1)
    s = m + theta[:, :1] * m.sqrt()
    S = s + theta[:, 1:2] * mu
    c = s + theta[:, 2:3] * (S - s)
    return s.float(), torch.minimum(c, S).float(), S.float()  # (min: c ≤ S exactly after rounding to float32)


def can_order_decision(levels: CanOrderLevels, position: Tensor) -> tuple[Tensor, Tensor]:
    """The policy in one period: inventory positions ``[B, n]`` -> ``(choice [B], order [B, n])``.

    ``choice`` is 1 where some item is at or below its must-order level, else 0; ``order`` is ``S_i − x_i`` for
    the items at or below their can-order level in those periods, else 0.
    """
    return _decide(position, levels.must_order.to(position), levels.can_order.to(position),
                   levels.order_up_to.to(position))


def _decide(position: Tensor, s: Tensor, c: Tensor, S: Tensor) -> tuple[Tensor, Tensor]:
    trigger = (position <= s).any(-1)
    order = torch.where(trigger[:, None] & (position <= c), S - position, torch.zeros_like(position))
    return trigger.to(torch.int64), order


class CanOrderRollout(NamedTuple):
    """A can-order rollout: ``cost [B, T]`` (the simulator's), ``choice [B, T]``, ``order [B, T, n]`` and the
    inventory ``position [B, T, n]`` each decision saw."""

    cost: Tensor
    choice: Tensor
    order: Tensor
    position: Tensor


def _rollout(problem: JointReplenishment, episode: Episode, s: Tensor, c: Tensor, S: Tensor, record: bool
             ) -> CanOrderRollout | Tensor:
    """Run the levels ``s, c, S`` (``[n]`` or ``[B, n]``) through ``problem.step`` for the whole horizon."""
    state = episode.state
    s, c, S = s.to(state), c.to(state), S.to(state)
    costs, choices, orders, positions = [], [], [], []
    with torch.no_grad():
        for t in range(problem.horizon):
            position = state[..., : problem.lead_time].sum(-1)
            choice, order = _decide(position, s, c, S)
            state, cost = problem.step(state, choice, order, t, episode)
            costs.append(cost)
            if record:
                choices.append(choice)
                orders.append(order)
                positions.append(position)
    cost = torch.stack(costs, dim=1)
    if not record:
        return cost
    return CanOrderRollout(cost, torch.stack(choices, 1), torch.stack(orders, 1), torch.stack(positions, 1))


def _check_episode(problem: JointReplenishment, episode: Episode, levels: CanOrderLevels | None = None) -> None:
    if not isinstance(problem, JointReplenishment):
        raise ValueError(f"problem must be a JointReplenishment, got {type(problem).__name__}")
    if not isinstance(episode, Episode):
        raise ValueError(f"episode must be an Episode (from JointReplenishment.sample or sample_jrp_splits), got "
                         f"{type(episode).__name__}")
    expected = (problem.items, problem.lead_time + problem.history)
    if episode.state.dim() != 3 or tuple(episode.state.shape[1:]) != expected:
        raise ValueError(f"episode.state must be [B, {expected[0]}, {expected[1]}] for this problem, got shape "
                         f"{tuple(episode.state.shape)}")
    if episode.noise is None or tuple(episode.noise.shape[1:]) != (problem.history + problem.horizon, problem.items):
        raise ValueError(f"episode.noise must be [B, {problem.history + problem.horizon}, {problem.items}] for this "
                         f"problem, got {None if episode.noise is None else tuple(episode.noise.shape)}")
    if levels is not None:
        if not isinstance(levels, CanOrderLevels):
            raise ValueError(f"levels must be CanOrderLevels, got {type(levels).__name__}")
        if levels.items != problem.items:
            raise ValueError(f"levels has {levels.items} items, the problem {problem.items}")


def rollout_can_order(problem: JointReplenishment, episode: Episode, levels: CanOrderLevels) -> CanOrderRollout:
    """Simulate the can-order policy ``levels`` on every episode at once, recording its decisions."""
    _check_episode(problem, episode, levels)
    return _rollout(problem, episode, levels.must_order, levels.can_order, levels.order_up_to, record=True)


def simulate_can_order(problem: JointReplenishment, episode: Episode, levels: CanOrderLevels) -> Tensor:
    """Costs ``[B, horizon]`` of the can-order policy ``levels`` (:class:`CanOrderLevels`) on ``episode``.

    Batched over episodes (a loop over periods only) and deterministic; every period goes through
    :meth:`JointReplenishment.step`, so the costs are the simulator's, fixed cost included.
    ``problem.reported(cost)`` gives the paper's metric.
    """
    _check_episode(problem, episode, levels)
    return _rollout(problem, episode, levels.must_order, levels.can_order, levels.order_up_to, record=False)


def _train_costs(problem: JointReplenishment, episode: Episode, theta: Tensor, max_entries: int) -> Tensor:
    """Mean reported cost ``[G]`` of each parameter row of ``theta [G, 3]``: the candidates are stacked along
    the batch (each on the same episodes: common random numbers), ``max_entries`` item-episodes at a time."""
    s, c, S = _levels_of(problem, theta)
    B = episode.size
    per_chunk = max(1, max_entries // (B * problem.items))
    out = []
    for g in range(0, theta.shape[0], per_chunk):
        G = min(per_chunk, theta.shape[0] - g)
        stacked = Episode(episode.state.repeat(G, 1, 1), episode.noise.repeat(G, 1, 1))
        rows = slice(g, g + G)
        cost = _rollout(problem, stacked, s[rows].repeat_interleave(B, 0), c[rows].repeat_interleave(B, 0),
                        S[rows].repeat_interleave(B, 0), record=False)
        out.append(problem.reported(cost).view(G, B).mean(-1).double())
    return torch.cat(out)


# The coarse grid (198 points) and the first steps of the refinement. Tuned on the package's JRP instances, the
# safety factor falls from about −0.8 (one item) to about −2.5 (50 items): the first of many items to reach its
# must-order level triggers the joint order early, so each item's own level sits low. With many items the total
# demand is nearly deterministic, the joint orders fall into a near-regular rhythm, and the cost jumps between
# the basins of different order intervals: hence a finer grid in ``cycle`` than in the other scalars.
DEFAULT_GRID = {
    "safety": (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0),
    "cycle": (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0),
    "can_order": (0.0, 0.5, 1.0),
}
DEFAULT_STEPS = {"safety": 0.5, "cycle": 0.25, "can_order": 0.25}


class CanOrderFit(NamedTuple):
    """The result of :func:`tune_can_order`: the chosen ``levels`` and ``params``, their mean reported cost on
    the training episodes, that of the analytic starting point (:meth:`CanOrderParams.initial`), and how many
    parameter vectors were simulated."""

    levels: CanOrderLevels
    params: CanOrderParams
    train_cost: float
    initial_cost: float
    evaluations: int


def tune_can_order(
    problem: JointReplenishment,
    train: Episode,
    *,
    independent: bool = False,
    grid: dict[str, tuple[float, ...]] | None = None,
    steps: dict[str, float] | None = None,
    starts: int = 4,
    refinements: int = 5,
    max_rounds: int = 200,
    max_entries: int = 1 << 19,
) -> CanOrderFit:
    """Tune the three scalars of :class:`CanOrderParams` on the training episodes; choose by training cost.

    The objective is the mean of ``problem.reported`` over ``train``. The episodes are fixed, so every candidate
    sees the same demand (common random numbers) and the objective is a deterministic function of the scalars
    (piecewise smooth: the must- and can-order comparisons make it jump). Hence a derivative-free search:

    1. **Coarse grid**: every combination of ``grid`` (default :data:`DEFAULT_GRID`, 198 points) plus the
       analytic starting point :meth:`CanOrderParams.initial`, all simulated at once (stacked along the batch).
    2. **Local refinement** from each of ``starts`` of them — the best grid point, then the best with another
       ``cycle``, and so on (different order rhythms) — by a compass (pattern) search: simulate the
       ``±step`` neighbours along each scalar (``steps``, default :data:`DEFAULT_STEPS`; clipped to ``cycle ≥ 0``
       and ``can_order ∈ [0, 1]``); move to the best neighbour if it is strictly cheaper, otherwise halve every
       step; stop after ``refinements`` halvings or ``max_rounds`` rounds. The objective has many local minima
       (the steps of the order triggers, the order rhythms), hence several starts.

    The cheapest end point is returned, so the result is never worse on ``train`` than the starting point or
    any grid point. ``independent=True`` tunes the independent (s, S) policy: ``can_order`` is held at 0
    (c = s). Deterministic; ties go to the first candidate. ``max_entries`` bounds the item-episodes simulated
    at once (memory). With one item ``can_order`` has no effect (the only item that can trigger an order is
    below its can-order level too), so both variants coincide.
    """
    _check_episode(problem, train)
    grid = dict(DEFAULT_GRID if grid is None else grid)
    steps = dict(DEFAULT_STEPS if steps is None else steps)
    names = ("safety", "cycle", "can_order")
    for what, given in (("grid", grid), ("steps", steps)):
        if set(given) != set(names):
            raise ValueError(f"{what} needs exactly the keys {list(names)}, got {sorted(given)}")
    for name in names:
        if len(grid[name]) == 0:
            raise ValueError(f"grid[{name!r}] must list at least one value, got {grid[name]!r}")
        check_positive(f"steps[{name!r}]", steps[name])
    check_int("starts", starts, minimum=1)
    check_int("refinements", refinements, minimum=0)
    check_int("max_rounds", max_rounds, minimum=0)
    check_int("max_entries", max_entries, minimum=1)
    if independent:
        grid["can_order"] = (0.0,)
    start = CanOrderParams.initial(problem, independent=independent)
    candidates = [start.as_tuple()] + [CanOrderParams(a, b, c).as_tuple()  # (validates the grid)
                                       for a in grid["safety"] for b in grid["cycle"] for c in grid["can_order"]]

    seen: dict[tuple[float, float, float], float] = {}

    def evaluate(points: list[tuple[float, float, float]]) -> list[float]:
        new = list(dict.fromkeys(p for p in points if p not in seen))
        if new:
            values = _train_costs(problem, train, torch.tensor(new, dtype=torch.float64), max_entries)
            seen.update(zip(new, values.tolist()))
        return [seen[p] for p in points]

    values = evaluate(candidates)
    initial_cost = values[0]
    order = sorted(range(len(candidates)), key=lambda k: (values[k], k))
    free = [0, 1] if independent else [0, 1, 2]
    # one compass search per start, run in lockstep so that all their neighbours are simulated together
    chosen: dict[float, int] = {}  # cycle -> the best candidate with that cycle, best first
    for k in order:
        chosen.setdefault(candidates[k][1], k)
    searches = [{"center": candidates[k], "cost": values[k], "step": [steps[name] for name in names],
                 "halvings": 0} for k in list(chosen.values())[:starts]]
    for _ in range(max_rounds):
        active = [search for search in searches if search["halvings"] < refinements]
        if not active:
            break
        for search in active:
            search["neighbours"] = []
            for j in free:
                for sign in (-1.0, 1.0):
                    point = list(search["center"])
                    point[j] += sign * search["step"][j]
                    point[1] = max(point[1], 0.0)
                    point[2] = min(max(point[2], 0.0), 1.0)
                    if tuple(point) != search["center"]:
                        search["neighbours"].append(tuple(point))
        evaluate([point for search in active for point in search["neighbours"]])
        for search in active:
            costs = [seen[point] for point in search["neighbours"]]
            k = min(range(len(costs)), key=costs.__getitem__) if costs else None
            if k is not None and costs[k] < search["cost"]:
                search["center"], search["cost"] = search["neighbours"][k], costs[k]
            else:
                search["step"] = [x / 2 for x in search["step"]]
                search["halvings"] += 1
    best = min(searches, key=lambda search: search["cost"])  # (the first on ties)
    center, center_cost = best["center"], best["cost"]

    params = CanOrderParams(*center)
    return CanOrderFit(params.levels(problem), params, center_cost, initial_cost, len(seen))


# ----------------------------------------------------------------------------------------------------------------
# The fixed-cycle policy: exact long-run cost, no simulation
# ----------------------------------------------------------------------------------------------------------------
# Every k periods place a joint order that raises each item's inventory position to its level S_i; order nothing
# in between. It is a feasible policy of the JRP, so its long-run cost bounds the optimum from above, and with
# backlogged Poisson demand that cost has a closed form. An order placed at t arrives at the start of t + L, and
# the position after it is S_i, so the net inventory at the end of period t + L + j (j = 0, …, k - 1, before the
# next order arrives) is S_i − D, with D the item's demand over L + 1 + j periods, Poisson((L + 1 + j) μ_i). The
# cost per period of item i, averaged over the cycle, is
#
#     g_i(S) = (1/k) Σ_j E[h_i (S − D_j)^+ + p_i (D_j − S)^+],   D_j ~ Poisson((L + 1 + j) μ_i),
#
# convex in S and minimised by the critical fractile of the cycle's mixture of demands: the least S with
# (1/k) Σ_j P(D_j ≤ S) ≥ p_i / (p_i + h_i) (an integer, as demand is). With (S − D)^+ − (D − S)^+ = S − D,
# g_i(S) = (h_i + p_i) (1/k) Σ_j E(S − D_j)^+ − p_i (S − E D̄) and E(S − D)^+ = Σ_{x<S} P(D ≤ x). The joint cost
# F is paid once a cycle. The best cycle is found by enumeration.


class FixedCycle(NamedTuple):
    """The best fixed-cycle policy of a JRP (:func:`fixed_cycle_policy`)."""

    cycle: int
    """k: a joint order every ``cycle`` periods."""
    order_up_to: Tensor
    """S ``[n]``: the inventory position each item is raised to by an order."""
    cost: float
    """Its exact long-run cost per item and period (the reported metric's unit)."""
    cost_by_cycle: tuple[float, ...]
    """The same with the best levels for each cycle ``1, 2, …, max_cycle``."""


def fixed_cycle_policy(problem: JointReplenishment, max_cycle: int = 24, *, cycle: int | None = None
                       ) -> FixedCycle:
    """The cheapest policy that orders every ``k ≤ max_cycle`` periods up to per-item levels (or every ``cycle``
    periods, if given), and its exact long-run cost per item and period (the closed form above; no simulation).
    An upper bound on the optimal cost of ``problem`` that depends only on its items, so cheap enough to compare
    many instances."""
    check_int("max_cycle", max_cycle, minimum=1)
    cycles = range(1, max_cycle + 1) if cycle is None else (check_int("cycle", cycle, minimum=1),)
    fits = [_fixed_cycle(problem, k) for k in cycles]
    k = min(range(len(fits)), key=lambda j: fits[j][1])
    return FixedCycle(cycles[k], fits[k][0], fits[k][1], tuple(cost for _, cost in fits))


def _fixed_cycle(problem: JointReplenishment, k: int) -> tuple[Tensor, float]:
    """The best levels ``[n]`` for a joint order every ``k`` periods, and the cost per item and period."""
    from scipy.special import gammaln

    mean, h, p = (getattr(problem, name).double().numpy() for name in ("mean", "holding_cost", "underage_cost"))
    means = (problem.lead_time + 1 + np.arange(k))[:, None] * mean[None, :]  # [k, n]
    x = np.arange(int(means.max() + 12 * math.sqrt(means.max()) + 20), dtype=float)[:, None, None]  # to 1e-20
    pmf = np.exp(x * np.log(means) - means - gammaln(x + 1))  # Poisson pmf [X, k, n]
    cdf = np.cumsum(pmf, 0).mean(1)  # the cycle's mixture cdf [X, n]
    level = (cdf < (p / (p + h))[None]).sum(0)  # the least S with cdf(S) >= the fractile
    below = np.concatenate([np.zeros((1, problem.items)), np.cumsum(cdf, 0)])  # Σ_{x<S} P(D ≤ x), [X + 1, n]
    item_cost = (h + p) * below[level, np.arange(problem.items)] - p * (level - means.mean(0))
    cost = float(item_cost.mean() + problem.joint_fixed_cost / (k * problem.items))
    return torch.as_tensor(level, dtype=torch.float32), cost


def rollout_fixed_cycle(problem: JointReplenishment, episode: Episode, policy: FixedCycle, phase: int = 0
                        ) -> Tensor:
    """Simulate ``policy`` on ``episode`` with :meth:`JointReplenishment.step`, ordering in the periods
    ``t ≡ phase (mod cycle)``; the costs ``[B, horizon]`` (how the tests check the closed form)."""
    _check_episode(problem, episode)
    check_int("phase", phase, minimum=0)
    state, costs = episode.state, []
    S = policy.order_up_to.to(state)
    for t in range(problem.horizon):
        order = (t % policy.cycle) == phase % policy.cycle
        position = state[..., : problem.lead_time].sum(-1)  # [B, n]
        quantity = (S - position).clamp_min(0) if order else torch.zeros_like(position)
        choice = torch.full(position.shape[:1], int(order), dtype=torch.int64, device=state.device)
        state, cost = problem.step(state, choice, quantity, t, episode)
        costs.append(cost)
    return torch.stack(costs, dim=1)
