"""Gymnasium environments over the batched simulators, so that outside agents can be run on our problems.

HDPO differentiates through the simulator; a model-free agent (Stable-Baselines3, CleanRL, ...) only sees it
through the Gymnasium API. This module offers our problems in that API, without a second simulator: every
environment here steps the same batched torch code as the rest of the package
(:func:`hybridrl.inventory.step`), ``B`` copies at once.

Layers
------
* :class:`BatchedVectorEnv` — a generic ``gymnasium.vector.VectorEnv`` of ``B`` independent copies of one
  problem, stepped together by a batched simulator. It owns everything that is not the problem: the horizon,
  ``terminated`` versus ``truncated``, the three Gymnasium autoreset modes, seeding, checking and batching of
  actions (``Box``, ``Discrete``, ``MultiDiscrete``, ``MultiBinary``, and ``Dict`` / ``Tuple`` of those, as
  hybrid discrete-continuous actions need), and the conversion between torch and NumPy. A problem plugs in
  with three hooks on torch tensors — start episodes, observe, advance one period — and its two spaces.
* :class:`SingleEnv` — the ``gymnasium.Env`` of one copy (a :class:`BatchedVectorEnv` with ``B = 1`` and no
  autoreset), so that ``InventoryEnv(...)`` and sub-environment 0 of the vector environment with the same
  seed produce the same trajectory.
* :class:`InventoryVectorEnv` / :class:`InventoryEnv` — the inventory problems of :mod:`hybridrl.inventory`
  (one or several independent stores, lost sales or backlog).
* :class:`SwitchedLQRVectorEnv` / :class:`SwitchedLQREnv` — the switched LQR of :mod:`hybridrl.lqr` (HPO spec
  §7.3), with a hybrid ``Dict(mode=Discrete, control=Box)`` action.
* :class:`JRPVectorEnv` / :class:`JRPEnv` — the joint replenishment problem of :mod:`hybridrl.jrp` (HPO spec
  §7.2), with a hybrid ``Dict(order=Discrete(2), quantity=Box)`` action: no order, or the quantities and the
  joint fixed cost.
* :class:`NetworkVectorEnv` / :class:`NetworkEnv` — the inventory networks of :mod:`hybridrl.networks` (serial,
  one warehouse, transshipment): the flattened inventory vectors of every location, one non-negative request
  per supply edge, reward minus the network's cost per store; :class:`ExternalNetworkPolicy` is their
  :class:`ExternalPolicy`.
* :class:`ExternalPolicy` — the other direction: an outside agent's NumPy ``predict`` as a policy of our
  simulator, so that :func:`hybridrl.train.evaluate` measures it on exactly the test scenarios on which HDPO
  and the optimal policy are measured (common random numbers).
* :func:`train_agent` — Stable-Baselines3 (an optional dependency) trained through the batched environment
  with a budget, cached on disk like the other experiments.

The inventory problem as a Markov decision process
--------------------------------------------------
With ``S`` stores and ``n`` inventory slots (module docstring of :mod:`hybridrl.inventory`):

* **Observation** ``x_t``: the inventory vector of every store, ``float32`` of shape ``(S, n)``: slot 0 is the
  on-hand stock after this period's arrivals (negative = backlog), slot ``k >= 1`` the quantity arriving in
  ``k`` periods. For a given setting this is the whole state: costs, lead times and the demand distribution
  are fixed per store (store ``s`` is row ``s``), and demand is i.i.d., so a policy needs nothing else. The
  period index is *not* observed: the problem has no end (the objective is the long-run average cost), the
  horizon below is only a time limit. (With a non-stationary :class:`~hybridrl.inventory.DemandTrace` the
  state would also need the demand history; the environment does not provide it.)
* **Action** ``q_t``: the order of every store, ``Box(0, max_order, shape=(S,))``. ``max_order`` defaults to
  4 × the store's mean demand: on Zipkin's lost-sales grid (Poisson(5)) the optimal (DP) policy never orders
  more than 10 = 2 × the mean, so the bound only limits the catch-up from an almost empty pipeline. Actions
  outside the box are clipped to it (Stable-Baselines3 clips too); NaN and infinite actions raise.
* **Reward** ``r_t = -c_t``: minus the period's cost summed over stores, ``p·(d - x)^+ + h·(x - d)^+`` per store
  (or minus the negative profit under objective ``"profit"``). The step's ``info`` holds the per-store
  ``cost``, ``demand`` and ``shortage``.
* **Episodes** start from the setting's random initial inventory and last ``horizon`` periods; the last step
  returns ``truncated=True``. ``terminated`` is always ``False``: there is no terminal state, so an agent
  should bootstrap its value at a truncation (Stable-Baselines3 does, from ``TimeLimit.truncated``).
* **Randomness.** ``reset(seed=s)`` seeds the environment's ``np_random``; every new episode draws from it one
  demand seed and one initial-inventory seed and generates the episode's data with
  :func:`hybridrl.scenarios.sample_scenarios` (one ``torch.Generator`` per random component and store, from the
  setting's demand model). The current episodes' data are :attr:`InventoryVectorEnv.scenarios`, so the same
  periods can be replayed through :func:`hybridrl.inventory.rollout` (the tests do, to prove the environment
  is the simulator). Alternatively ``scenarios=`` fixes the data: sub-environment ``b`` then replays scenario
  ``b`` (e.g. our test scenarios) from period 0 at every reset.

Autoreset (vector environments)
-------------------------------
``metadata["autoreset_mode"]`` is one of Gymnasium's three modes, chosen with ``autoreset_mode=``:

* ``NEXT_STEP`` (Gymnasium's default): the step after an episode ends resets that sub-environment, ignores
  its action and returns its first observation with reward 0 and ``terminated = truncated = False``.
* ``SAME_STEP`` (what Stable-Baselines3 and older CleanRL expect): the step that ends an episode already
  returns the next episode's first observation; the last one is in ``info["final_obs"]`` and the step's info
  in ``info["final_info"]`` (masks ``info["_final_obs"]``, ``info["_final_info"]``).
* ``DISABLED``: finished sub-environments must be reset explicitly, ``reset(options={"reset_mask": mask})``;
  stepping them first raises :class:`gymnasium.error.ResetNeeded`.

Since every inventory episode lasts exactly ``horizon`` periods and all sub-environments start together,
they also end together; the modes differ only in when the new episodes start.

Adding a problem
----------------
Subclass :class:`BatchedVectorEnv`, pass its single spaces to ``__init__`` and implement
``_start(indices, rng)`` (new episodes for these sub-environments), ``_observe()`` (the batched observation:
a tensor, or a ``dict`` / ``tuple`` of tensors for ``Dict`` / ``Tuple`` spaces) and ``_advance(action,
period)`` (one period for all sub-environments; ``action`` arrives as tensors checked against the action
space, in the same structure). A hybrid action — an order / no-order choice per item and the quantities, or a
discrete mode and a continuous control — is a ``spaces.Dict`` of a ``MultiBinary`` / ``Discrete`` and a
``Box``; ``SingleEnv(MyVectorEnv(..., num_envs=1, autoreset_mode="disabled"))`` is then its ``gymnasium.Env``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

try:
    import gymnasium
    from gymnasium import spaces
    from gymnasium.error import ResetNeeded
    from gymnasium.vector import AutoresetMode, VectorEnv
    from gymnasium.vector.utils import batch_space
except ImportError as _err:  # pragma: no cover - depends on the installation
    raise ImportError(
        "hybridrl.envs needs Gymnasium 1.1 or later, which is not installed (or too old): "
        'pip install "hybridrl[gym]"'
    ) from _err

import numpy as np
import torch
from torch import Tensor, nn

from . import __version__, paths
from ._config import check_choice, check_int, check_positive
from .cache import key_of, write_json_atomic
from .hybrid import Episode
from .inventory import InventorySetting, Observation, arrival_slots, step
from .jrp import JointReplenishment
from .lqr import INITIAL_RANGE, SwitchedLQR
from .network_policies import location_demand
from .networks import Network, NetworkObservation, NetworkScenarios, network_step, sample_network_scenarios
from .scenarios import Scenarios, sample_scenarios
from .train import resolve_device

__all__ = [
    "AgentBudget",
    "AgentRun",
    "AgentView",
    "BatchedVectorEnv",
    "ExternalNetworkPolicy",
    "ExternalPolicy",
    "InventoryEnv",
    "InventoryVectorEnv",
    "JRPEnv",
    "JRPVectorEnv",
    "NetworkEnv",
    "NetworkVectorEnv",
    "SingleEnv",
    "SwitchedLQREnv",
    "SwitchedLQRVectorEnv",
    "agent_budget",
    "compare_to_optimum",
    "inventory_spaces",
    "mean_demand_view",
    "network_spaces",
    "one_thread",
    "sb3_available",
    "sb3_vec_env",
    "train_agent",
]

AUTORESET_MODES = {
    "next_step": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
    "disabled": AutoresetMode.DISABLED,
}
MAX_ORDER_FACTOR = 4.0
"""Default upper bound of an order, in units of the store's mean demand (module docstring)."""


def _autoreset_mode(mode) -> AutoresetMode:
    if isinstance(mode, AutoresetMode):
        return mode
    if isinstance(mode, str):
        key = mode.lower().replace("-", "_")
        by_value = {m.value.lower(): m for m in AutoresetMode}  # "nextstep", "samestep", "disabled"
        if key in AUTORESET_MODES:
            return AUTORESET_MODES[key]
        if key in by_value:
            return by_value[key]
    raise ValueError(
        f"autoreset_mode must be one of {sorted(AUTORESET_MODES)} or a gymnasium AutoresetMode, got {mode!r}"
    )


# ----------------------------------------------------------------------------------------------------------------
# Actions and observations between NumPy and torch
# ----------------------------------------------------------------------------------------------------------------
def _action_tensor(action, space: spaces.Space, batch: int | None, device, name: str = "action"):
    """Check ``action`` against ``space`` (batched: a leading axis of size ``batch``) and convert it to torch.

    ``Dict`` and ``Tuple`` spaces give a ``dict`` / ``tuple`` of tensors. ``Box`` actions are clipped to the box
    (float32); integer spaces must hold integers in range (int64). Errors name the offending part.
    """
    if isinstance(space, spaces.Dict):
        if not isinstance(action, Mapping) or set(action) != set(space.spaces):
            got = sorted(action) if isinstance(action, Mapping) else type(action).__name__
            raise ValueError(f"{name} must be a dict with keys {sorted(space.spaces)}, got {got}")
        return {k: _action_tensor(action[k], sub, batch, device, f"{name}[{k!r}]") for k, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        if not isinstance(action, (tuple, list)) or len(action) != len(space.spaces):
            raise ValueError(f"{name} must be a tuple of {len(space.spaces)} parts, got {action!r:.80}")
        return tuple(
            _action_tensor(a, sub, batch, device, f"{name}[{i}]") for i, (a, sub) in enumerate(zip(action, space.spaces))
        )
    if not isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        raise TypeError(f"unsupported action space {space!r}")
    try:
        values = np.asarray(action)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an array, got {action!r:.80}") from err
    expected = space.shape if batch is None else (batch, *space.shape)
    if values.shape != expected:
        where = "" if batch is None else f" (num_envs={batch} x the single action shape {space.shape})"
        raise ValueError(f"{name} must have shape {expected}{where}, got shape {values.shape}")
    if values.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {values.dtype}")
    if isinstance(space, spaces.Box):
        values = values.astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"{name} contains NaN or infinite values: {values.ravel()[:8]}")
        values = np.clip(values, space.low, space.high)
        return torch.as_tensor(values, dtype=torch.float32, device=device)
    if values.dtype.kind == "f":
        if not np.isfinite(values).all() or (values != np.round(values)).any():
            raise ValueError(f"{name} must hold integers for {space}, got {values.ravel()[:8]}")
    values = values.astype(np.int64)
    if isinstance(space, spaces.Discrete):
        low, high = int(space.start), int(space.start) + int(space.n) - 1
    elif isinstance(space, spaces.MultiDiscrete):
        low, high = space.start, space.start + space.nvec - 1
    else:
        low, high = 0, 1
    if (values < low).any() or (values > high).any():
        raise ValueError(f"{name} is outside {space}: {values.ravel()[:8]}")
    return torch.as_tensor(values, dtype=torch.int64, device=device)


def _numpy(value, space: spaces.Space):
    """A batched observation from torch (tensor, or dict / tuple of tensors) to fresh NumPy arrays of ``space``."""
    if isinstance(space, spaces.Dict):
        return {k: _numpy(value[k], sub) for k, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_numpy(v, sub) for v, sub in zip(value, space.spaces))
    return np.array(value.detach().cpu().numpy(), dtype=space.dtype)  # a copy: never aliased with the state


def _take(value, index):
    """Sub-environment ``index`` of a batched structure (``dict`` / ``tuple`` / array)."""
    if isinstance(value, dict):
        return {k: _take(v, index) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, tuple):
        return tuple(_take(v, index) for v in value)
    return value[index]


def _unsqueeze(value):
    if isinstance(value, dict):
        return {k: _unsqueeze(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_unsqueeze(v) for v in value)
    return value.unsqueeze(0)


# ----------------------------------------------------------------------------------------------------------------
# The generic batched vector environment
# ----------------------------------------------------------------------------------------------------------------
def _rows_replaced(old, rows: Tensor, fresh):
    """A copy of ``old`` (a tensor, or scenarios with ``demand`` and ``initial_inventory``) whose ``rows`` are
    ``fresh``: the new episodes of the sub-environments that were reset alone. ``old`` is left as it was, so a
    reference kept to the last episodes' data stays valid."""
    if not isinstance(old, Tensor):
        return replace(old, demand=_rows_replaced(old.demand, rows, fresh.demand),
                       initial_inventory=_rows_replaced(old.initial_inventory, rows, fresh.initial_inventory))
    new = old.clone()
    new[rows] = fresh
    return new


class BatchedVectorEnv(VectorEnv):
    """``num_envs`` independent copies of a problem, stepped at once by a batched torch simulator.

    Args:
        num_envs: ``B``, the number of sub-environments.
        horizon: periods per episode; the last one returns ``truncated=True``.
        single_observation_space, single_action_space: the spaces of one copy.
        autoreset_mode: ``"next_step"`` (default), ``"same_step"`` or ``"disabled"`` (module docstring), or a
            :class:`gymnasium.vector.AutoresetMode`.
        device: where the simulator's tensors live: ``cpu``, ``cuda[:k]`` or ``auto`` (observations and rewards
            are NumPy arrays either way).

    Subclasses implement :meth:`_start`, :meth:`_observe` and :meth:`_advance`; see "Adding a problem" in the
    module docstring.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int,
        horizon: int,
        single_observation_space: spaces.Space,
        single_action_space: spaces.Space,
        *,
        autoreset_mode="next_step",
        device: str | torch.device = "cpu",
    ):
        self.num_envs = check_int("num_envs", num_envs, minimum=1)
        self.horizon = check_int("horizon", horizon, minimum=1)
        self.metadata = {**type(self).metadata, "autoreset_mode": _autoreset_mode(autoreset_mode)}
        self.device = resolve_device(device)
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = batch_space(single_observation_space, self.num_envs)
        self.action_space = batch_space(single_action_space, self.num_envs)
        self.render_mode = None
        self._period = np.zeros(self.num_envs, dtype=np.int64)  # periods played in the current episodes
        self._ended = np.zeros(self.num_envs, dtype=bool)  # episodes that ended at the last step
        self._started = False

    @property
    def autoreset_mode(self) -> AutoresetMode:
        return self.metadata["autoreset_mode"]

    # ---- hooks of a problem ------------------------------------------------------------------------------------
    def _start(self, indices: np.ndarray, rng: np.random.Generator) -> None:
        """Start new episodes for the sub-environments ``indices`` (draw their data from ``rng``)."""
        raise NotImplementedError

    def _observe(self):
        """The observation of every sub-environment, batched: a tensor (or ``dict`` / ``tuple`` of tensors)."""
        raise NotImplementedError

    def _advance(self, action, period: np.ndarray) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        """Simulate one period of every sub-environment; ``period[b]`` is the index of the period in its episode.

        Returns the cost ``[B]`` (the reward is its negative), the terminal flags ``[B]`` (``None``: never) and
        an info dict of batched tensors. Sub-environments that restart at this step (``NEXT_STEP`` mode) are
        advanced too and their results discarded: the hook need not treat them apart.
        """
        raise NotImplementedError

    # ---- the Gymnasium API -------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start new episodes: all of them, or those of ``options["reset_mask"]`` (a boolean array ``[B]``)."""
        super().reset(seed=seed)
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if options:
            raise ValueError(f"unknown reset option(s) {sorted(options)}; the only option is 'reset_mask'")
        if mask is None:
            indices = np.arange(self.num_envs)
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(f"reset_mask must be a boolean array of shape ({self.num_envs},), got {mask!r:.80}")
            if not self._started and not mask.all():
                raise ValueError("the first reset must start every sub-environment (reset_mask all True)")
            indices = np.flatnonzero(mask)
        if len(indices):
            self._start(indices, self.np_random)
        self._period[indices] = 0
        self._ended[indices] = False
        self._started = True
        return _numpy(self._observe(), self.single_observation_space), {}

    def step(self, actions):
        """One period of every sub-environment: ``(observation, reward, terminated, truncated, info)``."""
        self._check_started()
        return self._step(_action_tensor(actions, self.single_action_space, self.num_envs, self.device))

    def _check_started(self) -> None:
        if not self._started:
            raise ResetNeeded("call reset() before step()")

    def _step(self, action):
        mode = self.autoreset_mode
        restart = self._ended.copy() if mode == AutoresetMode.NEXT_STEP else np.zeros(self.num_envs, dtype=bool)
        if mode == AutoresetMode.DISABLED and self._ended.any():
            raise ResetNeeded(
                f"sub-environment(s) {np.flatnonzero(self._ended).tolist()} reached the end of their episode "
                f"(horizon {self.horizon}); reset them first: reset(options={{'reset_mask': mask}})"
            )
        info: dict[str, Any] = {}
        reward = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        if not restart.all():
            # envs restarting now replay their last period harmlessly: clamp so that they index valid data
            cost, term, extra = self._advance(action, np.minimum(self._period, self.horizon - 1))
            reward = -cost.detach().to("cpu", torch.float64).numpy()
            if term is not None:
                terminated = term.detach().cpu().numpy().astype(bool)
            live = ~restart
            for key, value in extra.items():
                info[key] = value.detach().cpu().numpy()
                info[f"_{key}"] = live.copy()
        self._period += 1
        truncated = (self._period >= self.horizon) & ~terminated
        if restart.any():
            index = np.flatnonzero(restart)
            self._start(index, self.np_random)
            self._period[index] = 0
            reward[index], terminated[index], truncated[index] = 0.0, False, False
        ended = terminated | truncated
        observation = _numpy(self._observe(), self.single_observation_space)
        if mode == AutoresetMode.SAME_STEP and ended.any():
            index = np.flatnonzero(ended)
            final = np.full(self.num_envs, None, dtype=object)
            for i in index:
                final[i] = _take(observation, i)
            info = {**info, "final_obs": final, "_final_obs": ended.copy(),
                    "final_info": dict(info), "_final_info": ended.copy()}
            self._start(index, self.np_random)
            self._period[index] = 0
            observation = _numpy(self._observe(), self.single_observation_space)
            ended = np.zeros(self.num_envs, dtype=bool)
        self._ended = ended
        return observation, reward, terminated, truncated, info


# ----------------------------------------------------------------------------------------------------------------
# One environment
# ----------------------------------------------------------------------------------------------------------------
class SingleEnv(gymnasium.Env):
    """The ``gymnasium.Env`` of one copy of a problem: a :class:`BatchedVectorEnv` with ``num_envs=1``.

    The vector environment must have autoreset disabled: a single environment ends at the horizon
    (``truncated=True``) and stepping it again before :meth:`reset` raises :class:`gymnasium.error.ResetNeeded`.
    ``reset(seed=s)`` gives the trajectory of sub-environment 0 of the vector environment reset with seed ``s``.
    """

    metadata = {"render_modes": []}

    def __init__(self, vector: BatchedVectorEnv):
        if vector.num_envs != 1 or vector.autoreset_mode != AutoresetMode.DISABLED:
            raise ValueError(
                "SingleEnv needs a vector environment with num_envs=1 and autoreset_mode='disabled', got "
                f"num_envs={vector.num_envs}, autoreset_mode={vector.autoreset_mode}"
            )
        self.vector = vector
        self.observation_space = vector.single_observation_space
        self.action_space = vector.single_action_space
        self.render_mode = None

    @property
    def horizon(self) -> int:
        return self.vector.horizon

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.vector._np_random = self.np_random  # one random stream: the single env's (what check_env inspects)
        observation, info = self.vector.reset(options=options)
        return _take(observation, 0), _take(info, 0)

    def step(self, action):
        self.vector._check_started()
        checked = _action_tensor(action, self.action_space, None, self.vector.device)
        observation, reward, terminated, truncated, info = self.vector._step(_unsqueeze(checked))
        return _take(observation, 0), float(reward[0]), bool(terminated[0]), bool(truncated[0]), _take(info, 0)


# ----------------------------------------------------------------------------------------------------------------
# The inventory problems
# ----------------------------------------------------------------------------------------------------------------
def _upper_bounds(default, given, name: str, per: str) -> np.ndarray:
    """An action's upper bounds ``[n]``: ``default()`` (a vector) when ``given`` is ``None``, else ``given``, one
    positive finite number or one per ``per``, checked."""
    if given is None:
        return np.asarray(default(), dtype=np.float32)
    n = len(default())
    values = np.asarray(given, dtype=np.float64).reshape(-1)
    if values.size == 1:
        values = np.repeat(values, n)
    if values.shape != (n,) or not np.isfinite(values).all() or (values <= 0).any():
        raise ValueError(f"{name} must be a positive finite number or one per {per} ({n}), got {given!r}")
    return values.astype(np.float32)


def _max_orders(setting: InventorySetting, max_order) -> np.ndarray:
    """Upper bound of each store's order ``[S]``: ``MAX_ORDER_FACTOR`` × mean demand, one number, or one per store."""
    return _upper_bounds(lambda: [MAX_ORDER_FACTOR * s.demand.mean for s in setting.stores], max_order, "max_order",
                         "store")


def inventory_spaces(setting: InventorySetting, max_order=None) -> tuple[spaces.Box, spaces.Box]:
    """The single observation and action spaces of an inventory setting (module docstring).

    Observation ``Box((S, n))`` float32: on-hand stock (slot 0) is ``>= 0`` under lost sales and unbounded below
    under backlog, the pipeline slots are ``>= 0``; none is bounded above (with little demand, stock piles up).
    Action ``Box(0, max_order, (S,))`` float32.
    """
    if not isinstance(setting, InventorySetting):
        raise ValueError(f"setting must be an InventorySetting, got {type(setting).__name__}")
    shape = (setting.n_stores, setting.n_slots)
    low = np.zeros(shape, dtype=np.float32)
    if not setting.lost_sales:
        low[:, 0] = -np.inf
    observation = spaces.Box(low=low, high=np.full(shape, np.inf, dtype=np.float32), dtype=np.float32)
    high = _max_orders(setting, max_order)
    action = spaces.Box(low=np.zeros_like(high), high=high, dtype=np.float32)
    return observation, action


def _replay_sizes(scenarios, kind: type, kind_name: str, setting, what: str, num_envs: int | None,
                  horizon: int | None) -> tuple[int, int]:
    """``(num_envs, horizon)`` of an environment that replays ``scenarios`` (if given: checked against the
    environment's ``setting``; the sizes default to theirs) or draws its own (defaults 1 and 100)."""
    if scenarios is not None:
        if not isinstance(scenarios, kind):
            raise ValueError(f"scenarios must be a {kind_name}, got {type(scenarios).__name__}")
        if scenarios.setting != setting:
            raise ValueError(f"scenarios were drawn for another {what} than the environment's")
        num_envs = scenarios.n if num_envs is None else num_envs
        if num_envs != scenarios.n:
            raise ValueError(f"num_envs={num_envs} must equal the number of scenarios ({scenarios.n}) to replay")
        horizon = scenarios.periods if horizon is None else horizon
        check_int("horizon", horizon, minimum=1)
        if horizon > scenarios.periods:
            raise ValueError(f"horizon={horizon} exceeds the {scenarios.periods} periods of the scenarios")
    return (1 if num_envs is None else num_envs), (100 if horizon is None else horizon)


class InventoryVectorEnv(BatchedVectorEnv):
    """``num_envs`` copies of an inventory problem, stepped at once by :func:`hybridrl.inventory.step`.

    Args:
        setting: the problem (one or several independent stores; lost sales or backlog).
        num_envs: ``B``. With ``scenarios``, it defaults to (and must equal) the number of scenarios.
        horizon: periods per episode (default 100; with ``scenarios``, all their periods).
        max_order: upper bound of the orders: a number, one per store, or ``None`` for 4 × mean demand.
        scenarios: fixed data to replay instead of drawing new episodes (module docstring).
        autoreset_mode, device: see :class:`BatchedVectorEnv`.

    Observations, actions, rewards and seeding are described in the module docstring.
    """

    def __init__(
        self,
        setting: InventorySetting,
        num_envs: int | None = None,
        horizon: int | None = None,
        *,
        max_order=None,
        scenarios: Scenarios | None = None,
        autoreset_mode="next_step",
        device: str | torch.device = "cpu",
    ):
        observation_space, action_space = inventory_spaces(setting, max_order)
        num_envs, horizon = _replay_sizes(scenarios, Scenarios, "hybridrl.scenarios.Scenarios", setting, "setting",
                                          num_envs, horizon)
        super().__init__(
            num_envs, horizon, observation_space, action_space, autoreset_mode=autoreset_mode, device=device
        )
        self.setting = setting
        self.fixed = scenarios is not None
        self._scenarios = None if scenarios is None else scenarios.with_periods(horizon).to(self.device)
        self._inventory: Tensor | None = None
        self._slots: Tensor | None = None

    @property
    def scenarios(self) -> Scenarios:
        """The data (demand, initial inventory, costs) of the current episodes, one scenario per sub-environment."""
        if self._scenarios is None:
            raise ResetNeeded("no episode yet: call reset() first")
        return self._scenarios

    def _start(self, indices: np.ndarray, rng: np.random.Generator) -> None:
        if not self.fixed:
            demand_seed, inventory_seed = (int(s) for s in rng.integers(0, 2**31, size=2))
            fresh = sample_scenarios(
                self.setting, len(indices), self.horizon, demand_seed=demand_seed, inventory_seed=inventory_seed
            ).to(self.device)
            # all sub-environments: a new object; some only (reset_mask; a first start covers all): their rows
            self._scenarios = fresh if len(indices) == self.num_envs else _rows_replaced(
                self._scenarios, torch.as_tensor(indices, device=self.device), fresh)
        if self._inventory is None:
            self._inventory = self._scenarios.initial_inventory.clone()
            self._slots = arrival_slots(self._scenarios.lead_time, self.setting.n_slots, self._inventory.dtype)
        rows = torch.as_tensor(indices, device=self.device)
        self._inventory = _rows_replaced(self._inventory, rows, self._scenarios.initial_inventory[rows])

    def _observe(self) -> Tensor:
        return self._inventory

    def _advance(self, action: Tensor, period: np.ndarray):
        data = self._scenarios
        if (period == period[0]).all():
            demand = data.demand[..., int(period[0])]
        else:
            t = torch.as_tensor(period, device=self.device).view(-1, 1, 1).expand(-1, data.demand.shape[1], 1)
            demand = data.demand.gather(-1, t).squeeze(-1)
        result = step(
            self._inventory, action.to(self._inventory.dtype), demand, self._slots, data.underage_cost,
            data.holding_cost, lost_sales=self.setting.lost_sales, profit=self.setting.objective == "profit",
        )
        self._inventory = result.inventory
        info = {"cost": result.cost, "demand": result.demand, "shortage": result.shortage}
        return result.cost.sum(-1), None, info


class InventoryEnv(SingleEnv):
    """One copy of an inventory problem as a ``gymnasium.Env`` (module docstring).

    Args:
        setting: the problem.
        horizon: periods per episode (default 100); the last step returns ``truncated=True``.
        max_order: upper bound of the orders (default 4 × mean demand per store).
        scenarios: one fixed scenario to replay at every reset instead of drawing new data.
        device: where the simulator's tensors live.
    """

    def __init__(
        self,
        setting: InventorySetting,
        horizon: int | None = None,
        *,
        max_order=None,
        scenarios: Scenarios | None = None,
        device: str | torch.device = "cpu",
    ):
        if scenarios is not None and scenarios.n != 1:
            raise ValueError(f"InventoryEnv replays one scenario, got {scenarios.n}: use InventoryVectorEnv")
        super().__init__(
            InventoryVectorEnv(
                setting, 1, horizon, max_order=max_order, scenarios=scenarios, autoreset_mode="disabled", device=device
            )
        )
        self.setting = setting

    @property
    def scenarios(self) -> Scenarios:
        """The data of the current episode (one scenario)."""
        return self.vector.scenarios


ENV_ID = "hybridrl/Inventory-v0"
"""Registered with Gymnasium on import: ``gymnasium.make(ENV_ID, setting=...)`` gives an :class:`InventoryEnv`,
``gymnasium.make_vec(ENV_ID, num_envs=B, vectorization_mode="vector_entry_point", setting=...)`` an
:class:`InventoryVectorEnv`."""

if ENV_ID not in gymnasium.registry:
    gymnasium.register(
        id=ENV_ID, entry_point="hybridrl.envs:InventoryEnv", vector_entry_point="hybridrl.envs:InventoryVectorEnv"
    )


# ----------------------------------------------------------------------------------------------------------------
# Outside agents as policies of our simulator
# ----------------------------------------------------------------------------------------------------------------
class ExternalPolicy(nn.Module):
    """An outside agent as a policy of the simulator, for :func:`hybridrl.train.evaluate` and ``rollout``.

    ``predict`` maps a batch of environment observations, a NumPy array ``[B, S, n]`` exactly as
    :class:`InventoryVectorEnv` returns them, to environment actions ``[B, S]`` (orders); for instance
    ``lambda obs: model.predict(obs, deterministic=True)[0]`` for a Stable-Baselines3 model trained on the raw
    environment. Actions are checked and clipped by the same code as in ``env.step``, so the agent meets the
    same rules here as in training. The module has no parameters and is never trained: only evaluated, on the
    CPU or wherever the scenarios are.
    """

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], setting: InventorySetting, *, max_order=None):
        super().__init__()
        if not callable(predict):
            raise ValueError(f"predict must be callable, got {type(predict).__name__}")
        self.predict = predict
        self.setting = setting
        self.observation_space, self.action_space = inventory_spaces(setting, max_order)

    def forward(self, obs: Observation) -> Tensor:
        batch = obs.inventory.shape[0]
        if tuple(obs.inventory.shape[1:]) != self.observation_space.shape:
            raise ValueError(
                f"the agent observes inventory of shape {self.observation_space.shape} (stores x slots), but the "
                f"scenarios have {tuple(obs.inventory.shape[1:])}: evaluate it on scenarios of its own setting"
            )
        observation = _numpy(obs.inventory, self.observation_space)
        action = self.predict(observation)
        orders = _action_tensor(action, self.action_space, batch, obs.inventory.device, name="predict(...)")
        return orders.to(obs.inventory.dtype)


@dataclass(frozen=True)
class AgentView:
    """How an agent sees an environment: its own spaces, and maps between its values and the environment's.

    ``observation`` maps environment observations to the agent's, ``action`` the agent's actions to the
    environment's; both must accept a single value and a batch (a leading axis). Learning is usually easier
    in units where observations and actions are of order one; the environment itself stays in the problem's
    units, so costs and orders are never rescaled by accident.
    """

    observation_space: spaces.Space
    action_space: spaces.Space
    observation: Callable[[np.ndarray], np.ndarray]
    action: Callable[[np.ndarray], np.ndarray]

    def predict(self, agent_predict: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        """An environment-level ``predict`` (for :class:`ExternalPolicy`) from the agent's own."""
        return lambda observation: self.action(agent_predict(self.observation(observation)))


def mean_demand_view(setting: InventorySetting, max_order=None) -> AgentView:
    """Inventory and orders in units of each store's mean demand ``μ``, the units of HDPO's network.

    The agent observes ``x / μ`` and acts ``a ∈ [-1, max_order/μ - 1]``; the order is ``μ·(1 + a)``, so the
    agent's neutral action ``a = 0`` orders the mean demand (:class:`hybridrl.policies.VanillaMLP` likewise
    divides its input by ``μ`` and multiplies its output by ``μ``).
    """
    observation_space, action_space = inventory_spaces(setting, max_order)
    mean = np.array([s.demand.mean for s in setting.stores], dtype=np.float32)
    per_slot = mean[:, None]
    agent_observation = spaces.Box(
        low=observation_space.low / per_slot, high=observation_space.high, dtype=np.float32
    )
    agent_action = spaces.Box(low=np.full_like(mean, -1.0), high=action_space.high / mean - 1.0, dtype=np.float32)
    return AgentView(
        observation_space=agent_observation,
        action_space=agent_action,
        observation=lambda x: (np.asarray(x, dtype=np.float32) / per_slot).astype(np.float32),
        action=lambda a: (mean * (1.0 + np.asarray(a, dtype=np.float32))).astype(np.float32),
    )


def compare_to_optimum(costs: Tensor, reference_costs: Tensor, optimal: float) -> dict[str, float]:
    """A policy's cost against the optimal policy run on the same scenarios (common random numbers).

    ``costs`` and ``reference_costs`` are the per-scenario average costs ``[N]`` of the policy and of the optimal
    policy on the same scenarios, ``optimal`` the exact optimal cost. As in :func:`hybridrl.experiments.run_grid`,
    ``cost_estimate = mean(costs) - mean(reference_costs) + optimal`` is an unbiased estimate of the policy's
    expected cost whose standard error (``estimate_se``, of the paired differences) is much smaller than that of
    the raw mean (``test_se``); ``gap_pct = 100 (cost_estimate / optimal - 1)``.
    """
    costs, reference_costs = costs.double().flatten(), reference_costs.double().flatten()
    if costs.shape != reference_costs.shape or costs.numel() < 2:
        raise ValueError(
            f"costs and reference_costs must be paired per scenario, got {costs.shape} and {reference_costs.shape}"
        )
    check_positive("optimal", optimal)
    n = costs.numel()
    estimate = float(costs.mean() - reference_costs.mean()) + optimal
    return dict(
        test_cost=float(costs.mean()),
        test_se=float(costs.std() / math.sqrt(n)),
        optimal_policy_test_cost=float(reference_costs.mean()),
        cost_estimate=estimate,
        estimate_se=float((costs - reference_costs).std() / math.sqrt(n)),
        gap_pct=100 * (estimate / optimal - 1),
    )


# ----------------------------------------------------------------------------------------------------------------
# Stable-Baselines3 (optional)
# ----------------------------------------------------------------------------------------------------------------
SB3_INSTALL = 'pip install "hybridrl[agents]"'
AGENTS = ("PPO", "A2C", "SAC", "TD3", "DDPG")


def sb3_available() -> bool:
    """Whether Stable-Baselines3 can be imported (it is an optional dependency: ``hybridrl[agents]``)."""
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def one_thread():
    """Run torch on one CPU thread inside the block (the previous setting is restored after it).

    Stable-Baselines3's small networks gain nothing from intra-op parallelism, and when other processes compete
    for the cores extra threads mostly wait: on a 2-core machine shared with other jobs, PPO ran at about 1000
    environment steps per second with 2 threads and about 5600 with 1 (same results).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _sb3():
    try:
        import stable_baselines3
    except ImportError as err:
        raise ImportError(f"Stable-Baselines3 is not installed: {SB3_INSTALL}") from err
    return stable_baselines3


def sb3_vec_env(env: BatchedVectorEnv, view: AgentView | None = None):
    """The batched environment as a Stable-Baselines3 ``VecEnv`` (SB3 has its own vector API).

    ``env`` must use ``SAME_STEP`` autoreset, SB3's semantics: the observation after an episode's last step is
    the next episode's first, the last one goes to ``infos[i]["terminal_observation"]`` and
    ``infos[i]["TimeLimit.truncated"]`` says that the episode was cut by the horizon (so that SB3 bootstraps).
    All ``B`` sub-environments are stepped by one call of the batched simulator. ``view`` (optional) changes
    the units the agent sees (:class:`AgentView`). SB3's ``seed(s)`` seeds the next reset with ``s``.
    """
    from stable_baselines3.common.vec_env import VecEnv

    if env.autoreset_mode != AutoresetMode.SAME_STEP:
        raise ValueError(
            f"Stable-Baselines3 needs autoreset_mode='same_step', the environment has {env.autoreset_mode}"
        )
    view = view or AgentView(env.single_observation_space, env.single_action_space, lambda x: x, lambda a: a)

    class BatchedSB3VecEnv(VecEnv):
        def __init__(self):
            self.env = env
            super().__init__(env.num_envs, view.observation_space, view.action_space)
            self._actions = None

        def reset(self):
            observation, _ = self.env.reset(seed=self._seeds[0])
            self._reset_seeds()
            self._reset_options()
            return view.observation(observation)

        def step_async(self, actions):
            self._actions = view.action(actions)

        def step_wait(self):
            observation, reward, terminated, truncated, info = self.env.step(self._actions)
            done = terminated | truncated
            infos: list[dict] = [{} for _ in range(self.num_envs)]
            for i in np.flatnonzero(done):
                infos[i]["terminal_observation"] = view.observation(info["final_obs"][i])
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            return view.observation(observation), reward.astype(np.float32), done, infos

        def close(self):
            self.env.close()

        def get_attr(self, attr_name, indices=None):
            return [getattr(self.env, attr_name)] * len(self._indices(indices))

        def set_attr(self, attr_name, value, indices=None):
            setattr(self.env, attr_name, value)

        def env_method(self, method_name, *method_args, indices=None, **method_kwargs):
            result = getattr(self.env, method_name)(*method_args, **method_kwargs)
            return [result] * len(self._indices(indices))

        def env_is_wrapped(self, wrapper_class, indices=None):
            return [False] * len(self._indices(indices))

        def _indices(self, indices):
            if indices is None:
                return range(self.num_envs)
            return [indices] if isinstance(indices, int) else list(indices)

    return BatchedSB3VecEnv()


@dataclass(frozen=True)
class AgentBudget:
    """What a model-free agent may spend, and how it trains (one profile of :data:`AGENT_BUDGETS`)."""

    env_steps: int
    """Total environment steps (periods simulated, summed over the sub-environments)."""
    num_envs: int = 16
    """Sub-environments stepped together."""
    horizon: int = 200
    """Periods per training episode (a time limit: the agent bootstraps at truncation)."""
    algorithm: str = "PPO"
    """A Stable-Baselines3 algorithm with continuous actions: ``PPO``, ``A2C``, ``SAC``, ``TD3``, ``DDPG``."""
    hyperparameters: dict = field(default_factory=dict)
    """Keyword arguments of the algorithm (SB3's defaults otherwise); ``policy_kwargs`` included."""
    normalize_reward: bool = True
    """Scale rewards by a running estimate of the return's standard deviation (SB3's ``VecNormalize``)."""
    schedule: str = "linear"
    """Learning rate: ``constant``, or ``linear`` decay to zero over the budget (steadier final policies)."""

    def __post_init__(self):
        check_int("env_steps", self.env_steps, minimum=1)
        check_int("num_envs", self.num_envs, minimum=1)
        check_int("horizon", self.horizon, minimum=1)
        check_choice("algorithm", self.algorithm, AGENTS)
        check_choice("schedule", self.schedule, ("constant", "linear"))
        if not isinstance(self.hyperparameters, dict):
            raise ValueError(f"hyperparameters must be a dict, got {self.hyperparameters!r}")


_PPO = dict(
    gamma=0.99, gae_lambda=0.95, learning_rate=3e-4, n_epochs=10, clip_range=0.2, ent_coef=0.0,
    policy_kwargs=dict(net_arch=[64, 64], log_std_init=-1.0),
)
# Measured on lost sales L = 2, p = 9 (one core of a 2-core CPU shared with other jobs, about 13000 steps/s):
# `quick` trains in about 45 s to a gap of 0.29 % (300k steps: 0.59 %; 1M steps at a constant learning rate:
# 0.98 %, hence the linear decay). `paper` is ten times larger; at that rate about 7 minutes (not measured yet).
AGENT_BUDGETS = {
    "smoke": AgentBudget(env_steps=2048, num_envs=8, horizon=64,
                         hyperparameters=dict(_PPO, n_steps=64, batch_size=256, n_epochs=2)),
    "quick": AgentBudget(env_steps=600_000, num_envs=16, horizon=200,
                         hyperparameters=dict(_PPO, n_steps=128, batch_size=256)),
    "paper": AgentBudget(env_steps=5_000_000, num_envs=32, horizon=200,
                         hyperparameters=dict(_PPO, n_steps=128, batch_size=512)),
}


def agent_budget(profile: str) -> AgentBudget:
    """The model-free budget of a profile (``smoke``, ``quick`` or ``paper``)."""
    return AGENT_BUDGETS[check_choice("profile", profile, tuple(AGENT_BUDGETS))]


@dataclass
class AgentRun:
    """A trained Stable-Baselines3 agent and what it cost."""

    model: Any
    """The SB3 model (it acts in the units of ``view``)."""
    view: AgentView
    setting: InventorySetting
    env_steps: int
    seconds: float
    """Wall-clock training time (of the run that trained it, when read from the cache)."""
    curve: list[dict]
    """Learning curve: ``env_steps, seconds, cost`` (average cost per period of the recent training episodes)."""
    cached: bool = False
    max_order: Any = None

    def predict(self, observation: np.ndarray) -> np.ndarray:
        """Orders for environment observations ``[B, S, n]`` (the deterministic policy: the mean action)."""
        with one_thread():
            return self.view.predict(lambda x: self.model.predict(x, deterministic=True)[0])(observation)

    def policy(self) -> ExternalPolicy:
        """The agent as a policy of the simulator, for :func:`hybridrl.train.evaluate`."""
        return ExternalPolicy(self.predict, self.setting, max_order=self.max_order)


def train_agent(
    setting: InventorySetting,
    budget: AgentBudget,
    *,
    seed: int = 0,
    max_order=None,
    force: bool = False,
    cache: bool = True,
    progress: bool = False,
) -> AgentRun:
    """Train a Stable-Baselines3 agent on ``setting`` through :class:`InventoryVectorEnv` for ``budget``.

    The agent sees the environment in units of mean demand (:func:`mean_demand_view`) and steps
    ``budget.num_envs`` sub-environments at once (SAME_STEP autoreset, :func:`sb3_vec_env`). ``seed`` seeds
    SB3 (network initialisation, action sampling, minibatches) and the environment's first reset, from which
    every training episode's demand is drawn. The agent runs on the CPU, where SB3 is fastest for small
    networks.

    With ``cache`` the trained model is stored under ``build/cache/model_free/`` (keyed by the setting, the
    budget, the seed and the package and SB3 versions) and read back on the next call; ``force`` retrains.
    """
    sb3 = _sb3()
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

    check_int("seed", seed, minimum=0)
    description = dict(
        setting=repr(setting), budget=asdict(budget), seed=seed, max_order=repr(max_order), version=__version__,
        sb3=sb3.__version__, format=1,
    )
    stem = paths.CACHE / "model_free" / key_of(description)
    zip_path, meta_path = stem.with_suffix(".zip"), stem.with_suffix(".json")
    algorithm = getattr(sb3, budget.algorithm)
    view = mean_demand_view(setting, max_order)
    if cache and not force and zip_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())["result"]
        model = algorithm.load(zip_path, device="cpu")
        return AgentRun(model, view, setting, meta["env_steps"], meta["seconds"], meta["curve"], cached=True,
                        max_order=max_order)

    env = InventoryVectorEnv(setting, budget.num_envs, budget.horizon, max_order=max_order, autoreset_mode="same_step")
    venv = VecMonitor(sb3_vec_env(env, view))
    if budget.normalize_reward:
        venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=budget.hyperparameters.get("gamma", 0.99))
    curve: list[dict] = []
    started = time.time()

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            episodes = self.model.ep_info_buffer
            if episodes:
                cost = -float(np.mean([e["r"] / e["l"] for e in episodes]))
                curve.append(dict(env_steps=int(self.num_timesteps), seconds=time.time() - started, cost=cost))

    hyperparameters = copy.deepcopy(budget.hyperparameters)  # SB3 keeps (and may extend) policy_kwargs
    if budget.schedule == "linear":
        lr = float(hyperparameters.pop("learning_rate", 3e-4))
        hyperparameters["learning_rate"] = lambda remaining: lr * remaining  # SB3: `remaining` goes from 1 to 0
    with one_thread():
        model = algorithm("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **hyperparameters)
        model.set_logger(Logger(folder=None, output_formats=[]))  # SB3's default makes an empty temp dir per run
        model.learn(total_timesteps=budget.env_steps, callback=Record(), progress_bar=progress)
    seconds = time.time() - started
    env_steps = int(model.num_timesteps)
    if cache:
        stem.parent.mkdir(parents=True, exist_ok=True)
        tmp = stem.with_name(f".{stem.name}.{os.getpid()}.tmp.zip")
        model.save(tmp)
        os.replace(tmp, zip_path)
        write_json_atomic(meta_path, dict(description=description,
                                          result=dict(env_steps=env_steps, seconds=seconds, curve=curve)))
    return AgentRun(model, view, setting, env_steps, seconds, curve, max_order=max_order)


# ----------------------------------------------------------------------------------------------------------------
# The switched linear-quadratic regulator (HPO spec §7.3)
# ----------------------------------------------------------------------------------------------------------------
class SwitchedLQRVectorEnv(BatchedVectorEnv):
    """``num_envs`` copies of a :class:`hybridrl.lqr.SwitchedLQR`, stepped at once by ``SwitchedLQR.step``.

    * **Observation** the state ``x ∈ R^p``: ``Box(−c, c, (p,))`` float32 with ``c = max(clamp, 10/√p)`` (the
      clamp bounds every state after the first; ``x_0`` lies in ``[−10/√p, 10/√p]^p``).
    * **Action** ``Dict(mode=Discrete(n_choices), control=Box(−max_control, max_control, (p,)))``: the choice
      ``d`` (one option for the single-mode variant) and the control ``u``. ``max_control`` defaults to ∞ (the
      problem's control is unconstrained); a finite bound clips controls, as for every ``Box``.
    * **Reward** ``−(xᵀQx + uᵀRu)`` of the current state and control; episodes last ``problem.horizon`` periods
      (``truncated`` at the end, never ``terminated``). Each new episode draws ``x_0`` with
      ``problem.sample`` from a ``torch.Generator`` seeded by the environment's ``np_random``; the current
      episodes' initial states are :attr:`initial_state`.
    """

    def __init__(self, problem: SwitchedLQR, num_envs: int = 1, *, max_control: float | None = None,
                 autoreset_mode="next_step", device: str | torch.device = "cpu"):
        if not isinstance(problem, SwitchedLQR):
            raise ValueError(f"problem must be a hybridrl.lqr.SwitchedLQR, got {type(problem).__name__}")
        bound = math.inf if max_control is None else check_positive("max_control", max_control)
        p = problem.dim
        high = max(float(problem.clamp), INITIAL_RANGE / math.sqrt(p))
        observation_space = spaces.Box(-high, high, shape=(p,), dtype=np.float32)
        action_space = spaces.Dict({
            "mode": spaces.Discrete(problem.n_choices),
            "control": spaces.Box(-bound, bound, shape=(p,), dtype=np.float32),
        })
        super().__init__(num_envs, problem.horizon, observation_space, action_space,
                         autoreset_mode=autoreset_mode, device=device)
        self.problem = problem
        self._initial: Tensor | None = None
        self._state: Tensor | None = None

    @property
    def initial_state(self) -> Tensor:
        """The initial states ``[B, p]`` of the current episodes."""
        if self._initial is None:
            raise ResetNeeded("no episode yet: call reset() first")
        return self._initial

    def _start(self, indices: np.ndarray, rng: np.random.Generator) -> None:
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**31)))
        fresh = self.problem.sample(len(indices), generator).state.to(self.device)
        if self._state is None:  # the first reset starts every sub-environment
            self._initial, self._state = fresh, fresh.clone()
            return
        rows = torch.as_tensor(indices, device=self.device)
        self._initial = _rows_replaced(self._initial, rows, fresh)
        self._state = _rows_replaced(self._state, rows, fresh)

    def _observe(self) -> Tensor:
        return self._state

    def _advance(self, action, period: np.ndarray):
        control = action["control"].to(self._state.dtype)
        episode = Episode(self._initial)  # the problem is time-invariant: period and episode are not used
        self._state, cost = self.problem.step(self._state, action["mode"], control, int(period[0]), episode)
        return cost, None, {}


class SwitchedLQREnv(SingleEnv):
    """One copy of a :class:`hybridrl.lqr.SwitchedLQR` as a ``gymnasium.Env`` (:class:`SwitchedLQRVectorEnv`)."""

    def __init__(self, problem: SwitchedLQR, *, max_control: float | None = None,
                 device: str | torch.device = "cpu"):
        super().__init__(SwitchedLQRVectorEnv(problem, 1, max_control=max_control, autoreset_mode="disabled",
                                              device=device))
        self.problem = problem


# ----------------------------------------------------------------------------------------------------------------
# The joint replenishment problem (HPO spec §7.2)
# ----------------------------------------------------------------------------------------------------------------
def _jrp_max_orders(problem: JointReplenishment, max_order) -> np.ndarray:
    """Upper bound of each item's order ``[n]``: ``MAX_ORDER_FACTOR`` × mean demand, one number, or one per item."""
    return _upper_bounds(lambda: MAX_ORDER_FACTOR * problem.mean.double().numpy(), max_order, "max_order", "item")


class JRPVectorEnv(BatchedVectorEnv):
    """``num_envs`` copies of a :class:`hybridrl.jrp.JointReplenishment`, stepped at once by
    ``JointReplenishment.step``.

    Args:
        problem: the JRP instance (``n = problem.items`` items, joint fixed cost ``F = problem.joint_fixed_cost``).
        num_envs: ``B``.
        max_order: upper bound of the order quantities: a number, one per item, or ``None`` for
            ``MAX_ORDER_FACTOR`` (4) × each item's mean demand ``problem.mean`` (a vector ``[n]``).
        autoreset_mode, device: see :class:`BatchedVectorEnv`.

    * **Observation** ``problem.observe(state, t, episode)``, float32 of shape ``(problem.observation_dim,)``:
      per item (item-major), in units of its mean demand, the on-hand stock (negative = backlog: unbounded
      below), the pipeline and the last ``history`` demands (``>= 0``), then ``p/10``, ``h``, ``μ/10`` and
      ``F/(nμ)`` (constants, ``> 0``); no entry is bounded above. So the space is ``Box(low, +∞)`` with
      ``low = −∞`` at each item's on-hand entry and ``0`` elsewhere. ``t`` is the index of the period about to
      be played (``horizon`` for the last observation of an episode); the JRP's observation does not use it.
    * **Action** ``Dict(order=Discrete(2), quantity=Box(0, max_order, (n,)))``, the hybrid action of the
      problem's sub-ranges: ``order = 0`` orders nothing and pays nothing — the quantities are ignored and
      exactly zero is passed to ``problem.step``, whatever the agent sent; ``order = 1`` orders the quantities
      (clipped to the box, like every ``Box`` action) and ``problem.step`` charges the joint fixed cost ``F``
      (even if every quantity is 0). Quantities are in units of the goods, not of the mean demand.
    * **Reward** ``−c_t``: minus the period's cost, summed over items, with the fixed cost. The step's ``info``
      holds ``ordered``, the quantities actually ordered ``[B, n]``. Episodes last ``problem.horizon``
      periods (``truncated`` at the end, never ``terminated``); ``problem.warmup`` is not used here (it is a
      matter of reporting, :meth:`JointReplenishment.reported`).
    * **Randomness** each new episode (empty pipeline, past and future Poisson demand) is drawn with
      ``problem.sample`` from a ``torch.Generator`` seeded by the environment's ``np_random``; the current
      episodes are :attr:`episodes`, so that the same periods can be replayed through ``problem.step``.
      Sub-environments that were reset apart (``reset_mask``) play their own period of their own episode.
    """

    def __init__(self, problem: JointReplenishment, num_envs: int = 1, *, max_order=None,
                 autoreset_mode="next_step", device: str | torch.device = "cpu"):
        if not isinstance(problem, JointReplenishment):
            raise ValueError(f"problem must be a hybridrl.jrp.JointReplenishment, got {type(problem).__name__}")
        high = _jrp_max_orders(problem, max_order)
        per_item = problem.observation_dim // problem.items
        low = np.zeros((problem.items, per_item), dtype=np.float32)
        low[:, 0] = -np.inf  # on-hand stock: backlog
        observation_space = spaces.Box(low=low.reshape(-1), high=np.full(low.size, np.inf, dtype=np.float32),
                                       dtype=np.float32)
        action_space = spaces.Dict({
            "order": spaces.Discrete(problem.n_choices),
            "quantity": spaces.Box(low=np.zeros_like(high), high=high, dtype=np.float32),
        })
        super().__init__(num_envs, problem.horizon, observation_space, action_space,
                         autoreset_mode=autoreset_mode, device=device)
        self.problem = problem
        self._episodes: Episode | None = None
        self._state: Tensor | None = None

    @property
    def episodes(self) -> Episode:
        """The current episodes (initial states ``[B, n, L + history]`` and demand), one per sub-environment."""
        if self._episodes is None:
            raise ResetNeeded("no episode yet: call reset() first")
        return self._episodes

    def _start(self, indices: np.ndarray, rng: np.random.Generator) -> None:
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**31)))
        fresh = self.problem.sample(len(indices), generator).to(self.device)
        if self._state is None or len(indices) == self.num_envs:
            # a new object: a reference kept to the last episodes' data stays valid
            self._episodes, self._state = fresh, fresh.state.clone()
            return
        rows = torch.as_tensor(indices, device=self.device)
        old = self._episodes
        self._episodes = Episode(_rows_replaced(old.state, rows, fresh.state),
                                 _rows_replaced(old.noise, rows, fresh.noise),
                                 {key: _rows_replaced(value, rows, fresh.data[key]) for key, value in old.data.items()})
        self._state = _rows_replaced(self._state, rows, fresh.state)

    def _groups(self, period: np.ndarray):
        """``(rows, t)`` per distinct period: all rows at once when the sub-environments run in step."""
        values = np.unique(period)
        if len(values) == 1:
            return [(None, int(values[0]))]
        return [(torch.as_tensor(np.flatnonzero(period == t), device=self.device), int(t)) for t in values]

    def _observe(self) -> Tensor:
        groups = self._groups(self._period)
        if groups[0][0] is None:
            return self.problem.observe(self._state, groups[0][1], self._episodes)
        out = None
        for rows, t in groups:
            part = self.problem.observe(self._state[rows], t, self._episodes[rows])
            if out is None:
                out = part.new_empty((self.num_envs, *part.shape[1:]))
            out[rows] = part
        return out

    def _advance(self, action, period: np.ndarray):
        choice = action["order"]
        quantity = action["quantity"].to(self._state.dtype)
        ordered = torch.where((choice == 1)[:, None], quantity, torch.zeros_like(quantity))  # order 0: nothing
        groups = self._groups(period)
        if groups[0][0] is None:
            self._state, cost = self.problem.step(self._state, choice, ordered, groups[0][1], self._episodes)
        else:
            state, cost = self._state.clone(), None
            for rows, t in groups:
                part_state, part_cost = self.problem.step(self._state[rows], choice[rows], ordered[rows], t,
                                                          self._episodes[rows])
                if cost is None:
                    cost = part_cost.new_empty(self.num_envs)
                state[rows], cost[rows] = part_state, part_cost
            self._state = state
        return cost, None, {"ordered": ordered}


class JRPEnv(SingleEnv):
    """One copy of a :class:`hybridrl.jrp.JointReplenishment` as a ``gymnasium.Env`` (:class:`JRPVectorEnv`)."""

    def __init__(self, problem: JointReplenishment, *, max_order=None, device: str | torch.device = "cpu"):
        super().__init__(JRPVectorEnv(problem, 1, max_order=max_order, autoreset_mode="disabled", device=device))
        self.problem = problem

    @property
    def episodes(self) -> Episode:
        """The current episode (a batch of one)."""
        return self.vector.episodes


# ----------------------------------------------------------------------------------------------------------------
# Inventory networks (HDPO spec §4.3-§4.5)
# ----------------------------------------------------------------------------------------------------------------
def _network_max_requests(network: Network, max_request) -> np.ndarray:
    """Upper bound of each edge's request ``[E]``: ``MAX_ORDER_FACTOR`` × the mean demand flowing through the
    edge's receiver (:func:`hybridrl.network_policies.location_demand`; the bound of ``NetworkMLP``'s outside
    edges), one number, or one per edge."""
    return _upper_bounds(
        lambda: MAX_ORDER_FACTOR * location_demand(network)[network.tensor("receiver")].double().numpy(),
        max_request, "max_request", "edge")


def network_spaces(network: Network, max_request=None) -> tuple[spaces.Box, spaces.Box]:
    """The single observation and action spaces of a network (:class:`NetworkVectorEnv`).

    Observation ``Box((N * n,))`` float32, the inventory vectors ``[N, n]`` flattened location by location
    (entry ``k * n + j`` is slot ``j`` of location ``k``). Pipeline slots ``j >= 1`` are ``>= 0``; the on-hand slot
    is unbounded below at a backlogging store and at every non-store location (its on-hand after shipping is
    ``>= 0`` in exact arithmetic, but proportional rationing in float32 can leave a residue of about ``-1e-7`` ×
    the stock, e.g. ``-1e-5``, which would otherwise fall outside the space); a lost-sales store's on-hand is
    ``>= 0``. Nothing is bounded above. Action ``Box(0, max_request, (E,))`` float32, one request per edge in
    the network's edge order.
    """
    if not isinstance(network, Network):
        raise ValueError(f"network must be a hybridrl.networks.Network, got {type(network).__name__}")
    N, n = network.n_locations, network.n_slots
    low = np.zeros((N, n), dtype=np.float32)
    for k, location in enumerate(network.locations):
        if not (location.store and network.lost_sales):
            low[k, 0] = -np.inf
    observation = spaces.Box(low=low.reshape(-1), high=np.full(N * n, np.inf, dtype=np.float32), dtype=np.float32)
    high = _network_max_requests(network, max_request)
    action = spaces.Box(low=np.zeros_like(high), high=high, dtype=np.float32)
    return observation, action


class NetworkVectorEnv(BatchedVectorEnv):
    """``num_envs`` copies of an inventory network, stepped at once by :func:`hybridrl.networks.network_step`.

    Args:
        network: the supply network (:func:`~hybridrl.networks.serial_network`,
            :func:`~hybridrl.networks.one_warehouse_network`, :func:`~hybridrl.networks.transshipment_network`,
            ...), with ``N`` locations, ``S`` stores, ``E`` edges and ``n`` inventory slots.
        num_envs: ``B``. With ``scenarios``, it defaults to (and must equal) the number of scenarios.
        horizon: periods per episode (default 100; with ``scenarios``, all their periods).
        max_request: upper bound of the requests: a number, one per edge, or ``None`` for ``MAX_ORDER_FACTOR``
            (4) × the mean demand through the edge's receiver (for a warehouse, the sum over the stores it
            supplies; the bound ``NetworkMLP`` puts on outside orders).
        scenarios: fixed :class:`~hybridrl.networks.NetworkScenarios` to replay instead of drawing new episodes:
            sub-environment ``b`` replays scenario ``b`` from period 0 at every reset (e.g. our test scenarios).
        autoreset_mode, device: see :class:`BatchedVectorEnv`.

    * **Observation** the inventory vectors of every location, flattened to ``(N * n,)`` float32
      (:func:`network_spaces`). As for the single store, this is the whole state (demand is i.i.d. over time,
      correlated across stores within a period), and the period index is not observed: the horizon is a time
      limit of a problem without end.
    * **Action** ``Box(0, max_request, (E,))``: the non-negative request per edge. Requests outside the box are
      clipped to it (negative ones to 0), as for every ``Box``; NaN and infinite ones raise. The simulator makes
      any request feasible (proportional rationing at a supplier that has less than is asked; a transshipment
      center ships all its stock whatever is asked), so an agent need not learn feasibility. The flows
      actually shipped are ``info["shipped"]`` ``[B, E]``.
    * **Reward** ``r_t = −c_t`` with ``c_t`` the period's network **cost per store**: the total cost of all
      locations divided by ``S``, i.e. the mean over stores of :func:`~hybridrl.networks.network_rollout`'s
      cost columns (each store's cost plus an equal ``1/S`` share of the upstream cost). Summed over an
      episode of ``T`` periods, the rewards are ``−T ×`` the cost per store and period that the training loop
      minimises and :func:`hybridrl.train.evaluate` reports (averaged over stores). ``info`` holds ``cost``
      (those per-store columns ``[B, S]``), ``location_cost`` ``[B, N]``, ``demand`` ``[B, S]``, ``shortage``
      ``[B, S]`` and ``shipped`` ``[B, E]``.
    * **Episodes** start from the initial inventory of :func:`~hybridrl.networks.sample_network_scenarios`
      (store slots of the store's own lead time ``U[0, 1] × initial_inventory × mean``, upstream empty; all
      empty for the serial system) and last ``horizon`` periods: ``truncated`` at the end, never
      ``terminated``.
    * **Randomness** every new episode of sub-environment ``b`` draws from the environment's ``np_random`` one
      demand seed and one initial-inventory seed (:attr:`seeds` ``[b]``) and generates its data as the single
      scenario ``sample_network_scenarios(network, 1, horizon, demand_seed=..., inventory_seed=...)`` (the
      network's correlated normal demand, truncated at 0 if the network says so). One draw per sub-environment,
      not one batch of ``B``: torch's normal sampler fills a batch in a size-dependent order, so a batch draw
      would give sub-environment 0 other demand than :class:`NetworkEnv` with the same seed. The current
      episodes' data are :attr:`scenarios`, so that the same periods can be replayed through
      :func:`~hybridrl.networks.network_rollout`.
    """

    def __init__(
        self,
        network: Network,
        num_envs: int | None = None,
        horizon: int | None = None,
        *,
        max_request=None,
        scenarios: NetworkScenarios | None = None,
        autoreset_mode="next_step",
        device: str | torch.device = "cpu",
    ):
        observation_space, action_space = network_spaces(network, max_request)
        num_envs, horizon = _replay_sizes(scenarios, NetworkScenarios, "hybridrl.networks.NetworkScenarios", network,
                                          "network", num_envs, horizon)
        super().__init__(
            num_envs, horizon, observation_space, action_space, autoreset_mode=autoreset_mode, device=device
        )
        self.network = network
        self.fixed = scenarios is not None
        self._scenarios = None if scenarios is None else scenarios.with_periods(horizon).to(self.device)
        self.seeds = np.full((self.num_envs, 2), -1, dtype=np.int64)
        """``(demand_seed, inventory_seed)`` of each sub-environment's current episode (``-1`` with ``scenarios``)."""
        self._inventory: Tensor | None = None
        self._stores = network.tensor("store_index").to(self.device)
        self._is_store = network.tensor("is_store").to(self.device)

    @property
    def scenarios(self) -> NetworkScenarios:
        """The data (store demand ``[B, S, T]``, initial inventory ``[B, N, n]``) of the current episodes."""
        if self._scenarios is None:
            raise ResetNeeded("no episode yet: call reset() first")
        return self._scenarios

    @property
    def inventory(self) -> Tensor:
        """The current inventory vectors ``[B, N, n]`` (the observation before flattening)."""
        if self._inventory is None:
            raise ResetNeeded("no episode yet: call reset() first")
        return self._inventory

    def _start(self, indices: np.ndarray, rng: np.random.Generator) -> None:
        if not self.fixed:
            seeds = np.stack([rng.integers(0, 2**31, size=2) for _ in indices])  # one pair per sub-environment
            parts = [sample_network_scenarios(self.network, 1, self.horizon, demand_seed=int(d), inventory_seed=int(i))
                     for d, i in seeds]
            fresh = NetworkScenarios(self.network, torch.cat([p.demand for p in parts]),
                                     torch.cat([p.initial_inventory for p in parts])).to(self.device)
            self.seeds[indices] = seeds
            # all sub-environments: a new object; some only (reset_mask): their rows
            self._scenarios = fresh if self._scenarios is None or len(indices) == self.num_envs else _rows_replaced(
                self._scenarios, torch.as_tensor(indices, device=self.device), fresh)
        if self._inventory is None:
            self._inventory = self._scenarios.initial_inventory.clone()
        rows = torch.as_tensor(indices, device=self.device)
        self._inventory = _rows_replaced(self._inventory, rows, self._scenarios.initial_inventory[rows])

    def _observe(self) -> Tensor:
        return self._inventory.flatten(1)

    def _advance(self, action: Tensor, period: np.ndarray):
        data = self._scenarios
        if (period == period[0]).all():
            demand = data.demand[..., int(period[0])]
        else:
            t = torch.as_tensor(period, device=self.device).view(-1, 1, 1).expand(-1, data.demand.shape[1], 1)
            demand = data.demand.gather(-1, t).squeeze(-1)
        result = network_step(self.network, self._inventory, action.to(self._inventory.dtype), demand)
        self._inventory = result.inventory
        # the same arithmetic as network_rollout's cost columns, so that the numbers are the training loop's
        upstream = result.location_cost.masked_fill(self._is_store, 0.0).sum(-1, keepdim=True)
        cost = result.location_cost[:, self._stores] + upstream / self.network.n_stores  # [B, S]
        info = {"cost": cost, "location_cost": result.location_cost, "demand": demand, "shortage": result.shortage,
                "shipped": result.shipped}
        return cost.mean(-1), None, info


class NetworkEnv(SingleEnv):
    """One copy of an inventory network as a ``gymnasium.Env`` (:class:`NetworkVectorEnv`).

    Args:
        network: the supply network.
        horizon: periods per episode (default 100); the last step returns ``truncated=True``.
        max_request: upper bound of the requests (default 4 × the mean demand through each edge's receiver).
        scenarios: one fixed :class:`~hybridrl.networks.NetworkScenarios` to replay at every reset.
        device: where the simulator's tensors live.
    """

    def __init__(
        self,
        network: Network,
        horizon: int | None = None,
        *,
        max_request=None,
        scenarios: NetworkScenarios | None = None,
        device: str | torch.device = "cpu",
    ):
        if scenarios is not None and getattr(scenarios, "n", None) != 1:
            raise ValueError(f"NetworkEnv replays one scenario, got {getattr(scenarios, 'n', scenarios)!r}: "
                             "use NetworkVectorEnv")
        super().__init__(
            NetworkVectorEnv(
                network, 1, horizon, max_request=max_request, scenarios=scenarios, autoreset_mode="disabled",
                device=device,
            )
        )
        self.network = network

    @property
    def scenarios(self) -> NetworkScenarios:
        """The data of the current episode (one scenario)."""
        return self.vector.scenarios


NETWORK_ENV_ID = "hybridrl/InventoryNetwork-v0"
"""Registered with Gymnasium on import: ``gymnasium.make(NETWORK_ENV_ID, network=...)`` gives a
:class:`NetworkEnv`, ``gymnasium.make_vec(NETWORK_ENV_ID, num_envs=B, vectorization_mode="vector_entry_point",
network=...)`` a :class:`NetworkVectorEnv`."""

if NETWORK_ENV_ID not in gymnasium.registry:
    gymnasium.register(
        id=NETWORK_ENV_ID, entry_point="hybridrl.envs:NetworkEnv", vector_entry_point="hybridrl.envs:NetworkVectorEnv"
    )


class ExternalNetworkPolicy(nn.Module):
    """An outside agent as a policy of the network simulator: the :class:`ExternalPolicy` of networks.

    ``predict`` maps a batch of environment observations, a NumPy array ``[B, N * n]`` exactly as
    :class:`NetworkVectorEnv` returns them (flattened inventory vectors), to environment actions ``[B, E]``
    (requests per edge). The module maps a :class:`~hybridrl.networks.NetworkObservation` to requests, so
    :func:`hybridrl.train.evaluate` (through :func:`~hybridrl.networks.network_rollout`) measures the agent on
    our own network scenarios — the test scenarios on which HDPO's network policies are measured. Actions are
    checked and clipped by the same code as in ``env.step`` (negative requests become 0). No parameters; never
    trained.
    """

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], network: Network, *, max_request=None):
        super().__init__()
        if not callable(predict):
            raise ValueError(f"predict must be callable, got {type(predict).__name__}")
        self.predict = predict
        self.network = network
        self.observation_space, self.action_space = network_spaces(network, max_request)

    def forward(self, obs: NetworkObservation) -> Tensor:
        inventory = obs.inventory
        shape = (self.network.n_locations, self.network.n_slots)
        if tuple(inventory.shape[1:]) != shape:
            raise ValueError(
                f"the agent observes inventory of shape {shape} (locations x slots), but the scenarios have "
                f"{tuple(inventory.shape[1:])}: evaluate it on scenarios of its own network"
            )
        batch = inventory.shape[0]
        observation = _numpy(inventory.flatten(1), self.observation_space)
        action = self.predict(observation)
        requests = _action_tensor(action, self.action_space, batch, inventory.device, name="predict(...)")
        return requests.to(inventory.dtype)
