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
    # by length: the tuples of sum <= t, for every t <= total, are built once from the shorter ones (a plain
    # recursion rebuilds them exponentially often: millions of small arrays for L = 4)
    shorter = [np.zeros((1, 0), dtype=np.int64)] * (total + 1)  # length 0
    for _ in range(length):
        shorter = [np.vstack([np.hstack([np.full((len(rest), 1), first, dtype=np.int64), rest])
                              for first, rest in enumerate(shorter[t::-1])]) for t in range(total + 1)]
    return shorter[total]


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


# ----------------------------------------------------------------------------------------------------------------
# Serial system: exact echelon base-stock optimum (Clark–Scarf / Chen–Zheng recursion)
# ----------------------------------------------------------------------------------------------------------------
# Serial functions take every per-location tuple in the spec's order, upstream first: for the §4.3 system
# (echelon 0, echelon 1, warehouse, store). The recursion itself runs downstream first (stage 1 = the store).

from ._config import check_nonnegative  # noqa: E402  (kept with the section it serves)

SERIAL_LEAD_TIMES = (2, 4, 3, 4)
"""Lead time from each location's supplier (echelon 0, echelon 1, warehouse, store), HDPO spec §4.3."""
SERIAL_HOLDING = (0.1, 0.2, 0.5, 1.0)
"""Local holding cost on each location's post-shipment on-hand (echelon 0, ..., store), HDPO spec §4.3."""


@dataclass
class SerialOptimum:
    """Result of :func:`serial_optimum` / :func:`serial_optimum_pmf` (every tuple upstream first)."""

    levels: tuple[float, ...]
    """Optimal echelon base-stock levels, in the spec's order (echelon 0, echelon 1, warehouse, store)."""
    cost: float
    """Optimal long-run average cost per period in the simulator's accounting (holding on on-hand only)."""
    clark_scarf_cost: float
    """The same optimum in Clark–Scarf accounting (stock in transit to a location charged at its sender's rate)."""
    accounting_shift: float
    """``clark_scarf_cost - cost = E[D]·Σ_k h_{supplier(k)}·L_k`` (policy independent, see :func:`serial_optimum`)."""
    grid_levels: tuple[float, ...]
    """The minimisers on the demand grid (multiples of ``step``); ``levels`` refines them between grid points
    (for a discrete ``pmf`` demand ``levels == grid_levels``)."""
    penalty: float
    lead_times: tuple[int, ...]
    holding: tuple[float, ...]
    mean_demand: float
    """Mean of the (discretised) one-period demand used by the recursion."""
    step: float


def _check_serial(penalty, lead_times, holding) -> tuple[float, tuple[int, ...], tuple[float, ...]]:
    p = check_positive("penalty", penalty)
    if not isinstance(lead_times, (tuple, list)) or len(lead_times) == 0:
        raise ValueError(f"lead_times must be a non-empty tuple of integers >= 1, got {lead_times!r}")
    L = tuple(check_int(f"lead_times[{i}]", v, minimum=1) for i, v in enumerate(lead_times))
    if not isinstance(holding, (tuple, list)) or len(holding) != len(L):
        raise ValueError(f"holding must be a tuple of {len(L)} positive numbers (one per location), got {holding!r}")
    h = tuple(check_positive(f"holding[{i}]", v) for i, v in enumerate(holding))
    if any(a >= b for a, b in zip(h, h[1:])):
        raise ValueError(
            f"holding must increase strictly downstream (positive echelon holding costs h_k - h_supplier), got {holding!r}"
        )
    return p, L, h


def _check_levels(levels, n: int) -> tuple[float, ...]:
    if not isinstance(levels, (tuple, list)) or len(levels) != n:
        raise ValueError(f"levels must be a tuple of {n} echelon base-stock levels, got {levels!r}")
    return tuple(check_nonnegative(f"levels[{i}]", v) for i, v in enumerate(levels))


def _check_pmf(pmf) -> np.ndarray:
    arr = np.asarray(pmf, dtype=float)
    if arr.ndim != 1 or len(arr) == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0) or abs(arr.sum() - 1) > 1e-9:
        raise ValueError(f"pmf must be a 1-D array of non-negative probabilities summing to 1, got {pmf!r}")
    if arr[0] == 1.0:
        raise ValueError(f"pmf must put mass on a positive demand, got {pmf!r}")
    return arr


def _clipped_normal_pmf(mean: float, std: float, step: float) -> np.ndarray:
    """``max(0, N(mean, std²))`` rounded to the nearest multiple of ``step`` (the atom at 0 included in bin 0),
    tail above ``mean + 12·std`` dropped; the same discretisation as :func:`backlog_base_stock`."""
    _, pmf = _lead_time_demand(ClippedNormal(mean, std), 1, step)
    keep = int(np.nonzero(np.cumsum(pmf[::-1]) > 1e-18)[0][0])  # drop the negligible top tail
    pmf = pmf[: len(pmf) - keep]
    return pmf / pmf.sum()


def _convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) * len(b) <= 4_000_000:
        return np.convolve(a, b)
    from scipy.signal import fftconvolve

    return fftconvolve(a, b)


def _pmf_power(pmf: np.ndarray, periods: int) -> np.ndarray:
    """Distribution of the demand summed over ``periods`` i.i.d. periods (same grid)."""
    if len(pmf) <= 64:
        out = np.array([1.0])
        for _ in range(periods):
            out = np.convolve(out, pmf)
        return out
    size = periods * (len(pmf) - 1) + 1
    out = np.clip(np.fft.irfft(np.fft.rfft(pmf, size) ** periods, size), 0, None)
    out /= out.sum()
    keep = int(np.nonzero(np.cumsum(out[::-1]) > 1e-18)[0][0])
    return out[: len(out) - keep]


def _serial_recursion(pmf, step, penalty, lead_times, holding, levels=None):
    """Run the recursion of :func:`serial_optimum` (optimising if ``levels`` is None, else evaluating them).

    Returns ``(grid_index_levels, refined_levels, clark_scarf_cost, shift, mean)``, levels in spec order.
    """
    n = len(lead_times)
    Ld = lead_times[::-1]  # downstream first: Ld[0] is the store
    hd = holding[::-1] + (0.0,)  # hd[n] = 0: the outside supplier
    e = [hd[k] - hd[k + 1] for k in range(n)]  # echelon holding costs
    mu = float(np.dot(np.arange(len(pmf)), pmf) * step)
    p = penalty
    fixed = None if levels is None else [int(round(v / step)) for v in levels[::-1]]

    # the y grid 0, step, ..., top: wide enough to hold every minimiser (checked below) or every given level
    periods = sum(lead_times) + 1
    sd = math.sqrt(max(float(np.dot((np.arange(len(pmf)) * step - mu) ** 2, pmf)), 1e-12))
    top = periods * mu + 12 * sd * math.sqrt(periods) + 2 * (len(pmf) - 1) * step
    ny = int(math.ceil(top / step)) + 1
    if fixed is not None:
        ny = max(ny, max(fixed) + 2)
    grid = np.arange(ny)

    chosen, refined = [], []
    G = None
    slope = 0.0  # slope of G_{k-1} on y <= 0, where it is linear
    for k in range(n):
        if k == 0:
            # G_1(y) = E[ e_1·(y - D) + (p + h_1)·(y - D)^- ],  D = demand over L_1 + 1 periods
            demand = _pmf_power(pmf, Ld[0] + 1)
            J = len(demand) - 1
            x = np.arange(-J, ny) * step  # end-of-period store net inventory y - D
            H = e[0] * x + (p + hd[0]) * np.clip(-x, 0, None)
            G = _convolve(H, demand)[J : J + ny]
            slope = e[0] - (p + hd[0])
        else:
            # G_k(y) = e_k·(y - (L_k + 1)·mu) + E[ G_{k-1}(min(S_{k-1}, y - D)) ],  D = demand over L_k periods
            demand = _pmf_power(pmf, Ld[k])
            J = len(demand) - 1
            s = chosen[-1]
            inner = np.where(grid <= s, G, G[s])  # G_{k-1}(min(S_{k-1}, x)) for x >= 0
            below = G[0] + slope * np.arange(-J, 0) * step  # linear below 0 (S_{k-1} >= 0 > x - D)
            G = e[k] * (grid * step - (Ld[k] + 1) * mu) + _convolve(np.concatenate([below, inner]), demand)[J : J + ny]
            slope = e[k] + slope
        if fixed is None:
            i = int(np.argmin(G))
            if i >= ny - 2:
                raise RuntimeError(f"the grid (top {top:.1f}) is too short for stage {k + 1}'s minimiser")
            d = np.diff(G)
            lo, hi = (d[i - 1], d[i]) if i > 0 else (-1.0, d[0])
            # the slope at (i - 1/2)·step is lo < 0 and at (i + 1/2)·step is hi >= 0: its linear zero
            refined.append(float((i - 0.5 + (-lo) / (hi - lo)) * step) if i > 0 else 0.0)
        else:
            i = fixed[k]
            refined.append(i * step)
        chosen.append(i)
    cs_cost = float(G[chosen[-1]])
    shift = mu * sum(hd[k + 1] * Ld[k] for k in range(n - 1))
    return [round(c * step, 12) for c in chosen[::-1]], refined[::-1], cs_cost, shift, mu


def serial_optimum(
    penalty: float = 9.0,
    *,
    lead_times: tuple[int, ...] = SERIAL_LEAD_TIMES,
    holding: tuple[float, ...] = SERIAL_HOLDING,
    mean: float = 5.0,
    std: float = 2.0,
    step: float = 0.01,
) -> SerialOptimum:
    r"""Exact optimal echelon base-stock levels and average cost of the backlogged serial system (spec §4.3).

    **Model** (spec §1.2, every tuple upstream first). Location 0 buys from an unlimited outside supplier,
    location ``i`` from location ``i-1``; the last location is the store. Demand ``max(0, N(mean, std²))`` i.i.d.,
    backlogged at the store with penalty ``p`` per unit per period. In period ``t``: every location orders
    (before demand); the supplier ships at once, capped by its own on-hand; demand hits the store; costs
    ``p·(d - x)^+ + h_store·(x - d)^+`` (store on-hand ``x``) plus ``h_i·(post-shipment on-hand)`` elsewhere;
    an order placed in period ``t`` with lead time ``L`` is on hand at the start of ``t + L`` (Zipkin).
    Stock in transit is charged to nobody (the simulator's accounting).

    Index the stages from the store: stage 1 = store, ..., stage ``n`` = location 0, with lead times ``L_k``,
    local holding costs ``h_k`` and ``h_{n+1} = 0``. Echelon holding costs ``e_k = h_k - h_{k+1}`` (> 0 is
    required). ``y_k(t)`` is stage ``k``'s echelon inventory position after ordering in period ``t``
    (on-hand at ``k`` and below, plus everything in transit to ``k`` and below), ``D^{(m)}`` the demand over
    ``m`` periods, ``mu = E D``.

    **Two identities.** (i) Stage ``k``'s echelon stock at the end of period ``t + L_k`` (after demand and
    shipments: on-hand at ``k`` and below plus transit below ``k``) is ``y_k(t) - D^{(L_k+1)}`` over periods
    ``t..t+L_k``: everything it has ordered by ``t`` has arrived, nothing ordered later has. (ii) What stage
    ``k-1`` can reach in period ``t + L_k`` is stage ``k``'s echelon stock at the start of that period,
    ``X_k = y_k(t) - D^{(L_k)}`` (periods ``t..t+L_k-1``); an echelon base-stock policy with level ``S_{k-1}``
    capped by the supplier's on-hand reaches exactly ``y_{k-1} = min(S_{k-1}, X_k)``.

    **Clark–Scarf accounting.** Charge ``e_k`` per unit of stage ``k``'s echelon stock plus ``(p + h_1)`` per
    unit backlogged. Summing ``e_k`` over the echelons that contain an item gives ``h_1`` for the store's net
    stock (``h_1·IL + (p + h_1)·IL^- = h_1·IL^+ + p·IL^-``), ``h_k`` for on-hand at ``k``, and ``h_{k+1}``
    for stock in transit *to* ``k`` (it belongs to the sender's echelon, not the receiver's); the outside
    supplier's shipments to stage ``n`` belong to no echelon. So, pathwise, in every period,

        Clark–Scarf cost = simulator cost + Σ_{k=1}^{n-1} h_{k+1}·(stock in transit to k at cost time).

    At cost time (after the period's shipments) the transit to ``k`` is the last ``L_k`` shipments, whose long-run
    mean is ``L_k·mu`` under any policy whose shipments average demand, so the **accounting shift** is

        Δ = mu·Σ_{k=1}^{n-1} h_{k+1}·L_k        (§4.3: mu·(0.5·4 + 0.2·3 + 0.1·4) = 3.0·mu ≈ 15.012),

    policy independent; ``cost = clark_scarf_cost - Δ``. (Charging transit at the receiver's rate instead,
    including the outside supplier's edge, would give ``mu·Σ_k h_k·L_k = 6.5·mu``; we use the sender's rate.)

    **Recursion** (Clark and Scarf 1960; Chen and Zheng 1994), each cost attributed to the decision fixing it:

    1. ``G_1(y) = E[ e_1·(y - D^{(L_1+1)}) + (p + h_1)·(y - D^{(L_1+1)})^- ]``; ``S_1 = argmin G_1``.
    2. For ``k = 2..n``: ``G_k(y) = e_k·(y - (L_k+1)·mu) + E[ G_{k-1}(min(S_{k-1}, y - D^{(L_k)})) ]``;
       ``S_k = argmin G_k``. (``G_{k-1}(min(S_{k-1}, x)) - G_{k-1}(S_{k-1})`` is the induced penalty stage ``k``
       pays for leaving stage ``k-1`` short.) Every ``G_k`` is convex, and linear with slope ``-(p + h_{k+1})``
       on ``y <= 0`` (no demand is negative), which extends it below the grid exactly.
    3. The optimal average cost is ``G_n(S_n)`` (stage ``n`` always reaches ``S_n``), in Clark–Scarf
       accounting; echelon base stock with levels ``S_k`` is optimal among all policies (Clark–Scarf).

    **Discretisation.** One period's demand is rounded to the nearest multiple of ``step`` (the atom at 0 and
    the mass below ``step/2`` at 0; the tail above ``mean + 12·std`` dropped); multi-period demand is its exact
    convolution power (FFT), and ``G_k`` is computed on the grid ``0, step, 2·step, ...`` (exact for the
    discretised model). Rounding changes the moments by ``O(step²)`` (Sheppard), so the cost converges
    like ``step²``; the grid minimisers (``grid_levels``) are refined to the zero of the linearly interpolated
    slope ``(G_k(y + step) - G_k(y)) / step``. ``step = 0.01`` agrees with ``step = 0.005`` to about 1e-5 in cost
    and 1e-3 in levels (see tests/test_serial.py).

    Args:
        penalty: ``p``, backlog cost per unit per period.
        lead_times, holding: per location, upstream first (default: spec §4.3).
        mean, std: of the normal before clipping at 0.
        step: demand grid step.
    """
    p, L, h = _check_serial(penalty, lead_times, holding)
    m = check_positive("mean", mean)
    s = check_positive("std", std)
    step = check_positive("step", step)
    if step > s / 4:
        raise ValueError(f"step must be at most std/4 = {s / 4} for an accurate discretisation, got {step!r}")
    pmf = _clipped_normal_pmf(m, s, step)
    grid_levels, refined, cs, shift, mu = _serial_recursion(pmf, step, p, L, h)
    return SerialOptimum(
        levels=tuple(refined), cost=cs - shift, clark_scarf_cost=cs, accounting_shift=shift,
        grid_levels=tuple(grid_levels), penalty=p, lead_times=L, holding=h, mean_demand=mu, step=step,
    )


def serial_optimum_pmf(
    pmf, penalty: float, *, lead_times: tuple[int, ...], holding: tuple[float, ...], step: float = 1.0
) -> SerialOptimum:
    """:func:`serial_optimum` for a discrete demand: ``P(D = i·step) = pmf[i]``. The levels are grid minimisers."""
    p, L, h = _check_serial(penalty, lead_times, holding)
    step = check_positive("step", step)
    arr = _check_pmf(pmf)
    grid_levels, _, cs, shift, mu = _serial_recursion(arr, step, p, L, h)
    return SerialOptimum(
        levels=tuple(grid_levels), cost=cs - shift, clark_scarf_cost=cs, accounting_shift=shift,
        grid_levels=tuple(grid_levels), penalty=p, lead_times=L, holding=h, mean_demand=mu, step=step,
    )


def serial_cost(
    levels: tuple[float, ...],
    penalty: float = 9.0,
    *,
    lead_times: tuple[int, ...] = SERIAL_LEAD_TIMES,
    holding: tuple[float, ...] = SERIAL_HOLDING,
    mean: float = 5.0,
    std: float = 2.0,
    step: float = 0.01,
) -> float:
    """Exact long-run average cost (simulator accounting) of echelon base stock with any ``levels`` >= 0.

    The recursion of :func:`serial_optimum` with ``S_k`` fixed at the given levels instead of minimised (valid
    for any levels, monotone or not: after the first period no echelon position exceeds its level, so stage
    ``k-1`` reaches ``min(S_{k-1}, X_k)``). Levels are rounded to the nearest multiple of ``step``: pick a
    step that divides them (0.01 for two decimals).
    """
    p, L, h = _check_serial(penalty, lead_times, holding)
    lv = _check_levels(levels, len(L))
    m = check_positive("mean", mean)
    s = check_positive("std", std)
    step = check_positive("step", step)
    _, _, cs, shift, _ = _serial_recursion(_clipped_normal_pmf(m, s, step), step, p, L, h, levels=lv)
    return cs - shift


def serial_cost_pmf(
    levels: tuple[float, ...], pmf, penalty: float, *, lead_times: tuple[int, ...], holding: tuple[float, ...],
    step: float = 1.0,
) -> float:
    """:func:`serial_cost` for a discrete demand ``P(D = i·step) = pmf[i]``."""
    p, L, h = _check_serial(penalty, lead_times, holding)
    lv = _check_levels(levels, len(L))
    step = check_positive("step", step)
    _, _, cs, shift, _ = _serial_recursion(_check_pmf(pmf), step, p, L, h, levels=lv)
    return cs - shift


# ---- a small simulator of the serial system under echelon base stock (to verify the recursion) ----------------
@dataclass
class SerialSimulation:
    """Result of :func:`simulate_serial`: average cost per period after warm-up, over independent paths."""

    mean: float
    se: float
    """Standard error of ``mean`` (spread of the per-path averages / sqrt(paths))."""
    ci: tuple[float, float]
    """95 % confidence interval ``mean ± 1.96·se``."""
    location_costs: tuple[float, ...]
    """Average cost per period of each location (upstream first; the store's includes the backlog penalty)."""
    paths: int
    periods: int
    warmup: int
    seed: int


def _serial_step(inv, levels, demand, penalty, holding, lead_times):
    """One period of the serial system (spec §1.2) under echelon base stock (spec §6.3), batched.

    ``inv[i]`` is location ``i``'s vector ``[B, L_i]`` (upstream first): slot 0 the on-hand after arrivals (the
    store's may be negative: backlog), slot ``j`` what arrives in ``j`` periods. Orders:
    ``q_i = min(max(S_i - echelon IP_i, 0), on-hand of i's supplier)`` (location 0 uncapped), with echelon
    IP_i = on-hand plus pipeline of ``i`` and of every location below it. Returns ``(new_inv, costs [B, n])``.
    """
    import torch

    n = len(inv)
    totals = [v.sum(1) for v in inv]
    orders = []
    echelon_ip = torch.zeros_like(totals[0])
    for i in range(n - 1, -1, -1):
        echelon_ip = echelon_ip + totals[i]
        q = (levels[i] - echelon_ip).clamp_min(0.0)
        if i > 0:
            q = torch.minimum(q, inv[i - 1][:, 0])
        orders.append(q)
    orders = orders[::-1]
    x = inv[-1][:, 0]
    costs = []
    post = []
    for i in range(n - 1):
        after = inv[i][:, 0] - orders[i + 1]
        post.append(after)
        costs.append(holding[i] * after)
    post.append(x - demand)
    costs.append(penalty * (demand - x).clamp_min(0.0) + holding[-1] * (x - demand).clamp_min(0.0))
    new = []
    for i in range(n):
        ext = torch.cat([inv[i], torch.zeros_like(inv[i][:, :1])], 1)[:, 1:].clone()
        ext[:, 0] += post[i]
        ext[:, lead_times[i] - 1] += orders[i]
        new.append(ext)
    return new, torch.stack(costs, 1)


def simulate_serial(
    levels: tuple[float, ...],
    penalty: float = 9.0,
    *,
    lead_times: tuple[int, ...] = SERIAL_LEAD_TIMES,
    holding: tuple[float, ...] = SERIAL_HOLDING,
    mean: float = 5.0,
    std: float = 2.0,
    paths: int = 4000,
    periods: int = 700,
    warmup: int = 300,
    seed: int = 0,
) -> SerialSimulation:
    """Simulate echelon base stock with ``levels`` (upstream first) in the serial system; cost per period.

    Spec §1.2 event order and §6.3 order rule (see :func:`_serial_step`), holding on post-shipment on-hand
    only. Demand ``max(0, N(mean, std²))`` in float64 from a ``torch.Generator`` seeded with ``seed``. Each path
    starts full (location ``i`` holds ``max(S_i - S_{i+1}, 0)``, the store ``S_store``, nothing in transit); the
    first ``warmup`` periods are dropped and the cost is averaged over the rest.
    """
    import torch

    p, L, h = _check_serial(penalty, lead_times, holding)
    lv = _check_levels(levels, len(L))
    m = check_positive("mean", mean)
    s = check_positive("std", std)
    B = check_int("paths", paths, minimum=2)
    T = check_int("periods", periods, minimum=1)
    W = check_int("warmup", warmup, minimum=0)
    if W >= T:
        raise ValueError(f"warmup must be smaller than periods = {T}, got {warmup!r}")
    seed = check_int("seed", seed)
    gen = torch.Generator().manual_seed(seed)
    n = len(L)
    inv = []
    for i in range(n):
        v = torch.zeros(B, L[i], dtype=torch.float64)
        v[:, 0] = lv[i] - lv[i + 1] if i < n - 1 else lv[i]
        v[:, 0].clamp_(min=0.0)
        inv.append(v)
    total = torch.zeros(B, n, dtype=torch.float64)
    for t in range(T):
        d = (m + s * torch.randn(B, generator=gen, dtype=torch.float64)).clamp_min(0.0)
        inv, c = _serial_step(inv, lv, d, p, h, L)
        if t >= W:
            total += c
    per_path = total.sum(1) / (T - W)
    mu = float(per_path.mean())
    se = float(per_path.std()) / math.sqrt(B)
    return SerialSimulation(
        mean=mu, se=se, ci=(mu - 1.96 * se, mu + 1.96 * se),
        location_costs=tuple(float(v) for v in total.mean(0) / (T - W)), paths=B, periods=T, warmup=W, seed=seed,
    )


# ----------------------------------------------------------------------------------------------------------------
# Lower bounds for the networks of spec §4.4 (one warehouse, lost sales) and §4.5 (transshipment, backlog)
# ----------------------------------------------------------------------------------------------------------------
# The paper's constructions are unknown (spec §10.2). Ours are relaxations, each proved in its docstring: every
# feasible policy of the network costs at least the bound, per store and period, in the long run (the
# transshipment bound even holds in expectation in every period t >= L_w + L_s, whatever the initial state).


import dataclasses  # noqa: E402  (kept with the section it serves)


def _normal_loss(u, mean: float, std: float):
    """``E(N - u)^+`` for ``N ~ Normal(mean, std²)`` (the standard normal loss function, scaled)."""
    z = (np.asarray(u, dtype=float) - mean) / std
    return std * (stats.norm.pdf(z) - z * stats.norm.sf(z))


def _clipped_normal_newsvendor(u, mean: float, std: float, underage_cost: float, holding_cost: float):
    """``C(u) = h·E(u - D)^+ + p·E(D - u)^+`` for ``D = max(0, Normal(mean, std²))`` and ``u >= 0``, exactly.

    For ``u >= 0``, ``(D - u)^+ = (N - u)^+``, and ``E(u - D)^+ = u - E D + E(D - u)^+`` with
    ``E D = mean·Φ(mean/std) + std·φ(mean/std)``."""
    under = _normal_loss(u, mean, std)
    expected = mean * stats.norm.cdf(mean / std) + std * stats.norm.pdf(mean / std)
    return holding_cost * (np.asarray(u, dtype=float) - expected + under) + underage_cost * under


def _lost_sales_kernel(pmf: np.ndarray, tail: np.ndarray, size: int) -> np.ndarray:
    """``G[x, y] = P((x - D)^+ = y)`` on the grid ``0..size-1``: ``P(D >= x)`` at ``y = 0``, ``P(D = x - y)`` else."""
    G = np.zeros((size, size))
    G[:, 0] = tail[:size]
    for x in range(1, size):
        G[x, 1 : x + 1] = pmf[x - 1 :: -1][:x]
    return G


def _simplex_sum(size: int, dims: int) -> np.ndarray:
    """The array ``i_1 + ... + i_dims`` over the box ``{0..size-1}^dims`` (``int32``)."""
    total = np.zeros((), dtype=np.int32)
    for _ in range(dims):
        total = np.add.outer(total, np.arange(size, dtype=np.int32))
    return total


def _grid_rvi(kernel, stage, lead_time, max_position, disposal, *, tol, max_iterations, start=None, orders=False):
    """Relative value iteration for the lost-sales store on an integer grid, with free disposal (see
    :func:`lost_sales_store_lower_bound`). Returns ``(lo, hi, iterations, V, table)``.

    State ``(x, q_1, ..., q_{L-1})`` (a dense array over ``{0..M}^L``, entries with coordinate sum ``> M`` unused),
    order ``q`` with ``x + Σ q_i + q <= M``; after demand, ``y = (x - D)^+`` (``kernel[x, y]``), then
    ``w <= min(disposal, y)`` units may be thrown away; next state ``(y - w + q_1, q_2, ..., q)``. One step::

        (T V)(x, q_1, ..) = stage[x] + min_q Σ_y kernel[x, y]·A_{min(y, disposal)}(y + q_1, q_2, .., q_{L-1}, q)

    with ``A_k(z, ·) = min_{w <= k} V(z - w, ·)``. The ``s = x + q_1`` blocks are computed with one matrix product
    each (rows ``x``, columns every ``(q_2, .., q)`` with sum ``<= M - s``). ``lo = min (T V_k - V_k)`` and ``hi
    = max (T V_k - V_k)`` bracket the optimal average cost of this finite model for every ``k`` (Odoni 1969):
    ``lo`` is a lower bound whatever ``V_k``, so stopping early never invalidates it.
    """
    M, L, W = max_position, lead_time, disposal
    B = M + 1
    trail = L - 1
    shape = (B,) * L
    valid = _simplex_sum(B, L) <= M
    tsum = _simplex_sum(B, trail) if trail else None
    cache_blocks = B <= 300
    blocks = {}

    def block(s):  # K[x, z] = P(y = z - s + x | x) for y >= W (the rest is added row by row)
        if s in blocks:
            return blocks[s]
        x = np.arange(s + 1)[:, None]
        y = np.arange(s + 1)[None, :] - s + x
        K = np.where(y >= W, kernel[x, np.clip(y, 0, B - 1)], 0.0)
        if cache_blocks:
            blocks[s] = K
        return K

    V = np.zeros(shape) if start is None else np.where(valid, start, 0.0)
    lo = hi = math.nan
    table = None
    for iteration in range(1, max_iterations + 1):
        Vn, _ = _grid_bellman(_disposal_mins(V, W), block, kernel, stage, L, M, W, tsum, want_orders=False)
        d = (Vn - V)[valid]
        lo, hi = float(d.min()), float(d.max())
        V = np.where(valid, Vn - Vn.flat[0], 0.0)
        if hi - lo < tol:
            break
    if orders:
        _, table = _grid_bellman(_disposal_mins(V, W), block, kernel, stage, L, M, W, tsum, want_orders=True)
        table = np.where(valid, table, -1).astype(np.int32)
    return lo, hi, iteration, V, table


def _disposal_mins(V, W):
    """``[A_0, ..., A_W]``, ``A_k(z, ·) = min_{w <= k} V(z - w, ·)``: the value after disposing of up to ``k``."""
    A = [V]
    for _ in range(W):
        nxt = A[-1].copy()
        nxt[1:] = np.minimum(A[-1][1:], A[-1][:-1])
        A.append(nxt)
    return A


def _grid_bellman(A, block, kernel, stage, L, M, W, tsum, *, want_orders):
    """One Bellman step of :func:`_grid_rvi`: ``(T V, argmin order or None)``."""
    B = M + 1
    trail = L - 1
    Vn = np.full((B,) * L, np.inf)
    best = np.zeros((B,) * L, dtype=np.int64) if want_orders else None
    for s in range(B):
        n = M - s + 1
        x = np.arange(s + 1)
        box = (slice(0, n),) * trail
        R = (block(s) @ A[W][(slice(0, s + 1),) + box].reshape(s + 1, -1)).reshape((s + 1,) + (n,) * trail)
        for j in range(min(W, s + 1)):  # y = j < W: rows x = j..s reach z = y + q_1 = s - x + j = s..j
            rows = A[j][(slice(s, j - 1 if j else None, -1),) + box]
            R[j:] += kernel[j : s + 1, j].reshape((-1,) + (1,) * trail) * rows
        if trail == 0:  # L = 1: the order is q_1 itself, s = x + q
            better = R < Vn[: s + 1]
            Vn[: s + 1] = np.where(better, R, Vn[: s + 1])
            if want_orders:
                best[: s + 1] = np.where(better, s - x, best[: s + 1])
            continue
        R += np.where(tsum[box] <= M - s, 0.0, np.inf)  # orders beyond the cap M
        target = (x, s - x) + (slice(0, n),) * (L - 2)
        Vn[target] = R.min(-1)
        if want_orders:
            best[target] = R.argmin(-1)
    Vn = np.where(np.isfinite(Vn), Vn, 0.0) + stage.reshape((B,) + (1,) * (L - 1))
    return Vn, best


@dataclass
class StoreLowerBound:
    """Result of :func:`lost_sales_store_lower_bound` (one store; costs per period)."""

    cost: float
    """A valid lower bound on the optimal long-run average cost of the store with unlimited supply."""
    grid_cost: float
    """The optimal average cost of the relaxed grid model (midpoint of its bracket; ``>= cost``)."""
    mean: float
    std: float
    underage_cost: float
    holding_cost: float
    lead_time: int
    step: float
    """Grid step ``δ`` (units of demand)."""
    max_position: int
    """Cap ``M`` on the inventory position after ordering, in grid units."""
    base_stock_level: float
    """``S̄``: the backlog base-stock level, above which the optimal lost-sales policy never orders (Morton)."""
    states: int
    """Number of grid states ``(x, q_1, ..., q_{L-1})`` with ``x + Σq <= M``."""
    iterations: int
    seconds: float
    orders: np.ndarray | None = field(default=None, repr=False)
    """With ``orders=True``: the relaxed model's optimal order (grid units) per state, ``-1`` outside the cap."""


_STORE_BOUNDS: dict = {}
"""Cache of :func:`lost_sales_store_lower_bound` results (without order tables), keyed by its arguments."""


def lost_sales_store_lower_bound(
    mean: float,
    std: float,
    underage_cost: float,
    holding_cost: float,
    lead_time: int,
    *,
    step: float | None = None,
    max_units: int | None = None,
    tol: float = 1e-3,
    max_iterations: int = 500,
    orders: bool = False,
) -> StoreLowerBound:
    r"""A valid lower bound on the optimal long-run average cost of one lost-sales store with demand
    ``D = max(0, Normal(mean, std²))`` i.i.d., lead time ``L``, underage cost ``p`` per unit lost and holding cost
    ``h`` per unit left after demand, unlimited supply (the simulator's timing: the order of period ``t`` is on
    hand at the start of ``t + L``).

    **The continuous problem** has no exact finite DP; discretising the demand changes the problem in an unknown
    direction, so we build a *relaxed* grid model ``G(δ, M)`` whose optimal cost is provably not larger, and
    solve that exactly. Work in units of ``δ``:

    * state ``(x, q_1, ..., q_{L-1})`` of non-negative integers with ``x + Σq_i <= M``, order ``q >= 0`` with
      ``x + Σq_i + q <= M``;
    * stage cost ``c̄(x) = min { C(u) : max(0, (x-1)δ) <= u <= xδ }`` with the exact newsvendor cost
      ``C(u) = h·E(u - D)^+ + p·E(D - u)^+`` (closed form; ``C`` is convex, so ``c̄`` is ``C`` at the clamp of
      its minimiser);
    * demand ``D̃ = ⌊D/δ⌋``; after demand ``y = (x - D̃)^+``; then up to ``min(2, y)`` units may be disposed of
      for free; next state ``(y - w + q_1, q_2, ..., q_{L-1}, q)``.

    **Claim: ``g*(G) <= g*_continuous``.** Take an optimal continuous policy ``π*``; by Morton (1971) (used by
    Zipkin 2008, "Old and new methods for lost-sales inventory systems", to make the state space compact; and
    checked on the exact Poisson DP in tests/test_network_bounds.py) it never raises the inventory position after
    ordering above ``S̄``, the backlog base-stock level ``F⁻¹_{D[L+1]}(p/(p+h))``. Run ``π*`` inside ``G``: on
    seeing ``D̃_t`` draw ``D_t`` from its conditional law given ``⌊D_t/δ⌋ = D̃_t`` (so the ``D_t`` are i.i.d.
    with the right law), feed ``π*`` with it and order ``⌈q_t/δ⌉``. By induction the grid state is the
    continuous state rounded up, ``x̃_t = ⌈x_t/δ⌉`` and ``q̃_i = ⌈q_i/δ⌉``:

    1. cost — ``x_t ∈ ((x̃_t - 1)δ, x̃_t δ]`` and ``D_t`` is independent of the past, so
       ``E[p(D_t - x_t)^+ + h(x_t - D_t)^+ | past] = C(x_t) >= c̄(x̃_t)``;
    2. transition — ``x̃δ >= x`` and ``D̃δ <= D`` give ``ỹδ >= y = (x - D)^+``, and ``ỹδ - y < 2δ``; with
       the arrival ``⌈q_1/δ⌉ - q_1/δ ∈ [0, 1)``, the grid stock ``P = ỹ + q̃_1`` satisfies
       ``0 <= P - x_{t+1}/δ < 3``, so ``w = P - ⌈x_{t+1}/δ⌉ ∈ {0, 1, 2}``, and ``w <= ỹ`` (as
       ``⌈x_{t+1}/δ⌉ >= q̃_1``): disposing ``w`` restores the invariant;
    3. cap — the grid position after ordering is ``< S̄/δ + L + 1`` (``L + 1`` roundings up), so ``<= M`` with
       ``M = ⌈S̄/δ⌉ + L + 1``.

    So ``G`` has a (history-dependent, randomised) policy whose average cost is at most ``g*_continuous``, and
    ``g*(G)`` is the minimum over all such policies.

    **Solving ``G``** by relative value iteration (:func:`_grid_rvi`); the reported ``cost`` is the lower end
    ``min_s (T V - V)(s)`` of the Odoni bracket, itself ``<= g*(G)`` for any ``V``. So ``cost <= g*(G) <=
    g*_continuous``, with no tolerance argument needed.

    **Tightness.** The relaxation (rounding, free disposal of up to 2δ per period) costs ``O(δ)``: the bound
    rises towards the optimum as ``step`` shrinks (about 2 % below the optimum at ``δ = std/32``, 6 % at
    ``std/16`` with ``L = 3``, against simulated near-optimal policies). The work grows like ``M^{L+2}``: by
    default ``δ = std/32`` for ``L <= 2`` and ``std/16`` beyond, coarsened so that ``M <= max_units`` (default
    400, 160, 70 and 40 grid units for ``L <= 2``, 3, 4 and ``>= 5``): a few seconds for ``L = 2``, about ten for
    ``L = 3`` on one core. Results are cached by their arguments.

    Args:
        mean, std: of the normal before clipping at 0.
        underage_cost, holding_cost: ``p``, ``h``.
        lead_time: ``L >= 1``.
        step: grid step ``δ``; default automatic (above).
        max_units: cap on ``M`` for the automatic step.
        tol: stop when the Odoni bracket is narrower (the reported lower end is valid at any stopping point,
            within ``tol`` of the relaxed model's optimum).
        orders: also return the relaxed model's optimal order table.
    """
    m = check_positive("mean", mean)
    s = check_positive("std", std)
    p = check_positive("underage_cost", underage_cost)
    h = check_positive("holding_cost", holding_cost)
    L = check_int("lead_time", lead_time, minimum=1)
    W = 2  # the free disposal per period that the proof needs (less would not be a valid bound)
    tol = check_positive("tol", tol)
    max_iterations = check_int("max_iterations", max_iterations, minimum=1)
    if max_units is None:
        max_units = {1: 400, 2: 400, 3: 160, 4: 70}.get(L, 40)
    max_units = check_int("max_units", max_units, minimum=L + 4)
    fine = min(0.01, s / 20)  # S̄ by exact convolution on a fine grid, plus twice that grid's error as margin
    level = backlog_base_stock(p, h, L, ClippedNormal(m, s), step=fine).level + 2 * fine
    if step is None:
        delta = max(s / (32 if L <= 2 else 16), level / (max_units - L - 2))
    else:
        delta = check_positive("step", step)
    key = (m, s, p, h, L, delta, W, tol, max_iterations)
    if key in _STORE_BOUNDS and not orders:
        return _STORE_BOUNDS[key]
    started = time.perf_counter()
    M = int(math.ceil(level / delta)) + L + 1

    def model(d, top):
        k = np.arange(top + 1)
        upper = stats.norm.cdf(((k + 1) * d - m) / s)  # P(D < (k+1)d): D = max(0, N)
        pmf = np.diff(np.concatenate([[0.0], upper]))  # P(D̃ = k)
        tail = np.concatenate([[1.0], stats.norm.sf((k[1:] * d - m) / s)])  # P(D̃ >= k) = P(D >= kd)
        ratio = p / (p + h)
        best = max(0.0, m + s * stats.norm.ppf(ratio))  # argmin C (C is increasing from 0 if this is <= 0)
        u = np.clip(best, np.maximum(0.0, (k - 1) * d), k * d)
        return _lost_sales_kernel(pmf, tail, top + 1), _clipped_normal_newsvendor(u, m, s, p, h)

    # coarse-to-fine warm start: solve on grids of step 2^j·δ first (only the final V's bracket is reported)
    levels = [(delta, M)]
    while levels[-1][1] > 48:
        d, top = levels[-1]
        levels.append((2 * d, (top + 1) // 2 + L))
    start = None
    iterations = 0
    for i, (d, top) in enumerate(reversed(levels)):
        final = i == len(levels) - 1
        kernel, stage = model(d, top)
        if start is not None:  # previous (coarser) V at floor(index / 2): sum of halves stays within the cap
            half = start
            idx = np.ix_(*[np.minimum(np.arange(top + 1) // 2, half.shape[0] - 1)] * L)
            start = half[idx]
        lo, hi, it, start, table = _grid_rvi(kernel, stage, L, top, W, tol=tol,
                                             max_iterations=max_iterations, start=start, orders=orders and final)
        iterations += it
    result = StoreLowerBound(
        cost=lo, grid_cost=(lo + hi) / 2, mean=m, std=s, underage_cost=p, holding_cost=h, lead_time=L, step=delta,
        max_position=M, base_stock_level=level, states=math.comb(M + L, L), iterations=iterations,
        seconds=time.perf_counter() - started, orders=table,
    )
    _STORE_BOUNDS[key] = dataclasses.replace(result, orders=None)
    return result


def _network_stores(network, what: str):
    """``(store location, its single supply edge)`` per store, checking the network's type."""
    from .networks import Network

    if not isinstance(network, Network):
        raise TypeError(f"{what} needs a hybridrl.networks.Network, got {type(network).__name__}")
    out = []
    for i in network.stores:
        edges = [e for e in network.edges if e.receiver == i]
        if len(edges) != 1:
            raise ValueError(f"{what}: store {network.locations[i].name!r} must have exactly one supply edge, "
                             f"got {len(edges)}")
        out.append((network.locations[i], edges[0]))
    return out


def one_warehouse_store_bounds(network, *, step: float | None = None, max_units: int | None = None,
                               tol: float = 1e-3) -> list[StoreLowerBound]:
    """The per-store lower bounds behind :func:`one_warehouse_lower_bound` (one
    :class:`StoreLowerBound` per store, in the network's store order)."""
    stores = _network_stores(network, "one_warehouse_lower_bound")
    if not network.lost_sales or not network.truncate_demand:
        raise ValueError("one_warehouse_lower_bound is for lost-sales networks with demand truncated at 0 "
                         f"(spec §4.4), got unmet_demand={network.unmet_demand!r}, "
                         f"truncate_demand={network.truncate_demand}")
    for loc, _ in stores:
        if loc.std <= 0:
            raise ValueError(f"store {loc.name!r}: the bound needs random demand (std > 0), got std={loc.std!r}")
    return [lost_sales_store_lower_bound(loc.mean, loc.std, loc.underage_cost, loc.holding_cost, edge.lead_time,
                                         step=step, max_units=max_units, tol=tol) for loc, edge in stores]


def one_warehouse_lower_bound(network, *, step: float | None = None, max_units: int | None = None,
                              tol: float = 1e-3) -> float:
    r"""A valid lower bound on the long-run cost per store and period of every feasible policy of a lost-sales
    network in which each store has one supply edge (spec §4.4: one warehouse, many stores).

    **Relaxation: each store alone with unlimited supply.** Fix any feasible policy of the network and a store
    ``s`` with supply edge lead time ``L_s``. What reaches the store is a sequence of non-negative shipments,
    each decided before the demand of its period, and arriving ``L_s`` periods later; the store's on-hand,
    lost sales and cost follow the single-store recursion exactly (cost ``p·(d - x)^+ + h·(x - d)^+`` on the
    on-hand ``x`` after arrivals, stock ``(x - d)^+`` carried). The shipments may depend on the other stores'
    demands, which are correlated with store ``s``'s own demand *in the same period* only; every such piece of
    information is revealed after the period, when the single-store controller also knows ``d_s``, so it can be
    generated from ``d_s`` plus independent randomisation. Hence the store's sequence of costs is that of a
    (history-dependent, randomised) single-store policy with unlimited, free supply at lead time ``L_s``, and its
    long-run average is at least the single-store optimum ``g*_s`` (the warehouse can do no better than to ship
    whatever the store asks). The warehouse's holding cost, procurement costs and the rationing are all ``>= 0``
    or only restrict the store, so the network cost per store and period
    ``(Σ_s store_s + upstream) / S >= (1/S)·Σ_s g*_s >= (1/S)·Σ_s LB_s``, with ``LB_s`` from
    :func:`lost_sales_store_lower_bound` (a provable lower bound on ``g*_s`` for the clipped-normal demand).

    The correlation between stores plays no part (each store is bounded alone), and the bound ignores the
    warehouse's lead time and stock: it bounds a network whose warehouse never runs short and costs nothing to
    hold, so besides the store bounds' own slack (about 2 % for ``L = 2`` and 6 % for ``L = 3`` at the default
    grid) it is loose by the warehouse's cost and the effect of rationing.

    Run time (one core, default grid): about 2 s per store with ``L = 2`` and 5-8 s with ``L = 3``, some 45 s
    for the 10-store instance of spec §4.4; per-store results are cached, so the 3- and 5-store instances then
    cost nothing more. ``max_units=60`` gives a valid but looser bound in well under a second per store.

    Args:
        network: e.g. :func:`hybridrl.networks.one_warehouse_network` (lost sales, truncated demand).
        step, max_units, tol: the store bounds' grid (see :func:`lost_sales_store_lower_bound`).

    Returns:
        The bound, per store and period: comparable with the mean of ``Trajectory.cost`` over scenarios,
        stores and the periods after a warm-up.
    """
    bounds = one_warehouse_store_bounds(network, step=step, max_units=max_units, tol=tol)
    return float(np.mean([b.cost for b in bounds]))


@dataclass
class TransshipmentBound:
    """Result of :func:`transshipment_bound`."""

    cost: float
    """The lower bound per store and period."""
    system_cost: float
    """The pooled system's optimal cost per period (``cost · n_stores``)."""
    level: float
    """Optimal base-stock level of the pooled system (on the system inventory position)."""
    lead_time: int
    """Effective lead time ``L_w + L_s``."""
    mean: float
    """Mean of the pooled demand per period ``Σ_s mean_s``."""
    std: float
    """Standard deviation of the pooled demand per period."""
    underage_cost: float
    holding_cost: float


def transshipment_bound(network) -> TransshipmentBound:
    r"""The lower bound of :func:`transshipment_lower_bound`, with its ingredients."""
    stores = _network_stores(network, "transshipment_lower_bound")
    if network.lost_sales:
        raise ValueError("transshipment_lower_bound needs backlogged stores (spec §4.5), got lost sales")
    if network.truncate_demand:
        raise ValueError("transshipment_lower_bound needs untruncated normal demand (spec §4.5): the pooled "
                         "demand of truncated normals is not normal")
    upstream = [i for i, loc in enumerate(network.locations) if not loc.store]
    if len(upstream) != 1:
        raise ValueError(f"transshipment_lower_bound needs exactly one center, got {len(upstream)} upstream "
                         "locations")
    c = upstream[0]
    center = network.locations[c]
    if center.holds_stock:
        raise ValueError(f"location {center.name!r} holds stock: the bound needs a transshipment center "
                         "(holds_stock=False), which ships everything it has every period")
    inbound = [e for e in network.edges if e.receiver == c]
    if len(inbound) != 1 or inbound[0].supplier is not None:
        raise ValueError("the center must have exactly one supply edge, from the outside supplier")
    leads = {e.lead_time for _, e in stores}
    if any(e.supplier != c for _, e in stores) or len(leads) != 1:
        raise ValueError("every store must be supplied by the center with one common lead time, got "
                         f"{sorted(leads)}")
    L = inbound[0].lead_time + leads.pop()
    p = min(loc.underage_cost for loc, _ in stores)
    h = min(loc.holding_cost for loc, _ in stores)
    sd = np.array([loc.std for loc, _ in stores])
    mu = float(sum(loc.mean for loc, _ in stores))
    var = float((sd**2).sum() + network.correlation * (sd.sum() ** 2 - (sd**2).sum()))
    sigma = math.sqrt(max(var, 0.0))
    z = stats.norm.ppf(p / (p + h))
    spread = sigma * math.sqrt(L + 1)
    system = (p + h) * spread * float(stats.norm.pdf(z))
    level = float((L + 1) * mu + z * spread)
    return TransshipmentBound(cost=system / network.n_stores, system_cost=system, level=level, lead_time=L, mean=mu,
                              std=sigma, underage_cost=p, holding_cost=h)


def transshipment_lower_bound(network) -> float:
    r"""A valid lower bound on the expected cost per store and period of every feasible policy of the
    transshipment network (spec §4.5), in every period ``t >= L_w + L_s``.

    **Setting.** A center that cannot hold stock receives outside orders after ``L_w`` periods and ships *all*
    its on-hand to the stores in the same period (the simulator's event 2); a shipment is on hand at the store
    ``L_s`` periods later. Stores backlog; store ``s`` pays ``f_s(x - d) = h_s·(x - d)^+ + p_s·(x - d)^-`` on
    its net inventory ``x`` after arrivals; the center pays ``h_c`` on its post-shipment on-hand, which is 0.
    Demand is normal, not truncated, with equal pairwise correlation ``ρ``.

    **Pooling (convexity).** With ``h = min h_s``, ``p = min p_s``, ``f(a) = h·a^+ + p·a^-`` is sublinear, so
    ``Σ_s f_s(a_s) >= Σ_s f(a_s) >= f(Σ_s a_s)``: the stores' cost is at least the cost of their pooled net
    inventory ``X_t = Σ_s x_{s,t}`` against the pooled demand ``D_t = Σ_s d_{s,t}``. Equivalently: rebalancing
    the stores' inventories freely (even below zero) every period can only lower the cost.

    **Lead time ``L = L_w + L_s``.** Let ``Y_t`` be the system inventory position after the outside order of
    period ``t``: stores' net inventory + everything in transit to the stores + the center's on-hand + everything
    in transit to the center + the new order. Because the center keeps nothing, every unit counted in ``Y_t`` is
    on hand at some store by period ``t + L`` (an order of period ``t`` reaches the center at ``t + L_w``, is
    shipped at once and is on hand at ``t + L_w + L_s``; anything older arrives earlier), and nothing ordered
    after ``t`` is (it arrives at ``t + 1 + L`` or later). With backlog nothing leaves but demand, so
    ``X_{t+L} = Y_t - D[t, t+L-1]``, and the pooled cost of period ``t + L`` is ``f(Y_t - D[t, t+L])``, with
    ``L + 1`` periods of demand. ``Y_t`` is fixed before any of these demands is seen (the allocation, decided
    ``L_s`` periods before arrival, does not enter the pooled quantity at all), so

        E[cost of period t + L] >= min_y E f(y - D^{(L+1)}) = (p + h)·σ·√(L+1)·φ(Φ⁻¹(p/(p + h))),

    the newsvendor with ``D^{(L+1)} ~ Normal((L+1)·Σμ_s, (L+1)·σ²)``, ``σ² = Σ_s σ_s² + ρ·Σ_{s≠s'} σ_s σ_s'``.
    This holds in expectation in every period ``t >= L`` whatever the initial state, and is attained by the
    relaxed system's base stock ``y* = (L+1)·Σμ_s + Φ⁻¹(p/(p+h))·σ√(L+1)``; with one store the center only
    passes stock through, so echelon base stock at ``y*`` is feasible and optimal and the bound is exact. The
    bound ignores that the allocation is committed ``L_s`` periods ahead (the imbalance between stores).

    Returns:
        The bound per store and period: the pooled cost divided by the number of stores.
    """
    return transshipment_bound(network).cost
