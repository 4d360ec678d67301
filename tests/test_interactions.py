"""Interactions: every source, and every bad input named by file, line or column."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from spotlight_sagemaker.core import DataError, IdMap, Interactions


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_seed_file_maps_to_protocol_sizes(ml100k_csv):
    data = Interactions.from_csv(ml100k_csv)
    assert len(data) == 82_520
    assert (data.num_users, data.num_items) == (943, 1574)
    # ascending raw-id order, numerically
    assert data.user_map.ids[:3].tolist() == ["1", "2", "3"]
    assert data.item_map.get("10") == 9


def test_folder_of_csv_and_gz_files(tmp_path):
    write(tmp_path / "a.csv", "user_id,item_id\nu-1,i-1\nu-2,i-2\n")
    with gzip.open(tmp_path / "b.csv.gz", "wt") as fh:
        fh.write("user_id,item_id\nu-1,i-3\n")
    write(tmp_path / "notes.txt", "ignored")
    data = Interactions.from_csv(tmp_path)
    assert len(data) == 3
    assert data.user_map.to_list() == ["u-1", "u-2"]  # lexicographic for non-numeric ids


def test_weight_and_timestamp_columns(tmp_path):
    f = write(tmp_path / "r.csv", "timestamp,user_id,item_id,rating\n5,1,2,4.5\n6,1,3,3\n")
    data = Interactions.from_csv(f)
    assert data.weights.tolist() == [4.5, 3.0]
    assert data.timestamps.tolist() == [5.0, 6.0]


def test_dataframe_and_arrays_agree():
    df = pd.DataFrame({"user_id": [685, 302, 685], "item_id": ["50", "50", "7"]})
    a = Interactions.from_dataframe(df)
    b = Interactions.from_arrays(["685", "302", "685"], ["50", "50", "7"])
    assert a.user_map == b.user_map and a.item_map == b.item_map
    assert np.array_equal(a.user_ids, b.user_ids) and np.array_equal(a.item_ids, b.item_ids)


def test_float_ids_from_pandas_are_not_suffixed():
    data = Interactions.from_arrays(np.array([685.0, 302.0]), np.array([1.0, 2.0]))
    assert data.user_map.to_list() == ["302", "685"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("user_id,item_id\n1,2\n1,2\n", "line 2 and "),
        ("user_id,item_id\n1,2\n,3\n", "line 3, column 'user_id': blank id"),
        ("user_id,item_id\n1,2\n4\n", "line 3: expected 2 fields, found 1"),
        ("user,item\n1,2\n", "column 'user_id'"),
        ("", "file is empty"),
        ("user_id,item_id\n", "header but no rows"),
        ("user_id,item_id,weight\n1,2,x\n", "line 2, column 'weight': value 'x' is not a number"),
    ],
)
def test_bad_csv_names_file_line_column(tmp_path, text, needle):
    f = write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError) as exc:
        Interactions.from_csv(f)
    assert needle in str(exc.value)
    assert str(f) in str(exc.value)


def test_binary_file_is_not_csv(tmp_path):
    f = tmp_path / "model.csv"
    f.write_bytes(b"\x00\xff\xfe\x80" * 50)
    with pytest.raises(DataError, match="not a UTF-8 text CSV"):
        Interactions.from_csv(f)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        Interactions.from_csv(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="no .csv or .csv.gz files"):
        Interactions.from_csv(tmp_path)


def test_nan_ids_and_empty_arrays():
    with pytest.raises(DataError, match="NaN"):
        Interactions.from_arrays(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(DataError, match="missing"):
        Interactions.from_arrays(np.array(["a", None], dtype=object), ["x", "y"])
    with pytest.raises(DataError, match="empty"):
        Interactions.from_arrays([], [])
    df = pd.DataFrame({"user_id": [1], "itemid": [2]})
    with pytest.raises(DataError, match="column 'item_id'"):
        Interactions.from_dataframe(df)


def test_duplicate_policies():
    first = Interactions.from_arrays(
        ["a", "a", "b"], ["x", "x", "y"], [1, 2, 3], duplicates="first"
    )
    summed = Interactions.from_arrays(["a", "a", "b"], ["x", "x", "y"], [1, 2, 3], duplicates="sum")
    assert first.weights.tolist() == [1, 3] and summed.weights.tolist() == [3, 3]
    with pytest.raises(ValueError, match="duplicates must be one of"):
        Interactions.from_arrays(["a"], ["x"], duplicates="max")


def test_vocabulary_reuse_and_unknown_ids():
    base = Interactions.from_arrays(["a", "b"], ["x", "y"])
    same = Interactions.from_arrays(["b"], ["x"], user_map=base.user_map, item_map=base.item_map)
    assert same.user_ids.tolist() == [1] and same.num_items == 2
    with pytest.raises(DataError, match="'z' is not in the given vocabulary"):
        Interactions.from_arrays(["a"], ["z"], user_map=base.user_map, item_map=base.item_map)


def test_csr_lists_each_users_items(ml100k_csv):
    data = Interactions.from_csv(ml100k_csv)
    indptr, indices = data.tocsr()
    u = data.user_map.get("685")
    raw = sorted(data.item_map.ids[indices[indptr[u] : indptr[u + 1]]].tolist(), key=int)
    rows = pd.read_csv(ml100k_csv, dtype=str)
    assert raw == sorted(rows.loc[rows.user_id == "685", "item_id"].tolist(), key=int)
    order = data.csr_order()  # the permutation behind the CSR (the trainer's weight order)
    assert np.array_equal(data.item_ids[order], indices)
    rows_of = np.repeat(np.arange(data.num_users), np.diff(indptr))
    assert np.array_equal(data.user_ids[order], rows_of)


def test_idmap_round_trip_keeps_order():
    m = IdMap(["10", "2", "1"])
    assert m.to_list() == ["1", "2", "10"]
    assert IdMap.from_list(m.to_list()) == m
    with pytest.raises(ValueError):
        IdMap.from_list(["a", "a"])


def test_to_csv_round_trips_raw_ids_in_row_order(tmp_path):
    data = Interactions.from_arrays(["u-2", "u-1", "u-2"], ["b", "a", "a"])
    data.to_csv(tmp_path / "sub" / "t.csv")
    text = (tmp_path / "sub" / "t.csv").read_text()
    assert text == "user_id,item_id\nu-2,b\nu-1,a\nu-2,a\n"
    back = Interactions.from_csv(tmp_path / "sub" / "t.csv")
    assert back.user_map == data.user_map and back.item_map == data.item_map
    assert (back.user_ids == data.user_ids).all() and (back.item_ids == data.item_ids).all()
