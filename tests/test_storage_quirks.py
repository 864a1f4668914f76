"""Files that OpenSim reads are read, with OpenSim's numbers (opensim_pinn.storage).

The quirky files of OpenSim's model collection (``../shared/data``: a header whose
``nRows`` disagrees with the data, RRA's repeated last time stamp, an IK motion
with GRF columns appended twice under the same labels) are read by
``opensim.Storage`` (what AnalyzeTool, inverse dynamics and ExternalLoads read
with), by ``opensim.TimeSeriesTable`` where it reads them, and by
:func:`read_storage`: the times, labels and values must be the same. Small
synthetic files cover each quirk on its own, against whichever of OpenSim's
readers keeps the data intact.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from opensim_pinn.errors import InputError
from opensim_pinn.storage import read_storage

osim = pytest.importorskip("opensim")

# Both readers parse the same decimal text with a correctly rounded strtod: the numbers
# must be identical, bit for bit.
EXACT = 0.0

QUIRK_FILES = {
    # nRows=120 in the header, 119 data rows.
    "crouch1": ("quirks/crouch1.mot", "nrows=120 but the file has 119 data rows"),
    # The last time stamp (2.499 s) appears twice.
    "rra": ("gait10dof18musc/rra/subject_adjusted_Kinematics_q.sto", "time stamps repeated at t = 2.499 s"),
    # SIMM-style header; ground_force_* and ground_torque_* labels appear twice (two feet).
    "long_walk": ("gait2392/long_walk/subject01_walk1_ik.mot", None),
}


@pytest.fixture(autouse=True)
def _quiet_opensim():
    osim.Logger.removeFileSink()
    osim.Logger.setLevelString("error")


def opensim_storage(path):
    """(labels without time, time, data) of ``path`` as ``opensim.Storage`` holds it."""
    storage = osim.Storage(str(path))
    labels = storage.getColumnLabels()
    labels = [labels.get(i) for i in range(labels.size())]
    time, rows = [], []
    for i in range(storage.getSize()):
        vector = storage.getStateVector(i)
        time.append(vector.getTime())
        data = vector.getData()
        rows.append([data.get(j) for j in range(data.size())])
    return labels[1:], np.array(time), np.array(rows), storage


@pytest.mark.parametrize("case", sorted(QUIRK_FILES))
def test_quirk_file_reads_with_opensim_storage_numbers(shared_data, caplog, case):
    relative, warning = QUIRK_FILES[case]
    path = shared_data / relative
    with caplog.at_level(logging.WARNING, logger="opensim_pinn.storage"):
        ours = read_storage(path)
    labels, time, data, storage = opensim_storage(path)
    assert ours.labels == labels
    np.testing.assert_allclose(ours.time, time, rtol=EXACT, atol=EXACT)
    assert ours.data.shape == data.shape
    np.testing.assert_allclose(ours.data, data, rtol=EXACT, atol=EXACT)
    assert ours.in_degrees is storage.isInDegrees()
    assert ours.name == storage.getName()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warning is None:
        assert not warnings
    else:
        assert len(warnings) == 1, "one warning line per file"
        assert warning in warnings[0] and str(path) in warnings[0] and "\n" not in warnings[0]


@pytest.mark.parametrize("case", ["crouch1", "long_walk"])
def test_quirk_file_reads_as_timeseriestable_does(shared_data, case):
    """Where OpenSim's TimeSeriesTable reads the file too, it gets the same numbers."""
    path = shared_data / QUIRK_FILES[case][0]
    ours = read_storage(path)
    table = osim.TimeSeriesTable(str(path))
    assert list(table.getColumnLabels()) == ours.labels
    np.testing.assert_allclose(np.array(table.getIndependentColumn()), ours.time, rtol=EXACT, atol=EXACT)
    np.testing.assert_allclose(table.getMatrix().to_numpy(), ours.data, rtol=EXACT, atol=EXACT)


def test_timeseriestable_refuses_repeated_times_that_storage_reads(shared_data):
    """The RRA file: TimeSeriesTable refuses it, Storage (the tools' reader) keeps the last row at 2.499 s."""
    path = shared_data / QUIRK_FILES["rra"][0]
    with pytest.raises(RuntimeError, match="Timestamp"):
        osim.TimeSeriesTable(str(path))
    ours = read_storage(path)
    lines = path.read_text().splitlines()
    last = np.array(lines[-1].split(), dtype=float)
    assert lines[-2].split()[0] == lines[-1].split()[0] and lines[-2] != lines[-1], "the file's own quirk"
    np.testing.assert_array_equal(ours.data[-1], last[1:])  # the later of the two rows
    assert ours.n_frames == len(lines) - lines.index("endheader") - 3  # rows minus the repeated one


def test_repeated_label_is_refused_only_where_needed(shared_data):
    """long_walk's two 'ground_force_vx' columns (two feet) differ: needed, the column is ambiguous."""
    path = shared_data / QUIRK_FILES["long_walk"][0]
    ours = read_storage(path)
    assert ours.labels.count("ground_force_vx") == 2
    assert ours.labels[ours.column_index("hip_flexion_r")] == "hip_flexion_r"  # unique labels are fine
    with pytest.raises(InputError) as raised:
        ours.column_index("ground_force_vx", needed_for="ExternalForce 'right'")
    message = str(raised.value)
    assert str(path) in message and "'ground_force_vx' appears 2 times" in message
    assert "ExternalForce 'right'" in message and "\n" not in message


# ---- each quirk on its own ------------------------------------------------------------

ROWS = "0\t1\t2\n0.01\t3\t4\n0.02\t5\t6\n0.03\t7\t8\n0.04\t9\t10\n"
GOOD = "walk\nversion=1\nnRows=5\nnColumns=3\ninDegrees=no\nendheader\ntime\ta\tb\n" + ROWS

# file text, which OpenSim reader has the intact data ("storage" or "table"), warning
QUIRKS = {
    "more_rows_stated": (GOOD.replace("nRows=5", "nRows=7"), "storage", "nrows=7 but the file has 5 data rows"),
    # Storage stops after nRows rows; TimeSeriesTable (and this reader) read the data.
    "fewer_rows_stated": (GOOD.replace("nRows=5", "nRows=3"), "table", "Storage reads only the first 3"),
    "rows_not_a_number": (GOOD.replace("nRows=5", "nRows=five"), "table", "nrows='five' is not a whole number"),
    # Storage splits the numbers by nColumns; TimeSeriesTable reads line by line.
    "more_columns_stated": (GOOD.replace("nColumns=3", "nColumns=4"), "table", "ncolumns=4 but the file has 3"),
    "old_header_rows": ("name walk\ndatacolumns 3\ndatarows 9\nrange 0 0.04\nendheader\ntime\ta\tb\n" + ROWS,
                        "storage", "datarows=9 but the file has 5 data rows"),
    "repeated_time": (GOOD.replace("0.02\t5", "0.01\t5"), "storage", "repeated at t = 0.01 s (1 row(s) dropped)"),
    "repeated_first_time_twice": (GOOD.replace("0.01\t3", "0\t3").replace("0.02\t5", "0\t5"), "storage",
                                  "repeated at t = 0 s (2 row(s) dropped)"),
    "repeated_label": (GOOD.replace("time\ta\tb", "time\ta\ta"), "storage", None),
}


def _table_numbers(path):
    table = osim.TimeSeriesTable(str(path))
    return list(table.getColumnLabels()), np.array(table.getIndependentColumn()), table.getMatrix().to_numpy()


@pytest.mark.parametrize("case", sorted(QUIRKS))
def test_quirk_reads_with_opensim_numbers(in_tmp, caplog, case):
    text, reference, warning = QUIRKS[case]
    path = in_tmp / f"{case}.sto"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="opensim_pinn.storage"):
        ours = read_storage(path)
    labels, time, data = opensim_storage(path)[:3] if reference == "storage" else _table_numbers(path)
    assert ours.labels == labels
    np.testing.assert_allclose(ours.time, time, rtol=EXACT, atol=EXACT)
    np.testing.assert_allclose(ours.data, data, rtol=EXACT, atol=EXACT)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == (warning is not None)
    if warning:
        assert warning in warnings[0] and str(path) in warnings[0]


@pytest.mark.parametrize("edit, fragment", [
    (lambda text: text.replace("0.02\t5", "0.005\t5"), "not strictly increasing at row 3"),
    (lambda text: text.replace("0.01\t3\t4", "0.01\t3"), "row 2 has 2 values"),
])
def test_what_opensim_tools_cannot_use_is_still_refused(in_tmp, edit, fragment):
    """Time going back: TimeSeriesTable refuses it, Storage keeps it unsorted (no spline can be fitted).
    A ragged row: TimeSeriesTable refuses it, Storage shifts every later number into the wrong column."""
    path = in_tmp / "bad.sto"
    path.write_text(edit(GOOD))
    with pytest.raises(RuntimeError):
        osim.TimeSeriesTable(str(path))
    with pytest.raises(InputError, match=fragment):
        read_storage(path)
