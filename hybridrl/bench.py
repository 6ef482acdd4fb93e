"""Timings of the training loop, measured with the real :func:`hybridrl.train.fit` (``make bench``).

* :func:`time_hdpo_epochs` — seconds per HDPO epoch on the paper's lost-sales setup (32768 training
  scenarios of 50 periods, minibatches of 8192, MLP 32×32×32, L = 4), with and without the dev evaluation
  that the authors' loop runs every 10 epochs (32768 scenarios of 100 periods).
* :func:`time_to_gap` — wall-clock training time until the test cost is within a given gap of the optimum.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

import torch

from .experiments import lost_sales_grid
from .policies import VanillaMLP
from .scenarios import Protocol, make_splits
from .train import TrainConfig, evaluate, fit


@dataclass
class EpochTiming:
    device: str
    compiled: bool
    cuda_graph: bool
    n_train: int
    batch_size: int
    periods: int
    epochs: int
    train_seconds: float
    """Median seconds of one training epoch (no dev evaluation)."""
    dev_seconds: float
    """Seconds of one dev evaluation."""

    @property
    def amortized_seconds(self) -> float:
        """Seconds per epoch with a dev evaluation every 10 epochs, as in the authors' loop."""
        return self.train_seconds + self.dev_seconds / 10


def time_hdpo_epochs(
    *,
    n_train: int = 32768,
    n_dev: int = 32768,
    batch_size: int = 8192,
    periods: int = 50,
    dev_periods: int = 100,
    lead_time: int = 4,
    epochs: int = 6,
    device: str = "cpu",
    compile: bool = False,
    cuda_graph: bool = False,
) -> EpochTiming:
    """Time ``epochs`` HDPO epochs (the first, a warm-up that also compiles or records, is dropped) and one dev
    evaluation (never recorded as a graph; compiled with ``compile``)."""
    setting = lost_sales_grid((lead_time,), (9,))
    protocol = Protocol(n_train=n_train, n_dev=n_dev, n_test=1, train_periods=periods, dev_periods=dev_periods,
                        dev_warmup=min(60, dev_periods - 1), test_periods=2, test_warmup=1)
    splits = make_splits(setting, protocol)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=3e-3, dev_every=epochs, patience=None,
                         device=device, progress=False, compile=compile, cuda_graph=cuda_graph)
    result = fit(VanillaMLP(setting.n_slots), splits.train, splits.dev, config, dev_warmup=protocol.dev_warmup)
    ends = [h["seconds"] for h in result.history]
    per_epoch = [b - a for a, b in zip(ends[:-1], ends[1:])]  # epochs 2 .. epochs-1 plus the last (with dev)
    train_seconds = statistics.median(per_epoch[:-1]) if len(per_epoch) > 1 else ends[0]
    dev = splits.dev.to(device)
    evaluate(result.policy, dev, protocol.dev_warmup, batch_size=n_dev, device=device, compile=compile)  # compiles
    _sync(device)
    t0 = time.perf_counter()
    evaluate(result.policy, dev, protocol.dev_warmup, batch_size=n_dev, device=device, compile=compile)
    _sync(device)
    return EpochTiming(str(device), compile, cuda_graph, n_train, batch_size, periods, epochs, train_seconds,
                       time.perf_counter() - t0)


@dataclass
class GapTiming:
    seconds: float | None
    """Training seconds until the test gap first fell within ``target_pct`` (``None``: never)."""
    target_pct: float
    curve: list[tuple[int, float, float]]
    """``(epoch, seconds, test gap %)`` at every dev evaluation."""


def time_to_gap(
    optimum: float,
    *,
    lead_time: int = 4,
    penalty: float = 9.0,
    target_pct: float = 0.5,
    protocol: Protocol = Protocol(n_train=8192, n_dev=4096, n_test=4096, test_periods=2000, test_warmup=500),
    config: TrainConfig = TrainConfig(epochs=50, batch_size=512, lr=2e-2, schedule="cosine", dev_every=5,
                                      patience=None, progress=False),
    device: str = "cpu",
    cuda_graph: bool = False,
) -> GapTiming:
    """Train HDPO on one lost-sales cell, recording the test gap (rounded orders) at every dev evaluation."""
    setting = lost_sales_grid((lead_time,), (penalty,))
    splits = make_splits(setting, protocol)
    curve = []

    def record(epoch, policy, seconds):
        cost = evaluate(policy, splits.test, protocol.test_warmup, round_orders=True, device=device).mean().item()
        curve.append((epoch, seconds, 100 * (cost / optimum - 1)))

    fit(VanillaMLP(setting.n_slots), splits.train, splits.dev, replace(config, device=device, cuda_graph=cuda_graph),
        dev_warmup=protocol.dev_warmup, callback=record)
    reached = next((s for _, s, gap in curve if gap <= target_pct), None)
    return GapTiming(reached, target_pct, curve)


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


@dataclass
class UpdateTiming:
    problem: str
    method: str
    device: str
    batch_size: int
    hidden: tuple[int, ...]
    seconds: float
    """Seconds per policy update (rollout, every loss and optimizer step of the method), median of ``repeats``."""
    spread: tuple[float, float]
    """Lowest and highest of the repeats."""


def time_hybrid_updates(problem, splits, config, *, updates: int = 4, repeats: int = 3, name: str = "") -> UpdateTiming:
    """Seconds per policy update of :func:`hybridrl.hpo.train_hybrid` with ``config`` on ``problem``.

    Each repeat trains ``1`` and ``1 + updates`` updates with the dev evaluation only at the end, and takes the
    difference over ``updates``: set-up, the first (warm-up) update and the dev evaluation cancel out.
    """
    from .hpo import train_hybrid

    def seconds(n: int) -> float:
        run = replace(config, updates=n, dev_every=n)
        _sync(run.device)
        t0 = time.perf_counter()
        train_hybrid(problem, splits.train, splits.dev, run)
        _sync(run.device)
        return time.perf_counter() - t0

    per_update = sorted((seconds(1 + updates) - seconds(1)) / updates for _ in range(repeats))
    return UpdateTiming(name or type(problem).__name__, config.method, config.device, config.batch_size,
                        tuple(config.hidden), statistics.median(per_update), (per_update[0], per_update[-1]))


@dataclass
class NetworkEpochTiming:
    setting: str
    n_stores: int
    method: str
    device: str
    n_train: int
    batch_size: int
    periods: int
    seconds: float
    """Seconds of one training epoch (every minibatch: rollout, backward, Adam step)."""
    cuda_graph: bool = False


def time_network_epoch(method: str, *, setting: str = "one_warehouse", n_stores: int = 50, n_train: int = 8192,
                       batch_size: int = 1024, periods: int = 50, device: str = "cpu", cuda_graph: bool = False,
                       **policy_kwargs) -> NetworkEpochTiming:
    """Seconds of one HDPO epoch on a network with :func:`hybridrl.train.fit` (a 16-scenario dev evaluation
    excluded), the vanilla network with the `paper` profile's layers for ``setting``. On a GPU a first epoch
    (library start-up, the recording of ``cuda_graph``) runs untimed and the second is timed; on the CPU the
    first is timed. ``policy_kwargs`` go to the policy (e.g. ``checkpoint=True`` for the graph network, whose
    activations otherwise need memory in proportion to ``batch_size × periods × edges``)."""
    from .network_experiments import make_network, make_network_policy, network_budget
    from .networks import sample_network_scenarios
    from .train import resolve_device

    network = make_network(setting, n_stores)
    train = sample_network_scenarios(network, n_train, periods, demand_seed=0, inventory_seed=1)
    dev = sample_network_scenarios(network, 16, periods, demand_seed=2, inventory_seed=3)
    policy = make_network_policy(method, network, 0, hidden=network_budget(setting, "paper").hidden)
    for name, value in policy_kwargs.items():
        setattr(policy, name, value)
    dev_device = resolve_device(device)
    epochs = 2 if dev_device.type == "cuda" else 1
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=1e-3, dev_every=epochs, patience=None,
                         progress=False, device=device, cuda_graph=cuda_graph)
    result = fit(policy, train, dev, config)
    ends = [h["seconds"] for h in result.history]  # training seconds at the end of each epoch (dev included)
    _sync(dev_device)
    t1 = time.perf_counter()
    evaluate(policy, dev.to(dev_device), 0)
    _sync(dev_device)
    seconds = ends[-1] - (ends[-2] if epochs > 1 else 0.0) - (time.perf_counter() - t1)
    return NetworkEpochTiming(setting, n_stores, method, str(dev_device), n_train, batch_size, periods, seconds,
                              cuda_graph)
