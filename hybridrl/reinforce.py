"""A REINFORCE baseline for HDPO (spec §6.5, §8): the same deterministic policies, scenarios and training loop.

The paper reports that HDPO is "more robust than variants of the REINFORCE algorithm"; the authors' code has no
REINFORCE. This module makes the comparison like for like: :class:`Reinforce` wraps *any* deterministic policy of
:mod:`hybridrl.policies` or :mod:`hybridrl.network_policies`, and :func:`hybridrl.train.fit` trains it with
``TrainConfig(estimator="reinforce")`` — the same minibatches, Adam, dev evaluation and model selection as
HDPO — while :func:`hybridrl.estimators.reinforce` turns each rollout into the score-function surrogate::

    from hybridrl.reinforce import Reinforce
    result = fit(Reinforce(VanillaMLP(setting.n_slots)), train, dev, TrainConfig(estimator="reinforce", ...))
    result.policy.policy   # the trained deterministic policy (``result.policy`` itself is in eval mode: μ)

Exploration
-----------
In training mode the wrapper plays a random action around the deterministic one, ``μ = policy(obs)``, with
``ε ~ N(0, 1)`` i.i.d. per period and action entry:

* ``noise="lognormal"`` (default): ``a = μ · exp(σ ε − σ²/2)`` — Gaussian exploration **in log space**
  (``log a ~ N(log μ − σ²/2, σ²)``): positive, ``E[a] = μ``, and ``σ`` is relative (0.3: about ±30 %), so one
  value suits stores of any size. Where ``μ = 0`` (e.g. a base-stock policy above its level) the action is 0
  and the period contributes nothing to the score (it has no density there; such a policy's gradient is 0 there
  too). Caveat: the score is ``(ε/σ)·∇μ/μ``, unbounded as ``μ → 0⁺``. For policies that output ``relu(·)``
  (base stock, echelon base stock), whose orders have positive density near 0, its variance is **infinite**: a
  few minibatches carry gradients 10⁴-10⁵ times the true one. Softplus-output networks (:class:`VanillaMLP`,
  :class:`~hybridrl.network_policies.NetworkMLP`) are fine (``∇μ/μ`` stays bounded).
* ``noise="normal"``: ``a = max(0, μ + σ·m·ε)`` with ``m`` the mean demand of the store (networks: through the
  edge's receiver) — additive Gaussian exploration in units of demand, censored at 0; ``log π`` is the normal
  density for ``a > 0`` and ``log Φ(−μ/(σm))`` for ``a = 0``. Bounded score: use it for base-stock policies.

The sampled action is **detached**: the simulator's states are data, and the only path from the parameters to
the loss is ``log π(a | s)`` through ``μ(s)``. The noise of draw ``k`` comes from a ``torch.Generator`` on the
action's device re-seeded with ``(seed, k)``; the counter ``k`` is saved in the module's ``state_dict`` (its
extra state), so a run resumed from a checkpoint of :func:`~hybridrl.train.fit` continues the same noise stream.
Same seed, same device: the same training history.

In eval mode the wrapper returns ``μ`` itself and records nothing: dev and test evaluation are of the
deterministic policy, exactly as for HDPO. (The *training* cost that ``fit`` reports is the exploring policy's.)

Baseline (critic)
-----------------
A learned state value, ``V_t = (T − t) · μ̄ · u(s_t, (T − t)/T)``: ``u`` is a :class:`~hybridrl.policies.MemberMLP`
(ELU, ``value_hidden``) of the inventory vectors divided by mean demand plus the fraction of the horizon left,
and ``μ̄`` the mean demand, so ``u`` is the expected cost per remaining period in units of demand — of order 1
in every setting, and the ``(T − t)`` factor carries the (dominant) dependence of the cost-to-go on time. For a
single-store setting there is one value per store (stores without a warehouse are independent systems: each
store's action is scored against its own cost-to-go), with as many value members as the policy has; for a
network there is one value per scenario, of all its locations' inventories (each divided by the demand flowing
through it), scored with the network's cost per store. The value network's inputs are detached and the value
enters the score term detached, so the policy and the value network have disjoint gradients; one Adam (fit's)
trains both. ``T`` is the length of the rollout, known when :meth:`Reinforce.pop_record` runs after it, so the
value is computed there in one batched pass.

Recording
---------
:func:`hybridrl.inventory.rollout` and :func:`hybridrl.networks.network_rollout` call the policy's
``pop_record()`` after the last period, when it has one, and store its ``(log_prob, value)`` in the
:class:`~hybridrl.inventory.Trajectory`: single store ``[B, S, T]``; networks ``[B, 1, T]`` (one action, the
requests of every edge, per scenario; the singleton store axis broadcasts against ``cost [B, S, T]``).

With ``TrainConfig.compile`` the wrapper runs compiled too (checked on CPU: the same rollout up to float rounding,
noise counter included), but its Python-side recording and generator re-seeding break the compiled graph, so
expect little speed-up in training; evaluation, in eval mode, is the plain policy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._config import check_choice, check_int, check_positive
from ._device import on_device
from .inventory import InventorySetting, Observation
from .networks import Network, NetworkObservation
from .policies import MemberMLP, VanillaMLP

NOISES = ("lognormal", "normal")


def _value_inputs(policy: nn.Module, setting) -> tuple[Network | None, int]:
    """(network or None, number of inventory slots per store) that the value network reads."""
    if setting is None:
        setting = getattr(policy, "network", None)
    if isinstance(setting, Network):
        return setting, setting.n_locations * setting.n_slots
    if isinstance(setting, InventorySetting):
        return None, setting.n_slots
    if setting is not None:
        raise ValueError(f"setting must be an InventorySetting or a Network, got {type(setting).__name__}")
    if isinstance(policy, VanillaMLP):
        return None, policy.mlp.weights[0].shape[1]
    raise ValueError(
        f"Reinforce cannot tell how many inventory slots a {type(policy).__name__} policy sees: "
        "pass setting=<the InventorySetting or Network it runs on>"
    )


class Reinforce(nn.Module):
    """A deterministic policy made stochastic for REINFORCE, plus a learned baseline (module docstring).

    Args:
        policy: any deterministic policy (``Observation`` -> orders ``[B, S]``, or ``NetworkObservation`` ->
            requests ``[B, E]``) whose parameters have a leading member dimension.
        std: ``σ``, the exploration scale: the standard deviation of ``log a`` (``lognormal``) or of ``a`` in units
            of mean demand (``normal``).
        value_hidden: hidden layer sizes of the value network.
        seed: seeds the exploration noise and the value network's initialisation.
        noise: ``"lognormal"`` or ``"normal"`` (module docstring; ``normal`` for base-stock policies).
        setting: the setting the policy runs on, needed only to size the value network when the policy does not
            tell (network policies carry ``.network``; :class:`VanillaMLP` its input size; base-stock policies
            need it).

    ``parameters()`` are the policy's followed by the value network's; :attr:`policy_parameters` only the former.
    """

    def __init__(self, policy: nn.Module, std: float = 0.3, value_hidden: Sequence[int] = (64, 64), seed: int = 0,
                 *, noise: str = "lognormal", setting: InventorySetting | Network | None = None):
        super().__init__()
        if not isinstance(policy, nn.Module):
            raise ValueError(f"Reinforce wraps an nn.Module policy, got {type(policy).__name__}")
        if isinstance(policy, Reinforce):
            raise ValueError("the policy is already wrapped in Reinforce")
        self.policy = policy
        self.std = check_positive("std", std)
        self.noise = check_choice("noise", noise, NOISES)
        self.seed = check_int("seed", seed, minimum=0)
        if self.seed >= 2**31:
            raise ValueError(f"seed must be below 2**31, got {seed!r}")
        self.members = int(getattr(policy, "members", 1))
        self.network, inputs = _value_inputs(policy, setting)
        if self.network is not None and self.members != 1:
            raise ValueError(f"a network policy has one member, got {self.members}")
        hidden = [check_int("value_hidden", h, minimum=1) for h in value_hidden]
        self.value_net = MemberMLP([inputs + 1, *hidden, 1], self.members, init_seeds=self.seed)
        if self.network is not None:
            from .network_policies import location_demand

            self.register_buffer("location_scale", location_demand(self.network), persistent=False)
        self._draws = 0
        self._generators: dict[torch.device, torch.Generator] = {}
        self._clear()

    # ---- parameters, state ---------------------------------------------------------------------------------------
    @property
    def policy_parameters(self) -> list[nn.Parameter]:
        """The wrapped policy's parameters (what the estimators' gradients are compared on)."""
        return list(self.policy.parameters())

    def get_extra_state(self) -> Tensor:
        return torch.tensor([self._draws], dtype=torch.long)  # the noise counter (module docstring)

    def set_extra_state(self, state: Tensor) -> None:
        self._draws = int(torch.as_tensor(state).flatten()[0])

    def _clear(self) -> None:
        self._log_prob: list[Tensor] = []
        self._features: list[Tensor] = []
        self._scale: Tensor | None = None

    # ---- acting --------------------------------------------------------------------------------------------------
    def _noise(self, like: Tensor) -> Tensor:
        generator = self._generators.get(like.device)
        if generator is None:
            generator = self._generators[like.device] = torch.Generator(device=like.device)
        generator.manual_seed((self.seed << 32) + self._draws)
        self._draws += 1
        return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)

    def _unit(self, obs: Observation | NetworkObservation, like: Tensor) -> Tensor:
        """The demand scale of every action entry (``noise="normal"``): the store's mean demand ``[B, S]``, or the
        mean demand through each edge's receiver ``[E]``."""
        if isinstance(obs, NetworkObservation):
            return self.location_scale[self.network.tensor("receiver", like)].to(like.dtype)
        return obs.mean_demand.to(like.dtype)

    def sample(self, mean: Tensor, unit: Tensor | None = None) -> Tensor:
        """A detached exploratory action around ``mean`` (``unit``: :meth:`_unit`, for ``noise="normal"``)."""
        eps = self._noise(mean)
        if self.noise == "lognormal":
            return mean.detach() * torch.exp(self.std * eps - 0.5 * self.std**2)
        return torch.relu(mean.detach() + self.std * unit * eps)

    def log_prob(self, action: Tensor, mean: Tensor, unit: Tensor | None = None) -> Tensor:
        """``log π(a | s)`` per action entry (differentiable in ``mean``; module docstring).

        ``lognormal``: the log-normal density of ``a`` around ``mean``, 0 where ``mean`` = 0 (the action is then
        0 with certainty). ``normal``: the censored normal, ``log N(a; μ, (σ·unit)²)`` for ``a > 0`` and the
        probability mass ``log Φ(−μ / (σ·unit))`` of ``a = 0``.
        """
        if self.noise == "normal":
            width = self.std * unit
            z = (action - mean) / width
            density = -0.5 * z.square() - torch.log(width * math.sqrt(2 * math.pi))
            return torch.where(action > 0, density, torch.special.log_ndtr(-mean / width))
        positive = mean > 0
        log_mean = torch.log(torch.where(positive, mean, torch.ones_like(mean)))  # no NaN gradient where μ = 0
        log_action = torch.log(torch.where(positive, action, torch.ones_like(action)))
        z = (log_action - log_mean + 0.5 * self.std**2) / self.std
        density = -0.5 * z.square() - math.log(self.std * math.sqrt(2 * math.pi)) - log_action
        return torch.where(positive, density, torch.zeros_like(density))

    def forward(self, obs: Observation | NetworkObservation) -> Tensor:
        is_network = isinstance(obs, NetworkObservation)
        if is_network != (self.network is not None):
            raise ValueError(
                f"Reinforce was built for {'a network' if self.network is not None else 'single-store settings'} "
                f"but received a {type(obs).__name__}"
            )
        mean = self.policy(obs)
        if not self.training:
            return mean
        if obs.period == 0:  # a new rollout: drop anything left by an interrupted one
            self._clear()
        unit = self._unit(obs, mean) if self.noise == "normal" else None
        action = self.sample(mean, unit)
        log_prob = self.log_prob(action, mean, unit)
        if is_network:
            log_prob = log_prob.sum(-1)  # [B]: all edges' requests are one action
            features = (obs.inventory / self.location_scale[:, None]).flatten(1)  # [B, N n]
            if self._scale is None:
                self._scale = on_device(self.network, "mean store demand", self.network.mean_demand.mean(), mean)
        else:
            features = obs.inventory / obs.mean_demand.unsqueeze(-1)  # [B, S, n]
            if self._scale is None:
                self._scale = obs.mean_demand.detach()  # [B, S]
        self._log_prob.append(log_prob)
        self._features.append(features.detach())
        return action

    # ---- the record of a rollout -----------------------------------------------------------------------------------
    def pop_record(self) -> tuple[Tensor, Tensor] | None:
        """``(log_prob, value)`` of the rollout just played (module docstring), and forget it; ``None`` if nothing
        was recorded (eval mode). Single store ``[B, S, T]``; networks ``[B, 1, T]``."""
        if not self._log_prob:
            return None
        log_prob, features, scale = self._log_prob, self._features, self._scale
        self._clear()
        T = len(log_prob)
        x = torch.stack(features)  # [T, B, S, n] or [T, B, F]
        remaining = torch.arange(T, 0, -1, device=x.device, dtype=x.dtype)  # T - t
        time = (remaining / T).view(T, *([1] * (x.dim() - 1))).expand(*x.shape[:-1], 1)
        x = torch.cat([x, time], dim=-1)
        if self.network is not None:
            u = self.value_net(x.reshape(1, -1, x.shape[-1])).view(T, -1)  # [T, B]
            value = (remaining[:, None] * scale * u).T.unsqueeze(1)  # [B, 1, T]
            return torch.stack(log_prob, -1).unsqueeze(1), value
        _, B, S, F = x.shape
        if self.members == 1:
            u = self.value_net(x.reshape(1, T * B * S, F)).view(T, B, S)
        elif self.members == S:
            u = self.value_net(x.permute(2, 0, 1, 3).reshape(S, T * B, F)).view(S, T, B).permute(1, 2, 0)
        else:
            raise ValueError(f"policy has {self.members} members but the setting has {S} stores")
        value = (remaining[:, None, None] * scale * u).permute(1, 2, 0)  # [B, S, T]
        return torch.stack(log_prob, -1), value
