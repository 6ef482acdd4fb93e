"""Device plumbing: constant tensors copied to the data's device once, and CUDA's determinism switches.

Problems and networks keep small constant tensors (costs, means, index tensors) on the CPU. A rollout needs
them on the device of its data every period, and a fresh ``.to("cuda")`` each time is a host-to-device copy
that makes the host wait for the GPU. :func:`on_device` makes each copy once per owner, name, device and dtype
and keeps it for as long as the owner lives (the cache is keyed by the owner's identity, not stored on it, so
owners pickle as before).

On the CPU every run is deterministic as it stands: same seed, same numbers (the tests check it). On a GPU a few
kernels are not: sums by index (``index_add_``, the backward pass of gathers and indexing) add in whatever order
the threads finish, so the last bits of a result can change between two runs with the same seed.
``HYBRIDRL_DETERMINISTIC=1`` (``make reproduce DETERMINISTIC=1``) asks for PyTorch's deterministic kernels
wherever a run trains on CUDA (:func:`use_deterministic_cuda`, HPO spec R4). It is off by default because those
kernels are slower and their cost on our workloads has not been measured yet.
"""

from __future__ import annotations

import os
import weakref

import torch
from torch import Tensor

DETERMINISTIC_VARIABLE = "HYBRIDRL_DETERMINISTIC"
THREADS_VARIABLE = "HYBRIDRL_THREADS_PER_RUN"

_copies: dict[int, dict] = {}


def on_device(owner: object, name: str, value: Tensor, like: Tensor) -> Tensor:
    """``value`` on ``like``'s device, floating values in ``like``'s dtype (integer and boolean ones keep theirs).

    ``owner`` and ``name`` identify the constant: the copy is made on the first call and returned afterwards.
    """
    dtype = like.dtype if value.is_floating_point() else value.dtype
    if value.device == like.device and value.dtype == dtype:
        return value
    copies = _copies.get(id(owner))
    if copies is None:
        copies = _copies[id(owner)] = {}
        weakref.finalize(owner, _copies.pop, id(owner), None)
    key = (name, like.device, dtype)
    copy = copies.get(key)
    if copy is None:
        copy = copies[key] = value.to(device=like.device, dtype=dtype)
    return copy


def deterministic_requested() -> bool:
    """Whether ``HYBRIDRL_DETERMINISTIC`` asks for deterministic CUDA kernels (``1``/``0``; unset means ``0``)."""
    value = os.environ.get(DETERMINISTIC_VARIABLE, "0").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{DETERMINISTIC_VARIABLE} must be 1 or 0, got {os.environ[DETERMINISTIC_VARIABLE]!r}")


def use_deterministic_cuda() -> None:
    """Switch PyTorch to deterministic kernels for the rest of this process (idempotent).

    - ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (unless already set): cuBLAS's deterministic mode. cuBLAS reads it when
      its first handle is made, so this must run before the process's first matrix product on the GPU; the
      training loops call it when they resolve their device, before they build anything there.
    - ``torch.use_deterministic_algorithms(True, warn_only=True)``: deterministic versions of the index sums,
      and a warning (not an error) for an operation that has none.
    - cuDNN (unused by our networks, set for completeness): deterministic algorithms, no autotuning.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


__all__ = ["DETERMINISTIC_VARIABLE", "THREADS_VARIABLE", "deterministic_requested", "on_device", "threads_per_run",
           "use_deterministic_cuda"]


def threads_per_run() -> int:
    """PyTorch CPU threads for one training run: ``HYBRIDRL_THREADS_PER_RUN`` (default 1).

    The run functions of the HPO, network and real-data grids set this many threads before they train on the CPU
    (the single-store grids keep PyTorch's default). One thread per run is the default because a sweep runs one
    process per core, and because a run then gives the same digits whatever the machine and the number of workers
    (a matrix product split over more threads may add in another order). A single long run on a machine with idle
    cores can ask for more: ``HYBRIDRL_THREADS_PER_RUN=2`` made a `paper` HPO update on the JRP with 30 items 1.5
    times faster on a 2-core CPU (4.0 s to 2.6 s). The number is not part of a run's cache key: runs with
    different thread counts may differ in the last digits."""
    value = os.environ.get(THREADS_VARIABLE, "1").strip() or "1"
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"{THREADS_VARIABLE} must be a positive integer, got {value!r}")
    return threads
