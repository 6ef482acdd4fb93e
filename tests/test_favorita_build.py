"""hybridrl.favorita_build: the calendar against the shipped weeks.csv; the rebuild on a tiny synthetic train.csv."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hybridrl import favorita_build as fb


def _shipped_folder() -> Path | None:
    """The shipped favorita/ folder: under $HYBRIDRL_DATA if it has one, else ../shared/data/favorita/."""
    candidates = []
    if os.environ.get("HYBRIDRL_DATA"):
        candidates.append(Path(os.environ["HYBRIDRL_DATA"]).expanduser() / "favorita")
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / "favorita")
    return next((c for c in candidates if (c / "weeks.csv").is_file()), None)


SHIPPED = _shipped_folder()

HEADER = "id,date,store_nbr,item_nbr,unit_sales,onpromotion\n"
# (date, store, item, unit_sales); stores 1 and 2 and items 10 and 20 are selected, over 3 weeks (2013-01-01..21)
ROWS = [
    ("2013-01-01", 1, 10, 5.0),  # week 0, first day
    ("2013-01-07", 1, 10, 2.0),  # week 0, last day
    ("2013-01-08", 1, 10, 3.0),  # week 1, first day
    ("2013-01-03", 1, 20, 0.4),  # fractional: week total 0.4 rounds to 0
    ("2013-01-10", 1, 20, 1.25),  # fractional: 1.25 + 1.25 = 2.5 rounds (to even) to 2
    ("2013-01-11", 1, 20, 1.25),
    ("2013-01-08", 2, 20, 1.5),  # 1.5 + 1.25 = 2.75 rounds to 3
    ("2013-01-09", 2, 20, 1.25),
    ("2013-01-15", 2, 10, -4.0),  # a return: net -4 + 1 = -3 in week 2
    ("2013-01-16", 2, 10, 1.0),
    ("2013-01-22", 1, 10, 100.0),  # week 3: outside the window
    ("2012-12-31", 1, 10, 100.0),  # before week 0
    ("2013-01-02", 3, 10, 50.0),  # store 3: not selected
    ("2013-01-02", 1, 30, 7.0),  # item 30: not selected
]
# items x stores x weeks; missing days (e.g. item 20 at store 1 in week 2) are zeros
EXPECTED = np.array(
    [
        [[7, 3, 0], [0, 0, -3]],  # item 10 at stores 1, 2
        [[0, 2, 0], [0, 3, 0]],  # item 20 at stores 1, 2
    ],
    dtype=np.int32,
)


def _write_train(path: Path, rows) -> Path:
    lines = [HEADER] + [f"{k},{d},{s},{i},{u},\n" for k, (d, s, i, u) in enumerate(rows)]
    path.write_text("".join(lines))
    return path


@pytest.fixture
def train_csv(tmp_path: Path) -> Path:
    return _write_train(tmp_path / "train.csv", ROWS)


# stores 3 (30) > 1 (10) = 2 (10) > 4 (5): with 2 stores, 3 and 1 (the tie with 2 goes to the smaller id).
# Items sold in both 3 and 1 with a positive net total: 500 (14), 300 (5), 400 (5); not 100 (never in store 1)
# nor 200 (net 0 in store 1). A big sale of store 4 after the window must not count.
SELECTION_ROWS = [
    ("2013-01-01", 3, 500, 10.0),
    ("2013-01-01", 3, 100, 15.0),
    ("2013-01-02", 3, 300, 2.0),
    ("2013-01-02", 3, 400, 2.0),
    ("2013-01-02", 3, 200, 1.0),
    ("2013-01-03", 1, 500, 4.0),
    ("2013-01-03", 1, 300, 3.0),
    ("2013-01-03", 1, 400, 3.0),
    ("2013-01-04", 1, 200, 1.0),
    ("2013-01-05", 1, 200, -1.0),
    ("2013-01-06", 2, 500, 10.0),
    ("2013-01-06", 4, 500, 5.0),
    ("2013-01-08", 4, 500, 1000.0),  # week 1: outside a one-week window
]


@pytest.fixture
def selection_csv(tmp_path: Path) -> Path:
    return _write_train(tmp_path / "selection.csv", SELECTION_ROWS)


# --- calendar ---------------------------------------------------------------------------------------------------


@pytest.mark.skipif(SHIPPED is None, reason="the shipped favorita/weeks.csv is absent (neither under "
                    "$HYBRIDRL_DATA nor at ../shared/data/favorita/)")
def test_week_calendar_equals_shipped_file():
    shipped = pd.read_csv(SHIPPED / "weeks.csv")
    calendar = fb.week_calendar()
    pd.testing.assert_frame_equal(calendar, shipped, check_exact=True)
    assert calendar.to_csv(index=False, lineterminator="\n") == (SHIPPED / "weeks.csv").read_text()


def test_week_calendar_columns():
    calendar = fb.week_calendar(60)
    assert len(calendar) == 60
    assert calendar["date"].iloc[[0, 1, 51]].tolist() == ["2013-01-01", "2013-01-08", "2013-12-24"]
    assert calendar["days_from_christmas"].iloc[[0, 51, 52]].tolist() == [7, -1, 6]
    assert calendar["christmas"].sum() == 1 and calendar["christmas"].iloc[51] == 1
    with pytest.raises(ValueError, match="n_weeks"):
        fb.week_calendar(0)


# --- weekly sales -----------------------------------------------------------------------------------------------


def test_weekly_sales_hand_computed(train_csv):
    sales = fb.weekly_sales(train_csv, stores=[1, 2], items=[10, 20], n_weeks=3)
    assert sales.dtype == np.int32 and sales.shape == (2, 2, 3)
    np.testing.assert_array_equal(sales, EXPECTED)


def test_axes_follow_the_given_order(train_csv):
    sales = fb.weekly_sales(train_csv, stores=[2, 1], items=[20, 10], n_weeks=3)
    np.testing.assert_array_equal(sales, EXPECTED[::-1, ::-1])


def test_week_boundaries(tmp_path):
    rows = [("2013-01-07", 1, 10, 1.0), ("2013-01-08", 1, 10, 10.0), ("2013-01-14", 1, 10, 100.0),
            ("2013-01-15", 1, 10, 1000.0)]
    sales = fb.weekly_sales(_write_train(tmp_path / "t.csv", rows), stores=[1], items=[10], n_weeks=3)
    assert sales[0, 0].tolist() == [1, 110, 1000]  # 2013-01-07 is week 0, 2013-01-08 and -14 week 1


def test_chunking_does_not_change_the_result(train_csv):
    small = fb.weekly_sales(train_csv, stores=[1, 2], items=[10, 20], n_weeks=3, chunksize=2)
    large = fb.weekly_sales(train_csv, stores=[1, 2], items=[10, 20], n_weeks=3, chunksize=10**6)
    np.testing.assert_array_equal(small, large)
    np.testing.assert_array_equal(small, EXPECTED)


# --- selection --------------------------------------------------------------------------------------------------


def test_select_series_rule(selection_csv):
    assert fb.select_series(selection_csv, n_stores=2, n_items=2, n_weeks=1) == ([1, 3], [300, 500])
    assert fb.select_series(selection_csv, n_stores=2, n_items=3, n_weeks=1, chunksize=2) == ([1, 3], [300, 400, 500])
    # given stores, only the item rule applies: 100 is sold in store 3, 500 most
    assert fb.select_series(selection_csv, n_items=2, n_weeks=1, stores=[3]) == ([3], [100, 500])
    # over two weeks, store 4's big sale counts
    assert fb.select_series(selection_csv, n_stores=1, n_items=1, n_weeks=2) == ([4], [500])


def test_select_series_too_few(selection_csv):
    with pytest.raises(ValueError, match=r"only 3 items .* n_items=4"):
        fb.select_series(selection_csv, n_stores=2, n_items=4, n_weeks=1)
    with pytest.raises(ValueError, match=r"only 4 stores .* n_stores=5"):
        fb.select_series(selection_csv, n_stores=5, n_items=1, n_weeks=1)


# --- writing ----------------------------------------------------------------------------------------------------


def test_write_dataset_round_trip(tmp_path):
    sales = EXPECTED.astype(np.int64)
    sums = fb.write_dataset(tmp_path / "out", sales, fb.week_calendar())
    folder = tmp_path / "out" / "favorita"
    assert sorted(p.name for p in folder.iterdir()) == ["SHA256SUMS", "weekly_sales_21_stores.npz", "weeks.csv"]
    with np.load(folder / "weekly_sales_21_stores.npz") as data:
        assert data.files == ["sales"]
        assert data["sales"].dtype == np.int32 and data["sales"].shape == (2, 2, 3)
        np.testing.assert_array_equal(data["sales"], EXPECTED)
    pd.testing.assert_frame_equal(pd.read_csv(folder / "weeks.csv"), fb.week_calendar())
    listed = {}
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        listed[name] = digest
    actual = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in listed}
    assert listed == actual == sums
    assert set(sums) == {"weekly_sales_21_stores.npz", "weeks.csv"}


def test_write_dataset_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="integer array"):
        fb.write_dataset(tmp_path, np.zeros((2, 2, 3)), fb.week_calendar())
    with pytest.raises(ValueError, match="calendar has 2 weeks"):
        fb.write_dataset(tmp_path, EXPECTED, fb.week_calendar(2))


# --- errors -----------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    missing = tmp_path / "nowhere" / "train.csv"
    with pytest.raises(ValueError, match=f"not found: {re.escape(str(missing))}"):
        fb.weekly_sales(missing, stores=[1], items=[10])
    with pytest.raises(ValueError, match="not found"):
        fb.select_series(missing)


def test_missing_columns(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("id,date,store_nbr,sales\n0,2013-01-01,1,2.0\n")
    with pytest.raises(ValueError, match="item_nbr, unit_sales"):
        fb.weekly_sales(path, stores=[1], items=[10])
    path.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        fb.weekly_sales(path, stores=[1], items=[10])


def test_empty_selection(train_csv):
    with pytest.raises(ValueError, match="empty selection: no stores"):
        fb.weekly_sales(train_csv, stores=[], items=[10])
    with pytest.raises(ValueError, match="empty selection: no items"):
        fb.weekly_sales(train_csv, stores=[1], items=[])
    # store 3 and item 20 both appear, but never together
    with pytest.raises(ValueError, match="empty selection: no row"):
        fb.weekly_sales(train_csv, stores=[3], items=[20], n_weeks=3)


def test_unknown_store_or_item(train_csv):
    with pytest.raises(ValueError, match=r"store\(s\) 7, 9 never appear"):
        fb.weekly_sales(train_csv, stores=[1, 7, 9], items=[10])
    with pytest.raises(ValueError, match=r"item\(s\) 99 never appear"):
        fb.weekly_sales(train_csv, stores=[1], items=[10, 99])
    with pytest.raises(ValueError, match="repeated stores: 1"):
        fb.weekly_sales(train_csv, stores=[1, 1], items=[10])


# --- command line -----------------------------------------------------------------------------------------------


def test_cli_with_lists(train_csv, tmp_path, capsys):
    items_file = tmp_path / "items.txt"
    items_file.write_text("# the items\n10\n20\n")
    out = tmp_path / "data"
    assert fb.main(["--train-csv", str(train_csv), "--out", str(out), "--stores", "1,2", "--items", str(items_file),
                 "--weeks", "3"]) == 0
    with np.load(out / "favorita" / "weekly_sales_21_stores.npz") as data:
        np.testing.assert_array_equal(data["sales"], EXPECTED)
    pd.testing.assert_frame_equal(pd.read_csv(out / "favorita" / "weeks.csv"), fb.week_calendar(242))
    printed = capsys.readouterr().out
    assert "stores: 1,2" in printed and "items: 10,20" in printed and f"HYBRIDRL_DATA={out.resolve()}" in printed


def test_cli_selects(selection_csv, tmp_path, capsys):
    out = tmp_path / "data"
    assert fb.main(["--train-csv", str(selection_csv), "--out", str(out), "--n-stores", "2", "--n-items", "2",
                 "--weeks", "1", "--chunksize", "3"]) == 0
    printed = capsys.readouterr().out
    assert "stores: 1,3" in printed and "items: 300,500" in printed
    with np.load(out / "favorita" / "weekly_sales_21_stores.npz") as data:
        # items 300, 500 x stores 1, 3 x one week
        assert data["sales"][:, :, 0].tolist() == [[3, 2], [4, 10]]
    # only --items: the stores are chosen by the rule
    assert fb.main(["--train-csv", str(selection_csv), "--out", str(out), "--items", "500", "--n-stores", "1",
                 "--weeks", "2"]) == 0
    assert "stores: 4" in capsys.readouterr().out


def test_cli_reports_errors(train_csv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        fb.main(["--train-csv", str(tmp_path / "absent.csv"), "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "absent.csv" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fb.main(["--train-csv", str(train_csv), "--out", str(tmp_path), "--stores", "1,x", "--items", "10"])
    assert "--stores" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fb.main(["--train-csv", str(train_csv), "--out", str(tmp_path), "--weeks", "300"])
    assert "--weeks" in capsys.readouterr().err
