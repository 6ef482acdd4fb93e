"""A disk cache of finished experiments, so an interrupted ``make reproduce`` resumes where it stopped.

Each entry is one JSON file named by a hash of the experiment's full description (setting, method, budgets,
seeds, package version). Writes are atomic (write to a temporary file, then rename), so an interruption never
leaves a half-written entry; ``force=True`` recomputes and overwrites.

``build/cache/`` is not committed. Runs too long to repeat (the `paper` profile's hours of training) can be
archived: ``python -m hybridrl.sweeps --archive`` copies the finished records of a sweep (or slice) to
``paper/runs/`` (:data:`hybridrl.paths.RUNS`, same layout, each entry compacted and gzipped: ``KEY.json.gz``),
which is committed, and :func:`cached` reads an entry there when ``build/cache/`` lacks it. A fresh clone thus
starts from every archived run, and a sweep spread over machines or sessions that keep nothing else loses no
finished run.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import paths


class NotCached(LookupError):
    """A result asked for inside :func:`lookup_only` that is not in the cache."""


_lookup_only = False
_hits: list[Path] | None = None


@contextlib.contextmanager
def lookup_only():
    """Inside the ``with`` block :func:`cached` reads results but computes none: a missing one raises
    :class:`NotCached` (how a sweep reports what is done, and how ``reproduce --cached-only`` draws tables from
    the runs that are finished)."""
    global _lookup_only
    previous, _lookup_only = _lookup_only, True
    try:
        yield
    finally:
        _lookup_only = previous


@contextlib.contextmanager
def recording_hits():
    """Inside the ``with`` block, the path of every entry :func:`cached` reads is appended to the list this
    yields (how ``--archive`` finds the records of a sweep)."""
    global _hits
    previous, _hits = _hits, []
    try:
        yield _hits
    finally:
        _hits = previous


def cached_only_requested() -> bool:
    """``HYBRIDRL_CACHED_ONLY=1``: training runs are read from the cache, never computed (``reproduce
    --cached-only``); :func:`hybridrl.sweeps.map_jobs` and the single-store grids leave out the missing ones."""
    return os.environ.get("HYBRIDRL_CACHED_ONLY", "") == "1"


@contextlib.contextmanager
def cached_only():
    """Inside the ``with`` block, grids read their finished runs (cache, then archive) and leave out the others,
    computing nothing, as under ``HYBRIDRL_CACHED_ONLY=1`` (:func:`cached_only_requested`)."""
    previous = os.environ.get("HYBRIDRL_CACHED_ONLY")
    os.environ["HYBRIDRL_CACHED_ONLY"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["HYBRIDRL_CACHED_ONLY"]
        else:
            os.environ["HYBRIDRL_CACHED_ONLY"] = previous


def key_of(description: Any) -> str:
    """A short stable hash of a JSON-serialisable description."""
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_json_atomic(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1, default=float))
    os.replace(tmp, path)


def save_state_atomic(path: Path, state: Any) -> None:
    """``torch.save(state, path)`` through a temporary file and a rename: a training checkpoint is never half
    written (:func:`hybridrl.train.fit`, :func:`hybridrl.hpo.train_hybrid`, the forecaster's fit)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def cached(
    namespace: str,
    description: dict,
    compute: Callable[[], Any],
    *,
    force: bool = False,
    directory: Path | None = None,
) -> Any:
    """Return the cached result of ``compute()`` for ``description``, computing and storing it if needed. An entry
    missing from the cache is looked up in the archive of finished runs (:data:`hybridrl.paths.RUNS`; only for
    the default ``directory``) before anything is computed; ``force`` reads neither."""
    path = _path(namespace, description, directory)
    found = None if force else _existing(namespace, description, directory)
    if found is not None:
        if _hits is not None:
            _hits.append(found)
        return _read(found)["result"]
    if _lookup_only:
        raise NotCached(f"{namespace}/{path.name}")
    result = json.loads(json.dumps(compute(), default=float))  # the same types whether fresh or cached
    write_json_atomic(path, {"description": description, "result": result})
    return result


def lookup(namespace: str, description: dict, directory: Path | None = None) -> Any | None:
    """The cached (or archived) result for ``description``, or ``None`` if there is none (nothing is computed)."""
    found = _existing(namespace, description, directory)
    return None if found is None else _read(found)["result"]


def _existing(namespace: str, description: dict, directory: Path | None) -> Path | None:
    """The entry for ``description``: in the cache, else (default cache only) in the archive, else ``None``."""
    places = [_path(namespace, description, directory)]
    if directory is None:
        places.append(_archived(places[0]))
    return next((p for p in places if p.exists()), None)


def _archived(entry: Path) -> Path:
    """Where the archive keeps the cache entry ``entry`` (a path under :data:`hybridrl.paths.CACHE`)."""
    return paths.RUNS / entry.relative_to(paths.CACHE).with_suffix(".json.gz")


def _read(path: Path) -> Any:
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as f:
            return json.load(f)
    return json.loads(path.read_text())


def archive(entries: list[Path]) -> tuple[list[Path], int]:
    """Copy the cache entries among ``entries`` (paths under :data:`hybridrl.paths.CACHE`) that the archive lacks
    into it, compact and gzipped, atomically; returns the new archive files and how many of ``entries`` were
    archived entries already."""
    new = []
    for entry in sorted({e for e in entries if paths.CACHE in e.parents}):
        target = _archived(entry)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with gzip.GzipFile(tmp, "wb", mtime=0) as f:  # mtime 0: the same bytes for the same record
            f.write(json.dumps(json.loads(entry.read_text()), separators=(",", ":")).encode())
        os.replace(tmp, target)
        new.append(target)
    return new, len({e for e in entries if paths.RUNS in e.parents})


def _path(namespace: str, description: dict, directory: Path | None) -> Path:
    return (directory or paths.CACHE) / namespace / f"{key_of(description)}.json"


def checkpoint_path(namespace: str, description: dict, directory: Path | None = None, *, fresh: bool = False) -> Path:
    """Where a long computation for ``description`` keeps its resumable training state; ``fresh`` deletes any
    state left there, so the computation starts from scratch instead of resuming (what ``force`` means)."""
    path = (directory or paths.CACHE) / namespace / f"{key_of(description)}.ckpt"
    if fresh:
        path.unlink(missing_ok=True)
    return path
