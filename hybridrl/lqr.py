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
* :func:`switched_optimum` — the optimum of the genuine switched problem, ``J ≥ 2`` (any number of choices),
  by dynamic programming over modes, for small ``p``, ``J`` and ``T``. Unclamped, the cost-to-go is a minimum of
  quadratics, ``V_t(x) = min_{P ∈ H_t} xᵀPx``: ``H_T = {0}`` and ``H_t = {ρ_i(P) : i < J, P ∈ H_{t+1}}`` with
  ``ρ_i(P) = Q + AᵀPA − AᵀPB_i(R + B_iᵀPB_i)⁻¹B_iᵀPA`` the Riccati map of mode i (minimise over u for each
  mode and each ``P``, then over both). Each ``P ∈ H_t`` is the cost-to-go of one mode sequence with its
  time-varying Riccati gains, so the optimal policy from ``x_0`` is the sequence of the minimiser over ``H_0``,
  with those gains; it is simulated on the clamped problem and certified by the clamp argument above
  (``SwitchedOptimum.optimal``). ``H_t`` has up to ``J^(T−t)`` matrices; any ``P`` with another ``P' ≼ P`` (PSD
  order) is pruned, which never changes the minimum for any x. **Limits.** The dominance test has a relative
  tolerance (``P`` is dropped when a kept ``P' ≼ P + tol·I``, ``tol = rtol·max|entry|``, ``rtol = 1e-10`` by
  default, never below rounding), and the set sizes depend on it: the Riccati maps contract, so sequences that
  differ only in their distant future modes give nearly equal matrices (with ``p = 4, J = 2, T = 20`` the
  largest set has 44, 124, 363, 977 and 1250 matrices for ``rtol = 1e-8, 1e-10, 1e-12, 1e-14`` and 0).
  ``exact`` is therefore the cost of an actual policy, an upper bound on the optimum within an error of order
  ``tol·|x_0|²`` (there, 1e-12 relative at the default). At ``T = 20`` and the default, two effective modes give
  sets of at most ~130 matrices whatever ``p`` (measured for ``p ≤ 8``), three give ~24000 (``p = 3``), four
  more than 20000 (``p ≥ 4, J = 4``); past ``max_matrices`` it raises ``ValueError``. (A mode whose actuator
  group is empty, ``J > p``, is dominated and adds nothing.)
* Heuristic bounds, any J. :func:`best_fixed_mode_cost` picks, per episode, the mode whose Riccati cost
  ``x_0ᵀP_0^m x_0`` is smallest and keeps it — an achievable policy, so an **upper** bound on the optimum (the
  minimum over modes is *not* a lower bound: switching can beat every fixed mode). :func:`relaxed_lower_bound`
  is a valid **lower** bound: let every mode act at once,
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
from ._device import on_device
from .hybrid import Episode

__all__ = [
    "INITIAL_RANGE",
    "LQRSeeds",
    "LQRSplits",
    "LinearControllerRun",
    "RiccatiCost",
    "SwitchedLQR",
    "SwitchedOptimum",
    "VARIANTS",
    "best_fixed_mode_cost",
    "dare_controller",
    "finite_horizon_riccati",
    "relaxed_lower_bound",
    "riccati_cost",
    "sample_splits",
    "simulate_linear_controller",
    "switched_optimum",
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
        a = on_device(self, "A", self.A, state)
        b = on_device(self, "_choice_b", self._choice_b, state)[choice]  # [B, p]: B_d is diagonal
        cost = self.q * (state * state).sum(-1) + self.r * (action * action).sum(-1)
        following = (state @ a.T + b * action).clamp(-self.clamp, self.clamp)
        return following, cost

    def relaxed_step(self, state: Tensor, weights: Tensor, actions: Tensor, period: int, episode: Episode
                     ) -> tuple[Tensor, Tensor]:
        """The step with the choice relaxed to weights ``[B, K]`` over the choices' actions ``[B, K, p]``:
        ``x' = clamp(A x + Σ_k w_k B_k u_k)``, cost ``xᵀQx + ūᵀRū`` with ``ū = Σ_k w_k u_k``. A one-hot ``w``
        gives exactly :meth:`step` (the Gumbel-softmax baseline, :mod:`hybridrl.hpo`)."""
        a = on_device(self, "A", self.A, state)
        b = on_device(self, "_choice_b", self._choice_b, state)  # [K, p]
        mixed = (weights[..., None] * actions).sum(1)
        cost = self.q * (state * state).sum(-1) + self.r * (mixed * mixed).sum(-1)
        following = (state @ a.T + (weights[..., None] * b * actions).sum(1)).clamp(-self.clamp, self.clamp)
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
    return _simulate(problem, episode, torch.full((episode.size, horizon), mode, dtype=torch.int64), gains)


def _simulate(problem: SwitchedLQR, episode: Episode, choices: Tensor, gains: Tensor) -> LinearControllerRun:
    """Run ``u_t = −K_t x_t`` with the choices ``[B, T]`` on the clamped simulator, in float64; the gains are
    ``[T, p, p]`` (shared) or ``[B, T, p, p]`` (per episode)."""
    state = episode.state.to("cpu", torch.float64)
    total = torch.zeros(episode.size, dtype=torch.float64)
    active = torch.zeros(episode.size, dtype=torch.bool)
    for t in range(problem.horizon):
        control = -(gains[..., t, :, :] @ state[:, :, None]).squeeze(-1)
        state, cost = problem.step(state, choices[:, t], control, t, episode)
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


# ----------------------------------------------------------------------------------------------------------------
# The exact optimum of the switched problem
# ----------------------------------------------------------------------------------------------------------------
class _ValueSet(NamedTuple):
    """The pruned set ``H_t`` of a dynamic-programming stage: ``V_t(x) = min_n xᵀ matrices[n] x``."""

    matrices: np.ndarray
    """``[N, p, p]``: ``matrices[n] = ρ_{modes[n]}(H_{t+1}[parents[n]])``."""
    modes: np.ndarray
    """``[N]`` int: the mode applied at period t."""
    parents: np.ndarray
    """``[N]`` int: the index in ``H_{t+1}`` of the cost-to-go matrix the map was applied to."""
    gains: np.ndarray
    """``[N, p, p]``: the Riccati gain of that map, the control being ``u_t = −gains[n] x_t``."""


def _riccati_maps(matrices: np.ndarray, a: np.ndarray, b: np.ndarray, q: np.ndarray, r: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Every mode's Riccati map of every matrix: ``matrices [N, p, p]``, the input diagonals ``b [J, p]``.

    Returns ``(gains, images)``, both ``[J, N, p, p]``: ``K = (R + B_iᵀPB_i)⁻¹B_iᵀPA`` and
    ``ρ_i(P) = Q + AᵀP(A − B_iK)`` (symmetrised), ``B_i = diag(b[i])``.
    """
    pa = matrices @ a  # [N, p, p]
    rows = b[:, None, :, None]  # B_i M scales the rows of M by b[i]
    gram = r + rows * matrices[None] * b[:, None, None, :]  # R + B_iᵀPB_i
    gains = np.linalg.solve(gram, rows * pa[None])
    images = q + a.T @ (pa[None] - matrices[None] @ (rows * gains))
    return gains, (images + images.swapaxes(-1, -2)) / 2


def _prune_dominated(matrices: np.ndarray, limit: int | None = None, rtol: float = 1e-10,
                     block: int = 64) -> np.ndarray:
    """The indices of the matrices ``[n, p, p]`` (symmetric) that survive pairwise dominance pruning.

    The matrices are visited in the order ``(trace, index)``, and one is dropped when some *kept* earlier one
    ``P'`` satisfies ``P' ≼ P + tol·I`` (``λ_min(P − P') > −tol``, tested by a Cholesky factorisation of
    ``P − P' + tol·I``), with ``tol = max(rtol, 16ε)·max|entry|`` (so that equal matrices are recognised). So
    every dropped ``P`` has a kept ``P'`` with ``xᵀP'x ≤ xᵀPx + tol·|x|²`` for all x: ``min_kept xᵀPx`` is the
    minimum over all the matrices up to ``tol·|x|²``. Comparing with earlier matrices only loses nothing, since
    ``P' ≼ P`` implies ``tr P' ≤ tr P`` (with equality only when ``P' = P``); of equal matrices exactly the first
    one is kept. Requiring a *kept* dominator keeps the tolerances from adding up along chains.

    Vectorised by blocks of ``block`` matrices, compared with all the kept ones and with the earlier ones of
    their block. A pair is factorised only when the necessary conditions ``vᵀP'v ≤ vᵀPv + tol`` hold for the
    unit vectors ``v`` of a fixed set (the coordinate axes and 16 random directions). Stops as soon as more than
    ``limit`` matrices are kept (the result then has ``limit + 1`` indices, in the visiting order).
    """
    n, p, _ = matrices.shape
    tol = max(rtol, 16 * np.finfo(float).eps) * float(np.abs(matrices).max(initial=0.0))
    order = np.argsort(np.trace(matrices, axis1=1, axis2=2), kind="stable")
    ordered = matrices[order]
    directions = np.concatenate([np.eye(p), np.random.default_rng(0).standard_normal((16, p))])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    tests = np.einsum("sp,npq,sq->sn", directions, ordered, directions)  # [S, n]
    kept = np.zeros(0, dtype=np.int64)  # positions in `ordered`
    for start in range(0, n, block):
        candidates = np.arange(start, min(start + block, n))
        references = np.concatenate([kept, candidates])
        possible = np.ones((len(candidates), len(references)), dtype=bool)  # may `col` dominate `row`?
        for test in tests:
            possible &= test[references][None] <= test[candidates][:, None] + tol
        possible[:, len(kept):] &= np.tri(len(candidates), k=-1, dtype=bool)  # within the block: earlier only
        rows, cols = np.nonzero(possible)
        difference = ordered[candidates[rows]] - ordered[references[cols]] + tol * np.eye(p)
        holds = (torch.linalg.cholesky_ex(torch.as_tensor(difference)).info == 0).numpy()
        rows, cols = rows[holds], cols[holds]  # `row` is dominated by `col`
        dominated = np.zeros(len(candidates), dtype=bool)
        dominated[rows[cols < len(kept)]] = True
        inside = cols >= len(kept)
        for row in np.unique(rows[inside]):  # increasing, so the earlier ones of the block are decided first
            dominated[row] |= not dominated[cols[inside & (rows == row)] - len(kept)].all()
        kept = np.concatenate([kept, candidates[~dominated]])
        if limit is not None and len(kept) > limit:
            return order[kept[: limit + 1]]
    return order[kept]


def _switched_value_sets(problem: SwitchedLQR, max_matrices: int, rtol: float) -> list[_ValueSet]:
    """The pruned sets ``H_0 … H_{T−1}`` of the choosable modes of ``problem`` (module docstring)."""
    p, horizon = problem.dim, problem.horizon
    q, r = problem.cost_matrices()
    a, b = problem.A.numpy(), problem.b[: problem.n_choices].numpy()
    sets: list[_ValueSet] = []
    following = np.zeros((1, p, p))  # H_T = {0}: no terminal cost
    for t in range(horizon - 1, -1, -1):
        gains, images = _riccati_maps(following, a, b, q, r)
        keep = _prune_dominated(images.reshape(-1, p, p), max_matrices, rtol)
        if len(keep) > max_matrices:
            raise ValueError(
                f"the exact switched optimum is unavailable for dim={p}, modes={problem.modes}, horizon={horizon}: "
                f"the pruned set H_{t} has more than max_matrices={max_matrices} matrices"
            )
        modes, parents = np.divmod(keep, len(following))  # the candidates are ordered mode-major
        sets.append(_ValueSet(images.reshape(-1, p, p)[keep], modes, parents, gains.reshape(-1, p, p)[keep]))
        following = sets[-1].matrices
    return sets[::-1]


@dataclass
class SwitchedOptimum:
    """The exact optimum of the switched problem on a batch of episodes (:func:`switched_optimum`)."""

    exact: Tensor
    """``[B]`` ``min_{P ∈ H_0} x_0ᵀPx_0``: the optimal cost of the *unclamped* switched problem."""
    simulated: Tensor
    """``[B]`` the cost of the optimal mode sequence and its Riccati gains on the clamped simulator."""
    clamp_active: Tensor
    """``[B]`` whether the clamp was ever active along the simulated trajectory."""
    optimal: Tensor
    """``[B]`` whether ``simulated`` is provably the optimum of the clamped problem (module docstring)."""
    modes: Tensor
    """``[B, T]`` int64: the optimal mode (choice) of every period."""
    n_matrices: tuple[int, ...]
    """``|H_t|`` for ``t = 0 … T−1`` after pruning."""


def switched_optimum(problem: SwitchedLQR, episode: Episode, max_matrices: int = 20000, rtol: float = 1e-10
                     ) -> SwitchedOptimum:
    """The optimum of the switched problem (any number of choices) by dynamic programming over modes.

    Builds the pruned sets ``H_{T−1} … H_0`` (module docstring; ``rtol`` is the relative tolerance of the
    dominance test), then per episode takes the matrix of ``H_0`` minimising ``x_0ᵀPx_0``, follows its parents
    to get its mode sequence and that sequence's time-varying Riccati gains, and simulates them on the clamped
    problem. Raises ``ValueError`` when some ``H_t`` has more than ``max_matrices`` matrices. With one choice
    (``modes = 1`` or the single-mode variant) it is :func:`riccati_cost`.
    """
    check_int("max_matrices", max_matrices, minimum=1)
    check_nonnegative("rtol", rtol)
    sets = _switched_value_sets(problem, max_matrices, rtol)
    x = episode.state.to("cpu", torch.float64)
    outer = (x[:, :, None] * x[:, None, :]).flatten(1)  # xᵀPx = <P, x xᵀ>
    flat = torch.as_tensor(sets[0].matrices).flatten(1)
    best = [(chunk @ flat.T).min(1) for chunk in outer.split(1024)]  # [1024, N] at a time
    exact = torch.cat([b.values for b in best])
    index = torch.cat([b.indices for b in best]).numpy()
    modes, gains = [], []
    for stage in sets:  # from H_0 down to H_{T−1}
        modes.append(torch.as_tensor(stage.modes[index]))
        gains.append(torch.as_tensor(stage.gains[index]))
        index = stage.parents[index]
    modes = torch.stack(modes, 1)
    run = _simulate(problem, episode, modes, torch.stack(gains, 1))
    optimal = ~run.clamp_active & (exact <= problem.q * problem.clamp**2)
    return SwitchedOptimum(exact, run.cost, run.clamp_active, optimal, modes, tuple(len(s.matrices) for s in sets))
