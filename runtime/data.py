"""Training data: Parquet or CSV through pyarrow, encoded into model inputs.

The model's class attributes say what to read: each feature is a column of
the same name (``columns`` maps other names), each supervised task reads its
``label`` column. Reading is streamed in record batches, file by file.

``Encoder`` is the fitted preprocessing of a run: a vocabulary per embedding
table (id 0 is padding, id 1 is "unknown"; seen values get ids 2, 3, ... by
falling count) and mean / standard deviation per dense feature. It is fitted
in one streamed pass over the training data, which also validates every row,
and is saved with the run as JSON.

Encoded rows are a ``Rows`` of plain numpy arrays: ``inputs`` by feature,
``labels`` and ``masks`` (label present) by task; ``mtlc.runtime.batches``
turns them into shuffled tensor batches.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds

from mtlc.runtime import validate
from mtlc.runtime.validate import DataError

__all__ = ["DataError", "DataFiles", "Encoder", "Rows", "open_data"]

PAD, UNKNOWN = 0, 1
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".gz": "csv", ".tsv": "csv"}
READ_ROWS = 65_536

C = TypeVar("C")  # a column: a numpy array or a tensor


@dataclass(frozen=True)
class Rows(Generic[C]):
    """Some rows, column by column: ``inputs`` by feature, ``labels`` and ``masks`` by task.

    Every column holds the same rows, first dimension first; a mask is True
    where the task's label is present. Without labels, ``labels`` and
    ``masks`` are empty.
    """

    inputs: dict[str, C]
    labels: dict[str, C]
    masks: dict[str, C]

    def __len__(self) -> int:
        for columns in (self.inputs, self.labels, self.masks):
            for column in columns.values():
                return len(column)
        return 0

    def map(self, fn: Callable[[C], Any]) -> Rows:
        """``fn`` applied to every column (a subclass keeps its other fields)."""
        return replace(
            self,
            inputs={k: fn(v) for k, v in self.inputs.items()},
            labels={k: fn(v) for k, v in self.labels.items()},
            masks={k: fn(v) for k, v in self.masks.items()},
        )

    def take(self, index) -> Rows:
        """The rows ``index`` selects (a slice or an array of positions) of every column."""
        return self.map(lambda column: column[index])

    @staticmethod
    def concat(parts: list[Rows[np.ndarray]]) -> Rows[np.ndarray]:
        """The rows of ``parts``, one part after another (numpy columns)."""
        if len(parts) == 1:
            return parts[0]

        def joined(group: str) -> dict[str, np.ndarray]:
            names = getattr(parts[0], group)
            return {k: np.concatenate([getattr(p, group)[k] for p in parts]) for k in names}

        return Rows(joined("inputs"), joined("labels"), joined("masks"))


@dataclass(frozen=True)
class DataFiles:
    """The files of one data set, each with its pyarrow format, in sorted order."""

    paths: tuple[Path, ...]
    formats: tuple[object, ...]

    def fragments(self, columns: list[str]) -> Iterator[tuple[Path, pa.RecordBatch]]:
        """Yield ``(file, record batch)`` with ``columns``, streamed file by file."""
        for path, fmt in zip(self.paths, self.formats):
            try:
                dataset = ds.dataset(str(path), format=fmt)
            except (pa.ArrowInvalid, OSError) as err:
                raise DataError(
                    f"{path}: cannot be read as a data file ({_first_line(err)})"
                ) from None
            validate.require_columns(path, dataset.schema, columns)
            try:
                yield from (
                    (path, b) for b in dataset.to_batches(columns=columns, batch_size=READ_ROWS)
                )
            except pa.ArrowInvalid as err:
                raise DataError(f"{path}: {_first_line(err)}") from None


def read_columns(files: DataFiles, names: list[str]) -> dict[str, pa.Array]:
    """Whole columns of the data, rows in input order (file by file, as ``fragments``)."""
    parts: dict[str, list[pa.Array]] = {name: [] for name in names}
    for _, batch in files.fragments(list(dict.fromkeys(names))):
        for name in names:
            parts[name].append(batch.column(name))
    return {name: pa.chunked_array(chunks).combine_chunks() for name, chunks in parts.items()}


def open_data(path: str | Path) -> DataFiles:
    """Find the Parquet and CSV files at ``path`` (a file or a folder).

    Raises:
        DataError: the path does not exist, holds no data file, or a file is empty.
    """
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    files = [p for p in files if _format_name(p) and not p.name.startswith((".", "_"))]
    if not files:
        raise DataError(f"{root}: no Parquet (.parquet) or CSV (.csv, .csv.gz) files found")
    for file in files:
        if file.stat().st_size == 0:
            raise DataError(f"{file}: the file is empty")
    return DataFiles(tuple(files), tuple(_format(p) for p in files))


def _format_name(path: Path) -> str | None:
    suffixes = path.suffixes
    if suffixes[-1:] == [".gz"] and suffixes[-2:-1] not in ([".csv"], [".tsv"]):
        return None
    return _SUFFIXES.get(path.suffix.lower())


def _format(path: Path) -> object:
    if _format_name(path) == "parquet":
        return ds.ParquetFileFormat()
    delimiter = "\t" if ".tsv" in path.suffixes else ","
    return ds.CsvFileFormat(parse_options=pacsv.ParseOptions(delimiter=delimiter))


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


@dataclass
class Encoder:
    """Turns raw columns into model inputs; fitted on the training data.

    Args:
        features: the model's ``features`` (name -> ``rt.Feature``).
        tasks: the model's ``tasks`` (name -> ``rt.Task``).
        columns: feature name -> column name, where they differ.
        standardize: standardise dense features with the training statistics.
        sep: the delimiter of sequence features given as strings.
        fill: how to fill a missing dense value, by feature (``"*"``: every dense feature):
            ``"mean"`` (the training mean) or a number; a feature not named here refuses
            missing values. ``fit`` turns it into ``fills``, the values used.
    """

    features: dict
    tasks: dict
    columns: dict[str, str] = field(default_factory=dict)
    standardize: bool = True
    sep: str = ","
    fill: dict[str, str] = field(default_factory=dict)
    fills: dict[str, list[float]] = field(default_factory=dict)  # fitted: feature -> values
    vocabs: dict[str, list[str]] = field(default_factory=dict)
    stats: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    rows: int = 0  # rows seen by the last ``fit``
    warnings: list[str] = field(default_factory=list)  # what the last ``fit`` found suspicious

    def __post_init__(self) -> None:
        unknown = sorted(set(self.columns) - set(self.features))
        if unknown:
            raise DataError(f"--column names a feature the spec does not have: {unknown[0]!r}")
        dense = {n for n, f in self.features.items() if f.kind == "dense"}
        for name, how in self.fill.items():
            if name != "*" and name not in dense:
                kind = "not a dense feature" if name in self.features else "not a feature"
                raise DataError(f"--fill-missing names {name!r}, {kind} of the spec")
            if how != "mean" and not _is_finite_number(how):
                raise DataError(f"--fill-missing {name}={how}: expected 'mean' or a finite number")
        self._lookup: dict[str, pa.Array] = {}

    # -- what to read ---------------------------------------------------------

    def column(self, feature: str) -> str:
        """The data column read for ``feature``."""
        return self.columns.get(feature, feature)

    def table(self, feature) -> str:
        """The vocabulary (embedding table) a categorical feature uses."""
        return feature.table or feature.name

    def supervised(self) -> list:
        """Tasks with a label of their own."""
        return [t for t in self.tasks.values() if t.label is not None]

    def read_columns(self, labels: bool) -> list[str]:
        names = [self.column(f) for f in self.features]
        if labels:
            names += [t.label for t in self.supervised() if t.label not in names]
        return list(dict.fromkeys(names))

    # -- fitting --------------------------------------------------------------

    def fit(self, data: DataFiles) -> Encoder:
        """Fit vocabularies and dense statistics in one pass, validating every row.

        Raises:
            DataError: a bad row or column, or a vocabulary larger than the spec's ``vocab``.
        """
        counts: dict[str, Counter] = {self.table(f): Counter() for f in self._categorical()}
        seen = dict.fromkeys((f.name for f in self._categorical()), 0)  # values per feature
        sums = {f.name: [0.0, 0.0, 0] for f in self._dense()}
        self.rows = 0
        for path, batch, row0 in self._validated(data, labels=True):
            self.rows += batch.num_rows
            for feature in self._categorical():
                values = self._categorical_values(batch, feature, path, row0)
                seen[feature.name] += len(values) - values.null_count
                counted = pc.value_counts(values.drop_null())
                counts[self.table(feature)].update(
                    dict(
                        zip(
                            counted.field("values").to_pylist(), counted.field("counts").to_pylist()
                        )
                    )
                )
            for feature in self._dense():
                x = self._dense_values(batch, feature, path, row0, fitted=False)
                present = ~np.isnan(x).reshape(len(x), -1).any(1)
                x = x[present]
                acc = sums[feature.name]
                acc[0], acc[1], acc[2] = acc[0] + x.sum(0), acc[1] + (x * x).sum(0), acc[2] + len(x)
        for table, counter in counts.items():
            self.vocabs[table] = [
                v for v, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
            ]
        self.warnings = [
            f"feature {f.name!r}: column {self.column(f.name)!r} holds no value in the training "
            f"data (every row is missing), so every row reads the unknown id: check the column "
            f"(--column {f.name}=COLUMN maps another one)"
            for f in self._categorical()
            if not seen[f.name]
        ]
        self._check_vocab_sizes()
        for name, (s, ss, n) in sums.items():
            how = self._fill_of(name)
            if how is not None and n == 0:
                raise DataError(
                    f"feature {name!r}: column {self.column(name)!r} has no value in the training "
                    "data to fill missing ones with"
                )
            if how is not None:
                size = self.features[name].dim
                self.fills[name] = (
                    np.atleast_1d(s / n).tolist() if how == "mean" else [float(how)] * size
                )
            mean = np.atleast_1d(s / max(n, 1))
            std = np.sqrt(np.maximum(np.atleast_1d(ss / max(n, 1)) - mean**2, 0.0))
            self.stats[name] = (mean.tolist(), np.where(std < 1e-12, 1.0, std).tolist())
        return self

    def check(self, data: DataFiles, labels: bool = True) -> int:
        """Validate every row of ``data`` as ``fit`` does, without fitting; return the row count."""
        rows = 0
        for path, batch, row0 in self._validated(data, labels=labels):
            for feature in self._categorical():
                self._categorical_values(batch, feature, path, row0)
            for feature in self._dense():
                self._dense_values(batch, feature, path, row0)
            rows += batch.num_rows
        return rows

    def _validated(
        self, data: DataFiles, labels: bool
    ) -> Iterator[tuple[Path, pa.RecordBatch, int]]:
        columns = self.read_columns(labels)
        rows: dict[Path, int] = {}
        labelled = dict.fromkeys((t.name for t in self.supervised()), 0)
        for path, batch in data.fragments(columns):
            if batch.num_rows == 0:
                continue
            row0 = rows.get(path, 0)
            if labels:
                for task in self.supervised():
                    validate.label_values(batch, task, path, row0)
                    labelled[task.name] += batch.num_rows - batch.column(task.label).null_count
            rows[path] = row0 + batch.num_rows
            yield path, batch, row0
        for path in data.paths:
            if rows.get(path, 0) == 0:
                raise DataError(f"{path}: the file has no rows")
        for task in self.supervised() if labels else ():
            if labelled[task.name] == 0:
                where = str(data.paths[0]) if len(data.paths) == 1 else "every data file"
                raise DataError(
                    f"{where}: task {task.name!r} has no labelled row: column {task.label!r} "
                    "is missing on every row; check the label column (or the join that made it)"
                )

    def _fill_of(self, feature: str) -> str | None:
        return self.fill.get(feature, self.fill.get("*"))

    def _dense_values(
        self, batch: pa.RecordBatch, feature, path: Path | None, row0: int, fitted: bool = True
    ) -> np.ndarray:
        """A dense feature's values; missing ones filled (``fitted``) or NaN where it may fill."""
        missing = self._fill_of(feature.name) is not None
        x = validate.dense_values(
            batch, feature, self.column(feature.name), path, row0, missing=missing
        )
        if missing and fitted:
            fill = np.asarray(self.fills[feature.name]).reshape(-1)
            x = np.where(np.isnan(x), fill if x.ndim > 1 else fill[0], x)
        return x

    def _check_vocab_sizes(self) -> None:
        for feature in self._categorical():
            needed = len(self.vocabs[self.table(feature)]) + 2
            if needed > feature.vocab:
                raise DataError(
                    f"feature {feature.name!r} (column {self.column(feature.name)!r}): "
                    f"the training data has {needed - 2} distinct values, so the vocabulary "
                    f"needs vocab >= {needed} (ids 0 and 1 are padding and unknown); "
                    f"the spec says vocab={feature.vocab}"
                )

    def _categorical(self) -> list:
        return [f for f in self.features.values() if f.kind in ("sparse", "sequence")]

    def _dense(self) -> list:
        return [f for f in self.features.values() if f.kind == "dense"]

    def _categorical_values(
        self, batch: pa.RecordBatch, feature, path: Path, row0: int
    ) -> pa.Array:
        """The raw values of a categorical feature as strings (flattened for sequences)."""
        column = self.column(feature.name)
        if feature.kind == "sparse":
            return validate.sparse_values(batch, column, path, row0)
        return validate.sequence_lists(batch, column, path, row0, self.sep).flatten()

    # -- encoding -------------------------------------------------------------

    def encode(self, batch: pa.RecordBatch, labels: bool = True) -> Rows[np.ndarray]:
        """Encode one record batch (already validated) into ``Rows`` of numpy arrays.

        Shapes: sparse int64 [n]; sequence int64 [n, maxlen]; dense float32 [n] or [n, dim];
        labels float32 [n] (int64 for multiclass); masks bool [n]. Without ``labels`` the
        rows have inputs only.
        """
        rows: Rows[np.ndarray] = Rows({}, {}, {})
        for feature in self.features.values():
            column = self.column(feature.name)
            if feature.kind == "sparse":
                rows.inputs[feature.name] = self._ids(
                    validate.sparse_values(batch, column, None, 0), feature
                )
            elif feature.kind == "sequence":
                lists = validate.sequence_lists(batch, column, None, 0, self.sep)
                rows.inputs[feature.name] = self._padded(lists, feature)
            else:
                x = self._dense_values(batch, feature, None, 0)
                if self.standardize and feature.name in self.stats:
                    mean, std = self.stats[feature.name]
                    x = (x - np.asarray(mean)) / np.asarray(std)
                rows.inputs[feature.name] = x.astype(np.float32)
        if labels:
            for task in self.supervised():
                rows.labels[task.name], rows.masks[task.name] = validate.label_arrays(batch, task)
        return rows

    def _ids(self, values: pa.Array, feature) -> np.ndarray:
        table = self.table(feature)
        if table not in self._lookup:
            self._lookup[table] = pa.array(self.vocabs.get(table, []), type=pa.string())
        index = pc.index_in(values, value_set=self._lookup[table])
        return pc.fill_null(index, -1).to_numpy(zero_copy_only=False).astype(np.int64) + 2

    def _padded(self, lists: pa.Array, feature) -> np.ndarray:
        """Ids of each list, keeping its last ``maxlen`` items: [n, maxlen].

        Left-aligned and padded with 0.
        """
        offsets = lists.offsets.to_numpy()
        ids = self._ids(lists.values.slice(offsets[0], offsets[-1] - offsets[0]), feature)
        offsets = offsets - offsets[0]
        lengths = np.diff(offsets)
        if lists.null_count:
            lengths[lists.is_null().to_numpy(zero_copy_only=False)] = 0
        keep = np.minimum(lengths, feature.maxlen)
        out = np.zeros((len(lengths), feature.maxlen), dtype=np.int64)
        rows = np.repeat(np.arange(len(lengths)), keep)
        cols = np.arange(keep.sum()) - np.repeat(np.cumsum(keep) - keep, keep)
        out[rows, cols] = ids[np.repeat(offsets[1:] - keep, keep) + cols]
        return out

    # -- saving ---------------------------------------------------------------

    def state(self) -> dict:
        """What a run saves (JSON-ready) to encode new data the same way."""
        return {
            "columns": dict(self.columns),
            "standardize": self.standardize,
            "sep": self.sep,
            "vocabs": self.vocabs,
            "stats": {k: [m, s] for k, (m, s) in self.stats.items()},
            "fill": dict(self.fill),
            "fills": self.fills,
        }

    @classmethod
    def from_state(cls, features: dict, tasks: dict, state: dict) -> Encoder:
        """Rebuild a fitted encoder from ``state()``."""
        encoder = cls(
            features,
            tasks,
            state["columns"],
            state["standardize"],
            state["sep"],
            fill=dict(state.get("fill", {})),
        )
        encoder.fills = {k: list(v) for k, v in state.get("fills", {}).items()}
        encoder.vocabs = {k: list(v) for k, v in state["vocabs"].items()}
        encoder.stats = {k: (m, s) for k, (m, s) in state["stats"].items()}
        return encoder


def _is_finite_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
