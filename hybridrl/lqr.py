"""The switched linear-quadratic regulator (S-LQR) of HPO spec §7.3, and its exact references.

The problem
-----------
State and control ``x, u ∈ R^p`` (``p = dim``), ``J = modes`` actuator modes, horizon ``T``, no process noise:

    x_{t+1} = clamp(A x_t + B_m u_t, −clamp, clamp),        c_t = x_tᵀ Q x_t + u_tᵀ R u_t,
    Q = q·I,  R = r·I,  no terminal cost,  x_0 ~ U[−10, 10]^p / √p.

* ``A = a_diag·I + a_noise·G_sym``, the same for every mode, with ``G_sym = (G + Gᵀ) / √(2p)`` for a standard
  Gaussian ``G`` drawn from ``matrix_seed``. This normalisation is **our choice**: the reference's is unknown
  (spec §11.5). With it ``G_sym`` is a GOE matrix whose off-diagonal entries have variance ``1/p`` and whose
  spectrum fills about ``[−2, 2]`` whatever ``p``, so A's eigenvalues lie near ``a_diag ± 2·a_noise``
  (1.10 ± 0.10: open-loop unstable, never wildly so).
* ``B_m = diag(b_m)`` with ``b_m[j] = b_high`` on the m-th contiguous actuator group and ``b_low`` elsewhere;
  the groups are ``numpy.array_split(range(p), J)``, so when ``J > p`` some groups are empty and those modes have
  no strong actuator (``B_m = b_low·I``).

The discrete choice (spec §7.3 "Caution")
-----------------------------------------
* ``variant="switched"``: ``J`` choices, choice ``d`` applies ``B_d`` — the genuine switched LQR.
* ``variant="single_mode"``: what the reference's configuration actually ran. One choice, the simulator always
  applies ``B_0``, but the actuator groups still come from ``array_split(range(p), J)`` (so the cost depends on
  J through the size of group 0). The finite-horizon Riccati controller is exactly optimal here.

In both variants choice ``d`` applies mode ``d``; :attr:`SwitchedLQR.n_choices` is the one place where the number
of choices is derived from ``(variant, J)``.

References
----------
* :func:`finite_horizon_riccati` — the backward Riccati recursion of the unclamped problem with one fixed mode:
  ``P_T = 0``, ``K_t = (R + BᵀP_{t+1}B)⁻¹BᵀP_{t+1}A``, ``P_t = Q + AᵀP_{t+1}(A − BK_t)``. The time-varying policy
  ``u_t = −K_t x_t`` is optimal among *all* policies of that fixed-mode problem, with cost ``x_0ᵀP_0x_0``.
* :func:`riccati_cost` — that exact cost and the cost of the same gains on the clamped simulator, with a flag
  saying whether the clamp was ever active. **On the clamped problem it is still exactly optimal** whenever the
  clamp stays inactive along the Riccati trajectory and ``x_0ᵀP_0x_0 ≤ q·clamp²``: a policy whose trajectory is
  clamped at some period ``t ≤ T−1`` pays at least ``q·clamp²`` in that period, and one whose trajectory is never
  clamped there is a policy of the unclamped problem (the clamp on ``x_T`` is never charged). So the
  clamped optimum is ``≥ min(x_0ᵀP_0x_0, q·clamp²)`` (``RiccatiCost.optimal``). For the single-mode variant and
  for ``J = 1`` this is the exact optimum of the problem.
* :func:`dare_controller` — the infinite-horizon gain ``K = (R + BᵀPB)⁻¹BᵀPA`` with ``P`` from
  :func:`scipy.linalg.solve_discrete_are` (spec §6 "Riccati (S-LQR, J = 1)"), applied as ``u = −Kx``.
* Genuine switched problem, ``J ≥ 2``: no exact optimum is known. :func:`best_fixed_mode_cost` picks, per
  episode, the mode whose Riccati cost ``x_0ᵀP_0^m x_0`` is smallest and keeps it — an achievable policy, so an
  **upper** bound on the optimum (the minimum over modes is *not* a lower bound: switching can beat every
  fixed mode). :func:`relaxed_lower_bound` is a valid **lower** bound: let every mode act at once,
  ``x' = Ax + Σ_m B_m u_m`` with cost ``Σ_m u_mᵀRu_m`` (any switched policy is the special case where all but one
  ``u_m`` are zero), an ordinary LQR with ``B = [B_0 … B_{K−1}]``; with the clamp argument above the bound is
  ``min(x_0ᵀP_0^relax x_0, q·clamp²)``. It is loose for J ≥ 2 (every coordinate gets a strong actuator at every
  period), and exact for one choice.

Data (spec §7.3): :func:`sample_splits` draws the train / dev / test initial states from their own seeds
(:class:`LQRSeeds`), separate from the matrix seed and from the algorithm seeds.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from ._config import check_choice, check_int, check_nonnegative, check_positive
from .hybrid import Episode

__all__ = [
    "INITIAL_RANGE",
    "LQRSeeds",
    "LQRSplits",
    "LinearControllerRun",
    "RiccatiCost",
    "SwitchedLQR",
    "VARIANTS",
    "best_fixed_mode_cost",
    "dare_controller",
    "finite_horizon_riccati",
    "relaxed_lower_bound",
    "riccati_cost",
    "sample_splits",
    "simulate_linear_controller",
]

VARIANTS = ("switched", "single_mode")
INITIAL_RANGE = 10.0
"""x_0 ~ U[−INITIAL_RANGE, INITIAL_RANGE]^p / √p (spec §7.3)."""


def _check_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------------------------------------------
# The problem
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SwitchedLQR:
    """The S-LQR problem (module docstring); a :class:`hybridrl.hybrid.HybridProblem`.

    The matrices are drawn once, in ``__post_init__``, from ``matrix_seed``: :attr:`A` ``[p, p]`` and the
    diagonals of every mode's input matrix :attr:`b` ``[J, p]`` (float64), and :attr:`groups`, the actuator
    group of each mode. Equal configurations give equal matrices.
    """

    dim: int
    """p: the dimension of the state and of the control."""
    modes: int
    """J: the number of actuator modes (groups)."""
    horizon: int = 20
    """T: periods per episode."""
    q: float = 1.0
    """Q = q·I."""
    r: float = 0.1
    """R = r·I."""
    b_high: float = 1.0
    """Input gain of the active mode's actuator group."""
    b_low: float = 0.15
    """Input gain of every other actuator."""
    a_diag: float = 1.10
    a_noise: float = 0.05
    """A = a_diag·I + a_noise·G_sym."""
    clamp: float = 100.0
    """The state is clamped to [−clamp, clamp] after every step (``math.inf``: no clamp)."""
    matrix_seed: int = 0
    variant: str = "switched"
    """``"switched"`` (J choices) or ``"single_mode"`` (one choice applying mode 0, as the reference ran)."""

    def __post_init__(self):
        p = check_int("dim", self.dim, minimum=1)
        modes = check_int("modes", self.modes, minimum=1)
        check_int("horizon", self.horizon, minimum=1)
        for name in ("q", "r"):
            check_positive(name, getattr(self, name))
        for name in ("b_high", "b_low", "a_noise"):
            check_nonnegative(name, getattr(self, name))
        _check_real("a_diag", self.a_diag)
        if isinstance(self.clamp, bool) or not isinstance(self.clamp, numbers.Real) or not self.clamp > 0:
            raise ValueError(f"clamp must be a positive number (math.inf for none), got {self.clamp!r}")
        check_int("matrix_seed", self.matrix_seed, minimum=0)
        check_choice("variant", self.variant, VARIANTS)

        generator = torch.Generator().manual_seed(self.matrix_seed)
        g = torch.randn(p, p, generator=generator, dtype=torch.float64)
        g_sym = (g + g.T) / math.sqrt(2 * p)
        a = self.a_diag * torch.eye(p, dtype=torch.float64) + self.a_noise * g_sym
        groups = tuple(tuple(int(j) for j in group) for group in np.array_split(np.arange(p), modes))
        b = torch.full((modes, p), float(self.b_low), dtype=torch.float64)
        for m, group in enumerate(groups):
            b[m, list(group)] = float(self.b_high)
        object.__setattr__(self, "A", a)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "_choice_b", b[: self.n_choices].clone())  # row d: the mode choice d applies

    # ---- sizes (HybridProblem) ---------------------------------------------------------------------------------
    @property
    def n_choices(self) -> int:
        """The number of discrete options: J for the switched LQR, 1 for the single-mode variant. The only place
        where it is derived (spec R12)."""
        return self.modes if self.variant == "switched" else 1

    @property
    def action_dim(self) -> int:
        return self.dim

    @property
    def observation_dim(self) -> int:
        return self.dim

    # ---- matrices ----------------------------------------------------------------------------------------------
    def input_matrix(self, mode: int) -> np.ndarray:
        """``B_mode = diag(b[mode])`` as a float64 NumPy array ``[p, p]`` (any of the J modes)."""
        check_int("mode", mode, minimum=0)
        if mode >= self.modes:
            raise ValueError(f"mode must be < modes={self.modes}, got {mode}")
        return np.diag(self.b[mode].numpy())

    def cost_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """``(Q, R)`` as float64 NumPy arrays."""
        eye = np.eye(self.dim)
        return self.q * eye, self.r * eye

    # ---- simulation (HybridProblem) ----------------------------------------------------------------------------
    def sample(self, batch: int, generator: torch.Generator) -> Episode:
        """``batch`` initial states ``x_0 ~ U[−10, 10]^p / √p`` (default dtype) drawn from ``generator``."""
        check_int("batch", batch, minimum=1)
        u = torch.rand(batch, self.dim, generator=generator)
        return Episode(state=(2 * u - 1) * (INITIAL_RANGE / math.sqrt(self.dim)))

    def observe(self, state: Tensor, period: int, episode: Episode) -> Tensor:
        """The policy observes the state only (spec §2.4)."""
        return state

    def step(self, state: Tensor, choice: Tensor, action: Tensor, period: int, episode: Episode
             ) -> tuple[Tensor, Tensor]:
        """``(clamp(A x + B_d u), xᵀQx + uᵀRu)`` for a batch: ``state, action [B, p]``, ``choice [B]`` (int64).

        The cost is that of the current state and action. Differentiable in ``state`` and ``action`` (the
        gradient is zero through a clamped coordinate). Time-invariant: ``period`` and ``episode`` are unused.
        """
        a = self.A.to(state)
        b = self._choice_b.to(state)[choice]  # [B, p]: B_d is diagonal
        cost = self.q * (state * state).sum(-1) + self.r * (action * action).sum(-1)
        following = (state @ a.T + b * action).clamp(-self.clamp, self.clamp)
        return following, cost


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LQRSeeds:
    """Seeds of the initial states, one ``torch.Generator`` per seed (spec §7.3: train 1..8, test 9..16).

    A split of ``n`` episodes is the concatenation of ``len(seeds)`` chunks (``numpy.array_split`` sizes; 128
    each for 1024 episodes and 8 seeds), chunk ``i`` drawn from ``seeds[i]``. The dev seeds 17..24 are our
    choice (the reference's are unknown). Separate from the matrix seed and from the algorithm seeds.
    """

    train: tuple[int, ...] = tuple(range(1, 9))
    dev: tuple[int, ...] = tuple(range(17, 25))
    test: tuple[int, ...] = tuple(range(9, 17))

    def __post_init__(self):
        seen: dict[int, str] = {}
        for f in fields(self):
            seeds = getattr(self, f.name)
            if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
                raise ValueError(f"seeds.{f.name} must be a sequence of integers, got {seeds!r}")
            seeds = tuple(check_int(f"seeds.{f.name}", s, minimum=0) for s in seeds)
            if not seeds:
                raise ValueError(f"seeds.{f.name} must not be empty")
            for s in seeds:
                if s in seen:
                    raise ValueError(f"seed {s} is used by both seeds.{seen[s]} and seeds.{f.name}")
                seen[s] = f.name
            object.__setattr__(self, f.name, seeds)


class LQRSplits(NamedTuple):
    train: Episode
    dev: Episode
    test: Episode


def _draw(problem: SwitchedLQR, n: int, seeds: tuple[int, ...]) -> Episode:
    sizes = [len(c) for c in np.array_split(np.arange(n), len(seeds))]
    parts = [problem.sample(k, torch.Generator().manual_seed(s)).state for k, s in zip(sizes, seeds) if k]
    return Episode(state=torch.cat(parts))


def sample_splits(problem: SwitchedLQR, n_train: int = 1024, n_dev: int = 1024, n_test: int = 1024,
                  seeds: LQRSeeds = LQRSeeds()) -> LQRSplits:
    """Train, dev and test initial states of ``problem`` (:class:`LQRSeeds` says which seeds draw which)."""
    for name, n in (("n_train", n_train), ("n_dev", n_dev), ("n_test", n_test)):
        check_int(name, n, minimum=1)
    return LQRSplits(_draw(problem, n_train, seeds.train), _draw(problem, n_dev, seeds.dev),
                     _draw(problem, n_test, seeds.test))


# ----------------------------------------------------------------------------------------------------------------
# Riccati references
# ----------------------------------------------------------------------------------------------------------------
def _check_choice_mode(problem: SwitchedLQR, mode) -> int:
    check_int("mode", mode, minimum=0)
    if mode >= problem.n_choices:
        raise ValueError(
            f"mode must be a mode that the simulator can apply (< n_choices={problem.n_choices} for variant "
            f"{problem.variant!r}), got {mode}"
        )
    return int(mode)


def _riccati(a: np.ndarray, b: np.ndarray, q: np.ndarray, r: np.ndarray, horizon: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Backward recursion without terminal cost: gains ``[T, m, p]`` and cost-to-go matrices ``[T+1, p, p]``."""
    p = a.shape[0]
    cost_to_go = np.zeros((horizon + 1, p, p))
    gains = np.zeros((horizon, b.shape[1], p))
    for t in range(horizon - 1, -1, -1):
        nxt = cost_to_go[t + 1]
        gains[t] = np.linalg.solve(r + b.T @ nxt @ b, b.T @ nxt @ a)
        current = q + a.T @ nxt @ (a - b @ gains[t])
        cost_to_go[t] = (current + current.T) / 2
    return gains, cost_to_go


def finite_horizon_riccati(problem: SwitchedLQR, mode: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The optimal controller of the unclamped finite-horizon LQR with the fixed mode ``mode`` (module docstring).

    Returns ``(gains [T, p, p], cost_to_go [T+1, p, p])`` as float64 arrays: ``u_t = −gains[t] x_t``, and
    ``x_tᵀ cost_to_go[t] x_t`` is the optimal cost of periods ``t..T−1`` (``cost_to_go[T] = 0``). ``mode`` must
    be a choice of the problem (only 0 for the single-mode variant).
    """
    mode = _check_choice_mode(problem, mode)
    q, r = problem.cost_matrices()
    return _riccati(problem.A.numpy(), problem.input_matrix(mode), q, r, problem.horizon)


def dare_controller(problem: SwitchedLQR, mode: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The infinite-horizon controller of mode ``mode``: ``(K, P)`` with ``P`` the solution of the discrete
    algebraic Riccati equation (:func:`scipy.linalg.solve_discrete_are`) and ``K = (R + BᵀPB)⁻¹BᵀPA``; the
    policy is ``u = −Kx`` (spec §6)."""
    mode = _check_choice_mode(problem, mode)
    a, b = problem.A.numpy(), problem.input_matrix(mode)
    q, r = problem.cost_matrices()
    p = scipy.linalg.solve_discrete_are(a, b, q, r)
    return np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a), p


@dataclass
class LinearControllerRun:
    """A linear controller simulated on the (clamped) problem: per-episode totals ``[B]`` (float64)."""

    cost: Tensor
    """Σ_t c_t."""
    clamp_active: Tensor
    """Whether some coordinate of some state x_1..x_T reached ±clamp (bool)."""


def simulate_linear_controller(problem: SwitchedLQR, episode: Episode, gains, mode: int = 0
                               ) -> LinearControllerRun:
    """Run ``u_t = −K_t x_t`` with the fixed choice ``mode`` on the clamped simulator, in float64.

    ``gains`` is one matrix ``[p, p]`` (stationary, e.g. :func:`dare_controller`) or one per period ``[T, p, p]``
    (e.g. :func:`finite_horizon_riccati`).
    """
    mode = _check_choice_mode(problem, mode)
    p, horizon = problem.dim, problem.horizon
    gains = torch.as_tensor(np.asarray(gains), dtype=torch.float64)
    if tuple(gains.shape) == (p, p):
        gains = gains.expand(horizon, p, p)
    if tuple(gains.shape) != (horizon, p, p):
        raise ValueError(f"gains must have shape ({p}, {p}) or ({horizon}, {p}, {p}), got {tuple(gains.shape)}")
    state = episode.state.to("cpu", torch.float64)
    choice = torch.full((episode.size,), mode, dtype=torch.int64)
    total = torch.zeros(episode.size, dtype=torch.float64)
    active = torch.zeros(episode.size, dtype=torch.bool)
    for t in range(horizon):
        state, cost = problem.step(state, choice, -state @ gains[t].T, t, episode)
        total = total + cost
        active |= (state.abs() >= problem.clamp).any(-1)
    return LinearControllerRun(total, active)


def _quadratic(state: Tensor, matrix: np.ndarray) -> Tensor:
    x = state.to("cpu", torch.float64)
    return ((x @ torch.as_tensor(matrix)) * x).sum(-1)


@dataclass
class RiccatiCost:
    """The finite-horizon Riccati controller of one mode on a batch of episodes (per-episode ``[B]`` tensors)."""

    exact: Tensor
    """x_0ᵀP_0x_0: the optimal cost of the *unclamped* fixed-mode problem."""
    simulated: Tensor
    """The cost of the same gains on the clamped simulator (equal to ``exact`` when the clamp stays inactive)."""
    clamp_active: Tensor
    """Whether the clamp was ever active along the simulated trajectory."""
    optimal: Tensor
    """Whether ``simulated`` is provably the optimum of the clamped fixed-mode problem (module docstring)."""


def riccati_cost(problem: SwitchedLQR, episode: Episode, mode: int = 0) -> RiccatiCost:
    """Exact and simulated cost of :func:`finite_horizon_riccati` on ``episode`` (module docstring)."""
    gains, cost_to_go = finite_horizon_riccati(problem, mode)
    exact = _quadratic(episode.state, cost_to_go[0])
    run = simulate_linear_controller(problem, episode, gains, mode)
    optimal = ~run.clamp_active & (exact <= problem.q * problem.clamp**2)
    return RiccatiCost(exact, run.cost, run.clamp_active, optimal)


def best_fixed_mode_cost(problem: SwitchedLQR, episode: Episode) -> tuple[RiccatiCost, Tensor]:
    """Per episode, the mode whose Riccati cost ``x_0ᵀP_0^m x_0`` is smallest, kept for the whole horizon.

    An achievable policy, hence an upper bound on the optimum (a heuristic reference for the switched
    problem; the exact optimum when there is one choice). Returns its :class:`RiccatiCost` (``optimal`` is
    only claimed with one choice) and the chosen mode per episode ``[B]``.
    """
    results = [riccati_cost(problem, episode, m) for m in range(problem.n_choices)]
    exact = torch.stack([c.exact for c in results])  # [K, B]
    best = exact.argmin(0)

    def pick(name: str) -> Tensor:
        return torch.stack([getattr(c, name) for c in results]).gather(0, best[None]).squeeze(0)

    optimal = pick("optimal") & (problem.n_choices == 1)
    return RiccatiCost(pick("exact"), pick("simulated"), pick("clamp_active"), optimal), best


def relaxed_lower_bound(problem: SwitchedLQR, episode: Episode) -> Tensor:
    """A lower bound ``[B]`` on the optimal cost of the clamped problem, any policy (module docstring):
    ``min(x_0ᵀP_0x_0, q·clamp²)`` with ``P_0`` of the LQR in which all the choosable modes act at once."""
    q, _ = problem.cost_matrices()
    k = problem.n_choices
    b_all = np.concatenate([problem.input_matrix(m) for m in range(k)], axis=1)  # [p, K p]
    _, cost_to_go = _riccati(problem.A.numpy(), b_all, q, problem.r * np.eye(k * problem.dim), problem.horizon)
    return _quadratic(episode.state, cost_to_go[0]).clamp(max=problem.q * problem.clamp**2)
