"""Every input and output location of the package, in one place.

Sources (the notebooks) live in the project checkout. Outputs live under ``ROOT``: the folder named by the
``HYBRIDRL_ROOT`` environment variable if set (the tests use it to write into a temporary folder), else the
checkout when the package runs from one, else the current working directory — so an installed package (on
Colab, say) writes into a folder the user owns. Everything below is derived from these two.

Input data sets (e.g. real demand series) are read from ``DATA``: the folder named by the ``HYBRIDRL_DATA``
environment variable if set, else ``ROOT / "data"``.
"""

from __future__ import annotations

import os
from pathlib import Path

_here = Path(__file__).resolve().parents[1]
# the project checkout, if the package runs from one (it then holds pyproject.toml and notebooks/)
CHECKOUT = _here if (_here / "pyproject.toml").exists() and (_here / "notebooks").is_dir() else None
# the chapters, as Jupytext py:percent sources paired with output-free .ipynb
NOTEBOOKS = (CHECKOUT or Path.cwd()) / "notebooks"

if os.environ.get("HYBRIDRL_ROOT"):
    ROOT = Path(os.environ["HYBRIDRL_ROOT"]).expanduser().resolve()
else:
    ROOT = CHECKOUT or Path.cwd().resolve()
# input data sets: $HYBRIDRL_DATA if set, else ROOT/data
if os.environ.get("HYBRIDRL_DATA"):
    DATA = Path(os.environ["HYBRIDRL_DATA"]).expanduser().resolve()
else:
    DATA = ROOT / "data"
# generated artifacts, committed: tables (CSV + Markdown), figures (PNG), REPRODUCTION.md, benchmarks(_gpu).md
PAPER = ROOT / "paper"
TABLES = PAPER / "tables"
FIGURES = PAPER / "figures"
REPRODUCTION = PAPER / "REPRODUCTION.md"
BENCHMARKS = PAPER / "benchmarks.md"
"""Timings on the CPU alone (``make bench``)."""
BENCHMARKS_GPU = PAPER / "benchmarks_gpu.md"
"""Timings on a GPU with its machine's CPU measured beside it (``make bench DEVICE=cuda``)."""
RUNS = PAPER / "runs"
"""Finished training runs too long to repeat (the `paper` profile's), committed so that a fresh clone has them:
records laid out as in :data:`CACHE`, copied there by ``python -m hybridrl.sweeps --archive`` and read by
:func:`hybridrl.cache.cached` when the cache lacks them."""
# not committed: executed notebooks and the cache of finished experiments
BUILD = ROOT / "build"
EXECUTED = BUILD / "notebooks"
CACHE = BUILD / "cache"
