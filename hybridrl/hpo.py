"""Training hybrid policies: HPO (full and decentralized), the exact mixed gradient, and the PPO baseline.

One loop, :func:`train_hybrid`, for every method of the HPO paper on any :class:`~hybridrl.hybrid.HybridProblem`.
A fixed set of training episodes is cut into batches of ``batch_size``; each batch gives **one policy update**
(HPO spec §8 counts updates: 1600 for the JRP, 4000 for the S-LQR). Every ``dev_every`` updates the greedy
policy (argmax choice, mean action) is evaluated on the dev episodes and the best-dev parameters are kept; the
test episodes are never seen here.

Methods (``HybridConfig.method``):

``exact_mixed`` / ``exact_decentralized``
    Adam on the exact mixed estimator of :func:`hybridrl.estimators.mixed`: G_PW + G_SF (+ G_X), undiscounted
    cost-to-go, a learned value baseline V(s_t), everything on one scale. Unbiased (tests/test_hybrid.py).
    The policy's gradient is clipped as one vector (continuous and discrete parameters together), so clipping
    shortens it without turning it (spec R1: one common scale); the entropy bonus ``entropy_start → entropy_end``
    adds ``−β∇H`` (set both to 0 for ∇J alone), with the states detached in ``exact_decentralized``.
``hpo_full`` / ``hpo_decentralized``
    The practical scheme of the paper's reference implementation (spec §5), documented here because it is
    *not* the exact estimator:

    1. roll out the batch with sampled choices, keeping the graph;
    2. pathwise loss ``pathwise_coef · mean_{window}(c_t) / std(c)`` — the cost scaled by its batch standard
       deviation, over the periods that are not in the first or last ``buffer_periods``;
    3. advantages by GAE(γ, λ) on the std-scaled, detached costs with the value network (bootstrapped with
       V at the horizon when ``bootstrap``), normalised per batch;
    4. epoch 0 — **one full-batch step of everything** on ``L_PW + L_clip + vf_coef·L_V − β·H(π^D)``: the
       probability ratio is exactly 1, so the clipped surrogate's gradient is the plain score-function
       estimate, and through the attached states it carries the cross term into the continuous parameters
       (``hpo_full``); ``hpo_decentralized`` detaches the states in the surrogate *and* in the entropy bonus,
       so the continuous network gets the pathwise term alone (spec §4.2, §5.7);
    5. epochs 1 … ``ppo_epochs − 1`` — standard PPO minibatch updates of the discrete head and the value
       network only, on detached states. They stop at the first minibatch whose approximate KL to the rollout's
       policy exceeds ``target_kl`` (spec §5.6), before its step is taken.

    So the continuous network takes one step per batch and the discrete network up to ``ppo_epochs``
    (spec R9). Deviations from the exact estimator: the std-scaling of the pathwise term, the normalised
    advantages (a different scale for G_SF and G_X than for G_PW), discounting γ < 1 and GAE's λ, clipping
    after the first epoch, and the entropy bonus. The epoch-0 sanity check (ratio 1, clip fraction 0,
    KL 0) is asserted with a clear message (spec R8).
``ppo``
    The model-free baseline (spec §6): a categorical discrete head and a Gaussian continuous head (fixed
    ``exploration_std`` on the pre-activation of the sampled choice, mapped into its sub-range; only that component
    enters log π), the clipped surrogate on ``log π^D + log N``, value loss, entropy bonus (discrete),
    ``ppo_epochs`` minibatch epochs with early stopping; nothing is differentiated through the simulator.
    The PPO implementation details we follow: orthogonal initialisation, Adam with eps 1e-5, per-batch
    advantage normalisation, optional value clipping, gradient-norm clipping, approximate-KL early stop.
``gumbel_st``
    The purely pathwise baseline (spec §6): the choices are relaxed by the Gumbel-softmax
    (:func:`hybridrl.hybrid.relaxed_rollout`; straight-through by default: the simulator sees hard choices, the
    gradient flows through the relaxed weights), and both networks follow the gradient of the std-scaled mean
    cost over the same window as HPO's pathwise loss. No score function, no value network. The temperature
    decays geometrically from ``temperature_start`` to ``temperature_end`` (the reference's schedule is unknown:
    ours is a documented choice). The gradient is biased — the relaxation is not the simulator — which is the
    point of the comparison.

Learning rates anneal linearly from the base rate (``lr_k = lr_0 · (1 − k/K)`` when ``anneal``, computed from
the base rate, never compounded: spec R2); the entropy coefficient anneals linearly from ``entropy_start`` to
``entropy_end``. Gradient norms are clipped per component (continuous, discrete, value; spec §5.10), except in
the exact methods (one policy vector). Each run seeds Python's, NumPy's and PyTorch's global generators from
``seed`` (spec R4), although everything here draws from explicit ``torch.Generator`` objects.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ._config import check_choice, check_int, check_nonnegative, check_positive, from_dict
from .cache import save_state_atomic
from .estimators import cost_to_go, flat_grad, mixed
from .hybrid import (Episode, HybridPolicy, HybridProblem, HybridTrajectory, gaussian_log_prob, hybrid_rollout,
                     mlp, relaxed_rollout)

METHODS = ("hpo_full", "hpo_decentralized", "exact_mixed", "exact_decentralized", "ppo", "gumbel_st")


@dataclass(frozen=True)
class HybridConfig:
    """Every setting of a hybrid training run; defaults are a small, sensible configuration."""

    method: str = "hpo_full"
    updates: int = 400
    """Policy updates (one per batch)."""
    batch_size: int = 128
    lr: float = 1e-3
    """Learning rate of the discrete policy network (Adam, eps 1e-5)."""
    continuous_lr: float | None = None
    """Learning rate of the continuous policy network (``None``: ``lr``)."""
    value_lr: float | None = None
    """Learning rate of the value network (``None``: ``lr``)."""
    anneal: bool = True
    """Anneal the learning rates linearly to zero over ``updates``."""
    hidden: tuple[int, ...] = (64, 64)
    value_hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    ppo_epochs: int = 5
    minibatches: int = 4
    target_kl: float | None = 0.015
    vf_coef: float = 0.5
    clip_value: bool = False
    pathwise_coef: float = 1.0
    reward_scaling: bool = True
    """Divide the costs by their batch standard deviation: before GAE (the value network then learns scaled
    returns) and, for HPO and Gumbel-softmax, in the pathwise loss. The reference does this for HPO on the JRP
    and not for PPO on the S-LQR (spec §9); off, the value network learns the costs as they are."""
    entropy_start: float = 0.01
    entropy_end: float = 0.0
    max_grad_norm: float | None = 5.0
    exploration_std: float = 0.5
    """PPO only: standard deviation of the Gaussian around the continuous action."""
    buffer_periods: int = 0
    """Periods left out of the pathwise loss at each end of the horizon (HPO practical scheme)."""
    bootstrap: bool = False
    """Bootstrap the advantages with V at the horizon (a truncated infinite-horizon problem) or not."""
    temperature_start: float = 1.0
    """Gumbel-softmax only: the temperature of the first update ..."""
    temperature_end: float = 0.1
    """... and of the last (geometric decay)."""
    straight_through: bool = True
    """Gumbel-softmax only: hard choices forward, relaxed gradient backward."""
    continuous_shift: float = 0.0
    """Added to the continuous network's pre-activations (the JRP uses 1.0: a first order of softplus(1)·μ)."""
    dev_every: int = 20
    device: str = "cpu"
    """Where to train: ``"cpu"``, ``"cuda[:k]"`` or ``"auto"`` (episodes are moved there; results come back
    to the CPU)."""
    seed: int = 0
    """Algorithm seed: initial weights, choice sampling, exploration noise, batch order (data seeds are apart)."""

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        for name in ("updates", "batch_size", "ppo_epochs", "minibatches", "dev_every"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("buffer_periods", self.buffer_periods, minimum=0)
        check_int("seed", self.seed, minimum=0)
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a string such as 'cpu', 'cuda' or 'auto', got {self.device!r}")
        for name in ("lr", "clip", "exploration_std", "pathwise_coef", "temperature_start", "temperature_end"):
            check_positive(name, getattr(self, name))
        for name in ("vf_coef", "entropy_start", "entropy_end"):
            check_nonnegative(name, getattr(self, name))
        for name in ("gamma", "gae_lambda"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        for name in ("value_lr", "continuous_lr", "target_kl", "max_grad_norm"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))
        if self.minibatches > self.batch_size:
            raise ValueError(f"minibatches ({self.minibatches}) cannot exceed batch_size ({self.batch_size})")

    @classmethod
    def from_dict(cls, values: dict) -> HybridConfig:
        return from_dict(cls, values)


@dataclass
class HybridResult:
    policy: HybridPolicy
    value: nn.Module
    history: list[dict] = field(default_factory=list)
    """One row per dev evaluation: ``update, seconds, train_cost, dev_cost`` (+ diagnostics)."""
    best_dev: float = math.inf
    best_update: int = 0
    seconds: float = 0.0


def reported(problem: HybridProblem, cost: Tensor) -> Tensor:
    """The problem's reported metric per episode ``[B]`` from costs ``[B, T]``: ``problem.reported(cost)`` where
    the problem defines one (the JRP: cost per item and period after the warm-up), else the total cost."""
    fn = getattr(problem, "reported", None)
    return fn(cost) if fn is not None else cost.sum(-1)


def evaluate_hybrid(policy: HybridPolicy, problem: HybridProblem, episode: Episode, chunk: int = 4096) -> Tensor:
    """Greedy costs ``[N, T]`` (argmax choice, mean continuous action), without gradients, on the CPU; the episodes
    are moved chunk by chunk to the policy's device."""
    device = next(policy.parameters()).device
    with torch.no_grad():
        parts = [hybrid_rollout(policy, problem, episode[i: i + chunk].to(device), greedy=True).cost.cpu()
                 for i in range(0, episode.size, chunk)]
    return torch.cat(parts)


def annealed(base_lr: float, update: int, config: HybridConfig) -> float:
    """The learning rate of policy update ``update`` (1-based): ``base · (1 − (update − 1)/updates)`` when
    ``config.anneal``, always computed from the base rate (never compounded, spec R2)."""
    return base_lr * (1 - (update - 1) / config.updates) if config.anneal else base_lr


def _gae(cost: Tensor, values: Tensor, last_value: Tensor, gamma: float, lam: float) -> Tensor:
    """Generalised advantage estimates of the *rewards* ``-cost`` ``[B, T]`` (``values [B, T]``)."""
    advantages = torch.zeros_like(cost)
    running = torch.zeros_like(cost[:, 0])
    next_value = last_value
    for t in reversed(range(cost.shape[1])):
        delta = -cost[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
        next_value = values[:, t]
    return advantages


def _clip_groups(groups: dict[str, list[nn.Parameter]], max_norm: float | None) -> dict[str, float]:
    norms = {}
    for name, params in groups.items():
        grads = [p for p in params if p.grad is not None]
        if grads:
            total = torch.nn.utils.clip_grad_norm_(grads, max_norm if max_norm is not None else math.inf)
            norms[name] = float(total)
    return norms


def _one_policy_group(groups: dict[str, list[nn.Parameter]]) -> dict[str, list[nn.Parameter]]:
    """The exact methods' clipping groups: the policy's parameters as one vector (clipping it keeps the
    direction of G_PW + G_SF + G_X), the value network apart."""
    return {"policy": [*groups["continuous"], *groups["discrete"]], "value": groups["value"]}


def _log_prob_choice(policy: HybridPolicy, observation: Tensor, choice: Tensor) -> tuple[Tensor, Tensor]:
    logits = policy.discrete(observation)
    log_probs = torch.log_softmax(logits, -1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return log_probs.gather(-1, choice[..., None]).squeeze(-1), entropy


def _log_prob_action(policy: HybridPolicy, observation: Tensor, choice: Tensor, pre_action: Tensor, std: float
                     ) -> Tensor:
    """log N(z; z(s, d), σ²) of the explored pre-activation ``pre_action`` of the chosen sub-range."""
    z = policy.pre_actions(observation)
    index = choice[..., None, None].expand(*choice.shape, 1, z.shape[-1])
    return gaussian_log_prob(pre_action, z.gather(-2, index).squeeze(-2), std)


def train_hybrid(
    problem: HybridProblem,
    train: Episode,
    dev: Episode,
    config: HybridConfig,
    *,
    policy: HybridPolicy | None = None,
    action_map: Callable[[Tensor], Tensor] | None = None,
    progress: bool = False,
    description: str = "",
    callback: Callable[[int, HybridPolicy, nn.Module], dict | None] | None = None,
    checkpoint: str | Path | None = None,
) -> HybridResult:
    """Train a hybrid policy on ``problem`` with ``config.method``; select the best greedy policy on ``dev``.

    With ``checkpoint``, the whole training state (both networks, Adam, the random generator, the pass's order,
    the best parameters and the history) is written atomically at every dev evaluation, and a later call with
    the same path resumes from it: the same result as an uninterrupted run.

    ``callback(update, policy, value)``, if given, runs after every dev evaluation (a frozen checkpoint: e.g. the
    gradient study of :func:`hybridrl.hpo_experiments.alignment_study`); a dict it returns is added to that
    evaluation's history row. It must not change the parameters.
    """
    from .train import resolve_device

    device = resolve_device(config.device)
    # nothing here should draw from the global generators (spec R4 seeds them all the same)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    train, dev = train.to(device), dev.to(device)
    if policy is None:
        action_map = action_map or getattr(problem, "action_map", None)
        policy = HybridPolicy(problem.observation_dim, problem.n_choices, problem.action_dim, hidden=config.hidden,
                              activation=config.activation, action_map=action_map,
                              continuous_shift=config.continuous_shift, init_seed=config.seed)
    value = mlp([problem.observation_dim, *config.value_hidden, 1], config.activation,
                torch.Generator().manual_seed(config.seed + 10_000), head_std=1.0)
    dtype = train.state.dtype
    policy.to(device, dtype)
    value.to(device, dtype)
    groups = {"continuous": policy.continuous_parameters(), "discrete": policy.discrete_parameters(),
              "value": list(value.parameters())}
    optimizer = torch.optim.Adam([
        {"params": groups["continuous"], "lr": config.continuous_lr or config.lr},
        {"params": groups["discrete"], "lr": config.lr},
        {"params": groups["value"], "lr": config.value_lr or config.lr},
    ], eps=1e-5, foreach=True)  # one multi-tensor step (the same numbers as the per-tensor loop)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    best = copy.deepcopy(policy.state_dict())
    result = HybridResult(policy, value)
    order: Tensor | None = None
    batches_per_pass = max(1, train.size // config.batch_size)
    started = time.time()
    train_costs = []
    first = 1
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.exists():  # resume an interrupted run
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        policy.load_state_dict(state["policy"])
        value.load_state_dict(state["value"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        order = None if state["order"] is None else state["order"].to(device)
        best, result.best_dev, result.best_update = state["best"], state["best_dev"], state["best_update"]
        result.history, first = state["history"], state["update"] + 1
        started = time.time() - state["seconds"]
    iterator = range(first, config.updates + 1)
    if progress:
        from ._progress import progress_bar

        iterator = progress_bar(iterator, total=config.updates, initial=first - 1, desc=description or config.method,
                                mininterval=5)
    for update in iterator:
        k = (update - 1) % batches_per_pass
        if k == 0:
            order = torch.randperm(train.size, generator=generator, device=device)
        batch = train[order[k * config.batch_size: (k + 1) * config.batch_size]]
        frac = (update - 1) / config.updates
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = annealed(lr, update, config)
        entropy_coef = config.entropy_start + frac * (config.entropy_end - config.entropy_start)
        if config.method == "ppo":
            cost = _ppo_update(policy, value, problem, batch, config, optimizer, groups, generator, entropy_coef)
        elif config.method == "gumbel_st":
            cost = _gumbel_update(policy, problem, batch, config, optimizer, groups, generator, frac)
        elif config.method.startswith("exact"):
            cost = _exact_update(policy, value, problem, batch, config, optimizer, groups, generator, entropy_coef)
        else:
            cost = _hpo_update(policy, value, problem, batch, config, optimizer, groups, generator, entropy_coef)
        train_costs.append(cost)  # the total cost per episode of the training batch (a rough progress signal)
        if update % config.dev_every == 0 or update == config.updates:
            dev_cost = float(reported(problem, evaluate_hybrid(policy, problem, dev)).mean())
            result.history.append(dict(update=update, seconds=time.time() - started,
                                       train_cost=sum(train_costs) / len(train_costs), dev_cost=dev_cost))
            train_costs = []
            if callback is not None:  # its time is not training time
                paused = time.time()
                result.history[-1].update(callback(update, policy, value) or {})
                started += time.time() - paused
            if dev_cost < result.best_dev:
                result.best_dev, result.best_update = dev_cost, update
                best = copy.deepcopy(policy.state_dict())
            if checkpoint is not None:
                save_state_atomic(checkpoint, dict(
                    policy=policy.state_dict(), value=value.state_dict(), optimizer=optimizer.state_dict(),
                    generator=generator.get_state(), order=order, best=best, best_dev=result.best_dev,
                    best_update=result.best_update, history=result.history, update=update,
                    seconds=time.time() - started))
    policy.load_state_dict(best)
    result.seconds = time.time() - started
    return result


def _value_loss(value: nn.Module, observation: Tensor, returns: Tensor, old: Tensor, config: HybridConfig) -> Tensor:
    v = value(observation).squeeze(-1)
    loss = (v - returns) ** 2
    if config.clip_value:
        clipped = old + (v - old).clamp(-config.clip, config.clip)
        loss = torch.maximum(loss, (clipped - returns) ** 2)
    return 0.5 * loss.mean()


def _exact_update(policy, value, problem, batch, config, optimizer, groups, generator, entropy_coef) -> float:
    """Adam on the exact mixed estimator (undiscounted cost-to-go, value baseline) plus the value regression."""
    traj = hybrid_rollout(policy, problem, batch, generator=generator)
    observation = traj.observation.detach()
    returns = cost_to_go(traj.cost.detach())
    baseline = value(observation).squeeze(-1)
    cross = config.method == "exact_mixed"
    entropy = traj.entropy if cross else traj.entropy_fixed_state
    loss = mixed(traj, cross=cross, baseline=baseline)
    loss = loss - entropy_coef * entropy.sum(-1).mean() + config.vf_coef * 0.5 * ((baseline - returns) ** 2).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    _clip_groups(_one_policy_group(groups), config.max_grad_norm)
    optimizer.step()
    return float(traj.cost.detach().sum(-1).mean())


def _advantages(traj: HybridTrajectory, value, problem, batch, config) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """GAE advantages (normalised) and returns on the costs divided by ``scale``, their batch standard deviation
    (1 without ``reward_scaling``); also the old values and the scale."""
    with torch.no_grad():
        cost = traj.cost.detach()
        scale = cost.std().clamp(min=1e-8) if config.reward_scaling else cost.new_ones(())
        observation = traj.observation.detach()
        values = value(observation).squeeze(-1)
        last = torch.zeros_like(values[:, 0])
        if config.bootstrap:
            final = problem.observe(traj.final_state.detach(), problem.horizon, batch)
            last = value(final).squeeze(-1)
        advantages = _gae(cost / scale, values, last, config.gamma, config.gae_lambda)
        returns = advantages + values
        normalised = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return normalised, returns, values, scale


def _ppo_epochs(policy, value, traj, advantages, returns, old_values, old_log_prob, config, optimizer, groups,
                entropy_coef, generator, first_epoch: int, continuous: bool) -> None:
    """PPO minibatch epochs ``first_epoch .. ppo_epochs-1`` on detached states (discrete head and value; the
    Gaussian continuous head too when ``continuous``)."""
    observation = traj.observation.detach()
    B = observation.shape[0]
    size = max(1, B // config.minibatches)
    for epoch in range(first_epoch, config.ppo_epochs):
        order = torch.randperm(B, generator=generator, device=observation.device)
        stop = False
        for i in range(0, B, size):
            idx = order[i: i + size]
            new_log_prob, entropy = _log_prob_choice(policy, observation[idx], traj.choice[idx])
            if continuous:
                new_log_prob = new_log_prob + _log_prob_action(policy, observation[idx], traj.choice[idx],
                                                               traj.pre_action[idx], config.exploration_std)
            log_ratio = new_log_prob - old_log_prob[idx]
            ratio = log_ratio.exp()
            if config.target_kl is not None:  # this policy has moved too far from the rollout's: stop (no step)
                with torch.no_grad():
                    if float(((ratio - 1) - log_ratio).mean()) > config.target_kl:
                        stop = True
                        break
            adv = advantages[idx]
            surrogate = -torch.min(ratio * adv, ratio.clamp(1 - config.clip, 1 + config.clip) * adv).mean()
            loss = (surrogate + config.vf_coef * _value_loss(value, observation[idx], returns[idx], old_values[idx], config)
                    - entropy_coef * entropy.mean())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if not continuous:  # HPO: the continuous network is updated only by the full-batch first step
                for p in groups["continuous"]:
                    p.grad = None
            _clip_groups(groups, config.max_grad_norm)
            optimizer.step()
        if stop:
            break


def _hpo_update(policy, value, problem, batch, config, optimizer, groups, generator, entropy_coef) -> float:
    traj = hybrid_rollout(policy, problem, batch, generator=generator)
    loss, _, (advantages, returns, old_values) = hpo_first_loss(traj, value, problem, batch, config, entropy_coef)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    _clip_groups(groups, config.max_grad_norm)
    optimizer.step()
    # epochs 1..: PPO on the discrete head and the value network, states detached
    if config.ppo_epochs > 1:
        _ppo_epochs(policy, value, traj, advantages, returns, old_values, traj.log_prob_fixed_state.detach(), config,
                    optimizer, groups, entropy_coef, generator, first_epoch=1, continuous=False)
    return float(traj.cost.detach().sum(-1).mean())


def hpo_first_loss(traj: HybridTrajectory, value: nn.Module, problem: HybridProblem, batch: Episode,
                   config: HybridConfig, entropy_coef: float) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
    """The loss of HPO's full-batch first step (module docstring, steps 2-4) on a rollout ``traj``: returns the
    loss, its pathwise part, and the (normalised advantages, returns, old values) the PPO epochs reuse. In
    ``hpo_decentralized`` only the pathwise part reaches the continuous parameters."""
    advantages, returns, old_values, scale = _advantages(traj, value, problem, batch, config)
    T = traj.cost.shape[1]
    window = slice(config.buffer_periods, T - config.buffer_periods)
    pathwise = config.pathwise_coef * traj.cost[:, window].mean() / scale
    # epoch 0: one full-batch step on everything; log π^D with attached states carries the cross term
    log_prob = traj.log_prob if config.method == "hpo_full" else traj.log_prob_fixed_state
    old_log_prob = log_prob.detach()
    ratio = (log_prob - old_log_prob).exp()  # exactly 1, with the score function as its gradient
    surrogate = -torch.min(ratio * advantages, ratio.clamp(1 - config.clip, 1 + config.clip) * advantages).mean()
    observation = traj.observation.detach()
    entropy = traj.entropy if config.method == "hpo_full" else traj.entropy_fixed_state
    loss = (pathwise + surrogate + config.vf_coef * _value_loss(value, observation, returns, old_values, config)
            - entropy_coef * entropy.mean())
    clip_fraction = float(((ratio - 1).abs() > config.clip).float().mean())
    if clip_fraction > 0:
        raise RuntimeError(f"HPO epoch 0: the probability ratio must be exactly 1 (clip fraction {clip_fraction})")
    return loss, pathwise, (advantages, returns, old_values)


def hpo_first_terms(traj: HybridTrajectory, value: nn.Module, problem: HybridProblem, batch: Episode,
                    config: HybridConfig, continuous: list[Tensor], discrete: list[Tensor]) -> dict[str, Tensor]:
    """HPO-full's first-step policy gradient on a rollout ``traj`` (:func:`hpo_first_loss`, entropy bonus left
    out), term by term, as flat vectors — the practical scheme's counterparts of
    :func:`hybridrl.estimators.mixed_terms`, named as the reference's diagnostics name them (spec §5, item 12):

    * ``pathwise_ppo`` — the pathwise loss's gradient on θ_C (G_PW, scaled by ``pathwise_coef`` / std of the costs);
    * ``cross_ppo`` — the PPO surrogate's gradient on θ_C through the attached states (the practical G_X:
      normalised GAE advantages, a learned value baseline);
    * ``discrete_ppo`` — the surrogate's gradient on θ_D (the practical G_SF);
    * ``pathwise_plus_cross_ppo`` — the continuous network's whole step direction.

    Needs the rollout's graph (it is retained: call it beside :func:`~hybridrl.estimators.mixed_terms`)."""
    loss, pathwise, _ = hpo_first_loss(traj, value, problem, batch, replace(config, method="hpo_full"), 0.0)
    surrogate = loss - pathwise  # its value-loss part reaches only the value network (detached states)
    cross, discrete_part = flat_grad(surrogate, continuous + discrete).split(
        [sum(p.numel() for p in continuous), sum(p.numel() for p in discrete)])
    terms = {"pathwise_ppo": flat_grad(pathwise, continuous), "cross_ppo": cross, "discrete_ppo": discrete_part}
    terms["pathwise_plus_cross_ppo"] = terms["pathwise_ppo"] + terms["cross_ppo"]
    return terms


def _gumbel_update(policy, problem, batch, config, optimizer, groups, generator, frac: float) -> float:
    """One pathwise step through the Gumbel-softmax-relaxed simulator (module docstring, ``gumbel_st``)."""
    temperature = config.temperature_start * (config.temperature_end / config.temperature_start) ** frac
    cost = relaxed_rollout(policy, problem, batch, generator=generator, temperature=temperature,
                           straight_through=config.straight_through)
    T = cost.shape[1]
    window = slice(config.buffer_periods, T - config.buffer_periods)
    loss = config.pathwise_coef * cost[:, window].mean()
    if config.reward_scaling:
        loss = loss / cost.detach().std().clamp(min=1e-8)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    _clip_groups(groups, config.max_grad_norm)
    optimizer.step()
    return float(cost.detach().sum(-1).mean())


def _ppo_update(policy, value, problem, batch, config, optimizer, groups, generator, entropy_coef) -> float:
    with torch.no_grad():
        traj = hybrid_rollout(policy, problem, batch, generator=generator, exploration_std=config.exploration_std)
    advantages, returns, old_values, _ = _advantages(traj, value, problem, batch, config)
    old_log_prob = (traj.log_prob_fixed_state + traj.log_prob_action).detach()
    _ppo_epochs(policy, value, traj, advantages, returns, old_values, old_log_prob, config, optimizer, groups,
                entropy_coef, generator, first_epoch=0, continuous=True)
    return float(traj.cost.sum(-1).mean())

