"""Policies for real demand data: a quantile forecaster, the generalized newsvendor family, the just-in-time
oracle and the data-driven network of end-to-end HDPO (HDPO spec §6.2, §6.4, §6.5).

The forecaster
--------------
:class:`QuantileForecaster` maps what a store knows at the start of week ``t`` (its last 16 weekly demands and
the week's ``days_from_christmas``) to 19 quantiles (τ = 0.05, …, 0.95) of the demand summed over the weeks
``t .. t + L`` (what the order placed now must cover: it arrives at the start of week ``t + L``), for each lead
time L in {4, 5, 6}: an MLP 17 → 128 → 128 → 57 with ELU (spec §6.4). Demands enter and quantiles leave in units
of the series' training-window mean, so one network serves series of every size. The 19 outputs of a lead time
are made increasing by construction (a first value plus softplus increments), so quantiles never cross.

It is fitted by minimising the pinball loss ``max(τ·u, (τ − 1)·u)``, ``u = y − q``, over the (series, week)
pairs of the **training window only**: every input and target week lies in ``TRAIN`` (the target sum too), so no
dev or test week is used (:func:`forecaster_samples`; a test changes every later week and checks that the fitted
forecaster does not move). The epoch with the best dev-window pinball loss is kept.

The newsvendor family (spec §6.4)
---------------------------------
Every member orders up to a quantile of the forecast lead-time demand, ``S_t = q_τ(D[t..t+L])``:
``order = max(S_t − IP_t, 0)``, with ``IP`` the inventory position. They differ in τ:

* **quantile NV** — the critical fractile ``τ = p / (p + h)``; nothing is trained;
* **fixed quantile** — one ``τ = sigmoid(b)`` for all series, fitted by HDPO;
* **transformed NV** — ``τ = MLP(p / (p + h))`` (hidden [32, 32], sigmoid output), one τ per series constant in
  time, fitted by HDPO;
* **returns NV** (non-admissible) — the critical fractile with returns: ``order = S_t − IP_t`` may be negative,
  sending on-hand stock back (:func:`hybridrl.inventory.rollout`).

``q_τ`` between the grid points is linearly interpolated, with end points ``q_0 = 2q_.05 − q_.10`` and
``q_1 = 2q_.95 − q_.90`` (:func:`interpolate_quantile`); it is differentiable in τ, which is what HDPO trains.

The oracle
----------
:class:`JustInTime` orders, in period ``t``, exactly the demand of its arrival period ``d[t + L]`` (spec §6.5),
so under lost sales it sells all demand from ``t = L`` on with no stock left over: after the warm-up its profit
``p·d`` per period is the most any policy can make. It is the only policy that sees future demand, and it gets
it through an explicit constructor argument (spec R8).

End-to-end HDPO
---------------
:class:`DataDrivenPolicy` (spec §6.2): an MLP [64, 64] (ELU) of the inventory vector, the 16 past demands, p, h,
days_from_christmas and the lead time, with a ReLU output (initial bias 1) giving the order, trained by the
pathwise gradient through the simulator like every HDPO policy. As in :class:`hybridrl.policies.VanillaMLP`,
demand-valued inputs and the output are in units of the series' training mean.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._config import check_int, check_positive
from .cache import save_state_atomic
from .inventory import Observation
from .policies import MemberMLP

QUANTILE_LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))
"""τ = 0.05, 0.10, …, 0.95."""
CHRISTMAS_SCALE = 182.0
"""days_from_christmas lies in [-181, 182]; inputs are divided by this."""


def interpolate_quantile(quantiles: Tensor, tau: Tensor) -> Tensor:
    """``q_τ`` from the 19 grid quantiles ``[..., 19]`` (τ = 0.05..0.95) by linear interpolation, extended to
    ``q_0 = 2q_.05 − q_.10`` and ``q_1 = 2q_.95 − q_.90``; ``tau`` broadcasts against ``quantiles[..., 0]`` and
    is clamped to [0, 1]. Differentiable in both arguments."""
    q0 = 2 * quantiles[..., :1] - quantiles[..., 1:2]
    q1 = 2 * quantiles[..., -1:] - quantiles[..., -2:-1]
    grid = torch.cat([q0, quantiles, q1], dim=-1)  # τ = 0, 0.05, ..., 1: 21 points, spacing 0.05
    position = tau.clamp(0.0, 1.0) * 20.0
    index = position.detach().floor().clamp(0, 19).long()
    weight = (position - index.to(position.dtype)).unsqueeze(-1)
    index = index.expand(grid.shape[:-1]).unsqueeze(-1)
    low, high = grid.gather(-1, index), grid.gather(-1, index + 1)
    return (low + weight * (high - low)).squeeze(-1)


def pinball_loss(quantiles: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean pinball loss of ``quantiles [..., 19]`` for ``target [...]`` (entries where ``mask`` is true)."""
    tau = torch.tensor(QUANTILE_LEVELS, dtype=quantiles.dtype, device=quantiles.device)
    u = target.unsqueeze(-1) - quantiles
    loss = torch.maximum(tau * u, (tau - 1) * u).mean(-1)
    if mask is None:
        return loss.mean()
    return (loss * mask).sum() / mask.sum().clamp_min(1)


# ----------------------------------------------------------------------------------------------------------------
# The forecaster
# ----------------------------------------------------------------------------------------------------------------
class QuantileForecaster(nn.Module):
    """Quantiles of the demand over the next ``L + 1`` weeks from the last ``history`` weeks (module docstring).

    ``forward(past [B, H], calendar [B], scale [B]) -> [B, len(lead_times), 19]`` in demand units.
    """

    def __init__(self, history: int = 16, lead_times: Sequence[int] = (4, 5, 6), hidden: Sequence[int] = (128, 128),
                 init_seed: int = 0):
        super().__init__()
        self.history = check_int("history", history, minimum=1)
        self.lead_times = tuple(check_int("lead time", L, minimum=0) for L in lead_times)
        self.mlp = MemberMLP([history + 1, *hidden, len(self.lead_times) * len(QUANTILE_LEVELS)], 1, init_seed)
        lookup = torch.full((max(self.lead_times) + 1,), -1, dtype=torch.long)
        lookup[list(self.lead_times)] = torch.arange(len(self.lead_times))
        self.register_buffer("head_of_lead_time", lookup)

    def forward(self, past: Tensor, calendar: Tensor, scale: Tensor) -> Tensor:
        x = torch.cat([past / scale.unsqueeze(-1), (calendar / CHRISTMAS_SCALE).unsqueeze(-1)], dim=-1)
        z = self.mlp(x.unsqueeze(0)).squeeze(0).view(x.shape[0], len(self.lead_times), len(QUANTILE_LEVELS))
        increasing = torch.cat([z[..., :1], F.softplus(z[..., 1:])], dim=-1).cumsum(-1)
        return increasing * scale.view(-1, 1, 1)

    def for_lead_time(self, quantiles: Tensor, lead_time: Tensor) -> Tensor:
        """Pick each row's head: ``quantiles [B, K, 19]``, ``lead_time [B]`` -> ``[B, 19]``."""
        lookup = self.head_of_lead_time
        # checked on the CPU only: on a GPU the check would make every simulated period wait for the device (an
        # uncovered lead time then fails in an indexing assertion instead)
        if not lookup.is_cuda and (bool((lead_time >= len(lookup)).any()) or bool((lookup[lead_time] < 0).any())):
            raise ValueError(f"the forecaster covers lead times {self.lead_times}, got {lead_time.unique().tolist()}")
        head = lookup[lead_time]
        return quantiles.gather(1, head.view(-1, 1, 1).expand(-1, 1, quantiles.shape[-1])).squeeze(1)

    def observe(self, obs: Observation) -> Tensor:
        """The forecast quantiles ``[B, S, 19]`` for each store's own lead time, from an observation."""
        if obs.past_demand is None or obs.calendar is None:
            raise ValueError("the forecaster needs past demand and calendar features (real-data scenarios)")
        b, s, h = obs.past_demand.shape
        calendar = obs.calendar[:, 0].unsqueeze(1).expand(b, s).reshape(-1)
        q = self(obs.past_demand.reshape(b * s, h), calendar, obs.mean_demand.reshape(-1))
        return self.for_lead_time(q, obs.lead_time.reshape(-1)).view(b, s, -1)


@dataclass
class ForecasterSamples:
    """(series, week) pairs of one window: inputs, targets ``[n, K]`` per lead time, and which targets exist."""

    past: Tensor  # [n, H]
    calendar: Tensor  # [n]
    scale: Tensor  # [n]
    target: Tensor  # [n, K]
    mask: Tensor  # [n, K], the target's weeks lie inside the window


def forecaster_samples(series: np.ndarray, start: int, end: int, *, scale: np.ndarray, calendar: np.ndarray,
                       history: int = 16, lead_times: Sequence[int] = (4, 5, 6)) -> ForecasterSamples:
    """Every (series, week ``t``) of the window ``start .. end-1`` with ``history`` weeks before ``t`` and at
    least the shortest target inside the window; only weeks ``start .. end-1`` are read."""
    weeks = series[:, start:end].astype(np.float32)
    n, w = weeks.shape
    first, last = history, w - 1 - min(lead_times)
    if last < first:
        raise ValueError(f"window ({start}, {end}) is too short for {history} weeks of history and a target")
    t = np.arange(first, last + 1)
    past = np.stack([weeks[:, k - history:k] for k in t], axis=1)  # [n, len(t), H]
    csum = np.concatenate([np.zeros((n, 1), np.float32), weeks.cumsum(1)], axis=1)
    target = np.stack([csum[:, np.minimum(t + L + 1, w)] - csum[:, t] for L in lead_times], axis=-1)
    mask = np.stack([(t + L + 1 <= w) for L in lead_times], axis=-1)  # [len(t), K]
    return ForecasterSamples(
        past=torch.from_numpy(past.reshape(-1, history)),
        calendar=torch.from_numpy(np.tile(calendar[start + t].astype(np.float32), n)),
        scale=torch.from_numpy(np.repeat(scale.astype(np.float32), len(t))),
        target=torch.from_numpy(target.reshape(-1, len(lead_times))),
        mask=torch.from_numpy(np.tile(mask, (n, 1)).astype(np.float32)),
    )


@dataclass
class ForecasterFit:
    forecaster: QuantileForecaster
    history: list[dict]
    best_epoch: int
    best_dev: float


def _pinball(model: QuantileForecaster, data: ForecasterSamples, index=None) -> Tensor:
    part = data if index is None else ForecasterSamples(*(v[index] for v in vars(data).values()))
    q = model(part.past, part.calendar, part.scale) / part.scale.view(-1, 1, 1)  # the loss in units of the mean
    return pinball_loss(q, part.target / part.scale.unsqueeze(-1), part.mask)


def fit_forecaster(train: ForecasterSamples, dev: ForecasterSamples, *, epochs: int = 20, batch_size: int = 4096,
                   lr: float = 1e-3, seed: int = 0, init_seed: int = 0, progress: bool = True,
                   history: int = 16, lead_times: Sequence[int] = (4, 5, 6),
                   checkpoint: str | Path | None = None, device: str = "cpu") -> ForecasterFit:
    """Fit a :class:`QuantileForecaster` by minibatch Adam on the pinball loss (in units of each series' mean);
    keep the epoch with the lowest dev pinball loss. The returned forecaster is frozen and on the CPU. With
    ``checkpoint`` the training state is written after every epoch and a later call with the same path resumes
    from it. ``device`` (``"cpu"``, ``"cuda"`` or ``"auto"``) is where it trains; the minibatch order comes
    from a CPU generator, so it is the same on every device."""
    from .train import resolve_device

    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_positive("lr", lr)
    device = resolve_device(device)
    train, dev = (ForecasterSamples(*(v.to(device) for v in vars(d).values())) for d in (train, dev))
    model = QuantileForecaster(history, lead_times, init_seed=init_seed).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    shuffle = torch.Generator().manual_seed(seed)
    n = train.past.shape[0]
    best, best_state, best_epoch, rows = math.inf, copy.deepcopy(model.state_dict()), 0, []
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.exists():  # resume an interrupted fit (on any device)
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        shuffle.set_state(state["shuffle"].cpu())  # (a CPU generator's state, whatever map_location moved)
        best, best_state, best_epoch, rows = state["best"], state["best_state"], state["best_epoch"], state["rows"]
    epochs_iter = range(len(rows) + 1, epochs + 1)
    if progress:
        from ._progress import progress_bar

        epochs_iter = progress_bar(epochs_iter, total=epochs, initial=len(rows), desc="quantile forecaster",
                                   leave=False)
    for epoch in epochs_iter:
        order = torch.randperm(n, generator=shuffle).to(device)
        total = torch.zeros((), dtype=torch.float64, device=device)  # (summed as the CPU loop always has)
        for k in range(0, n, batch_size):
            loss = _pinball(model, train, order[k:k + batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach().double() * min(batch_size, n - k)
        with torch.no_grad():
            dev_loss = float(_pinball(model, dev))
        rows.append(dict(epoch=epoch, train_pinball=float(total) / n, dev_pinball=dev_loss))
        if dev_loss < best:
            best, best_epoch, best_state = dev_loss, epoch, copy.deepcopy(model.state_dict())
        if checkpoint is not None:
            save_state_atomic(checkpoint, dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                                               shuffle=shuffle.get_state(), best=best, best_state=best_state,
                                               best_epoch=best_epoch, rows=rows))
    model.load_state_dict(best_state)
    model.requires_grad_(False)
    model.eval()
    return ForecasterFit(model.cpu(), rows, best_epoch, best)


def coverage(model: QuantileForecaster, data: ForecasterSamples) -> np.ndarray:
    """Fraction of targets at or below each forecast quantile ``[19]`` (calibration: ideally τ)."""
    with torch.no_grad():
        q = model(data.past, data.calendar, data.scale)
    below = (data.target.unsqueeze(-1) <= q).float() * data.mask.unsqueeze(-1)
    return (below.sum((0, 1)) / data.mask.sum()).numpy()


# ----------------------------------------------------------------------------------------------------------------
# The newsvendor family
# ----------------------------------------------------------------------------------------------------------------
def critical_fractile(obs: Observation) -> Tensor:
    """``p / (p + h)`` per store ``[B, S]``."""
    return obs.underage_cost / (obs.underage_cost + obs.holding_cost)


class CriticalFractile(nn.Module):
    """τ = p / (p + h): the quantile NV's level (nothing to train)."""

    def forward(self, obs: Observation) -> Tensor:
        return critical_fractile(obs)


class FixedQuantile(nn.Module):
    """One τ = sigmoid(b) for every series, fitted by HDPO (``initial``: the starting τ)."""

    def __init__(self, initial: float = 0.5):
        super().__init__()
        if not 0 < initial < 1:
            raise ValueError(f"initial quantile must be in (0, 1), got {initial!r}")
        self.logit = nn.Parameter(torch.tensor([math.log(initial / (1 - initial))]))

    def forward(self, obs: Observation) -> Tensor:
        return torch.sigmoid(self.logit).expand_as(obs.underage_cost)


class TransformedFractile(nn.Module):
    """τ = MLP(p / (p + h)) with hidden [32, 32] (ELU) and a sigmoid output: one τ per series, fitted by HDPO."""

    def __init__(self, hidden: Sequence[int] = (32, 32), init_seed: int = 0):
        super().__init__()
        self.mlp = MemberMLP([1, *hidden, 1], 1, init_seed)

    def forward(self, obs: Observation) -> Tensor:
        ratio = critical_fractile(obs)
        return torch.sigmoid(self.mlp(ratio.reshape(1, -1, 1))).view_as(ratio)


class QuantileNewsvendor(nn.Module):
    """Order up to ``S_t = q_τ(D[t..t+L])``: ``max(S_t − IP_t, 0)``, or ``S_t − IP_t`` with ``returns``.

    ``level`` gives τ per store (:class:`CriticalFractile`, :class:`FixedQuantile`, :class:`TransformedFractile`);
    the forecaster is frozen and only ``level`` is trained. With ``returns=True`` the policy is the
    non-admissible returns NV (it sets ``sends_returns``, which the simulator honours).
    """

    def __init__(self, forecaster: QuantileForecaster, level: nn.Module, *, returns: bool = False):
        super().__init__()
        self.forecaster = forecaster.requires_grad_(False)
        self.level = level
        self.sends_returns = bool(returns)

    def base_level(self, obs: Observation) -> Tensor:
        with torch.no_grad():
            quantiles = self.forecaster.observe(obs)
        return interpolate_quantile(quantiles, self.level(obs))

    def forward(self, obs: Observation) -> Tensor:
        gap = self.base_level(obs) - obs.inventory_position
        return gap if self.sends_returns else torch.relu(gap)

    def train(self, mode: bool = True):
        super().train(mode)
        self.forecaster.eval()  # frozen: stays in evaluation mode
        return self


NEWSVENDORS = ("quantile_nv", "fixed_quantile", "transformed_nv", "returns_nv")


def make_newsvendor(name: str, forecaster: QuantileForecaster, *, init_seed: int = 0,
                    initial_quantile: float = 0.5) -> QuantileNewsvendor:
    """One member of the family by name (:data:`NEWSVENDORS`)."""
    if name == "quantile_nv":
        return QuantileNewsvendor(forecaster, CriticalFractile())
    if name == "returns_nv":
        return QuantileNewsvendor(forecaster, CriticalFractile(), returns=True)
    if name == "fixed_quantile":
        return QuantileNewsvendor(forecaster, FixedQuantile(initial_quantile))
    if name == "transformed_nv":
        return QuantileNewsvendor(forecaster, TransformedFractile(init_seed=init_seed))
    raise ValueError(f"newsvendor must be one of {list(NEWSVENDORS)}, got {name!r}")


# ----------------------------------------------------------------------------------------------------------------
# The oracle and the end-to-end policy
# ----------------------------------------------------------------------------------------------------------------
class JustInTime(nn.Module):
    """The just-in-time oracle (non-admissible): order ``d[t + L]`` in period ``t`` (0 past the horizon).

    ``future_demand [N, S, T]`` is the demand of the scenarios it will be run on, passed explicitly; run it on
    exactly those ``N`` scenarios, in one batch.
    """

    non_admissible = True

    def __init__(self, future_demand: Tensor):
        super().__init__()
        if future_demand.dim() != 3:
            raise ValueError(f"future_demand must be [N, S, T], got shape {tuple(future_demand.shape)}")
        self.register_buffer("future_demand", future_demand)

    def forward(self, obs: Observation) -> Tensor:
        n, s, periods = self.future_demand.shape
        if obs.inventory.shape[:2] != (n, s):
            raise ValueError(f"JustInTime was given the demand of {n} scenarios x {s} stores, but is run on "
                             f"{tuple(obs.inventory.shape[:2])}: evaluate it on those scenarios in one batch")
        arrival = obs.period + obs.lead_time  # lead times are at most the inventory slots: no host sync here
        padded = F.pad(self.future_demand, (0, obs.inventory.shape[-1] + 1))
        order = padded.gather(-1, arrival.unsqueeze(-1)).squeeze(-1)
        return torch.where(arrival < periods, order, torch.zeros_like(order))


class DataDrivenPolicy(nn.Module):
    """End-to-end HDPO on real data (module docstring): MLP [64, 64] -> ReLU order, initial output bias 1."""

    def __init__(self, n_slots: int, history: int = 16, hidden: Sequence[int] = (64, 64), init_seed: int = 0,
                 max_lead_time: int = 6):
        super().__init__()
        self.n_slots = check_int("n_slots", n_slots, minimum=1)
        self.history = check_int("history", history, minimum=1)
        self.max_lead_time = check_int("max_lead_time", max_lead_time, minimum=1)
        self.mlp = MemberMLP([n_slots + history + 4, *hidden, 1], 1, init_seed)
        with torch.no_grad():
            self.mlp.biases[-1].fill_(1.0)

    def forward(self, obs: Observation) -> Tensor:
        if obs.past_demand is None or obs.calendar is None:
            raise ValueError("DataDrivenPolicy needs past demand and calendar features (real-data scenarios)")
        b, s, n = obs.inventory.shape
        scale = obs.mean_demand.unsqueeze(-1)
        features = torch.cat([
            obs.inventory / scale,
            obs.past_demand / scale,
            (obs.underage_cost / 10.0).unsqueeze(-1),
            obs.holding_cost.unsqueeze(-1),
            (obs.calendar[:, :1] / CHRISTMAS_SCALE).unsqueeze(1).expand(b, s, 1),
            (obs.lead_time.to(obs.inventory.dtype) / self.max_lead_time).unsqueeze(-1),
        ], dim=-1)
        z = self.mlp(features.reshape(1, b * s, -1)).view(b, s)
        return obs.mean_demand * torch.relu(z)
