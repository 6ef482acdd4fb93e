"""Hybrid discrete-continuous decisions: problems, policies and rollouts (HPO spec §1–§3).

A hybrid action is a pair ``(d, u)``: a discrete choice ``d ∈ {0, …, K-1}`` and a continuous action
``u ∈ R^p``. For every fixed sequence of choices the simulator is smooth in the states and the continuous
actions; everything that is not smooth (a fixed ordering cost, a switch of actuators) is indexed by ``d``.

* :class:`SubRanges` — the reformulation that turns a discontinuity *in the action* into a discrete choice
  (spec §3): the action line is cut at thresholds ``b_0 ≤ b_1 ≤ … ≤ b_K``; choice ``k`` keeps ``u`` inside
  ``[b_k, b_{k+1}]`` and carries a value ``v_k`` (e.g. the fixed cost of ordering). A fixed cost ``F·1{q > 0}``
  becomes ``thresholds = (0, 0, ∞)``, ``values = (0, F)``: choice 0 orders exactly nothing, choice 1 orders
  ``q ≥ 0`` and pays ``F``.
* :class:`HybridProblem` — what a simulator provides: sampled episodes (initial states and exogenous noise),
  observations, and one differentiable step ``(state, d, u) -> (next state, cost)``.
* :class:`HybridPolicy` — ``π(d, u | s) = π^D(d | s) · δ(u − μ(s, d))``: a categorical discrete head and a
  deterministic continuous head that proposes one continuous action per choice (two separate MLPs, Tanh).
* :func:`hybrid_rollout` — runs a policy on a batch of episodes and records what the gradient estimators of
  :mod:`hybridrl.estimators` need (:class:`HybridTrajectory`). Choices are sampled with an explicit
  ``torch.Generator`` in training, and taken greedily (argmax) in evaluation.
* :func:`relaxed_rollout` — the Gumbel-softmax (straight-through) relaxation of the choices, for the purely
  pathwise baseline (spec §6); it needs the problem's optional ``relaxed_step``.

The three parts of the gradient (spec §4) live in the trajectory's graph: ``cost`` depends on the continuous
parameters through the actions *with the choices held fixed* (the pathwise term); ``log_prob`` is
``log π^D(d_t | s_t)`` with ``s_t`` still attached to the graph, so its gradient reaches the continuous
parameters through the state (the cross term) and the discrete ones directly (the score-function term);
``log_prob_fixed_state`` is the same with ``s_t`` detached (score function only: the decentralized update).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._config import check_choice, check_int, check_positive
from ._device import on_device


# ----------------------------------------------------------------------------------------------------------------
# Sub-ranges: action discontinuities as discrete choices
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubRanges:
    """Cut the continuous action line at ``thresholds`` into ``K = len(thresholds) - 1`` sub-ranges.

    Choice ``k`` keeps the action in ``[thresholds[k], thresholds[k+1]]`` and carries ``values[k]`` (the
    feature the choice switches, e.g. a fixed cost). The map from an unconstrained pre-activation ``z`` into
    sub-range ``k`` (:meth:`map`) is ``lo + (hi − lo)·sigmoid(z)`` on a finite range (a degenerate range
    ``lo = hi`` gives exactly ``lo``) and ``lo + scale·softplus(z)`` when ``hi = ∞``. Only the last threshold
    may be infinite.
    """

    thresholds: tuple[float, ...]
    values: tuple[float, ...] | None = None

    def __post_init__(self):
        t = tuple(float(x) for x in self.thresholds)
        if len(t) < 2:
            raise ValueError(f"thresholds needs at least two entries (one sub-range), got {self.thresholds!r}")
        if any(math.isnan(x) for x in t) or any(math.isinf(x) for x in t[:-1]) or t[-1] == -math.inf:
            raise ValueError(f"thresholds must be finite except the last, which may be +inf; got {self.thresholds!r}")
        if any(b < a for a, b in zip(t, t[1:])):
            raise ValueError(f"thresholds must be non-decreasing, got {self.thresholds!r}")
        values = (0.0,) * (len(t) - 1) if self.values is None else tuple(float(v) for v in self.values)
        if len(values) != len(t) - 1:
            raise ValueError(f"values needs one entry per sub-range ({len(t) - 1}), got {self.values!r}")
        object.__setattr__(self, "thresholds", t)
        object.__setattr__(self, "values", values)
        edges = torch.tensor(t, dtype=torch.float64)[:, None]  # (the map's constants, made once)
        object.__setattr__(self, "_low", edges[:-1])
        object.__setattr__(self, "_high", edges[1:])

    @property
    def n_choices(self) -> int:
        return len(self.thresholds) - 1

    def map(self, z: Tensor, scale: Tensor | float = 1.0) -> Tensor:
        """Pre-activations ``[..., K, p]`` -> actions inside each choice's sub-range ``[..., K, p]``.

        ``scale`` multiplies the softplus of an unbounded range (e.g. the mean demand, so that orders are
        learned in units of demand); broadcast against ``[..., K, p]``.
        """
        if z.shape[-2] != self.n_choices:
            raise ValueError(f"expected {self.n_choices} sub-ranges in dimension -2 of z, got shape {tuple(z.shape)}")
        lo = on_device(self, "low", self._low, z)
        hi = on_device(self, "high", self._high, z)
        bounded = torch.isfinite(hi)
        width = torch.where(bounded, hi - lo, torch.zeros_like(hi))
        return torch.where(bounded, lo + width * torch.sigmoid(z), lo + scale * F.softplus(z))

    def value(self, choice: Tensor) -> Tensor:
        """``values[choice]`` for a tensor of choices (any shape), as floats."""
        return torch.as_tensor(self.values, dtype=torch.get_default_dtype(), device=choice.device)[choice]


# ----------------------------------------------------------------------------------------------------------------
# Problems
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Episode:
    """A batch of sampled episodes: initial states ``[B, ...]`` and exogenous noise ``[B, T, ...]`` (or ``None``
    when the problem is deterministic given its initial state). ``data`` holds anything else per episode."""

    state: Tensor
    noise: Tensor | None = None
    data: dict[str, Tensor] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.state.shape[0]

    def __getitem__(self, index) -> Episode:
        """A sub-batch (``index`` as for tensor indexing along the batch dimension)."""
        return Episode(self.state[index], None if self.noise is None else self.noise[index],
                       {k: v[index] for k, v in self.data.items()})

    def to(self, device) -> Episode:
        return Episode(self.state.to(device), None if self.noise is None else self.noise.to(device),
                       {k: v.to(device) for k, v in self.data.items()})


class HybridProblem(Protocol):
    """A batched, differentiable simulator with hybrid actions.

    ``step`` must be differentiable in ``state`` and ``action`` for fixed ``choice`` (that is the whole point),
    and must not branch in Python on data. Costs are per episode and period, ``[B]``. A problem may also offer
    ``relaxed_step(state, weights [B, K], actions [B, K, p], period, episode)``, the step with the choice relaxed
    to weights (equal to ``step`` for one-hot weights), used only by :func:`relaxed_rollout`.
    """

    n_choices: int
    action_dim: int
    observation_dim: int
    horizon: int

    def sample(self, batch: int, generator: torch.Generator) -> Episode: ...

    def observe(self, state: Tensor, period: int, episode: Episode) -> Tensor: ...

    def step(self, state: Tensor, choice: Tensor, action: Tensor, period: int, episode: Episode
             ) -> tuple[Tensor, Tensor]: ...


# ----------------------------------------------------------------------------------------------------------------
# Policies
# ----------------------------------------------------------------------------------------------------------------
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def mlp(sizes: Sequence[int], activation: str, generator: torch.Generator, head_std: float | None = None
        ) -> nn.Sequential:
    """An MLP with ``activation`` between layers, orthogonal hidden weights (gain √2) and zero biases, drawn from
    ``generator``; the output layer's weights are ``N(0, head_std²)`` when given (a near-constant start)."""
    check_choice("activation", activation, tuple(ACTIVATIONS))
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes, sizes[1:])):
        linear = nn.Linear(a, b)
        last = k == len(sizes) - 2
        with torch.no_grad():
            if last and head_std is not None:
                linear.weight.normal_(0.0, head_std, generator=generator)
            else:
                nn.init.orthogonal_(linear.weight, gain=1.0 if last else math.sqrt(2), generator=generator)
            linear.bias.zero_()
        layers.append(linear)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class HybridPolicy(nn.Module):
    """``π(d, u | s) = π^D(d | s) · δ(u − μ(s, d))`` (spec §2).

    Two separate networks of the observation: ``discrete`` gives the logits of the ``K`` choices, ``continuous``
    one pre-activation vector per choice ``[K, p]`` (plus ``continuous_shift``), mapped into each choice's
    sub-range by ``action_map`` (e.g. :meth:`SubRanges.map`; the identity when ``None``). Separate networks keep the parameters apart: the
    discrete parameters move the costs only through the sampled choices, never pathwise.

    ``forward(observation) -> (logits [B, K], actions [B, K, p])``.
    """

    def __init__(
        self,
        observation_dim: int,
        n_choices: int,
        action_dim: int,
        *,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        head_std: float = 0.01,
        action_map: Callable[[Tensor], Tensor] | None = None,
        continuous_shift: float = 0.0,
        init_seed: int = 0,
    ):
        super().__init__()
        self.observation_dim = check_int("observation_dim", observation_dim, minimum=1)
        self.n_choices = check_int("n_choices", n_choices, minimum=1)
        self.action_dim = check_int("action_dim", action_dim, minimum=1)
        hidden = [check_int("hidden layer size", h, minimum=1) for h in hidden]
        check_positive("head_std", head_std)
        generator = torch.Generator().manual_seed(check_int("init_seed", init_seed, minimum=0))
        self.discrete = mlp([observation_dim, *hidden, n_choices], activation, generator, head_std)
        self.continuous = mlp([observation_dim, *hidden, n_choices * action_dim], activation, generator, head_std)
        self.action_map = action_map
        self.continuous_shift = float(continuous_shift)

    def pre_actions(self, observation: Tensor) -> Tensor:
        """The continuous network's unconstrained output ``[B, K, p]`` (before the sub-range map)."""
        return self.continuous(observation).unflatten(-1, (self.n_choices, self.action_dim)) + self.continuous_shift

    def map_actions(self, z: Tensor) -> Tensor:
        return z if self.action_map is None else self.action_map(z)

    def forward(self, observation: Tensor) -> tuple[Tensor, Tensor]:
        return self.discrete(observation), self.map_actions(self.pre_actions(observation))

    def discrete_parameters(self) -> list[nn.Parameter]:
        return list(self.discrete.parameters())

    def continuous_parameters(self) -> list[nn.Parameter]:
        return list(self.continuous.parameters())


# ----------------------------------------------------------------------------------------------------------------
# Rollouts
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class HybridTrajectory:
    """The record of a hybrid rollout, everything ``[B, T]`` unless said otherwise.

    ``cost`` keeps its graph to the continuous parameters with the sampled choices held fixed (pathwise term);
    ``log_prob`` = log π^D(d_t | s_t) keeps the graph through ``s_t`` (score-function and cross terms);
    ``log_prob_fixed_state`` detaches ``s_t`` (score-function term only), and so does ``entropy_fixed_state`` (the
    entropy of π^D(· | s_t) with ``s_t`` detached: the decentralized updates' entropy bonus, which must not reach
    the continuous parameters through the state either). With Gaussian exploration of the
    continuous action (PPO, the pure score-function estimator), the noise is added to the chosen sub-range's
    pre-activation, ``z_t = z(s_t, d_t) + σε`` (so the explored action stays in its sub-range), ``pre_action``
    records ``z_t`` and ``log_prob_action`` is log N(z_t; z(s_t, d_t), σ²) summed over the action's
    dimensions, with ``s_t`` detached and ``z_t`` treated as data.
    """

    cost: Tensor
    log_prob: Tensor
    log_prob_fixed_state: Tensor
    entropy: Tensor
    entropy_fixed_state: Tensor
    choice: Tensor
    action: Tensor  # [B, T, p]
    observation: Tensor  # [B, T, observation_dim]
    final_state: Tensor | None = None  # the state after the last period
    log_prob_action: Tensor | None = None
    pre_action: Tensor | None = None  # [B, T, p], with exploration only

    def total_cost(self) -> Tensor:
        """Σ_t c_t per episode ``[B]``."""
        return self.cost.sum(-1)


def gaussian_log_prob(sample: Tensor, mean: Tensor, std: float) -> Tensor:
    """log N(sample; mean, std² I), summed over the last dimension."""
    return (-0.5 * ((sample - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)


def hybrid_rollout(
    policy: HybridPolicy,
    problem: HybridProblem,
    episode: Episode,
    *,
    generator: torch.Generator | None = None,
    greedy: bool = False,
    exploration_std: float | None = None,
    choices: Tensor | None = None,
) -> HybridTrajectory:
    """Run ``policy`` on ``episode`` for ``problem.horizon`` periods.

    Choices are sampled from π^D with ``generator`` (required unless ``greedy`` or ``choices``), taken as the
    argmax when ``greedy`` (evaluation), or imposed by ``choices`` ``[B, T]`` (to enumerate every path of a
    small problem, :func:`exact_objective`). ``exploration_std`` adds Gaussian noise ``σ·ε`` to the continuous
    action (drawn from ``generator``) and records its log-density; the noisy action is what the simulator sees.

    The fixed-state fields (``log_prob_fixed_state``, ``entropy_fixed_state``) take a second pass of the discrete
    network on the detached states, for their graph to θ_D alone. Their values equal those of ``log_prob`` and
    ``entropy``, so under ``torch.no_grad()`` (PPO's rollouts, greedy evaluation) the pass is skipped.
    """
    if choices is not None:
        if tuple(choices.shape) != (episode.size, problem.horizon):
            raise ValueError(f"choices must be [{episode.size}, {problem.horizon}], got {tuple(choices.shape)}")
    elif not greedy and generator is None:
        raise ValueError("generator is required to sample the discrete choices (or pass greedy=True)")
    if exploration_std is not None:
        check_positive("exploration_std", exploration_std)
    state = episode.state
    records: dict[str, list[Tensor]] = {k: [] for k in ("cost", "log_prob", "fixed", "entropy", "fixed_entropy",
                                                        "choice", "action", "obs", "lpa", "pre")}
    for t in range(problem.horizon):
        observation = problem.observe(state, t, episode)
        logits, actions = policy(observation)
        log_probs = torch.log_softmax(logits, -1)
        if choices is not None:
            choice = choices[:, t]
        elif greedy:
            choice = logits.argmax(-1)
        else:
            choice = torch.multinomial(log_probs.detach().exp(), 1, generator=generator).squeeze(-1)
        index = choice[:, None, None].expand(-1, 1, actions.shape[-1])
        action = actions.gather(1, index).squeeze(1)
        if exploration_std is not None:
            z = policy.pre_actions(observation.detach())
            mean = z.gather(1, index).squeeze(1)
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
            sample = (mean + exploration_std * noise).detach()
            action = policy.map_actions(z.detach().scatter(1, index, sample[:, None])).gather(1, index).squeeze(1)
            records["pre"].append(sample)
            records["lpa"].append(gaussian_log_prob(sample, mean, exploration_std))
        if torch.is_grad_enabled():
            fixed_log_probs = torch.log_softmax(policy.discrete(observation.detach()), -1)
        else:  # the same values without a second pass of the discrete network
            fixed_log_probs = log_probs.detach()
        fixed = fixed_log_probs.gather(1, choice[:, None]).squeeze(1)
        state, cost = problem.step(state, choice, action, t, episode)
        records["cost"].append(cost)
        records["log_prob"].append(log_probs.gather(1, choice[:, None]).squeeze(1))
        records["fixed"].append(fixed)
        records["entropy"].append(-(log_probs.exp() * log_probs).sum(-1))
        records["fixed_entropy"].append(-(fixed_log_probs.exp() * fixed_log_probs).sum(-1))
        records["choice"].append(choice)
        records["action"].append(action)
        records["obs"].append(observation)
    stack = {k: torch.stack(v, 1) for k, v in records.items() if v}
    return HybridTrajectory(
        cost=stack["cost"], log_prob=stack["log_prob"], log_prob_fixed_state=stack["fixed"],
        entropy=stack["entropy"], entropy_fixed_state=stack["fixed_entropy"], choice=stack["choice"],
        action=stack["action"], observation=stack["obs"],
        final_state=state, log_prob_action=stack.get("lpa"), pre_action=stack.get("pre"),
    )


def relaxed_rollout(policy: HybridPolicy, problem: HybridProblem, episode: Episode, *, generator: torch.Generator,
                    temperature: float, straight_through: bool = True) -> Tensor:
    """Costs ``[B, T]`` of ``policy`` with its choices relaxed by the Gumbel-softmax, differentiable end to end.

    In every period the weights are ``w = softmax((logits + g)/τ)`` with Gumbel noise ``g = −log(−log U)`` drawn
    from ``generator``; with ``straight_through`` the simulator sees the hard one-hot of ``argmax w`` while the
    gradient flows through ``w`` (``hard + w − w.detach()``). The problem must offer ``relaxed_step(state,
    weights [B, K], actions [B, K, p], period, episode)``, which mixes the choices' actions and features by the
    weights (spec §2.3, §6) and equals ``step`` for one-hot weights.
    """
    check_positive("temperature", temperature)
    relaxed_step = getattr(problem, "relaxed_step", None)
    if relaxed_step is None:
        raise TypeError(f"{type(problem).__name__} has no relaxed_step(state, weights, actions, period, episode): "
                        "the Gumbel-softmax baseline needs one")
    state, costs = episode.state, []
    for t in range(problem.horizon):
        logits, actions = policy(problem.observe(state, t, episode))
        uniform = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
        gumbel = -torch.log((-torch.log(uniform.clamp(min=1e-20))).clamp(min=1e-20))
        weights = torch.softmax((logits + gumbel) / temperature, -1)
        if straight_through:
            hard = F.one_hot(weights.argmax(-1), weights.shape[-1]).to(weights)
            weights = hard + weights - weights.detach()
        state, cost = relaxed_step(state, weights, actions, t, episode)
        costs.append(cost)
    return torch.stack(costs, 1)


def exact_objective(policy: HybridPolicy, problem: HybridProblem, episode: Episode) -> Tensor:
    """The exact expected total cost ``J(θ)`` over the episodes (their empirical distribution) and **every**
    sequence of choices: ``mean_b Σ_{d_0..d_{T-1}} Π_t π^D(d_t | s_t) · Σ_t c_t``. Differentiable: its
    gradient is the exact ∇J that the estimators estimate. Costs ``K^T`` rollouts per episode, so only for tiny
    problems (the tests and the estimator chapter).
    """
    K, T, B = problem.n_choices, problem.horizon, episode.size
    paths = K**T
    if paths * B > 2_000_000:
        raise ValueError(f"exact_objective would enumerate {paths} choice paths x {B} episodes: too many")
    every = torch.cartesian_prod(*[torch.arange(K)] * T).reshape(paths, T) if T > 1 else torch.arange(K)[:, None]
    index = torch.arange(B).repeat_interleave(paths)
    expanded = episode[index]
    traj = hybrid_rollout(policy, problem, expanded, choices=every.repeat(B, 1).to(episode.state.device))
    weight = traj.log_prob.sum(-1).exp()
    return (weight * traj.total_cost()).reshape(B, paths).sum(-1).mean()
