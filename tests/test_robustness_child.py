"""A crash in OpenSim's child process becomes a clear error naming the step (exit code 1 in the CLI).

The crashing functions are standard-library functions run through
:func:`run_in_child` exactly as OpenSim work is: ``os.abort`` (SIGABRT, what a
failed C++ assertion does), ``os._exit`` (a hard exit without an answer) and a
read of address 0 through ``ctypes`` (a segmentation fault).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
from pathlib import Path

import pytest

from opensim_pinn import cli
from opensim_pinn.child import run_in_child, run_in_child_timed
from opensim_pinn.errors import InputError, OpenSimCrash

from shared_cases import SHARED_DATA

SHARED_ARM26 = SHARED_DATA / "arm26"


def test_abort_names_the_step_and_the_signal(in_tmp):
    with pytest.raises(OpenSimCrash) as raised:
        run_in_child("inverse dynamics of walk", os.abort)
    message = str(raised.value)
    assert "OpenSim crashed during inverse dynamics of walk" in message
    assert "SIGABRT" in message and "\n" not in message
    assert list(in_tmp.iterdir()) == [], "nothing written in the current folder"


def test_hard_exit_without_an_answer(in_tmp):
    with pytest.raises(OpenSimCrash, match=r"during path fitting \(child process ended with exit code 3 "
                                           r"without an answer\)"):
        run_in_child("path fitting", os._exit, 3)


@pytest.mark.skipif(not hasattr(signal, "SIGSEGV") or os.name != "posix", reason="POSIX signals")
def test_segmentation_fault(in_tmp):
    with pytest.raises(OpenSimCrash, match=r"during reading the model \(child process killed by SIGSEGV"):
        run_in_child("reading the model", ctypes.string_at, 0)


def test_an_exception_in_the_child_is_a_failure_naming_the_step():
    with pytest.raises(OpenSimCrash, match=r"OpenSim failed during static optimization: ValueError: "
                                           r"invalid literal"):
        run_in_child("static optimization", int, "not a number")


def test_input_error_in_the_child_passes_through_unchanged(in_tmp):
    from opensim_pinn.storage import read_storage

    with pytest.raises(InputError, match=r"^absent\.mot: Storage file not found; check the path$"):
        run_in_child("reading the motion", read_storage, "absent.mot")


def test_result_and_time_come_back(in_tmp):
    (in_tmp / "data.txt").write_text("relative")
    text, seconds = run_in_child_timed("reading", Path.read_text, Path("data.txt"))
    assert text == "relative", "relative paths mean the caller's current folder"
    assert 0 <= seconds < 5


def test_a_child_started_early_works_after_the_caller_and_one_left_unused_ends_quietly(in_tmp, capfd):
    from opensim_pinn.child import Child

    (in_tmp / "data.txt").write_text("written after the child started")
    with Child("reading") as child:  # started before its work exists, as the fast solver's inverse dynamics
        (in_tmp / "later.txt").write_text((in_tmp / "data.txt").read_text())
        child.send(Path.read_text, Path("later.txt"))
        assert child.result()[0] == "written after the child started"
    with Child("inverse dynamics") as unused:  # the caller fails before sending (a bad input)
        pass
    assert unused._process.poll() is not None, "the unused child is ended"
    assert capfd.readouterr().err == "", "and says nothing"
    assert sorted(p.name for p in in_tmp.iterdir()) == ["data.txt", "later.txt"]


@pytest.fixture()
def arm26_model(in_tmp, monkeypatch) -> Path:
    if not SHARED_ARM26.is_dir():
        pytest.skip(f"shared OpenSim data not found at {SHARED_ARM26}")
    shutil.copy(SHARED_ARM26 / "arm26.osim", in_tmp / "arm26.osim")
    shutil.copy(SHARED_ARM26 / "arm26_InverseKinematics.mot", in_tmp / "arm26_InverseKinematics.mot")
    monkeypatch.setenv("OPENSIM_PINN_CACHE", str(in_tmp / "cache"))  # no cached model description
    return in_tmp / "arm26.osim"


def _crash_instead(step, function, *args, **kwargs):
    return run_in_child(step, os.abort)


def test_cli_reports_a_crash_reading_the_model_in_one_line(arm26_model, capfd, monkeypatch):
    import opensim_pinn.trial

    monkeypatch.setattr(opensim_pinn.trial, "run_in_child", _crash_instead)
    code = cli.main(["inspect", str(arm26_model)])
    captured = capfd.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 1
    assert lines == [lines[0]] and lines[0].startswith(
        "opensim-pinn: error: OpenSim crashed during reading the model (child process killed by SIGABRT")
    assert "Traceback" not in captured.err


def test_cli_reports_a_crash_of_opensim_static_optimization(arm26_model, capfd, monkeypatch):
    import opensim_pinn.child
    import opensim_pinn.trial  # noqa: F401 - keeps the real run_in_child for reading the model

    real = opensim_pinn.child.run_in_child

    def crash_static_optimization(step, function, *args, **kwargs):
        if step == "OpenSim static optimization":
            return real(step, os.abort)
        return real(step, function, *args, **kwargs)

    monkeypatch.setattr(opensim_pinn.child, "run_in_child", crash_static_optimization)
    code = cli.main(["static-opt", "--model", "arm26.osim", "--motion", "arm26_InverseKinematics.mot",
                     "--reserves", "auto", "--solver", "opensim", "--out", "results"])
    err = capfd.readouterr().err
    assert code == 1, err
    assert err.count("\n") == 1 and "OpenSim crashed during OpenSim static optimization" in err
    assert not (arm26_model.parent / "results").exists()


def test_debug_lets_the_crash_propagate(arm26_model, monkeypatch):
    import opensim_pinn.trial

    monkeypatch.setattr(opensim_pinn.trial, "run_in_child", _crash_instead)
    with pytest.raises(OpenSimCrash, match="SIGABRT"):
        cli.main(["--debug", "inspect", str(arm26_model)])
