"""Constant tensors on the device of the data, copied there once.

Problems and networks keep small constant tensors (costs, means, index tensors) on the CPU. A rollout needs
them on the device of its data every period, and a fresh ``.to("cuda")`` each time is a host-to-device copy
that makes the host wait for the GPU. :func:`on_device` makes each copy once per owner, name, device and dtype
and keeps it for as long as the owner lives (the cache is keyed by the owner's identity, not stored on it, so
owners pickle as before).
"""

from __future__ import annotations

import weakref

from torch import Tensor

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


__all__ = ["on_device"]
