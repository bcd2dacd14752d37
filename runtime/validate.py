"""Checks on raw data columns, each failure naming the file, the column and the row.

Rows are counted from 1 within each file, the header of a CSV file not counted
("data row 3" is the third record). Every function takes one pyarrow record
batch and the number of rows of the same file before it (``row0``).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DataError",
    "require_columns",
    "sparse_values",
    "sequence_lists",
    "dense_values",
    "label_values",
    "label_arrays",
]


class DataError(ValueError):
    """Bad input data; the message says where (file, column, row) and what is wrong."""


def _where(path: Path | None, column: str, row: int | None = None) -> str:
    place = f"{path}: " if path is not None else ""
    return place + f"column {column!r}" + (f", data row {row}" if row is not None else "")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def require_columns(path: Path, schema: pa.Schema, columns: list[str]) -> None:
    """Raise when one of ``columns`` is not in the file's schema."""
    for column in columns:
        if schema.get_field_index(column) < 0:
            close = difflib.get_close_matches(column, schema.names, n=1)
            hint = (
                f" (did you mean {close[0]!r}? map it with --column NAME={close[0]})"
                if close
                else ""
            )
            raise DataError(f"{path}: column {column!r} is missing{hint}")


def _column(batch: pa.RecordBatch, column: str) -> pa.Array:
    array = batch.column(column)
    return array.dictionary_decode() if pa.types.is_dictionary(array.type) else array


def _is_category(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_boolean(kind)
    )


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _floats(array: pa.Array) -> np.ndarray:
    """Numbers as float64 (nulls as NaN); an integer beyond 2**53 rounds, never raises."""
    return array.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)


def sparse_values(batch: pa.RecordBatch, column: str, path: Path | None, row0: int) -> pa.Array:
    """The column as strings (nulls kept); integers and booleans are categories too."""
    array = _column(batch, column)
    if not _is_category(array.type):
        raise DataError(
            f"{_where(path, column, row0 + 1)}: type {array.type} for a sparse feature; "
            "expected strings or integers"
        )
    return array.cast(pa.string())


def sequence_lists(
    batch: pa.RecordBatch, column: str, path: Path | None, row0: int, sep: str
) -> pa.Array:
    """The column as a list<string> array: list columns as they are, strings split on ``sep``."""
    array = _column(batch, column)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        array = array.cast(pa.string())
        array = pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.string()), array)
        return pc.split_pattern(array, sep)
    if (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)) and _is_category(
        array.type.value_type
    ):
        return array.cast(pa.list_(pa.string()))
    raise DataError(
        f"{_where(path, column, row0 + 1)}: type {array.type} for a sequence feature; "
        "expected a list column or delimited strings"
    )


def dense_values(
    batch: pa.RecordBatch,
    feature,
    column: str,
    path: Path | None,
    row0: int,
    missing: bool = False,
) -> np.ndarray:
    """The column as float64 [n] (dim 1) or [n, dim]; no nulls, NaN or infinities.

    ``missing``: a null (or NaN) value is missing, returned as NaN, for the
    caller to fill (``--fill-missing``); infinities are still refused.
    """
    array = _column(batch, column)
    if feature.dim > 1 and (
        pa.types.is_list(array.type) or pa.types.is_fixed_size_list(array.type)
    ):
        lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
        null = array.is_null().to_numpy(zero_copy_only=False)
        bad = (
            np.asarray(lengths != feature.dim) & ~null
            if missing
            else np.asarray(lengths != feature.dim) | null
        )
        if missing and null.any():
            filled = pa.array([[None] * feature.dim] * len(array), pa.list_(pa.float64()))
            array = pc.if_else(array.is_null(), filled, array.cast(pa.list_(pa.float64())))
        if bad.any():
            raise DataError(
                f"{_where(path, column, row0 + _first(bad) + 1)}: expected {feature.dim} numbers"
            )
        values = array.flatten()
        if not _is_number(values.type):
            raise DataError(
                f"{_where(path, column, row0 + 1)}: type {array.type}; expected numbers"
            )
        x = _floats(values).reshape(-1, feature.dim)
    elif feature.dim == 1 and _is_number(array.type):
        if array.null_count and not missing:
            bad = array.is_null().to_numpy(zero_copy_only=False)
            raise DataError(
                f"{_where(path, column, row0 + _first(bad) + 1)}: the value is missing "
                "(--fill-missing fills it with the training mean or a number)"
            )
        x = _floats(array)
    else:
        expected = "numbers" if feature.dim == 1 else f"lists of {feature.dim} numbers"
        raise DataError(
            f"{_where(path, column, row0 + 1)}: type {array.type} for a dense feature; "
            f"expected {expected}"
        )
    finite = np.isfinite(x).reshape(len(x), -1).all(1)
    if missing:
        finite |= np.isnan(x).reshape(len(x), -1).any(1) & ~np.isinf(x).reshape(len(x), -1).any(1)
    if not finite.all():
        raise DataError(
            f"{_where(path, column, row0 + _first(~finite) + 1)}: NaN or infinite value"
        )
    return x


def label_values(batch: pa.RecordBatch, task, path: Path, row0: int) -> None:
    """Check the task's label column: numbers; 0/1 for binary, 0..classes-1 for multiclass."""
    array = _column(batch, task.label)
    where = _where(path, task.label)
    if not (_is_number(array.type) or pa.types.is_null(array.type)):
        raise DataError(
            f"{where}, data row {row0 + 1}: type {array.type} for the label of task "
            f"{task.name!r}; expected numbers"
        )
    y = _floats(array)
    present = array.is_valid().to_numpy(zero_copy_only=False)
    checks = [(np.isnan(y) & present, "the label is NaN (leave it empty to mask the row)")]
    if task.kind == "binary":
        checks.append(
            (present & ~np.isnan(y) & (y != 0) & (y != 1), "a binary label must be 0 or 1")
        )
    elif task.kind == "multiclass":
        ok = (y >= 0) & (y < task.classes) & (np.floor(y) == y)
        checks.append(
            (
                present & ~np.isnan(y) & ~ok,
                f"a multiclass label must be an integer in [0, {task.classes})",
            )
        )
    else:
        checks.append((present & np.isinf(y), "the label is infinite"))
    for bad, what in checks:
        if bad.any():
            index = _first(bad)
            raise DataError(
                f"{where}, data row {row0 + index + 1}: {what}, got {y[index]:g} "
                f"(task {task.name!r})"
            )


def label_arrays(batch: pa.RecordBatch, task) -> tuple[np.ndarray, np.ndarray]:
    """Labels (float32, int64 for multiclass; 0 where missing) and the mask of present labels."""
    array = _column(batch, task.label)
    mask = array.is_valid().to_numpy(zero_copy_only=False)
    y = pc.fill_null(array.cast(pa.float64(), safe=False), 0.0).to_numpy(zero_copy_only=False)
    return (y.astype(np.int64) if task.kind == "multiclass" else y.astype(np.float32)), mask
