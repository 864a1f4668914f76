"""Storage files (opensim_pinn.storage) against OpenSim's own readers and writers.

Files written by :func:`write_storage` are read back with ``opensim.TimeSeriesTable``
and ``opensim.Storage``; files written by OpenSim (``STOFileAdapter``) and in the old
OpenSim 3 header format are read with :func:`read_storage`; every malformed file
raises :class:`InputError` with a one-line message naming the file (the quirks that
OpenSim reads are read: tests/test_storage_quirks.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opensim_pinn.errors import InputError
from opensim_pinn.storage import StorageTable, read_storage, to_radians, write_storage

osim = pytest.importorskip("opensim")

# write_storage prints 10 significant digits ("%.10g"): a value comes back within
# half a unit of the 10th digit, i.e. 5e-10 relative (1e-9 leaves room for rounding).
WRITE_RTOL = 1e-9
# OpenSim's STOFileAdapter prints doubles with enough digits to round-trip (17 significant),
# and read_storage parses them with float(): the values must come back bit-for-bit or
# within one ulp.
OPENSIM_RTOL = 4 * np.finfo(float).eps


@pytest.fixture(autouse=True)
def _quiet_opensim():
    osim.Logger.removeFileSink()
    osim.Logger.setLevelString("error")


def _table(n_frames: int = 7, seed: int = 0) -> StorageTable:
    rng = np.random.default_rng(seed)
    time = np.round(np.arange(n_frames) * 0.01 + 0.5, 10)
    data = np.column_stack([rng.uniform(-90, 90, n_frames),       # a rotation in degrees
                            rng.uniform(-1, 1, n_frames) * 1e-3,  # a small translation
                            rng.uniform(-1, 1, n_frames) * 1e5,   # a large force
                            np.full(n_frames, 1.0 / 3.0)])        # not exact in decimal
    return StorageTable(name="walk_trial", labels=["knee_angle_r", "pelvis_tx", "ground_force_vy", "third"],
                        time=time, data=data, in_degrees=True,
                        comments=["Written by the opensim-pinn tests."])


# ---- our writer, OpenSim's reader -----------------------------------------------------

def test_written_file_reads_in_opensim_timeseriestable(in_tmp):
    table = _table()
    path = in_tmp / "walk.mot"
    write_storage(path, table)
    read = osim.TimeSeriesTable(str(path))
    assert list(read.getColumnLabels()) == table.labels
    np.testing.assert_allclose(np.array(read.getIndependentColumn()), table.time, rtol=WRITE_RTOL, atol=0)
    np.testing.assert_allclose(read.getMatrix().to_numpy(), table.data, rtol=WRITE_RTOL, atol=0)
    assert read.getTableMetaDataAsString("inDegrees") == "yes"
    assert int(read.getTableMetaDataAsString("nRows")) == table.n_frames
    assert int(read.getTableMetaDataAsString("nColumns")) == len(table.labels) + 1  # time included


def test_written_file_reads_in_opensim_storage(in_tmp):
    """``opensim.Storage`` is what OpenSim's tools (AnalyzeTool, ID) read coordinates with."""
    table = _table()
    table.in_degrees = False
    path = in_tmp / "walk.sto"
    write_storage(path, table)
    storage = osim.Storage(str(path))
    assert storage.getName() == table.name
    assert storage.isInDegrees() is False
    assert storage.getSize() == table.n_frames
    labels = storage.getColumnLabels()
    assert [labels.get(i) for i in range(labels.size())] == ["time", *table.labels]
    for row in (0, table.n_frames - 1):
        vector = storage.getStateVector(row)
        assert math.isclose(vector.getTime(), table.time[row], rel_tol=WRITE_RTOL)
        values = [vector.getData().get(j) for j in range(len(table.labels))]
        np.testing.assert_allclose(values, table.data[row], rtol=WRITE_RTOL, atol=0)


def test_write_then_read_round_trip(in_tmp):
    table = _table(n_frames=25, seed=3)
    path = in_tmp / "round.sto"
    write_storage(path, table)
    read = read_storage(path)
    assert read.name == table.name
    assert read.labels == table.labels
    assert read.in_degrees is True
    assert read.comments[-1] == "Written by the opensim-pinn tests."
    np.testing.assert_allclose(read.time, table.time, rtol=WRITE_RTOL, atol=0)
    np.testing.assert_allclose(read.data, table.data, rtol=WRITE_RTOL, atol=0)
    np.testing.assert_array_equal(read.column("pelvis_tx"), read.data[:, 1])
    assert not list(in_tmp.glob(".*partial")), "the temporary file must be renamed into place"


def test_write_rejects_shape_mismatch(in_tmp):
    table = _table()
    table.data = table.data[:, :2]
    with pytest.raises(ValueError, match="does not match"):
        write_storage(in_tmp / "bad.sto", table)
    assert not (in_tmp / "bad.sto").exists()


# ---- OpenSim's writer, our reader -----------------------------------------------------

def test_reads_file_written_by_opensim_with_state_names(in_tmp):
    """OpenSim 4 writes state names (``/jointset/<joint>/<coordinate>/value``) as labels."""
    labels = ["/jointset/r_shoulder/r_shoulder_elev/value", "/jointset/r_elbow/r_elbow_flex/value",
              "/jointset/r_elbow/r_elbow_flex/speed", "/forceset/BIClong/activation"]
    rng = np.random.default_rng(1)
    time = np.linspace(0.0, 0.49, 50)
    data = rng.standard_normal((50, 4)) * [1.0, 2.0, 10.0, 0.3] + [0, 0, 0, 0.5]
    table = osim.TimeSeriesTable()
    table.setColumnLabels(labels)
    for t, row in zip(time, data):
        table.appendRow(float(t), osim.RowVector(row.tolist()))
    table.addTableMetaDataString("inDegrees", "no")
    path = in_tmp / "states.sto"
    osim.STOFileAdapter.write(table, str(path))

    read = read_storage(path)
    assert read.labels == labels
    assert read.in_degrees is False
    np.testing.assert_allclose(read.time, time, rtol=OPENSIM_RTOL, atol=0)
    np.testing.assert_allclose(read.data, data, rtol=OPENSIM_RTOL, atol=0)
    # OpenSim's header (DataType=, version=, OpenSimVersion=) is kept as comments.
    assert any(line.startswith("OpenSimVersion") for line in read.comments)


def test_reads_degrees_flag_written_by_opensim(in_tmp):
    table = osim.TimeSeriesTable()
    table.setColumnLabels(["hip_flexion_r", "pelvis_ty"])
    for i in range(4):
        table.appendRow(0.01 * i, osim.RowVector([10.0 * i, 0.9]))
    table.addTableMetaDataString("inDegrees", "yes")
    path = in_tmp / "ik.mot"
    osim.STOFileAdapter.write(table, str(path))
    read = read_storage(path)
    assert read.in_degrees is True
    assert read.in_degrees == osim.Storage(str(path)).isInDegrees()


OLD_HEADER = ("name old_walk\ndatacolumns 3\ndatarows 3\nrange 0 0.02\nendheader\n"
              "time\tknee_angle_r\tpelvis_tx\n"
              "0\t10\t0.5\n0.01\t20\t0.6\n0.02\t30\t0.7\n")


def test_reads_opensim3_header(in_tmp):
    path = in_tmp / "old.mot"
    path.write_text(OLD_HEADER)
    read = read_storage(path)
    storage = osim.Storage(str(path))
    assert read.labels == ["knee_angle_r", "pelvis_tx"]
    assert storage.getSize() == read.n_frames == 3
    tol = 0.0  # short decimals in the file, parsed by the same strtod in both readers
    np.testing.assert_allclose(read.time, [0.0, 0.01, 0.02], rtol=0, atol=tol)
    np.testing.assert_allclose(read.data, [[10, 0.5], [20, 0.6], [30, 0.7]], rtol=0, atol=tol)
    assert "datarows 3" in read.comments


def test_opensim3_header_counts_that_disagree_warn(in_tmp, caplog):
    """OpenSim reads the data whatever the counts say (tests/test_storage_quirks.py compares the numbers)."""
    path = in_tmp / "old.mot"
    for old, new in (("datarows 3", "datarows 4"), ("datacolumns 3", "datacolumns 2")):
        path.write_text(OLD_HEADER.replace(old, new))
        caplog.clear()
        read = read_storage(path)
        assert read.n_frames == 3 and read.labels == ["knee_angle_r", "pelvis_tx"]
        assert new.replace(" ", "=") in caplog.text and str(path) in caplog.text


def test_opensim3_header_is_in_degrees_as_opensim_reads_it(in_tmp):
    """opensim.Storage (what AnalyzeTool and InverseDynamicsTool read) treats a file without a
    'version' line as OpenSim 3 / SIMM and assumes degrees, even when it says inDegrees=no."""
    path = in_tmp / "old.mot"
    path.write_text(OLD_HEADER)
    assert osim.Storage(str(path)).isInDegrees() is True
    assert read_storage(path).in_degrees is True
    path.write_text(OLD_HEADER.replace("range 0 0.02\n", "range 0 0.02\ninDegrees=no\n"))
    assert osim.Storage(str(path)).isInDegrees() is True
    assert read_storage(path).in_degrees is True


def test_opensim3_name_line(in_tmp):
    """OpenSim names the table after the 'name' header line of OpenSim 3 files."""
    path = in_tmp / "old.mot"
    path.write_text(OLD_HEADER)
    assert read_storage(path).name == osim.Storage(str(path)).getName() == "old_walk"


def test_version1_file_without_degrees_flag_is_radians_like_opensim(in_tmp):
    path = in_tmp / "v1.sto"
    path.write_text(OLD_HEADER.replace("name old_walk\ndatacolumns 3\ndatarows 3\nrange 0 0.02\n",
                                       "walk\nversion=1\nnRows=3\nnColumns=3\n"))
    assert read_storage(path).in_degrees is osim.Storage(str(path)).isInDegrees() is False


# ---- to_radians -----------------------------------------------------------------------

def test_to_radians_converts_only_rotational_columns():
    table = _table()
    out = to_radians(table, {"knee_angle_r", "not_a_column"})
    tol = 1e-15  # rad; np.deg2rad is one multiplication, rounded once
    np.testing.assert_allclose(out[:, 0], table.data[:, 0] * np.pi / 180, rtol=0, atol=tol)
    np.testing.assert_array_equal(out[:, 1:], table.data[:, 1:])
    assert out is not table.data and table.data[0, 0] != out[0, 0], "the table itself is left unchanged"
    table.in_degrees = False
    np.testing.assert_array_equal(to_radians(table, {"knee_angle_r"}), table.data)


# ---- malformed files ------------------------------------------------------------------

GOOD = "walk\nversion=1\nnRows=3\nnColumns=3\ninDegrees=no\nendheader\ntime\ta\tb\n0\t1\t2\n0.01\t3\t4\n0.02\t5\t6\n"

MALFORMED = {
    "no_endheader": GOOD.replace("endheader\n", ""),
    "ragged_row": GOOD.replace("0.01\t3\t4", "0.01\t3"),
    "non_numeric": GOOD.replace("0.01\t3\t4", "0.01\tthree\t4"),
    "nan": GOOD.replace("0.01\t3\t4", "0.01\tnan\t4"),
    "inf": GOOD.replace("0.01\t3\t4", "0.01\t3\t-inf"),
    "decreasing_time": GOOD.replace("0.02\t5\t6", "0.005\t5\t6"),
    "empty_data": GOOD.replace("nRows=3", "nRows=0").split("0\t1\t2")[0],
    "no_labels": GOOD.split("time")[0],
    "first_column_not_time": GOOD.replace("time\ta\tb", "t\ta\tb"),
}

EXPECTED_MESSAGE = {
    "no_endheader": "endheader", "ragged_row": "row 2 has 2 values", "non_numeric": "'three'",
    "nan": "NaN", "inf": "infinite", "decreasing_time": "not strictly increasing",
    "empty_data": "no data rows", "no_labels": "no column labels", "first_column_not_time": "must be 'time'",
}
# Header counts that disagree with the data, repeated times and repeated labels are read as
# OpenSim reads them: tests/test_storage_quirks.py.


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_raises_input_error_naming_it(in_tmp, case):
    path = in_tmp / f"{case}.sto"
    path.write_text(MALFORMED[case])
    with pytest.raises(InputError) as raised:
        read_storage(path)
    message = str(raised.value)
    assert str(path) in message
    assert "\n" not in message, "one-line message"
    assert EXPECTED_MESSAGE[case] in message


def test_missing_file(in_tmp):
    path = in_tmp / "absent.mot"
    with pytest.raises(InputError, match="not found") as raised:
        read_storage(path)
    assert str(path) in str(raised.value)


def test_folder_is_not_a_file(in_tmp):
    with pytest.raises(InputError, match="not found"):
        read_storage(in_tmp)


def test_binary_file(in_tmp):
    path = in_tmp / "model.mot"
    path.write_bytes(GOOD.encode()[:20] + b"\x00\x01\x02\xff" * 50)
    with pytest.raises(InputError, match="binary") as raised:
        read_storage(path)
    assert str(path) in str(raised.value)


def test_latin1_comment_and_crlf_are_read(in_tmp):
    path = in_tmp / "windows.sto"
    path.write_bytes(GOOD.replace("inDegrees=no\n", "inDegrees=no\nSujet \xe9t\xe9\n").encode("latin-1")
                     .replace(b"\n", b"\r\n"))
    read = read_storage(path)
    assert read.labels == ["a", "b"] and read.n_frames == 3
    assert read.data[2, 1] == 6.0


# ---- small fuzz test ------------------------------------------------------------------

finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=12),
       steps=st.lists(st.integers(min_value=1, max_value=1000), min_size=12, max_size=12),
       in_degrees=st.booleans())
def test_fuzz_round_trip(tmp_path, values, steps, in_degrees):
    data = np.array(values)
    time = np.cumsum(steps[:len(data)]) / 1000  # whole milliseconds: short decimals, printed exactly
    table = StorageTable(name="fuzz", labels=["x", "y", "z"], time=time, data=data, in_degrees=in_degrees)
    path = tmp_path / "fuzz.sto"
    write_storage(path, table)
    read = read_storage(path)
    np.testing.assert_array_equal(read.time, time)
    # 10 significant digits printed: relative error <= 5e-10; zero stays zero.
    np.testing.assert_allclose(read.data, data, rtol=WRITE_RTOL, atol=0)
    assert read.in_degrees is in_degrees


def test_numbers_are_read_as_python_float_reads_them(in_tmp):
    """The whole-file reader (numpy's C parser) gives exactly ``float()`` of every cell: any number of digits,
    leading signs and zeros, a bare point, exponents down to the subnormals."""
    rng = np.random.default_rng(4)
    values = rng.normal(size=700) * 10.0 ** rng.uniform(-300, 300, 700)
    cells = ["1.", ".5", "-.5e-3", "+3", "1E5", "0001.5", "4.9406564584124654e-324", "2.4703282292062328e-324",
             "0." + "0" * 300 + "1", "9" * 300, "1.7976931348623157e308"]
    cells += [f"%.{d}g" % v for v, d in zip(values.tolist(), rng.integers(1, 26, values.size).tolist())]
    cells = cells[: len(cells) - len(cells) % 6]
    rows = ["\t".join([str(i), *cells[6 * i:6 * i + 6]]) for i in range(len(cells) // 6)]
    path = in_tmp / "numbers.sto"
    path.write_text("numbers\nversion=1\ninDegrees=no\nendheader\ntime\t" + "\t".join("abcdef") + "\n"
                    + "\n".join(rows) + "\n")
    np.testing.assert_array_equal(read_storage(path).data, np.array([float(c) for c in cells]).reshape(-1, 6))
