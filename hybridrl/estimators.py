"""Gradient estimators: functions from a rollout to a surrogate loss whose gradient is the estimate.

Every estimator has the signature ``estimator(trajectory) -> loss`` (a scalar tensor); calling ``backward()``
on the loss puts the gradient estimate in the parameters' ``.grad``. The training loop looks estimators up by
name in :data:`ESTIMATORS`, so adding one is one function, one line and one test.

HDPO uses only the pathwise estimator (spec §2): the hindsight cost C(θ; ξ) of each scenario is differentiated
through the whole rollout by automatic differentiation, with no score-function term, no critic and no
exploration noise.

The REINFORCE baseline of the paper's comparison (spec §6.5, §8) is :func:`reinforce`: the score-function
estimator with a learned baseline, for a deterministic policy made stochastic by
:class:`hybridrl.reinforce.Reinforce` and trained by the same :func:`hybridrl.train.fit`
(``TrainConfig(estimator="reinforce")``). :func:`gradient_variance` measures how noisy one minibatch's gradient
is under either estimator.

HPO's hybrid rollouts (:class:`hybridrl.hybrid.HybridTrajectory`) add the **exact mixed estimator** (HPO spec
§4.1): with sampled choices ``d_t`` held fixed, cost-to-go ``R_t = Σ_{k ≥ t} c_k`` and a baseline ``b_t``,

    ∇J = G_PW + G_SF + G_X,
    G_PW = E[Σ_t ∂c_t/∂θ_C]                                (pathwise, choices fixed)
    G_SF = E[Σ_t ∇_{θ_D} log π^D(d_t | s_t) (R_t − b_t)]   (score function)
    G_X  = E[Σ_t ∇_{θ_C} log π^D(d_t | s_t(θ_C)) (R_t − b_t)]   (cross: θ_C moves later choices via the state)

all on one scale (undiscounted total cost per episode, averaged over the batch). :func:`mixed` returns the
surrogate ``mean_b[Σ_t c_t + Σ_t log π^D(d_t | s_t)·(R_t − b_t)]`` with the advantage detached: its gradient is
exactly that sum, because ``log π^D`` is computed with ``s_t`` attached to the graph. The decentralized update
(:func:`mixed` with ``cross=False``) uses ``log π^D`` with ``s_t`` detached and so drops ``G_X``.

The baseline must not depend on the episode's own choices at or after ``t``: the default is the leave-one-out
mean of the other episodes' cost-to-go at ``t`` (unbiased for batches of independent episodes); a learned
value ``V(s_t)`` of the detached state may be passed instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ._config import check_choice, check_int
from .inventory import Trajectory


def pathwise(trajectory: Trajectory) -> Tensor:
    """∇θ of the mean hindsight cost: Σ cost / (B·S·T) over **all** periods, warm-up included (spec §3.2)."""
    if isinstance(trajectory, Trajectory) and trajectory.log_prob is not None:
        raise ValueError(
            "the pathwise estimator got a rollout of a policy wrapped in hybridrl.reinforce.Reinforce: its sampled "
            "actions are detached, so no gradient flows through the simulator; use estimator='reinforce', or "
            "train the bare deterministic policy (Reinforce(...).policy) with the pathwise estimator"
        )
    return trajectory.cost.mean()


def cost_to_go(cost: Tensor) -> Tensor:
    """``R_t = Σ_{k ≥ t} c_k`` along the last dimension."""
    return cost.flip(-1).cumsum(-1).flip(-1)


def leave_one_out_mean(x: Tensor) -> Tensor:
    """For every episode, the mean of the *other* episodes (dimension 0): a baseline independent of its own."""
    n = x.shape[0]
    if n < 2:
        raise ValueError("the leave-one-out baseline needs at least two episodes in the batch")
    return (x.sum(0, keepdim=True) - x) / (n - 1)


def mixed(trajectory, *, cross: bool = True, baseline: Tensor | None = None) -> Tensor:
    """HPO's exact mixed estimator: a surrogate whose gradient is G_PW + G_SF (+ G_X when ``cross``), unbiased.

    ``baseline`` is ``[B, T]`` (detached before use); by default the leave-one-out mean cost-to-go.
    """
    returns = cost_to_go(trajectory.cost.detach())
    b = leave_one_out_mean(returns) if baseline is None else baseline.detach()
    log_prob = trajectory.log_prob if cross else trajectory.log_prob_fixed_state
    return (trajectory.cost.sum(-1) + (log_prob * (returns - b)).sum(-1)).mean()


def decentralized(trajectory, *, baseline: Tensor | None = None) -> Tensor:
    """Decentralized HPO: the mixed estimator without the cross term (θ_C pathwise only, θ_D score function)."""
    return mixed(trajectory, cross=False, baseline=baseline)


def score_function(trajectory, *, baseline: Tensor | None = None) -> Tensor:
    """The pure score-function (REINFORCE) estimator of a hybrid policy with Gaussian continuous exploration.

    Nothing is differentiated through the simulator: the gradient is
    ``E[Σ_t ∇ (log π^D(d_t | s_t) + log N(u_t; μ(s_t, d_t), σ²)) (R_t − b_t)]`` with states treated as data.
    Needs a rollout with ``exploration_std``.
    """
    if trajectory.log_prob_action is None:
        raise ValueError("score_function needs a rollout with Gaussian exploration (hybrid_rollout(exploration_std=...))")
    returns = cost_to_go(trajectory.cost.detach())
    b = leave_one_out_mean(returns) if baseline is None else baseline.detach()
    log_prob = trajectory.log_prob_fixed_state + trajectory.log_prob_action
    return (log_prob * (returns - b)).sum(-1).mean()


VALUE_COEF = 1.0
"""Weight of the value regression in :func:`reinforce` (module docstring there)."""


def reinforce(trajectory: Trajectory, *, value_coef: float = VALUE_COEF) -> Tensor:
    """REINFORCE with a learned baseline, for a policy wrapped in :class:`hybridrl.reinforce.Reinforce`.

    With ``R_t = Σ_{k ≥ t} c_k`` the (undiscounted) cost-to-go within the rollout and ``V_t`` the recorded value,
    the surrogate is

        mean_{b,s,t}[log π_t · (R_t − V_t)]  +  value_coef · ½ mean_{b,s,t}[((V_t − R_t) / ((T − t)·c̄))²]

    (advantage and target detached; ``c̄ = mean |c|`` of the batch). The first term's gradient is an unbiased
    estimate of ∇ mean_{b,s,t} E[c_t] — the gradient of :func:`pathwise`'s objective (for the stochastic policy),
    on the same scale, so both estimators' gradients can be compared directly and fit's learning rates apply;
    the advantage is not normalised (Adam is invariant to a constant scale of the gradient). The second term
    regresses ``V_t`` on ``R_t`` measured per remaining period and relative to the batch's cost level, a
    dimensionless error of order 1 in every setting. The value network's parameters get gradient from the
    second term only and the policy's from the first only, so under Adam ``value_coef`` hardly matters (except
    through ``TrainConfig.grad_clip``, which clips both together). For networks (``log_prob`` ``[B, 1, T]``)
    the return is the network's cost per store, ``cost.mean(1)``.
    """
    log_prob, value = getattr(trajectory, "log_prob", None), getattr(trajectory, "value", None)
    if not isinstance(trajectory, Trajectory) or log_prob is None or value is None:
        raise ValueError(
            "the reinforce estimator needs a rollout of a stochastic policy: wrap the policy in "
            "hybridrl.reinforce.Reinforce (fit(Reinforce(policy), ...)) and roll it out in training mode"
        )
    cost = trajectory.cost.detach()
    if log_prob.shape[1] != cost.shape[1]:  # one action per network: score it with the cost per store
        cost = cost.mean(1, keepdim=True)
    T = cost.shape[-1]
    returns = cost_to_go(cost)
    remaining = torch.arange(T, 0, -1, device=cost.device, dtype=cost.dtype)
    scale = remaining * cost.abs().mean().clamp_min(1e-8)
    score = (log_prob * (returns - value.detach())).mean()
    value_loss = 0.5 * ((value - returns) / scale).square().mean()
    return score + value_coef * value_loss


Estimator = Callable[..., Tensor]
ESTIMATORS: dict[str, Estimator] = {
    "pathwise": pathwise,
    "reinforce": reinforce,
    "mixed": mixed,
    "decentralized": decentralized,
    "score_function": score_function,
}


# ----------------------------------------------------------------------------------------------------------------
# Studying an estimator: its mean, spread and bias over independent batches
# ----------------------------------------------------------------------------------------------------------------
def gradient_samples(estimator: Estimator, policy, problem, episode, *, batches: int, repeats: int = 1,
                     seed: int = 0, **rollout) -> Tensor:
    """``batches`` independent gradient estimates ``[batches, P]`` (all parameters of ``policy``, flattened).

    Each estimate rolls out every episode of ``episode`` ``repeats`` times (fresh choices and noise, drawn from
    one generator seeded ``seed``) and differentiates ``estimator`` of that rollout.
    """
    from .hybrid import hybrid_rollout  # the hybrid rollouts build on this module's estimators

    params = [p for p in policy.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(seed)
    batch = episode[torch.arange(episode.size).repeat(repeats)]
    samples = []
    for _ in range(batches):
        trajectory = hybrid_rollout(policy, problem, batch, generator=generator, **rollout)
        grads = torch.autograd.grad(estimator(trajectory), params, allow_unused=True)
        samples.append(torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads)]))
    return torch.stack(samples)


def relative_variance(samples: Tensor, reference: Tensor | None = None) -> float:
    """``E‖ĝ − ḡ‖² / ‖g‖²``: the spread of one estimate relative to the size of the gradient (``reference``, e.g.
    the exact gradient, or the mean of the samples). Below 1, one batch points roughly the right way."""
    mean = samples.mean(0)
    scale = (mean if reference is None else reference).pow(2).sum()
    return float((samples - mean).pow(2).sum(1).mean() / scale)


def policy_gradient_samples(policy, scenarios, estimator: str = "pathwise", *, batches: int, batch_size: int,
                            seed: int = 0) -> Tensor:
    """``batches`` gradient estimates ``[batches, P]`` of a deterministic policy's parameters, one per minibatch.

    Each minibatch is ``batch_size`` scenarios drawn without replacement from ``scenarios`` (a fresh draw per
    minibatch, from a generator seeded ``seed``): the minibatches :func:`hybridrl.train.fit` trains on.
    ``estimator``: ``"pathwise"`` differentiates the deterministic policy (a :class:`~hybridrl.reinforce.Reinforce`
    wrapper is unwrapped), ``"reinforce"`` needs the wrapper and differentiates its surrogate with the wrapper's
    current value network as baseline. Only the policy's
    parameters count (never the value network's). The wrapper's exploration noise is drawn from a stream
    seeded ``seed``, and its mode and noise counter are restored afterwards, so measuring during training (e.g.
    in ``fit``'s callback) changes nothing in the training run.
    """
    from .inventory import rollout
    from .reinforce import Reinforce

    check_choice("estimator", estimator, ("pathwise", "reinforce"))  # the others are for hybrid rollouts
    wrapper = policy if isinstance(policy, Reinforce) else None
    if estimator == "pathwise" and wrapper is not None:
        policy = wrapper.policy
    params = [p for p in (wrapper.policy if wrapper is not None else policy).parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(policy).__name__} has no trainable parameters")
    check_int("batches", batches, minimum=2)
    batch_size = min(check_int("batch_size", batch_size, minimum=1), scenarios.n)
    device = params[0].device
    generator = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    training, saved = policy.training, (wrapper.seed, wrapper._draws) if wrapper is not None else None
    policy.train()
    if wrapper is not None:
        wrapper.seed, wrapper._draws = seed % 2**31, 0
    try:
        samples = []
        for _ in range(batches):
            index = torch.randperm(scenarios.n, generator=generator)[:batch_size]
            trajectory = rollout(policy, scenarios[index].to(device))
            grads = torch.autograd.grad(ESTIMATORS[estimator](trajectory), params, allow_unused=True)
            samples.append(torch.cat([(torch.zeros_like(p) if g is None else g).flatten()
                                      for p, g in zip(params, grads)]))
    finally:
        policy.train(training)
        if wrapper is not None:
            wrapper.seed, wrapper._draws = saved
            wrapper._clear()
    return torch.stack(samples)


def gradient_variance(policy, scenarios, estimator: str = "pathwise", *, batches: int = 32, batch_size: int = 1024,
                      seed: int = 0) -> float:
    """Relative variance ``E‖g − E g‖² / ‖E g‖²`` of one minibatch's gradient estimate of the policy parameters
    (:func:`policy_gradient_samples`): how noisy one training step is relative to the gradient it estimates.

    Both moments are estimated without bias from the ``batches`` samples (numerator: sample variance with
    ``batches − 1``; denominator: ``‖ḡ‖² − tr Σ̂ / batches``), so the value does not grow with too few batches;
    it is ``inf`` when the mean gradient is not resolved at all (denominator ≤ 0: use more batches). It scales
    as ``1 / batch_size``. Compare ``"pathwise"`` on the bare policy (or the wrapper) with ``"reinforce"`` on
    the :class:`~hybridrl.reinforce.Reinforce` wrapper.
    """
    samples = policy_gradient_samples(policy, scenarios, estimator, batches=batches, batch_size=batch_size, seed=seed)
    samples = samples.double()
    k = samples.shape[0]
    mean = samples.mean(0)
    spread = float((samples - mean).pow(2).sum(1).sum() / (k - 1))
    signal = float(mean.pow(2).sum()) - spread / k
    return spread / signal if signal > 0 else math.inf


# ----------------------------------------------------------------------------------------------------------------
# The three terms apart: the cross-term study (HPO spec §10.7)
# ----------------------------------------------------------------------------------------------------------------
def flat_grad(loss: Tensor, params: list[Tensor]) -> Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads)])


def mixed_terms(trajectory, continuous: list[Tensor], discrete: list[Tensor], *,
                baseline: Tensor | None = None) -> dict[str, Tensor]:
    """The exact mixed estimate of one rollout, term by term, as flat vectors.

    ``pathwise`` = G_PW and ``cross`` = G_X on the continuous parameters, ``score_function`` = G_SF on the
    discrete ones (:func:`mixed`'s scale and baseline). The cost does not depend on θ_D, and ``log π^D`` depends on
    θ_C only through the state, so ``pathwise + cross`` and ``score_function`` are exactly :func:`mixed`'s
    gradient on θ_C and θ_D (tests/test_hybrid.py).
    """
    returns = cost_to_go(trajectory.cost.detach())
    b = leave_one_out_mean(returns) if baseline is None else baseline.detach()
    advantage = returns - b
    return {
        "pathwise": flat_grad(trajectory.cost.sum(-1).mean(), continuous),
        "cross": flat_grad((trajectory.log_prob * advantage).sum(-1).mean(), continuous),
        "score_function": flat_grad((trajectory.log_prob_fixed_state * advantage).sum(-1).mean(), discrete),
    }


def signal_and_noise(samples: Tensor) -> dict[str, float]:
    """How much one batch estimate ``[M, P]`` (M independent batches) tells about its own mean.

    ``alignment`` — the leave-one-out cosine: the mean over batches ``i`` of ``cos(ĝ_i, mean_{j≠i} ĝ_j)``. Near 1
    the batches agree (signal); near 0 a batch is mostly noise around a small mean (spec §10.7). Leaving ``i``
    out keeps the batch's own noise out of the mean it is compared with. ``noise`` — :func:`relative_variance`
    (spread over squared mean norm). ``norm`` — the mean norm of one batch estimate, the size of the step it
    contributes; ``mean_norm`` — the norm of the mean.
    """
    M = samples.shape[0]
    if M < 2:
        raise ValueError(f"signal_and_noise needs at least two batch estimates, got {M}")
    others = leave_one_out_mean(samples)
    cosine = torch.nn.functional.cosine_similarity(samples, others, dim=1, eps=1e-30)
    return dict(alignment=float(cosine.mean()), noise=relative_variance(samples),
                norm=float(samples.norm(dim=1).mean()), mean_norm=float(samples.mean(0).norm()))
