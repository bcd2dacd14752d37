"""Reading, validating, encoding and batching training data (mtlc.runtime.data / batches)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch

torch.set_num_threads(1)  # pytest runs 2 workers on 2 cores: more threads only contend
sys.path.insert(0, str(Path(__file__).parent))
import training_toys as toys  # noqa: E402

from mtlc.runtime import data as data_mod  # noqa: E402
from mtlc.runtime.batches import Batch, iter_batches  # noqa: E402
from mtlc.runtime.data import DataError, Encoder, Rows, open_data  # noqa: E402
from mtlc.runtime.spec import Feature, Task  # noqa: E402


def encoder(**kw) -> Encoder:
    return Encoder(toys.FEATURES, toys.FUNNEL, **kw)


def write(tmp_path: Path, columns: dict, name: str = "d.parquet") -> Path:
    path = tmp_path / name
    table = pa.table(columns)
    if name.endswith(".csv"):
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


def rows(**overrides) -> dict:
    base = {
        "user": ["a", "b", "a", "c"],
        "hist": ["a,b", "", "c,a,b,a,b,c,c", "z"],
        "price": [1.0, 2.0, 3.0, 4.0],
        "click": [1, 0, 1, 0],
        "buy": [1, None, 0, None],
    }
    base.update(overrides)
    return base


def test_vocabulary_reserves_padding_and_unknown_and_is_shared_by_table(tmp_path):
    enc = encoder().fit(open_data(write(tmp_path, rows())))
    # user and hist share the table "user": counts a=5, b=3, c=3, z=1 -> ids 2, 3, 4, 5
    assert enc.vocabs == {"user": ["a", "b", "c", "z"]}
    batch = pq.read_table(
        write(tmp_path, rows(user=["z", "new", "a", "b"]), "e.parquet")
    ).to_batches()[0]
    encoded = enc.encode(batch)
    assert encoded.inputs["user"].tolist() == [5, 1, 2, 3]


def test_sequences_keep_the_last_maxlen_items_from_strings_and_lists(tmp_path):
    enc = encoder().fit(open_data(write(tmp_path, rows())))
    strings = enc.encode(pq.read_table(write(tmp_path, rows())).to_batches()[0]).inputs["hist"]
    assert strings.tolist() == [[2, 3, 0, 0, 0], [0] * 5, [3, 2, 3, 4, 4], [5, 0, 0, 0, 0]]
    lists = rows(hist=[["a", "b"], [], ["c", "a", "b", "a", "b", "c", "c"], None])
    listed = enc.encode(pq.read_table(write(tmp_path, lists, "l.parquet")).to_batches()[0])
    listed = listed.inputs["hist"]
    assert listed[:3].tolist() == strings[:3].tolist() and listed[3].tolist() == [0] * 5


def test_dense_columns_are_standardised_with_training_statistics(tmp_path):
    path = write(tmp_path, rows())
    enc = encoder().fit(open_data(path))
    x = enc.encode(pq.read_table(path).to_batches()[0]).inputs["price"]
    assert x.dtype == np.float32 and abs(x.mean()) < 1e-6 and abs(x.std() - 1) < 1e-6
    raw = (
        encoder(standardize=False).fit(open_data(path)).encode(pq.read_table(path).to_batches()[0])
    )
    assert raw.inputs["price"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_missing_label_masks_only_that_task_and_row(tmp_path):
    path = write(tmp_path, rows())
    enc = encoder().fit(open_data(path))
    encoded = enc.encode(pq.read_table(path).to_batches()[0])
    assert encoded.masks["ctr"].tolist() == [True] * 4
    assert encoded.masks["ctcvr"].tolist() == [True, False, True, False]
    assert set(encoded.labels) == set(encoded.masks) == {"ctr", "ctcvr"}  # cvr is latent


def test_vocabulary_too_large_for_the_spec_says_the_size_needed(tmp_path):
    small = dict(toys.FEATURES, user=Feature("user", "sparse", dim=4, vocab=5))
    small["hist"] = Feature("hist", "sequence", dim=4, vocab=5, maxlen=5, table="user")
    with pytest.raises(DataError, match=r"needs vocab >= 6.*vocab=5"):
        Encoder(small, toys.FUNNEL).fit(open_data(write(tmp_path, rows())))


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"click": [1, 0, 2, 0]}, r"column 'click', data row 3: a binary label must be 0 or 1"),
        ({"click": [1.0, float("nan"), 0.0, 1.0]}, r"column 'click', data row 2: the label is NaN"),
        ({"click": ["1", "0", "1", "0"]}, r"column 'click', data row 1: type string"),
        ({"price": [1.0, 2.0, None, 1.0]}, r"column 'price', data row 3: the value is missing"),
        ({"price": [1.0, float("inf"), 3.0, 1.0]}, r"column 'price', data row 2: NaN or infinite"),
        ({"user": [0.5, 1.5, 2.5, 3.5]}, r"column 'user', data row 1: type double for a sparse"),
    ],
)
def test_bad_rows_are_rejected_naming_file_column_and_row(tmp_path, change, pattern):
    path = write(tmp_path, rows(**change))
    with pytest.raises(DataError, match=pattern) as info:
        encoder().fit(open_data(path))
    assert str(path) in str(info.value)


def test_multiclass_label_out_of_range_is_rejected(tmp_path):
    tasks = {"kind": Task("kind", "multiclass", label="kind", loss="ce", classes=3)}
    path = write(tmp_path, rows(kind=[0, 1, 3, 2]))
    with pytest.raises(DataError, match=r"column 'kind', data row 3: .*integer in \[0, 3\)"):
        Encoder(toys.FEATURES, tasks).fit(open_data(path))


def test_missing_column_suggests_a_close_name(tmp_path):
    data = rows()
    data["prices"] = data.pop("price")
    with pytest.raises(DataError, match=r"column 'price' is missing \(did you mean 'prices'\?"):
        encoder().fit(open_data(write(tmp_path, data)))
    enc = encoder(columns={"price": "prices"}).fit(open_data(tmp_path / "d.parquet"))
    assert "price" in enc.stats


def test_empty_files_and_missing_paths_are_rejected(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        open_data(tmp_path / "empty.csv")
    with pytest.raises(DataError, match="no such file"):
        open_data(tmp_path / "nothing.parquet")
    no_rows = pa.table({k: pa.array(v[:0]) for k, v in rows(buy=[1, 0, 0, 1]).items()})
    pq.write_table(no_rows, tmp_path / "zero.parquet")
    with pytest.raises(DataError, match="zero.parquet: the file has no rows"):
        encoder().fit(open_data(tmp_path / "zero.parquet"))


def test_csv_folder_is_read_file_by_file_and_rows_counted_per_file(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    write(folder, rows(), "a.csv")
    write(folder, rows(click=[0, 0, 0, 5]), "b.csv")
    with pytest.raises(DataError, match=r"b\.csv: column 'click', data row 4"):
        encoder().fit(open_data(folder))


def test_fitting_streams_record_batches_with_the_same_result(tmp_path, monkeypatch):
    path = toys.write_parquet(tmp_path / "t.parquet", 300)
    whole = encoder().fit(open_data(path))
    monkeypatch.setattr(data_mod, "READ_ROWS", 7)
    streamed = encoder().fit(open_data(path))
    assert streamed.vocabs == whole.vocabs and streamed.rows == 300
    assert np.allclose(streamed.stats["price"], whole.stats["price"])


def test_state_round_trip_encodes_identically(tmp_path):
    path = toys.write_parquet(tmp_path / "t.parquet", 50)
    enc = encoder().fit(open_data(path))
    again = Encoder.from_state(toys.FEATURES, toys.FUNNEL, enc.state())
    batch = pq.read_table(path).to_batches()[0]
    a, b = enc.encode(batch), again.encode(batch)
    for group in ("inputs", "labels", "masks"):
        left, right = getattr(a, group), getattr(b, group)
        assert left.keys() == right.keys()
        assert all(np.array_equal(left[k], right[k]) for k in left)


def test_shuffled_epochs_depend_on_seed_and_epoch_and_ranks_split_global_batches(tmp_path):
    path = toys.write_parquet(tmp_path / "t.parquet", 103)
    files = open_data(path)
    enc = encoder().fit(files)

    def order(**kw):
        return [
            b.inputs["price"]
            for b in iter_batches(files, enc, 10, shuffle=True, buffer_rows=40, **kw)
        ]

    first = order(seed=1, epoch=1)
    assert [len(x) for x in first] == [10] * 10 + [3]
    assert all(np.array_equal(a, b) for a, b in zip(first, order(seed=1, epoch=1)))
    assert not np.array_equal(np.concatenate(first), np.concatenate(order(seed=1, epoch=2)))
    everything = np.sort(np.concatenate(first))
    plain = np.concatenate([b.inputs["price"] for b in iter_batches(files, enc, 10)])
    assert np.array_equal(everything, np.sort(plain))
    halves = [order(seed=1, epoch=1, rank=r, world=2) for r in (0, 1)]
    whole = [
        b.inputs["price"]
        for b in iter_batches(files, enc, 20, shuffle=True, seed=1, epoch=1, buffer_rows=40)
    ]
    assert len(halves[0]) == len(whole)
    assert all(np.array_equal(np.concatenate([a, b]), w) for a, b, w in zip(*halves, whole))


def test_unshuffled_batches_keep_input_order_across_record_batches(tmp_path, monkeypatch):
    path = toys.write_parquet(tmp_path / "t.parquet", 500)
    files = open_data(path)
    enc = encoder(standardize=False).fit(files)
    monkeypatch.setattr(data_mod, "READ_ROWS", 16)
    prices = np.concatenate([b.inputs["price"].numpy() for b in iter_batches(files, enc, 37)])
    assert np.allclose(prices, pq.read_table(path)["price"].to_numpy())


def test_rows_take_concat_and_map_every_column_alike(tmp_path):
    mask = np.array([True, False, True, True])
    rows = Rows({"x": np.arange(4)}, {"t": np.arange(4) * 10}, {"t": mask})
    both = Rows.concat([rows, rows.take(slice(1, 3))])
    assert len(both) == 6 and both.labels["t"].tolist() == [0, 10, 20, 30, 10, 20]
    picked = both.take(np.array([5, 0]))
    assert picked.inputs["x"].tolist() == [2, 0] and picked.masks["t"].tolist() == [True, True]
    assert picked.map(torch.from_numpy).labels["t"].tolist() == [20, 0]
    path = toys.write_parquet(tmp_path / "t.parquet", 30)
    files = open_data(path)
    batch = next(iter_batches(files, encoder().fit(files), 8))
    moved = batch.to(torch.device("cpu"))
    assert isinstance(moved, Batch) and (moved.size, moved.global_size, len(moved)) == (8, 8, 8)
    assert set(moved.labels) == set(moved.masks) == {"ctr", "ctcvr"}
