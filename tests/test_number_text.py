"""The vectorised number formatter (opensim_pinn.number_text) against Python's own ``'%.{n}g'``.

The bytes must be exactly Python's (so a file written today reads back to the very numbers it
read back to before, at every digit count), and OpenSim's readers must read those files to the
same numbers as ``float()`` of the text.
"""

from __future__ import annotations

import numpy as np
import pytest

from opensim_pinn.number_text import format_columns
from opensim_pinn.storage import FLOAT32_DIGITS, StorageTable, read_storage, write_storage


def python_text(rows: np.ndarray, digits: list[int]) -> bytes:
    """What ``write_storage`` wrote before: one ``%`` format per row."""
    row_format = "\t".join(f"%.{n}g" for n in digits) + "\n"
    return "".join(row_format % tuple(row) for row in rows.tolist()).encode()


def edge_values() -> np.ndarray:
    values = [0.0, -0.0, 1.0, -1.0, 0.1, 0.5, 2.5, 1.25, 0.125, 9.5, 0.95, 9.999999999, 99999999.95, 999999999.5,
              1e-4, 9.9999e-5, 1e-5, 1e16, 1e17, 1e22, 1e23, 1e-22, 1e-23, 1e300, -1e-300, 5e-324,
              1.7976931348623157e308,
              123456789012345678.0, 0.30000000000000004, float(np.float32(0.1)), 1234567885.0, 1.5e-7, 2.0 ** -20,
              2.0 ** 60, np.inf, -np.inf, np.nan]
    for k in range(-25, 25):  # powers of ten, their neighbours, and values that round up to the next decade
        values += [10.0 ** k, np.nextafter(10.0 ** k, 0), np.nextafter(10.0 ** k, np.inf), 9.5 * 10.0 ** k,
                   9.9999999995 * 10.0 ** k, -9.99999999999999999 * 10.0 ** k]
    return np.array(values)


def random_values(rng: np.random.Generator, size: int = 4000) -> list[np.ndarray]:
    return [rng.normal(size=size),
            rng.normal(size=size).astype(np.float32).astype(float),  # the network's outputs
            (10 ** rng.uniform(-8, 8, size)).astype(np.float32).astype(float),
            10 ** rng.uniform(-30, 30, size) * rng.choice([-1, 1], size),  # tiny and huge
            np.rint(rng.normal(size=size) * 10.0 ** (k := rng.integers(0, 12, size))) / 10.0 ** k,  # short decimals
            rng.integers(-10 ** 6, 10 ** 6, size) / 2.0 ** rng.integers(0, 30, size)]  # exact binary ties


@pytest.mark.parametrize("digits", [1, 2, 6, 8, FLOAT32_DIGITS, 10, 15, 16, 17, 20])
def test_bytes_are_pythons(digits):
    """Every value, edge or random, gives exactly ``'%.{digits}g' % value``."""
    rng = np.random.default_rng(digits)
    for values in [edge_values(), *random_values(rng)]:
        column = values.reshape(-1, 1)
        assert format_columns(column, [digits]) == python_text(column, [digits])


def test_columns_of_mixed_digits_and_empty_tables():
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(300, 12)) * 10 ** rng.uniform(-6, 6, (300, 12))
    digits = [17, 9, 9, 17, 17, 9, 3, 9, 17, 9, 9, 9]
    assert format_columns(rows, digits) == python_text(rows, digits)
    assert format_columns(np.zeros((0, 3)), [17, 9, 9]) == b""


def test_read_back_the_same_numbers_in_opensim(tmp_path):
    """A states-like file (float64 coordinates with 17 digits, float32 activations with 9) reads back, in
    ``read_storage``, ``opensim.Storage`` and ``opensim.TimeSeriesTable``, to ``float()`` of Python's text."""
    osim = pytest.importorskip("opensim")
    osim.Logger.setLevelString("error")
    rng = np.random.default_rng(2)
    n = 200
    data = np.column_stack([rng.normal(size=n), rng.normal(size=n) * 1e-7, rng.uniform(0, 1, n).astype(np.float32),
                            rng.uniform(0, 3000, n).astype(np.float32), np.zeros(n)])
    table = StorageTable(name="walk_states", labels=["q", "qd", "a", "f", "zero"], time=np.arange(n) * 0.001,
                         data=data, in_degrees=False)
    digits = [17, 17, FLOAT32_DIGITS, FLOAT32_DIGITS, 17]
    path = tmp_path / "walk_states.sto"
    write_storage(path, table, digits=digits)
    expected = np.array([[float(f"%.{d}g" % v) for d, v in zip([17, *digits], row)]
                         for row in np.column_stack([table.time, data]).tolist()])
    read = read_storage(path)
    np.testing.assert_array_equal(np.column_stack([read.time, read.data]), expected)  # exact: same text
    series = osim.TimeSeriesTable(str(path))
    np.testing.assert_array_equal(np.array(series.getIndependentColumn()), expected[:, 0])
    np.testing.assert_array_equal(series.getMatrix().to_numpy(), expected[:, 1:])
    storage = osim.Storage(str(path))
    assert storage.getSize() == n
    for row in (0, n // 2, n - 1):
        vector = storage.getStateVector(row)
        assert vector.getTime() == expected[row, 0]
        assert [vector.getData().get(j) for j in range(5)] == expected[row, 1:].tolist()
