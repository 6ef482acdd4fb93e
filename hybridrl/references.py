"""Exact references: the true optimum where it is known (HDPO spec §9).

* :func:`lost_sales_optimum` — the optimal long-run average cost of the single-store lost-sales problem with
  integer (e.g. Poisson) demand, by relative value iteration over the exact state
  ``(x, q_1, ..., q_{L-1})``, with the optimal policy as a table (:meth:`LostSalesOptimum.policy`).
* :func:`backlog_base_stock` — the optimal base-stock level and cost of the backlogged single store, for which
  base stock is optimal: ``S* = F⁻¹(p / (p + h))`` of the demand over ``L + 1`` periods.

Timing (the subtlety the spec warns about): in period ``t`` the order is chosen *before* demand is seen and
arrives at the start of period ``t + L``, so the minimum over the order sits outside the expectation over the
period's demand. These functions use the same convention as :mod:`hybridrl.inventory`, and the tests check the
optimal table policy's simulated cost against the DP value.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse, stats

from ._config import check_int, check_positive
from .inventory import ClippedNormal, Poisson


# ----------------------------------------------------------------------------------------------------------------
# Lost sales: dynamic programming
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class LostSalesOptimum:
    """Result of :func:`lost_sales_optimum`."""

    cost: float
    """Optimal long-run average cost per period."""
    lead_time: int
    underage_cost: float
    holding_cost: float
    mean_demand: float
    max_position: int
    """States and orders are restricted to inventory positions ``<= max_position`` (checked to be harmless)."""
    orders: np.ndarray = field(repr=False)
    """Optimal order per state, a dense array with one axis per state coordinate ``(x, q_1, ..., q_{L-1})``;
    ``-1`` marks positions above ``max_position``."""
    iterations: int = 0
    gap: float = 0.0
    """Width of the final bracket ``max - min`` of ``V_{k+1} - V_k`` around the average cost."""
    seconds: float = 0.0

    def policy(self):
        """The optimal policy as a :class:`~hybridrl.policies.TablePolicy` for the simulator."""
        import torch

        from .policies import TablePolicy

        return TablePolicy(torch.from_numpy(np.maximum(self.orders, 0)), self.max_position)


def _bounded_tuples(length: int, total: int) -> np.ndarray:
    """All non-negative integer tuples of ``length`` with sum ``<= total``, in lexicographic order."""
    if length == 0:
        return np.zeros((1, 0), dtype=np.int64)
    blocks = []
    for first in range(total + 1):
        rest = _bounded_tuples(length - 1, total - first)
        blocks.append(np.hstack([np.full((len(rest), 1), first, dtype=np.int64), rest]))
    return np.vstack(blocks)


def _demand_pmf(mean: float, upto: int) -> np.ndarray:
    return stats.poisson.pmf(np.arange(upto + 1), mean)


def backlog_level_poisson(mean: float, underage_cost: float, holding_cost: float, lead_time: int) -> int:
    """Optimal base-stock level of the backlogged store with Poisson demand (an integer)."""
    fractile = underage_cost / (underage_cost + holding_cost)
    return int(stats.poisson.ppf(fractile, mean * (lead_time + 1)))


def lost_sales_optimum(
    underage_cost: float,
    holding_cost: float = 1.0,
    lead_time: int = 1,
    demand: Poisson = Poisson(5.0),
    *,
    max_position: int | None = None,
    tol: float = 1e-9,
    max_iterations: int = 100_000,
) -> LostSalesOptimum:
    """Optimal average cost of the lost-sales single store by relative value iteration.

    State ``(x, q_1, ..., q_{L-1})``: on-hand after arrivals and the orders due in ``1, ..., L-1`` periods.
    Bellman equation, with ``D`` the period's demand and ``q`` the order (arriving in ``L`` periods)::

        g + V(x, q_1, ..., q_{L-1}) = h·E(x - D)^+ + p·E(D - x)^+
                                      + min_q E_D V((x - D)^+ + q_1, q_2, ..., q_{L-1}, q)

    States and orders are restricted to inventory positions ``x + Σ q_i + q <= max_position``; by default
    the backlog base-stock level plus 4, above which the lost-sales optimum never orders (the restriction is
    checked by the tests: raising it does not change the value). The iteration stops when the bracket
    ``[min, max]`` of ``V_{k+1} - V_k`` around ``g`` is narrower than ``tol``.

    Args:
        underage_cost: ``p`` (per unit of lost demand), holding_cost: ``h``.
        lead_time: ``L >= 1``.
        demand: Poisson demand (exact probabilities).
    """
    started = time.perf_counter()
    p = check_positive("underage_cost", underage_cost)
    h = check_positive("holding_cost", holding_cost)
    L = check_int("lead_time", lead_time, minimum=1)
    if not isinstance(demand, Poisson):
        raise ValueError(f"demand must be Poisson (integer demand) for the DP, got {demand!r}")
    mean = demand.mean
    M = backlog_level_poisson(mean, p, h, L) + 4 if max_position is None else check_int("max_position", max_position, minimum=1)

    pre = _bounded_tuples(L, M)  # pre-decision states (x, q_1, ..., q_{L-1})
    index = -np.ones((M + 1,) * L, dtype=np.int64)
    index[tuple(pre.T)] = np.arange(len(pre))
    post = _bounded_tuples(L + 1, M)  # (x, q_1, ..., q_{L-1}, q), grouped by pre-state with q fastest
    x = post[:, 0]

    # one-period expected cost c(x) = h·E(x-D)^+ + p·E(D-x)^+ (exact: E(D-x)^+ = E D - x + E(x-D)^+)
    pmf = _demand_pmf(mean, M)
    levels = np.arange(M + 1)
    over = np.array([(np.clip(v - levels, 0, None) * pmf).sum() for v in levels])
    stage_cost = h * over + p * (mean - levels + over)

    # transition: the stock left after demand is j with P((x - D)^+ = j): P(D >= x) for j = 0, P(D = x - j) else
    tail = 1.0 - np.concatenate([[0.0], np.cumsum(pmf)])  # tail[k] = P(D >= k)
    rows, cols, probs = [], [], []
    for j in range(M + 1):
        sel = np.nonzero(x >= j)[0]
        prob = tail[x[sel]] if j == 0 else pmf[x[sel] - j]
        nxt = post[sel, 1:].copy()
        nxt[:, 0] += j
        rows.append(sel)
        cols.append(index[tuple(nxt.T)])
        probs.append(prob)
    P = sparse.csr_matrix(
        (np.concatenate(probs), (np.concatenate(rows), np.concatenate(cols))), shape=(len(post), len(pre))
    )
    group = index[tuple(post[:, :L].T)]
    starts = np.r_[0, np.nonzero(np.diff(group))[0] + 1]
    c_pre = stage_cost[pre[:, 0]]

    V = np.zeros(len(pre))
    lo = hi = math.nan
    for iteration in range(1, max_iterations + 1):
        V_new = c_pre + np.minimum.reduceat(P @ V, starts)
        diff = V_new - V
        lo, hi = diff.min(), diff.max()
        V = V_new - V_new[0]
        if hi - lo < tol:
            break
    else:
        raise RuntimeError(f"relative value iteration did not converge in {max_iterations} iterations")

    expected = P @ V
    best = np.array([int(np.argmin(expected[a:b])) for a, b in zip(starts, np.r_[starts[1:], len(post)])])
    orders = -np.ones((M + 1,) * L, dtype=np.int16)
    orders[tuple(pre.T)] = best
    return LostSalesOptimum(
        cost=float((lo + hi) / 2), lead_time=L, underage_cost=p, holding_cost=h, mean_demand=mean,
        max_position=M, orders=orders, iterations=iteration, gap=float(hi - lo),
        seconds=time.perf_counter() - started,
    )


# ----------------------------------------------------------------------------------------------------------------
# Backlog: base stock
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class BaseStockOptimum:
    """Result of :func:`backlog_base_stock`."""

    level: float
    """Optimal base-stock level ``S*``."""
    cost: float
    """Optimal long-run average cost per period."""
    lead_time: int
    underage_cost: float
    holding_cost: float


def _lead_time_demand(demand, periods: int, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Support and probabilities of the demand summed over ``periods`` i.i.d. periods."""
    if isinstance(demand, Poisson):
        mu = demand.mean * periods
        upto = int(stats.poisson.ppf(1 - 1e-15, mu)) + 1
        support = np.arange(upto + 1, dtype=float)
        return support, stats.poisson.pmf(support, mu)
    if isinstance(demand, ClippedNormal):
        # one period on a grid of width `step`: the mass below step/2 (including the atom at 0) sits at 0
        m, s = demand.mean, demand.std
        top = m + 12 * s
        edges = np.arange(0.5 * step, top + step, step)
        cdf = stats.norm.cdf(edges, m, s)
        one = np.diff(np.concatenate([[0.0], cdf]))  # P(X in [edge_{k-1}, edge_k)), with P(X < step/2) first
        size = periods * (len(one) - 1) + 1  # the exact length of the (periods)-fold convolution
        total = np.fft.irfft(np.fft.rfft(one, size) ** periods, size)
        total = np.clip(total, 0, None)
        total /= total.sum()
        return np.arange(len(total)) * step, total
    raise ValueError(f"demand must be Poisson or ClippedNormal, got {demand!r}")


def backlog_base_stock_cost(
    level: float, underage_cost: float, holding_cost: float, lead_time: int, demand, *, step: float = 0.005
) -> float:
    """Average cost per period of the base-stock policy with ``level`` in the backlogged single store.

    The on-hand stock of period ``t + L`` after demand is ``level - D[t..t+L]``, so the cost is
    ``h·E(level - D)^+ + p·E(D - level)^+`` with ``D`` the demand over ``L + 1`` periods.
    """
    support, probs = _lead_time_demand(demand, lead_time + 1, step)
    return _newsvendor_cost(level, support, probs, underage_cost, holding_cost)


def _newsvendor_cost(level, support, probs, p, h) -> float:
    over = float((np.clip(level - support, 0, None) * probs).sum())
    under = float((np.clip(support - level, 0, None) * probs).sum())
    return h * over + p * under


def backlog_base_stock(
    underage_cost: float,
    holding_cost: float = 1.0,
    lead_time: int = 4,
    demand=ClippedNormal(5.0, 1.6),
    *,
    step: float = 0.005,
) -> BaseStockOptimum:
    """Optimal base-stock level and average cost of the backlogged single store (exact for base stock).

    ``S* = F⁻¹_{D[L+1]}(p / (p + h))`` where ``D[L+1]`` is the demand over ``L + 1`` periods, computed exactly
    for Poisson demand and by numerical convolution on a grid of width ``step`` for clipped-normal demand.
    """
    p = check_positive("underage_cost", underage_cost)
    h = check_positive("holding_cost", holding_cost)
    L = check_int("lead_time", lead_time, minimum=0)
    support, probs = _lead_time_demand(demand, L + 1, step)
    fractile = p / (p + h)
    cdf = np.cumsum(probs)
    k = int(np.searchsorted(cdf, fractile))
    if isinstance(demand, Poisson):
        level = float(support[k])
    else:
        # the grid mass at support[k] stands for [support[k] - step/2, support[k] + step/2): interpolate inside
        below = cdf[k - 1] if k > 0 else 0.0
        level = float(support[k] - step / 2 + step * (fractile - below) / probs[k])
    return BaseStockOptimum(
        level=level, cost=_newsvendor_cost(level, support, probs, p, h), lead_time=L, underage_cost=p, holding_cost=h
    )
