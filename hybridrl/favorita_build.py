"""Rebuild the weekly Favorita data set from the public Kaggle files.

The real-data setting of the package reads ``favorita/weekly_sales_21_stores.npz`` and ``favorita/weeks.csv`` from
the data folder (``$HYBRIDRL_DATA``). This module rebuilds both files, in the same format, from the daily sales of
the Kaggle competition "Corporacion Favorita Grocery Sales Forecasting"
(https://www.kaggle.com/c/favorita-grocery-sales-forecasting, file ``train.csv.7z``; unpack it with ``7z x
train.csv.7z``). ``train.csv`` has the columns ``id, date, store_nbr, item_nbr, unit_sales, onpromotion``, one row
per (date, store, item) with a recorded sale, about 125 million rows (5 GB) from 2013-01-01 to 2017-08-15.

Procedure
---------
1. Weeks. Week ``i`` is the seven days starting 2013-01-01 + 7·i days, labelled by its first day (a Tuesday, as
   2013-01-01 was one). Week 0 is 2013-01-01 to 2013-01-07, week 1 starts on 2013-01-08, and so on. The sales array
   keeps the first ``n_weeks`` weeks (171 by default: 2013-01-01 to 2016-04-11); rows dated outside these weeks
   are ignored.
2. Reading. ``train.csv`` is streamed in chunks of ``chunksize`` rows; only ``date, store_nbr, item_nbr,
   unit_sales`` are read. Dates are read as a categorical column and only its few distinct values are parsed.
3. Aggregation. For every selected (item, store) and week, the daily ``unit_sales`` are summed in float64. A
   (store, item, date) absent from the file counts as zero sales. Returns (negative ``unit_sales``) are kept, so
   a value is the net weekly sales and can be negative; what to do with negative weeks is left to the loader of
   the package. Weight-sold items have fractional ``unit_sales``; they are summed as they are.
4. Rounding. The weekly sums are rounded to the nearest integer once, at the end (``numpy.rint``: an exact half
   goes to the even neighbour), and stored as int32 in an array ``sales`` of shape [items, stores, weeks], its
   axes in the order of the given item and store lists.
5. Calendar. ``weeks.csv`` has one row per week for all 242 weeks of the competition data (2013-01-01 to
   2017-08-15), whatever ``n_weeks`` is; see :func:`week_calendar` for the meaning of its columns.
6. Output. ``favorita/weekly_sales_21_stores.npz`` (compressed, key ``sales``), ``favorita/weeks.csv`` and
   ``favorita/SHA256SUMS`` (checkable with ``sha256sum -c SHA256SUMS``) are written under the output folder, each
   atomically (a temporary file, then a rename). Point ``HYBRIDRL_DATA`` at that output folder.

Selection caveat
----------------
The authors of the data set did not publish which 21 stores and 288 items they kept. Unless explicit lists are
given, this module selects them with its own rule (:func:`select_series`): the ``n_stores`` stores with the
largest net unit sales over the window, then, among the items with a positive net total in every chosen store,
the ``n_items`` items with the largest net total over the chosen stores; ties go to the smaller id. This is
deterministic but almost certainly not the authors' choice: a rebuilt file has the same format, shape and
calendar as the shipped one, but not necessarily the same series. ``--stores`` and ``--items`` override the rule
(given only ``--stores``, the items are chosen among those sold in every given store; given only ``--items``, the
stores are the biggest ones).

Command line
------------
::

    python -m hybridrl.favorita_build --train-csv train.csv --out data
    python -m hybridrl.favorita_build --train-csv train.csv --out data --stores 44,45,46 --items items.txt
    export HYBRIDRL_DATA=$PWD/data   # the package then reads data/favorita/

Options: ``--n-stores`` (21), ``--n-items`` (288), ``--weeks`` (171), ``--chunksize``. The chosen stores and items
are printed, in a form ``--stores`` and ``--items`` accept. Choosing the series takes one pass over the whole
file and building the array another; chunks of 5 million rows keep the memory under a gigabyte.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

START = dt.date(2013, 1, 1)  # first day of the competition data, and of week 0 (a Tuesday)
N_CALENDAR_WEEKS = 242  # 2013-01-01 to 2017-08-15, the last day of train.csv (the last week has that one day)
EARTHQUAKE = dt.date(2016, 4, 16)  # the Ecuador earthquake (a Saturday); its week starts on 2016-04-12
COLUMNS = ("date", "store_nbr", "item_nbr", "unit_sales")
SALES_FILE = "weekly_sales_21_stores.npz"
WEEKS_FILE = "weeks.csv"
SUMS_FILE = "SHA256SUMS"
CHUNKSIZE = 5_000_000

CLI_HELP = """\
Rebuild favorita/weekly_sales_21_stores.npz and favorita/weeks.csv from the daily
train.csv of the Kaggle competition "Corporacion Favorita Grocery Sales Forecasting".

Get train.csv.7z from the competition page (favorita-grocery-sales-forecasting):
  https://www.kaggle.com/c/favorita-grocery-sales-forecasting/data
  or: kaggle competitions download -c favorita-grocery-sales-forecasting -f train.csv.7z
and unpack it: 7z x train.csv.7z

The output folder (--out) is what HYBRIDRL_DATA should point to; favorita/ is created in it.
Without --stores/--items the series are chosen by this script's own rule (the biggest
stores, then the biggest items sold in all of them), not by the authors' unpublished one.
"""


# --- the calendar -----------------------------------------------------------------------------------------------


def _days_from_christmas(day: dt.date) -> int:
    """Signed days from the nearest Christmas: positive after it, negative before, zero on Dec 25.

    The nearer of the last Christmas on or before ``day`` and the next one after it wins; an exact tie (possible
    only across a leap day) goes to the last one. Over 2013-2017 the values run from -181 to 182.
    """
    last = dt.date(day.year if day >= dt.date(day.year, 12, 25) else day.year - 1, 12, 25)
    after = (day - last).days
    before = (dt.date(last.year + 1, 12, 25) - day).days
    return after if after <= before else -before


def week_calendar(n_weeks: int = N_CALENDAR_WEEKS) -> pd.DataFrame:
    """One row per week from 2013-01-01, as in the shipped ``weeks.csv`` (242 weeks by default).

    Columns, all about the week's first day (its label, a Tuesday) unless said otherwise:

    - ``date``: that day as text, ``YYYY-MM-DD``;
    - ``day_of_week``: its ISO weekday (Monday 1 ... Sunday 7), so always 2;
    - ``month``, ``year``, ``day_of_month``: its calendar parts;
    - ``days_from_christmas``: signed days from the nearest Dec 25, positive after it (see
      :func:`_days_from_christmas`), e.g. 7 for 2013-01-01 and -1 for 2013-12-24;
    - ``christmas``: 1 if the week's seven days contain Dec 25, else 0;
    - ``earthquake``: 1 for the week containing the earthquake of 2016-04-16 (the week of 2016-04-12), else 0.

    The integer columns are int64 and ``date`` has the dtype ``pandas.read_csv`` gives text, so the frame equals
    the shipped file read back, and ``to_csv(index=False)`` writes it byte for byte.
    """
    firsts = [START + dt.timedelta(days=7 * i) for i in range(_check_weeks(n_weeks))]
    rows = []
    for first in firsts:
        last = first + dt.timedelta(days=6)
        christmas = any(first <= dt.date(y, 12, 25) <= last for y in {first.year, last.year})
        rows.append(
            {
                "date": first.isoformat(),
                "day_of_week": first.isoweekday(),
                "month": first.month,
                "year": first.year,
                "day_of_month": first.day,
                "days_from_christmas": _days_from_christmas(first),
                "christmas": int(christmas),
                "earthquake": int(first <= EARTHQUAKE <= last),
            }
        )
    frame = pd.DataFrame(rows)
    ints = [c for c in frame.columns if c != "date"]
    frame[ints] = frame[ints].astype("int64")
    # the dtype read_csv gives a text column (str under pandas 3, object before)
    frame["date"] = frame["date"].astype(pd.Series(["x"]).dtype)
    return frame


# --- reading train.csv ------------------------------------------------------------------------------------------


def _check_csv(train_csv: str | os.PathLike) -> Path:
    """The path of a readable train.csv holding the needed columns, else a ValueError naming what is wrong."""
    path = Path(train_csv).expanduser()
    if not path.is_file():
        raise ValueError(f"train.csv not found: {path} (see --help for where to download it)")
    try:
        header = pd.read_csv(path, nrows=0)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty; expected Kaggle's train.csv") from None
    missing = [c for c in COLUMNS if c not in header.columns]
    if missing:
        raise ValueError(
            f"{path} lacks the column(s) {', '.join(missing)}; expected Kaggle's train.csv with "
            f"{', '.join(COLUMNS)} (it has {', '.join(map(str, header.columns))})"
        )
    return path


def _check_chunksize(chunksize: int) -> int:
    if isinstance(chunksize, bool) or not isinstance(chunksize, (int, np.integer)) or chunksize < 1:
        raise ValueError(f"chunksize must be a positive integer, got {chunksize!r}")
    return int(chunksize)


def _check_weeks(n_weeks: int) -> int:
    if isinstance(n_weeks, bool) or not isinstance(n_weeks, (int, np.integer)) or n_weeks < 1:
        raise ValueError(f"n_weeks must be a positive integer, got {n_weeks!r}")
    return int(n_weeks)


def _chunks(path: Path, chunksize: int, progress: bool) -> Iterator[pd.DataFrame]:
    """Chunks of train.csv with int columns ``day`` (days since 2013-01-01), ``store``, ``item`` and float
    ``sales``."""
    reader = pd.read_csv(
        path,
        usecols=list(COLUMNS),
        dtype={"date": "category", "store_nbr": "int64", "item_nbr": "int64", "unit_sales": "float64"},
        chunksize=chunksize,
    )
    bar = None
    if progress:
        from ._progress import progress_bar

        bar = progress_bar(desc=path.name, unit=" rows", unit_scale=True, mininterval=2.0)
    try:
        with reader:
            for chunk in reader:
                dates = chunk["date"].cat
                if (dates.codes < 0).any():
                    raise ValueError(f"{path}: a row has no date")
                try:
                    parsed = pd.to_datetime(pd.Series(dates.categories), format="%Y-%m-%d")
                except (ValueError, TypeError) as err:
                    raise ValueError(f"{path}: a date is not of the form YYYY-MM-DD ({err})") from err
                offsets = (parsed - pd.Timestamp(START)).dt.days.to_numpy(dtype=np.int64)
                yield pd.DataFrame(
                    {
                        "day": offsets[dates.codes.to_numpy()],
                        "store": chunk["store_nbr"].to_numpy(),
                        "item": chunk["item_nbr"].to_numpy(),
                        "sales": chunk["unit_sales"].to_numpy(),
                    }
                )
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()


def _ids(values: Sequence[int], what: str) -> np.ndarray:
    """Distinct integer ids as an int64 array, else a ValueError naming ``what``."""
    ids = np.asarray(list(values))
    if ids.size == 0:
        raise ValueError(f"empty selection: no {what} given")
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{what} must be a list of integer ids, got {list(values)!r}")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"repeated {what}: {', '.join(map(str, uniq[counts > 1]))}")
    return ids.astype(np.int64)


def weekly_sales(
    train_csv: str | os.PathLike,
    *,
    stores: Sequence[int],
    items: Sequence[int],
    n_weeks: int = 171,
    chunksize: int = CHUNKSIZE,
    progress: bool = False,
) -> np.ndarray:
    """Weekly net unit sales, int32 [len(items), len(stores), n_weeks], from Kaggle's daily ``train.csv``.

    ``sales[i, s, w]`` is the sum of ``unit_sales`` of item ``items[i]`` in store ``stores[s]`` over the seven days
    from 2013-01-01 + 7·w days, rounded to the nearest integer at the end (halves to even). Returns stay in as
    negative sales; rows of other stores or items, or dated outside the ``n_weeks`` weeks, are ignored. The result
    does not depend on ``chunksize``; ``progress`` shows a tqdm bar over the rows read.

    Raises ValueError for a missing file, missing columns, an empty or repeated store or item list, stores or
    items that never appear in the file (named), and a selection with no row inside the weeks.
    """
    path = _check_csv(train_csv)
    store_ids, item_ids = _ids(stores, "stores"), _ids(items, "items")
    n_weeks, chunksize = _check_weeks(n_weeks), _check_chunksize(chunksize)
    n_items, n_stores = len(item_ids), len(store_ids)
    store_index, item_index = pd.Index(store_ids), pd.Index(item_ids)

    totals = np.zeros(n_items * n_stores * n_weeks, dtype=np.float64)
    store_seen = np.zeros(n_stores, dtype=bool)
    item_seen = np.zeros(n_items, dtype=bool)
    n_rows = 0
    for chunk in _chunks(path, chunksize, progress):
        s = store_index.get_indexer(chunk["store"].to_numpy())
        i = item_index.get_indexer(chunk["item"].to_numpy())
        store_seen[np.unique(s[s >= 0])] = True
        item_seen[np.unique(i[i >= 0])] = True
        day = chunk["day"].to_numpy()
        keep = (s >= 0) & (i >= 0) & (day >= 0) & (day < 7 * n_weeks)
        if not keep.any():
            continue
        flat = (i[keep] * n_stores + s[keep]) * n_weeks + day[keep] // 7
        totals += np.bincount(flat, weights=chunk["sales"].to_numpy()[keep], minlength=totals.size)
        n_rows += int(keep.sum())

    if not store_seen.all() or not item_seen.all():
        parts = []
        if not store_seen.all():
            parts.append(f"store(s) {', '.join(map(str, store_ids[~store_seen]))}")
        if not item_seen.all():
            parts.append(f"item(s) {', '.join(map(str, item_ids[~item_seen]))}")
        raise ValueError(f"{' and '.join(parts)} never appear in {path}")
    if n_rows == 0:
        raise ValueError(
            f"empty selection: no row of {path} has a selected store and item dated inside the {n_weeks} weeks "
            f"from {START.isoformat()}"
        )
    if np.isnan(totals).any():
        raise ValueError(f"{path}: unit_sales is missing in a selected row")
    rounded = np.rint(totals)
    limit = np.iinfo(np.int32)
    if rounded.min() < limit.min or rounded.max() > limit.max:
        raise ValueError("a weekly total does not fit into int32")
    return rounded.astype(np.int32).reshape(n_items, n_stores, n_weeks)


def _pair_totals(path: Path, n_weeks: int, chunksize: int, progress: bool) -> pd.Series:
    """Net ``unit_sales`` per (store, item) over the rows dated inside the first ``n_weeks`` weeks."""
    pieces: list[pd.Series] = []
    for chunk in _chunks(path, chunksize, progress):
        inside = chunk[(chunk["day"] >= 0) & (chunk["day"] < 7 * n_weeks)]
        pieces.append(inside.groupby(["store", "item"])["sales"].sum())
        if len(pieces) > 8:  # keep memory small: fold the partial sums together now and then
            pieces = [pd.concat(pieces).groupby(level=[0, 1]).sum()]
    totals = pd.concat(pieces).groupby(level=[0, 1]).sum() if pieces else pd.Series(dtype="float64")
    if totals.empty:
        raise ValueError(f"empty selection: no row of {path} is dated inside the {n_weeks} weeks from {START}")
    return totals


def _top(totals: pd.Series, n: int) -> list[int]:
    """The ids of the ``n`` largest totals (ties: smaller id first), sorted by id.

    Totals are compared at 0.001 unit, the precision of ``unit_sales``, so that the rounding errors of summing in
    another order (another chunk size) cannot change the choice.
    """
    rounded = np.round(totals.to_numpy(dtype=np.float64), 3)
    ranked = sorted(zip(totals.index, rounded, strict=True), key=lambda kv: (-kv[1], kv[0]))
    return sorted(int(k) for k, _ in ranked[:n])


def _top_stores(pair_totals: pd.Series, n_stores: int) -> list[int]:
    store_totals = pair_totals.groupby(level="store").sum()
    if len(store_totals) < n_stores:
        raise ValueError(f"only {len(store_totals)} stores sell inside the window, fewer than n_stores={n_stores}")
    return _top(store_totals, n_stores)


def _top_items(pair_totals: pd.Series, stores: list[int], n_items: int) -> list[int]:
    table = pair_totals.unstack("store").reindex(columns=stores)  # item x store; NaN: never sold there
    everywhere = table[(table > 0).all(axis=1)]
    if len(everywhere) < n_items:
        raise ValueError(
            f"only {len(everywhere)} items have positive net sales in every one of the {len(stores)} chosen "
            f"stores, fewer than n_items={n_items}"
        )
    return _top(everywhere.sum(axis=1), n_items)


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def select_series(
    train_csv: str | os.PathLike,
    *,
    n_stores: int = 21,
    n_items: int = 288,
    n_weeks: int = 171,
    chunksize: int = CHUNKSIZE,
    stores: Sequence[int] | None = None,
    progress: bool = False,
) -> tuple[list[int], list[int]]:
    """This module's own choice of stores and items (not the authors' unknown one), each as a sorted id list.

    Over the rows dated inside the first ``n_weeks`` weeks:

    1. stores: the ``n_stores`` stores with the largest net total ``unit_sales`` (all items together);
    2. items: among the items whose net total is positive in every chosen store, the ``n_items`` with the largest
       net total over the chosen stores.

    Ties go to the smaller id. Given ``stores``, step 1 is skipped and those stores are used (returned as given).
    One pass over the file. Raises ValueError if fewer stores or items than asked for qualify.
    """
    path = _check_csv(train_csv)
    n_weeks, chunksize = _check_weeks(n_weeks), _check_chunksize(chunksize)
    n_items = _check_count("n_items", n_items)
    if stores is not None:
        chosen_stores = [int(s) for s in _ids(stores, "stores")]
    else:
        n_stores = _check_count("n_stores", n_stores)
    pair_totals = _pair_totals(path, n_weeks, chunksize, progress)
    if stores is None:
        chosen_stores = _top_stores(pair_totals, n_stores)
    return chosen_stores, _top_items(pair_totals, chosen_stores, n_items)


# --- writing ----------------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_dataset(out_dir: str | os.PathLike, sales: np.ndarray, calendar: pd.DataFrame) -> dict[str, str]:
    """Write ``out_dir/favorita/{weekly_sales_21_stores.npz, weeks.csv, SHA256SUMS}``; return {file name: sha256}.

    ``sales`` must be an integer array [items, stores, weeks] (stored as int32 under the key ``sales``) and
    ``calendar`` a frame such as :func:`week_calendar` gives, with at least as many weeks as ``sales``. Each file
    is written atomically; ``SHA256SUMS`` is in the format of ``sha256sum`` (``sha256sum -c SHA256SUMS``).
    """
    sales = np.asarray(sales)
    if sales.ndim != 3 or not np.issubdtype(sales.dtype, np.integer):
        raise ValueError(f"sales must be an integer array [items, stores, weeks], got {sales.dtype} {sales.shape}")
    limit = np.iinfo(np.int32)
    if sales.size and (sales.min() < limit.min or sales.max() > limit.max):
        raise ValueError("sales does not fit into int32")
    if len(calendar) < sales.shape[2]:
        raise ValueError(f"calendar has {len(calendar)} weeks, fewer than the {sales.shape[2]} weeks of sales")
    folder = Path(out_dir).expanduser() / "favorita"
    folder.mkdir(parents=True, exist_ok=True)

    _write_atomic(folder / SALES_FILE, lambda f: np.savez_compressed(f, sales=sales.astype(np.int32)))
    text = calendar.to_csv(index=False, lineterminator="\n")
    _write_atomic(folder / WEEKS_FILE, lambda f: f.write(text.encode()))
    sums = {name: _sha256(folder / name) for name in (SALES_FILE, WEEKS_FILE)}
    listing = "".join(f"{digest}  {name}\n" for name, digest in sums.items())
    _write_atomic(folder / SUMS_FILE, lambda f: f.write(listing.encode()))
    return sums


# --- command line -----------------------------------------------------------------------------------------------


def _id_list(text: str, what: str) -> list[int]:
    """Ids from a comma list, or from a file of ids separated by commas, spaces or newlines (``#`` comments)."""
    path = Path(text).expanduser()
    if path.is_file():
        lines = [line.split("#", 1)[0] for line in path.read_text().splitlines()]
        text = " ".join(lines)
    tokens = [t for t in text.replace(",", " ").split() if t]
    try:
        return [int(t) for t in tokens]
    except ValueError:
        raise ValueError(f"--{what}: expected integer ids or a file of them, got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hybridrl.favorita_build",
        description=CLI_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--train-csv", required=True, help="Kaggle's train.csv, unpacked")
    parser.add_argument("--out", required=True, help="output folder; favorita/ is created in it")
    parser.add_argument("--stores", help="store numbers, comma separated (overrides the selection rule)")
    parser.add_argument("--items", help="item numbers: a comma list or a file of them (overrides the rule)")
    parser.add_argument("--n-stores", type=int, default=21, help="stores to select (default 21)")
    parser.add_argument("--n-items", type=int, default=288, help="items to select (default 288)")
    parser.add_argument("--weeks", type=int, default=171, help=f"weeks of sales, 1 to {N_CALENDAR_WEEKS} (default 171)")
    parser.add_argument("--chunksize", type=int, default=CHUNKSIZE, help=f"rows per chunk (default {CHUNKSIZE:_})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if not 1 <= args.weeks <= N_CALENDAR_WEEKS:
            raise ValueError(f"--weeks must be in 1..{N_CALENDAR_WEEKS}, got {args.weeks}")
        stores = _id_list(args.stores, "stores") if args.stores else None
        items = _id_list(args.items, "items") if args.items else None
        if items is None:
            what = "items" if stores is not None else "stores and items"
            print(f"selecting {what} (one pass over the file)", file=sys.stderr)
            stores, items = select_series(
                args.train_csv, n_stores=args.n_stores, n_items=args.n_items, n_weeks=args.weeks,
                chunksize=args.chunksize, stores=stores, progress=True,
            )
        elif stores is None:
            print("selecting stores (one pass over the file)", file=sys.stderr)
            path = _check_csv(args.train_csv)
            n_stores = _check_count("--n-stores", args.n_stores)
            stores = _top_stores(_pair_totals(path, args.weeks, _check_chunksize(args.chunksize), True), n_stores)
        print("aggregating weekly sales (one pass over the file)", file=sys.stderr)
        sales = weekly_sales(
            args.train_csv, stores=stores, items=items, n_weeks=args.weeks, chunksize=args.chunksize, progress=True
        )
        sums = write_dataset(args.out, sales, week_calendar(N_CALENDAR_WEEKS))
    except ValueError as err:
        parser.error(str(err))
    folder = Path(args.out).expanduser() / "favorita"
    print(f"stores: {','.join(map(str, stores))}")
    print(f"items: {','.join(map(str, items))}")
    print(f"wrote {folder}: sales {sales.shape} int32, {N_CALENDAR_WEEKS} calendar weeks")
    for name, digest in sums.items():
        print(f"{digest}  {name}")
    print(f"use it with: HYBRIDRL_DATA={Path(args.out).expanduser().resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
