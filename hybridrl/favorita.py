"""Real demand data: the Favorita weekly sales, loaded, checked and cut into train / dev / test scenarios (HDPO
spec §4.7, §4.8, R6, R11, R12).

The data
--------
The authors' weekly aggregation of the Kaggle competition "Corporación Favorita Grocery Sales Forecasting":
``favorita/weekly_sales_21_stores.npz`` holds ``sales``, int32 ``[288 items, 21 stores, 171 weeks]`` (week ``i``
is the 7 days from 2013-01-01 + 7i), and ``favorita/weeks.csv`` one calendar row per week. The data may not be
redistributed with the package, so it is read from a data folder: the ``data`` argument, else the
``HYBRIDRL_DATA`` environment variable, else ``./data`` (:mod:`hybridrl.paths`). Either the folder that
contains ``favorita/`` or ``favorita/`` itself will do. ``python -m hybridrl.favorita_build`` rebuilds files of
this format from Kaggle's ``train.csv`` (:mod:`hybridrl.favorita_build`).

Everything loaded is checked before any work starts (:func:`load_favorita`): a missing folder or file raises
:class:`DataMissing` with instructions; an unreadable or truncated file, a wrong shape, dtype or week count, a
calendar that does not match the weeks, or NaN raise a ``ValueError`` that says what is wrong.

Returns (spec R6)
-----------------
Ten weekly entries are negative: net returns, down to -1632 units. A return is not demand that a store could
have served, and negative demand would make the simulator's revenue negative and let stock grow. We **clip
negative weekly sales to zero** (no demand that week) and report how many entries and units this touches
(:attr:`FavoritaData.returns`).

Windows (spec §4.7)
-------------------
Splits are by period: every series appears in every split, over different weeks. A :class:`Window`
``(start, end)`` covers weeks ``start .. end-1``; its first ``history = 16`` weeks are only seen as past demand,
and the rest are simulated. Train ``(0, 111)`` simulates weeks 16-110 (95 periods), dev ``(88, 141)`` weeks
104-140 and test ``(118, 171)`` weeks 134-170 (37 periods each); the first 16 simulated periods of every split
are warm-up, left out of the reported profit (but part of the training loss, spec §3.2). The test window's
first week (118) comes after the last training week (110): nothing fitted on train sees a test week.

One store per series (spec §4.7)
--------------------------------
The paper's one-store data set (32768 series of 50 stores) is not available, so the one-store experiment uses
the ``288 × 21 = 6048`` store-item series of this file as independent products (series ``i·21 + s`` is item
``i`` at store ``s``). Per series: margin ``p ~ U[6.3, 11.7]`` (legacy NumPy seed 28, one draw per series),
``h = 1``, lead time uniform on {4, 5, 6} (legacy NumPy seed 41, the spec's lead-time seed; the reference's draw
is unknown), initial inventory 0 in 6 slots, lost sales, profit ``p·min(x, d) − h·(x − d)^+``. The static
"mean demand" a policy may see is the series' mean over the training window (spec R11), the same in every split.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import paths
from ._config import check_int
from .inventory import DemandTrace, InventorySetting, Store
from .scenarios import Scenarios, Splits

FOLDER = "favorita"
SALES_FILE = "weekly_sales_21_stores.npz"
WEEKS_FILE = "weeks.csv"
SHAPE = (288, 21, 171)
"""Items, stores, weeks of the shipped file."""
FIRST_WEEK = pd.Timestamp("2013-01-01")
CALENDAR_COLUMNS = ("date", "day_of_week", "month", "year", "day_of_month", "days_from_christmas", "christmas",
                    "earthquake")
HOW_TO_GET = (
    "Put the folder `favorita/` (weekly_sales_21_stores.npz and weeks.csv) into the data folder, or point the "
    "environment variable HYBRIDRL_DATA (or the notebook's `data` parameter) at the folder that contains it. "
    "To rebuild it from the Kaggle competition 'favorita-grocery-sales-forecasting', download train.csv and run "
    "`python -m hybridrl.favorita_build --train-csv train.csv --out DATA_FOLDER`."
)


class DataMissing(FileNotFoundError):
    """The real-data files are not where the package looks for them (the message says where to put them)."""


def data_folder(data: str | Path | None = None) -> Path:
    """The ``favorita`` folder: ``data`` (or ``$HYBRIDRL_DATA``, else ``./data``), or its ``favorita/``."""
    if data is None:
        data = os.environ.get("HYBRIDRL_DATA") or paths.DATA
    root = Path(data).expanduser().resolve()
    return root if (root / SALES_FILE).exists() or root.name == FOLDER else root / FOLDER


def available(data: str | Path | None = None) -> bool:
    """Whether both files exist (it does not validate them; :func:`load_favorita` does)."""
    folder = data_folder(data)
    return (folder / SALES_FILE).is_file() and (folder / WEEKS_FILE).is_file()


@dataclass(frozen=True)
class FavoritaData:
    """The validated data: raw weekly ``sales [items, stores, weeks]`` (returns kept) and their calendar."""

    sales: np.ndarray
    weeks: pd.DataFrame
    folder: Path

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.sales.shape)

    @property
    def returns(self) -> dict[str, int]:
        """How many weekly entries are negative (net returns) and their total units (module docstring)."""
        negative = self.sales[self.sales < 0]
        return {"entries": int(negative.size), "units": int(-negative.sum())}

    def demand(self) -> np.ndarray:
        """Weekly demand ``[items, stores, weeks]`` as float64, returns clipped to zero (module docstring)."""
        return np.clip(self.sales, 0, None).astype(np.float64)

    def series(self) -> np.ndarray:
        """Demand of every store-item series ``[items·stores, weeks]`` (series ``i·stores + s``)."""
        d = self.demand()
        return d.reshape(d.shape[0] * d.shape[1], d.shape[2])

    def calendar(self, column: str = "days_from_christmas") -> np.ndarray:
        """One calendar column for the weeks of ``sales``, as float64 ``[weeks]``."""
        if column not in self.weeks.columns or column == "date":
            raise ValueError(f"calendar column must be one of {list(CALENDAR_COLUMNS[1:])}, got {column!r}")
        return self.weeks[column].to_numpy(dtype=np.float64)


def load_favorita(data: str | Path | None = None, *, shape: tuple[int, int, int] | None = SHAPE) -> FavoritaData:
    """Load and validate the weekly sales and their calendar (module docstring).

    ``shape``: the expected ``[items, stores, weeks]`` (``None`` accepts any 3-D array whose weeks the calendar
    covers, e.g. a file rebuilt with another selection of series).
    """
    folder = data_folder(data)
    sales_path, weeks_path = folder / SALES_FILE, folder / WEEKS_FILE
    for path in (sales_path, weeks_path):
        if not path.is_file():
            raise DataMissing(f"real-data file not found: {path}. {HOW_TO_GET}")
    try:
        with np.load(sales_path, allow_pickle=False) as archive:
            if "sales" not in archive.files:
                raise ValueError(f"{sales_path} has no array `sales` (it has {archive.files})")
            sales = archive["sales"]
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as err:
        if "has no array" in str(err):
            raise
        raise ValueError(f"cannot read {sales_path} ({type(err).__name__}: {err}); the file may be truncated or "
                         f"corrupted: download or rebuild it. {HOW_TO_GET}") from err
    if np.issubdtype(sales.dtype, np.floating):
        bad = int((~np.isfinite(sales)).sum())
        raise ValueError(f"{sales_path}: `sales` must be int32 unit sales, got {sales.dtype}"
                         + (f" with {bad} NaN or infinite entries" if bad else ""))
    if sales.dtype != np.int32:
        raise ValueError(f"{sales_path}: `sales` must be int32 unit sales, got {sales.dtype}")
    if sales.ndim != 3:
        raise ValueError(f"{sales_path}: `sales` must be [items, stores, weeks], got shape {sales.shape}")
    if shape is not None and tuple(sales.shape) != tuple(shape):
        raise ValueError(f"{sales_path}: `sales` must have shape {tuple(shape)}, got {sales.shape}")
    weeks = _read_weeks(weeks_path, sales.shape[2])
    return FavoritaData(sales=sales, weeks=weeks, folder=folder)


def _read_weeks(path: Path, n_weeks: int) -> pd.DataFrame:
    """The calendar rows of the first ``n_weeks`` weeks, checked: columns, no NaN, consecutive weeks."""
    try:
        weeks = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {path} ({type(err).__name__}: {err})") from err
    missing = [c for c in CALENDAR_COLUMNS if c not in weeks.columns]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing}")
    if len(weeks) < n_weeks:
        raise ValueError(f"{path} has {len(weeks)} weeks but the sales cover {n_weeks}")
    weeks = weeks.iloc[:n_weeks].copy()
    if weeks[list(CALENDAR_COLUMNS)].isna().any().any():
        rows = weeks.index[weeks.isna().any(axis=1)].tolist()
        raise ValueError(f"{path} has missing values in week(s) {rows[:5]}")
    dates = pd.to_datetime(weeks["date"], errors="coerce")
    expected = FIRST_WEEK + pd.to_timedelta(7 * np.arange(n_weeks), unit="D")
    wrong = np.flatnonzero(dates.to_numpy() != expected.to_numpy())
    if wrong.size:
        i = int(wrong[0])
        raise ValueError(f"{path}: week {i} should start on {expected[i].date()}, got {weeks['date'].iloc[i]!r} "
                         f"(weeks are 7-day buckets from 2013-01-01)")
    weeks["date"] = dates
    return weeks


# ----------------------------------------------------------------------------------------------------------------
# Windows and scenarios
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """Weeks ``start .. end-1``; the first ``history`` are past demand only, the rest are simulated."""

    start: int
    end: int
    history: int = 16

    def __post_init__(self):
        check_int("Window.start", self.start, minimum=0)
        check_int("Window.history", self.history, minimum=1)
        check_int("Window.end", self.end, minimum=self.start + self.history + 1)

    @property
    def periods(self) -> int:
        return self.end - self.start - self.history

    @property
    def simulated(self) -> range:
        """The weeks that are simulated (period ``t`` is week ``start + history + t``)."""
        return range(self.start + self.history, self.end)


TRAIN = Window(0, 111)
DEV = Window(88, 141)
TEST = Window(118, 171)
WARMUP = 16
"""Simulated periods left out of the reported profit in every split (spec §4.7)."""
N_SLOTS = 6
"""Inventory slots: the longest lead time."""
LEAD_TIMES = (4, 5, 6)
MARGIN = (6.3, 11.7)
HOLDING_COST = 1.0
MARGIN_SEED = 28
LEAD_TIME_SEED = 41


def series_parameters(n_series: int, *, margin_seed: int = MARGIN_SEED, lead_time_seed: int = LEAD_TIME_SEED):
    """Per-series margin ``p ~ U[6.3, 11.7]`` and lead time uniform on {4, 5, 6}, each from its own seeded
    legacy NumPy generator (module docstring): ``(p [n], L [n])``."""
    check_int("n_series", n_series, minimum=1)
    margin = np.random.RandomState(margin_seed).uniform(*MARGIN, size=n_series)
    lead = np.random.RandomState(lead_time_seed).randint(LEAD_TIMES[0], LEAD_TIMES[-1] + 1, size=n_series)
    return margin, lead


def one_store_setting(train_demand: np.ndarray) -> InventorySetting:
    """The setting of the one-store experiment: one lost-sales store per scenario, profit objective, empty start.
    Per-series costs and lead times live in the scenarios; the setting's store holds the training demand."""
    trace = DemandTrace(torch.as_tensor(train_demand, dtype=torch.float32))
    store = Store(trace, underage_cost=float(np.mean(MARGIN)), holding_cost=HOLDING_COST, lead_time=LEAD_TIMES[-1])
    return InventorySetting((store,), unmet_demand="lost", objective="profit", initial_inventory=0.0,
                            inventory_slots=N_SLOTS)


def window_scenarios(series: np.ndarray, window: Window, setting: InventorySetting, *, margin: np.ndarray,
                     lead_time: np.ndarray, mean_demand: np.ndarray, calendar: np.ndarray) -> Scenarios:
    """Scenarios of one window for ``series [N, weeks]`` (one store each), with per-series parameters and the
    weekly ``calendar [weeks, F]``. Only weeks ``window.start .. window.end - 1`` are read."""
    if window.end > series.shape[1]:
        raise ValueError(f"window {window} needs {window.end} weeks, the data have {series.shape[1]}")
    n = series.shape[0]
    cut = series[:, window.start:window.end]
    h = window.history
    column = lambda v: torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=torch.float32).reshape(n, 1)  # noqa: E731
    features = torch.as_tensor(calendar[window.start + h:window.end], dtype=torch.float32)
    return Scenarios(
        setting=setting,
        demand=torch.as_tensor(cut[:, h:], dtype=torch.float32).unsqueeze(1),
        underage_cost=column(margin),
        holding_cost=torch.full((n, 1), HOLDING_COST),
        lead_time=torch.as_tensor(lead_time, dtype=torch.long).reshape(n, 1),
        mean_demand=column(mean_demand),
        initial_inventory=torch.zeros(n, 1, setting.n_slots),
        demand_history=torch.as_tensor(cut[:, :h], dtype=torch.float32).unsqueeze(1),
        calendar=features.unsqueeze(0).expand(n, -1, -1).contiguous(),
    )


def training_mean(series: np.ndarray, window: Window = TRAIN) -> np.ndarray:
    """Each series' mean weekly demand over the training window (history included), at least 1 unit: the
    static demand scale policies may see (spec R11)."""
    return np.maximum(series[:, window.start:window.end].mean(axis=1), 1.0)


def first(values: np.ndarray, n: int | None, name: str, what: str) -> np.ndarray:
    """The first ``n`` rows (``what``: series, items) of ``values`` (``None``: all), checked: the smoke profile
    uses a slice of the data."""
    if n is None:
        return values
    check_int(name, n, minimum=1)
    if n > values.shape[0]:
        raise ValueError(f"{name}={n} exceeds the {values.shape[0]} {what} of the data")
    return values[:n]


def one_store_splits(data: FavoritaData, *, n_series: int | None = None, train: Window = TRAIN, dev: Window = DEV,
                     test: Window = TEST, calendar_columns=("days_from_christmas",)) -> Splits:
    """Train / dev / test scenarios of the one-store experiment (module docstring); ``n_series`` keeps the first
    series (the smoke profile uses a slice)."""
    series = first(data.series(), n_series, "n_series", "series")
    if not train.end <= test.start:
        raise ValueError(f"the training window {train} overlaps the test window {test}")
    margin, lead = series_parameters(series.shape[0])
    mean = training_mean(series, train)
    calendar = np.stack([data.calendar(c) for c in calendar_columns], axis=1)
    setting = one_store_setting(series[:, train.start + train.history:train.end])
    make = lambda w: window_scenarios(series, w, setting, margin=margin, lead_time=lead, mean_demand=mean,  # noqa: E731
                                      calendar=calendar)
    return Splits(make(train), make(dev), make(test))
