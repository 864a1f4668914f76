"""No data loss: outputs appear complete or not at all, and never over a user's files without --force.

:class:`opensim_pinn.outputs.OutputFolder` is tested directly (existing files,
--force, an error in the middle of writing, a failure while moving files into
place, Ctrl-C), :func:`write_storage` for atomic writes, and the
``static-opt`` command end to end (the Static Optimization itself replaced by a
fixed result, so that only the writing is timed; one real OpenSim run checks the
whole chain with relative paths), and a second ``predict`` into a folder of results.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from opensim_pinn import cli, outputs
from opensim_pinn.errors import InputError
from opensim_pinn.outputs import OutputFolder
from opensim_pinn.storage import StorageTable, read_storage, write_storage

from shared_cases import SHARED_DATA

SHARED_ARM26 = SHARED_DATA / "arm26"
NAMES = ["walk_forces.sto", "walk_activations.sto", "timing.json"]


def _table(seed: int) -> StorageTable:
    rng = np.random.default_rng(seed)
    return StorageTable(name="walk", labels=["a", "b"], time=np.arange(5) * 0.01, data=rng.normal(size=(5, 2)))


def _write_all(staging: Path, seed: int) -> None:
    write_storage(staging / NAMES[0], _table(seed))
    write_storage(staging / NAMES[1], _table(seed + 1))
    (staging / NAMES[2]).write_text(json.dumps({"seed": seed}))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_staging_left(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.startswith((outputs.STAGING_PREFIX, "."))]


# ---- OutputFolder ----------------------------------------------------------------------

def test_fresh_folder_gets_every_file(tmp_path):
    out = tmp_path / "a" / "b" / "results"
    with OutputFolder(out, NAMES) as staging:
        _write_all(staging, 1)
        assert not any((out / name).exists() for name in NAMES), "nothing visible before the end"
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES)
    assert json.loads((out / "timing.json").read_text()) == {"seed": 1}
    assert _no_staging_left(tmp_path)


def test_existing_outputs_are_refused_without_force_and_kept(tmp_path):
    out = tmp_path / "results"
    with OutputFolder(out, NAMES) as staging:
        _write_all(staging, 1)
    before = _snapshot(out)
    with pytest.raises(InputError, match="already holds walk_forces.sto.*use --force"):
        OutputFolder(out, NAMES).check()
    with pytest.raises(InputError, match="use --force"):
        with OutputFolder(out, NAMES) as staging:
            pytest.fail("the block must not run")
    assert _snapshot(out) == before
    assert _no_staging_left(tmp_path)


def test_one_existing_output_is_enough_to_refuse(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "timing.json").write_text("mine")
    with pytest.raises(InputError, match="already holds timing.json"):
        OutputFolder(out, NAMES).check()
    assert (out / "timing.json").read_text() == "mine"


def test_force_replaces(tmp_path):
    out = tmp_path / "results"
    (out).mkdir()
    (out / "notes.txt").write_text("not an output: stays")
    with OutputFolder(out, NAMES) as staging:
        _write_all(staging, 1)
    with OutputFolder(out, NAMES, force=True) as staging:
        _write_all(staging, 2)
    assert json.loads((out / "timing.json").read_text()) == {"seed": 2}
    np.testing.assert_array_equal(read_storage(out / NAMES[0]).data, _table(2).data)
    assert (out / "notes.txt").read_text() == "not an output: stays"
    assert _no_staging_left(tmp_path)


@pytest.mark.parametrize("error", [RuntimeError("writer failed"), KeyboardInterrupt()])
def test_error_midway_leaves_no_partial_output_in_a_new_folder(tmp_path, error):
    out = tmp_path / "new" / "results"
    with pytest.raises(type(error)):
        with OutputFolder(out, NAMES) as staging:
            write_storage(staging / NAMES[0], _table(1))
            raise error
    assert not (tmp_path / "new").exists(), "folders created for the outputs are removed again"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("force", [False, True])
def test_error_midway_keeps_existing_files_byte_identical(tmp_path, force):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    if force:
        with OutputFolder(out, NAMES) as staging:
            _write_all(staging, 1)
    before = _snapshot(out)
    with pytest.raises(OSError, match="No space left"):
        with OutputFolder(out, NAMES, force=force) as staging:
            write_storage(staging / NAMES[0], _table(5))
            raise OSError(28, "No space left on device")
    assert _snapshot(out) == before
    assert _no_staging_left(tmp_path)


def test_a_missing_output_commits_nothing(tmp_path):
    out = tmp_path / "results"
    with pytest.raises(RuntimeError, match="outputs not written: timing.json"):
        with OutputFolder(out, NAMES) as staging:
            write_storage(staging / NAMES[0], _table(1))
            write_storage(staging / NAMES[1], _table(2))
    assert not out.exists()


def test_failure_while_moving_into_place_rolls_back(tmp_path, monkeypatch):
    """The commit moves files one by one; if a move fails, the previous files come back."""
    out = tmp_path / "results"
    with OutputFolder(out, NAMES) as staging:
        _write_all(staging, 1)
    before = _snapshot(out)
    real_replace = os.replace
    calls = []

    def flaky_replace(source, target):
        calls.append((Path(source).name, Path(target)))
        if Path(target) == out / NAMES[1] and Path(source).parent.name != ".replaced":
            raise OSError(5, "Input/output error")
        return real_replace(source, target)

    monkeypatch.setattr(outputs.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="Input/output error"):
        with OutputFolder(out, NAMES, force=True) as staging:
            _write_all(staging, 2)
    monkeypatch.undo()
    assert len(calls) >= 4, "the first file was replaced before the failure"
    assert _snapshot(out) == before
    assert _no_staging_left(tmp_path)


def test_files_appearing_during_the_run_are_not_overwritten(tmp_path):
    out = tmp_path / "results"
    with pytest.raises(InputError, match="already holds timing.json"):
        with OutputFolder(out, NAMES) as staging:
            _write_all(staging, 1)
            (out / "timing.json").write_text("written by someone else meanwhile")
    assert (out / "timing.json").read_text() == "written by someone else meanwhile"
    assert sorted(p.name for p in out.iterdir()) == ["timing.json"]


def test_out_is_a_file(tmp_path):
    (tmp_path / "results").write_text("notes")
    with pytest.raises(InputError, match="exists and is not a folder"):
        OutputFolder(tmp_path / "results", NAMES).check()


def test_out_inside_a_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "notes.txt").write_text("notes")
    with pytest.raises(InputError, match=r"notes.txt is a file, not a folder; choose another --out"):
        OutputFolder(tmp_path / "notes.txt" / "run" / "results", NAMES).check()
    assert (tmp_path / "notes.txt").read_text() == "notes"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_in_a_read_only_folder_is_refused_before_any_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(InputError, match="cannot write in .*locked .permission denied."):
        OutputFolder(locked / "results", NAMES).check()


def test_an_output_name_taken_by_a_folder(tmp_path):
    (tmp_path / "results" / "timing.json").mkdir(parents=True)
    with pytest.raises(InputError, match="is a folder where an output file goes"):
        OutputFolder(tmp_path / "results", NAMES, force=True).check()


def test_unwritable_destination_is_an_input_error(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(outputs.tempfile, "mkdtemp", refuse)
    with pytest.raises(InputError, match=r"cannot write the outputs there \(Permission denied\)"):
        with OutputFolder(tmp_path / "new" / "results", NAMES):
            pass
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("name", ["", "sub/file.sto", "..", "/abs.sto"])
def test_output_names_are_plain_file_names(tmp_path, name):
    with pytest.raises(ValueError):
        OutputFolder(tmp_path, [name])


# ---- write_storage is atomic -----------------------------------------------------------

def test_write_storage_failure_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "walk.sto"
    write_storage(path, _table(1))
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("opensim_pinn.storage.os.fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_storage(path, _table(2))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["walk.sto"], "no temporary file left behind"


def test_write_storage_interrupted_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "walk.sto"

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr("opensim_pinn.storage.os.fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_storage(path, _table(2))
    assert list(tmp_path.iterdir()) == []


def test_write_storage_keeps_file_permissions_usual(tmp_path):
    path = tmp_path / "walk.sto"
    write_storage(path, _table(1))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_rewriting_a_read_table_keeps_the_header_consistent(tmp_path):
    """The header lines of a read file (nRows=...) are kept as comments; writing a cut table must
    not repeat the old counts."""
    path = tmp_path / "walk.sto"
    write_storage(path, _table(1))
    table = read_storage(path)
    table.time, table.data = table.time[:3], table.data[:3]
    write_storage(path, table)
    assert read_storage(path).n_frames == 3


# ---- static-opt end to end ---------------------------------------------------------------

@pytest.fixture()
def arm26(in_tmp) -> Path:
    if not SHARED_ARM26.is_dir():
        pytest.skip(f"shared OpenSim data not found at {SHARED_ARM26}")
    for name in ("arm26.osim", "arm26_InverseKinematics.mot", "arm26_Reserve_Actuators.xml"):
        shutil.copy(SHARED_ARM26 / name, in_tmp / name)
    return in_tmp


def _fake_static_optimization(monkeypatch, value: float, fail_after: int | None = None, interrupt=False):
    """Replace OpenSim's Static Optimization (run in a child by static_opt.py) by a fixed result, and
    optionally make the writer fail after ``fail_after`` files."""
    import opensim_pinn.child
    import opensim_pinn.static_opt as static_opt
    import opensim_pinn.trial  # noqa: F401 - imported before the patch: it keeps the real run_in_child

    real_run_in_child = opensim_pinn.child.run_in_child

    def fake_run_in_child(step, function, *args, **kwargs):
        if function is not static_opt.opensim_static_optimization:
            return real_run_in_child(step, function, *args, **kwargs)
        time = np.linspace(0.0, 1.0, 11)
        labels = ["TRIlong", "BIClong", "r_shoulder_elev_reserve"]
        return static_opt.StaticOptimizationResult(
            time=time, labels=labels, activations=np.full((11, 3), value), forces=np.full((11, 3), 10 * value),
            converged=np.ones(11, bool), wall_s=0.01, timing_note="fake")

    monkeypatch.setattr(opensim_pinn.child, "run_in_child", fake_run_in_child)
    if fail_after is not None:
        real_write = static_opt.write_storage
        written = []

        def failing_write(path, table):
            if len(written) == fail_after:
                if interrupt:
                    raise KeyboardInterrupt
                raise OSError(28, "No space left on device", str(path))
            written.append(path)
            real_write(path, table)

        monkeypatch.setattr(static_opt, "write_storage", failing_write)


def _static_opt(*extra) -> list[str]:
    return ["static-opt", "--model", "arm26.osim", "--motion", "arm26_InverseKinematics.mot",
            "--reserves", "arm26_Reserve_Actuators.xml", "--solver", "opensim", "--out", "results", *extra]


def test_second_run_refuses_without_force_and_replaces_with_it(arm26, capfd, monkeypatch):
    _fake_static_optimization(monkeypatch, 0.25)
    assert cli.main(_static_opt()) == 0
    out = arm26 / "results"
    before = _snapshot(out)
    assert len(before) == 3
    capfd.readouterr()

    _fake_static_optimization(monkeypatch, 0.5)
    assert cli.main(_static_opt()) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("opensim-pinn: error: results: already holds")
    assert "--force" in err
    assert _snapshot(out) == before, "the existing results are byte-identical"

    assert cli.main(_static_opt("--force")) == 0
    after = _snapshot(out)
    assert set(after) == set(before) and after != before
    activations = read_storage(out / "arm26_InverseKinematics_StaticOptimization_activation.sto")
    assert np.all(activations.data == 0.5)
    assert _no_staging_left(arm26)


@pytest.mark.parametrize("existing", [False, True])
def test_writer_failure_leaves_no_partial_output(arm26, capfd, monkeypatch, existing):
    out = arm26 / "results"
    if existing:
        _fake_static_optimization(monkeypatch, 0.25)
        assert cli.main(_static_opt()) == 0
    before = _snapshot(out) if existing else None
    capfd.readouterr()
    _fake_static_optimization(monkeypatch, 0.5, fail_after=1)
    code = cli.main(_static_opt("--force"))
    err = capfd.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "No space left on device" in err and "Traceback" not in err
    if existing:
        assert _snapshot(out) == before
    else:
        assert not out.exists()
    assert _no_staging_left(arm26)


def test_ctrl_c_while_writing_leaves_no_partial_output(arm26, capfd, monkeypatch):
    _fake_static_optimization(monkeypatch, 0.5, fail_after=1, interrupt=True)
    assert cli.main(_static_opt()) == 130
    assert capfd.readouterr().err == "opensim-pinn: interrupted; outputs of this run were not written\n"
    assert not (arm26 / "results").exists()


def test_ctrl_c_during_the_demo_says_what_is_left(tmp_path, capfd, monkeypatch):
    """The demo's steps are committed one by one: an interrupted demo says where the finished ones are."""
    import opensim_pinn.demo

    def interrupted_demo(out, **kwargs):
        (Path(out) / "project").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(opensim_pinn.demo, "run_demo", interrupted_demo)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out)]) == 130
    assert capfd.readouterr().err == (f"opensim-pinn: interrupted; the steps it finished are in {out}; "
                                      "'opensim-pinn demo --force' starts it again\n")


def test_real_opensim_static_optimization_with_relative_paths(arm26, capfd):
    """The whole chain once, for real: relative paths reach the OpenSim child process, the results
    land in --out, and nothing else is written (no opensim.log, no setup files)."""
    before = set(os.listdir(arm26))
    assert cli.main(_static_opt("--end", "0.2")) == 0, capfd.readouterr().err
    assert set(os.listdir(arm26)) - before == {"results"}
    forces = read_storage(arm26 / "results" / "arm26_InverseKinematics_StaticOptimization_force.sto")
    assert forces.n_frames == 25 and "BIClong" in forces.labels
    assert np.all(np.isfinite(forces.data))


# ---- predict end to end -----------------------------------------------------------------

@pytest.fixture(scope="module")
def arm26_checkpoint(tmp_path_factory) -> Path:
    """arm26 trained briefly (5 epochs): a real checkpoint for predict."""
    if not SHARED_ARM26.is_dir():
        pytest.skip(f"shared OpenSim data not found at {SHARED_ARM26}")
    from opensim_pinn.train import train_network

    folder = tmp_path_factory.mktemp("arm26_checkpoint")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        train_network(str(SHARED_ARM26 / "arm26.osim"), [str(SHARED_ARM26 / "arm26_InverseKinematics.mot")],
                      reserves=str(SHARED_ARM26 / "arm26_Reserve_Actuators.xml"), epochs=5, out=folder / "run",
                      progress=False)
    return folder / "run" / "checkpoint.pt"


def test_second_predict_refuses_without_force_and_replaces_with_it(arm26, arm26_checkpoint, capfd):
    predict = ["predict", "--checkpoint", str(arm26_checkpoint), "--motion", "arm26_InverseKinematics.mot",
               "--out", "results"]
    assert cli.main(predict + ["--end", "0.5"]) == 0, capfd.readouterr().err
    out = arm26 / "results"
    names = ["arm26_InverseKinematics_forces.sto", "arm26_InverseKinematics_activations.sto",
             "arm26_InverseKinematics_states.sto"]
    before = _snapshot(out)
    assert sorted(before) == sorted(names)
    stats = {name: (out / name).stat() for name in names}
    assert read_storage(out / names[0]).time[-1] == pytest.approx(0.5)
    capfd.readouterr()

    assert cli.main(predict) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("opensim-pinn: error: results: already holds")
    assert "--force" in err and "Traceback" not in err
    assert _snapshot(out) == before, "the existing results are byte-identical"
    assert all((out / name).stat().st_mtime_ns == stats[name].st_mtime_ns for name in names)

    assert cli.main(predict + ["--force"]) == 0, capfd.readouterr().err
    after = _snapshot(out)
    assert sorted(after) == sorted(names)
    assert all(after[name] != before[name] for name in names), "every file is replaced by the whole trial's"
    assert read_storage(out / names[0]).time[-1] == pytest.approx(1.0)
    assert all((out / name).stat().st_ino != stats[name].st_ino for name in names), "freshly written files"
    assert _no_staging_left(arm26)
