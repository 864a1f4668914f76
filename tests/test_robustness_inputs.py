"""Bad input to every command: exit 2, one clear line, nothing written.

Every case copies a project into a temporary folder, breaks one thing, and runs
the command line through :func:`opensim_pinn.cli.main`:
``static-opt`` (both solvers), ``train``, ``predict`` and ``compare`` each get
every bad input that they take (``inspect`` a few). Standard error is captured
at the file-descriptor level (``capfd``), so what OpenSim child processes print
counts too. The checks come before any long work: the path fitter, inverse
dynamics and OpenSim's Static Optimization never run here (they are made to
fail if they are called). ``predict`` and ``compare`` use checkpoints trained
briefly before that, once per project.

The projects: the built-in model, walk and ground reaction forces
(``opensim_pinn.demo_model``; everywhere, with reserves written here) and the arm26
case of ``../shared/data`` (with zero hand loads; when present). The expected
messages name the project's own files, coordinates and bodies through
``{placeholders}`` (:meth:`Spec.values`).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from opensim_pinn import cli, errors
from opensim_pinn.storage import StorageTable, write_storage

from shared_cases import SHARED_DATA

SHARED_ARM26 = SHARED_DATA / "arm26"
SHARED_GAIT = SHARED_DATA / "gait10dof18musc"
COMMANDS = ("static-opt-fast", "static-opt-opensim", "train", "predict", "compare")
"""The commands under test; static-opt once per solver."""
TAKES_MODEL = tuple(command for command in COMMANDS if command != "predict")
"""Commands with --model and --reserves (predict uses the checkpoint's model)."""
TAKES_CHECKPOINT = ("predict", "compare")
OPTIONS_NOT_TAKEN = {"predict": ("--lowpass", "--step-interval"), "compare": ("--lowpass",)}
"""predict and compare filter with the checkpoint's cut-off; predict uses every frame."""

LOADS_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<OpenSimDocument Version="40000">
  <ExternalLoads name="hand_loads">
    <objects>
      <ExternalForce name="hand">
        <applied_to_body>r_ulna_radius_hand</applied_to_body>
        <force_expressed_in_body>ground</force_expressed_in_body>
        <point_expressed_in_body>ground</point_expressed_in_body>
        <force_identifier>hand_force_v</force_identifier>
        <point_identifier>hand_force_p</point_identifier>
      </ExternalForce>
    </objects>
    <datafile>hand_loads.mot</datafile>
  </ExternalLoads>
</OpenSimDocument>
"""


BUILTIN_RESERVES = """<?xml version="1.0"?>
<OpenSimDocument Version="40000"><ForceSet name="builtin_reserves"><objects>
<CoordinateActuator name="reserve_hip"><coordinate>hip_flexion_r</coordinate><optimal_force>1</optimal_force>
</CoordinateActuator>
<CoordinateActuator name="reserve_knee"><coordinate>knee_angle_r</coordinate><optimal_force>1</optimal_force>
</CoordinateActuator>
<CoordinateActuator name="reserve_ankle"><coordinate>ankle_angle_r</coordinate><optimal_force>1</optimal_force>
</CoordinateActuator>
</objects></ForceSet></OpenSimDocument>
"""


@dataclass
class Spec:
    """A project under test: its file names and what the refusals name."""

    name: str
    model: str
    motion: str
    reserves: str
    loads: str
    loads_data: str
    model_name: str
    coordinates: tuple[str, ...]
    n_rows: int
    end: str
    """Last time of the motion (s), as the messages print it."""
    n_muscles: int
    loads_body: str
    other_body: str
    """A body of the model that the message listing the model's bodies names."""
    foreign_body: str
    foreign_coordinate: str
    force_id: str
    point_id: str
    loads_labels: tuple[str, ...]
    foreign_header: tuple[str, ...]
    """Coordinates of another model, for a motion of the wrong model."""

    def values(self) -> dict[str, str]:
        """The ``{placeholders}`` of the expected messages."""
        return {"model_name": self.model_name, "coords": ", ".join(self.coordinates), "col2": self.coordinates[1],
                "last": self.coordinates[-1], "n_rows": str(self.n_rows), "n_columns": str(len(self.coordinates) + 1),
                "n_ragged": str(len(self.coordinates)), "end": self.end, "loads_data": self.loads_data,
                "model_file": self.model, "motion_file": self.motion, "n_muscles": str(self.n_muscles),
                "n_coordinates": str(len(self.coordinates)), "other_body": self.other_body,
                "foreign_body": self.foreign_body, "foreign_coordinate": self.foreign_coordinate,
                "force_id": self.force_id}


SPECS = {
    "builtin": Spec("builtin", "opensim_pinn_lower_limb.osim", "walk_IK.mot", "builtin_reserves.xml", "walk_grf.xml",
                    "walk_grf.mot", "opensim_pinn_lower_limb", ("hip_flexion_r", "knee_angle_r", "ankle_angle_r"),
                    241, "2.4", 9, "calcn_r", "tibia_r", "hand_r", "r_elbow_flex", "ground_force_v",
                    "ground_force_p", ("ground_force_vx", "ground_force_vy", "ground_force_vz", "ground_force_px",
                                       "ground_force_py", "ground_force_pz", "ground_torque_x", "ground_torque_y",
                                       "ground_torque_z"), ("r_shoulder_elev", "r_elbow_flex", "r_wrist_flex")),
    "arm26": Spec("arm26", "arm26.osim", "arm26_InverseKinematics.mot", "arm26_Reserve_Actuators.xml",
                  "hand_loads.xml", "hand_loads.mot", "arm26", ("r_shoulder_elev", "r_elbow_flex"), 121, "1", 6,
                  "r_ulna_radius_hand", "r_humerus", "calcn_r", "knee_angle_r", "hand_force_v", "hand_force_p",
                  tuple(f"hand_force_{kind}{axis}" for kind in "vp" for axis in "xyz"),
                  ("hip_flexion_r", "knee_angle_r")),
}


class Arm26:
    """A project (:data:`SPECS`: the built-in one, or arm26 with hand loads) in a temporary folder.

    ``sources``: where the built-in project's files are (``builtin_project``); arm26 comes from ../shared/data.
    """

    def __init__(self, folder: Path, spec: Spec, sources: dict[str, Path] | None = None):
        self.folder = folder
        self.spec = spec
        self.model = folder / spec.model
        self.motion = folder / spec.motion
        self.reserves = folder / spec.reserves
        self.loads = folder / spec.loads
        self.loads_data = folder / spec.loads_data
        self.checkpoint = folder / "checkpoint.pt"
        self.out = folder / "results"
        if spec.name == "builtin":
            for key, target in (("model", self.model), ("motion", self.motion), ("external_loads", self.loads),
                                ("grf", self.loads_data)):
                shutil.copy(sources[key], target)
            self.reserves.write_text(BUILTIN_RESERVES)
            return
        for target in (self.model, self.motion, self.reserves):
            shutil.copy(SHARED_ARM26 / target.name, target)
        self.loads.write_text(LOADS_XML)
        time = np.linspace(0.0, 1.0, 101)
        labels = list(spec.loads_labels)
        write_storage(self.loads_data, StorageTable(name="hand_loads", labels=labels, time=time,
                                                    data=np.zeros((len(time), len(labels)))))

    def fill(self, fragment: str) -> str:
        """An expected message fragment with this project's names in place of its ``{placeholders}``."""
        for key, value in self.spec.values().items():
            fragment = fragment.replace("{" + key + "}", value)
        return fragment

    def static_opt(self, solver: str, *extra: str, loads: bool = True) -> list[str]:
        argv = ["static-opt", "--model", str(self.model), "--motion", str(self.motion),
                "--reserves", str(self.reserves), "--solver", solver, "--out", str(self.out)]
        if loads:
            argv += ["--external-loads", str(self.loads)]
        return argv + list(extra)

    def argv(self, command: str, *extra: str, loads: bool = True, motions: list[Path] | None = None) -> list[str]:
        """The command line of ``command`` (one of :data:`COMMANDS`) on this case, hand loads included."""
        if command.startswith("static-opt-"):
            return self.static_opt(command.removeprefix("static-opt-"), *extra, loads=loads)
        argv = [command]
        if command in TAKES_CHECKPOINT:
            argv += ["--checkpoint", str(self.checkpoint)]
        if command in TAKES_MODEL:
            argv += ["--model", str(self.model), "--reserves", str(self.reserves)]
        for motion in motions or [self.motion]:
            argv += ["--motion", str(motion)] + (["--external-loads", str(self.loads)] if loads else [])
        if command == "train":
            argv += ["--epochs", "5"]
        return argv + ["--out", str(self.out), *extra]

    def inspect(self, *extra: str) -> list[str]:
        return ["inspect", str(self.model), "--reserves", str(self.reserves), *extra]

    def edit(self, path: Path, old: str, new: str, count: int = 1) -> None:
        text = path.read_text()
        assert old in text, f"{old!r} not in {path.name}"
        path.write_text(text.replace(old, new, count))

    def snapshot(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.folder)): p.read_bytes() for p in sorted(self.folder.rglob("*"))
                if p.is_file()}


def _cli_name(command: str) -> str:
    return "static-opt" if command.startswith("static-opt-") else command


@pytest.fixture(scope="module", params=list(SPECS))
def spec(request) -> Spec:
    """The project under test: the built-in one everywhere, arm26 when ../shared/data has it."""
    if request.param == "arm26" and not SHARED_ARM26.is_dir():
        pytest.skip(f"shared OpenSim data not found at {SHARED_ARM26}")
    return SPECS[request.param]


@pytest.fixture(scope="module")
def sources(spec, request) -> dict[str, Path] | None:
    """The built-in project's files (written once per session), or None for arm26."""
    return request.getfixturevalue("builtin_project") if spec.name == "builtin" else None


@pytest.fixture(scope="module")
def checkpoints(spec, sources, tmp_path_factory) -> dict[str, Path | None]:
    """Checkpoints trained briefly, before any test forbids long work.

    ``hand_loads``: the project trained with its loads (arm26: zero hand loads; built-in:
    its ground reaction forces), the checkpoint of every predict/compare case;
    ``no_loads``: trained without loads; ``other_model``: gait10dof18musc (None when its
    data are absent).
    """
    from opensim_pinn.train import train_network

    folder = tmp_path_factory.mktemp(f"checkpoints_{spec.name}")
    (folder / "project").mkdir()
    case = Arm26(folder / "project", spec, sources)
    trained = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for name, loads in (("hand_loads", [str(case.loads)]), ("no_loads", None)):
            train_network(str(case.model), [str(case.motion)], loads, reserves=str(case.reserves), epochs=5,
                          out=folder / name, progress=False)
            trained[name] = folder / name / "checkpoint.pt"
        trained["other_model"] = None
        if SHARED_GAIT.is_dir():
            train_network(str(SHARED_GAIT / "subject01.osim"), [str(SHARED_GAIT / "subject01_walk_IK.mot")],
                          reserves=str(SHARED_GAIT / "gait10dof18musc_Strong_actuators.xml"), start=0.6, end=0.9,
                          epochs=1, out=folder / "other_model", progress=False)
            trained["other_model"] = folder / "other_model" / "checkpoint.pt"
    return trained
@pytest.fixture()
def arm26(spec, sources, in_tmp, monkeypatch) -> Arm26:
    """The project under test in the current (temporary) folder, with every long step made to fail."""
    import opensim_pinn.child
    import opensim_pinn.paths
    import opensim_pinn.trial

    def no_fitting(*args, **kwargs):
        raise AssertionError("the path fitter ran: input checks must come before any long work")

    def no_inverse_dynamics(*args, **kwargs):
        raise AssertionError("inverse dynamics ran: input checks must come before any long work")

    real_run_in_child = opensim_pinn.child.run_in_child

    def no_child(step, function, *args, **kwargs):
        if step == "reading the model":
            return real_run_in_child(step, function, *args, **kwargs)
        raise AssertionError(f"{step} ran: input checks must come before any long work")

    monkeypatch.setattr(opensim_pinn.paths, "load_or_fit_paths", no_fitting)
    monkeypatch.setattr(opensim_pinn.trial, "prepare_trial", no_inverse_dynamics)
    monkeypatch.setattr(opensim_pinn.trial, "start_inverse_dynamics", no_inverse_dynamics)  # the fast solver's
    monkeypatch.setattr(opensim_pinn.child, "run_in_child", no_child)  # OpenSim's SO (static_opt.py)
    return Arm26(in_tmp, spec, sources)


def assert_refused(capfd, code: int, *fragments: str, exit_code: int = 2) -> str:
    """Exit code 2, exactly one line on stderr starting 'opensim-pinn: error:', no traceback."""
    captured = capfd.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == exit_code, captured.err
    assert len(lines) == 1, f"expected one line on stderr, got:\n{captured.err}"
    line = lines[0]
    assert line.startswith("opensim-pinn: error: "), line
    assert "Traceback" not in captured.err + captured.out
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


@pytest.fixture()
def trained_arm26(checkpoints, arm26) -> Arm26:
    """The project with ``checkpoint.pt``, trained with its loads, next to its files."""
    shutil.copy(checkpoints["hand_loads"], arm26.checkpoint)
    return arm26


def assert_nothing_written(case: Arm26, capfd, argv: list[str], *fragments: str) -> str:
    """``argv`` is refused (see :func:`assert_refused`); no --out, the inputs' folder unchanged."""
    before = case.snapshot()
    line = assert_refused(capfd, cli.main(argv), *map(case.fill, fragments))
    assert not case.out.exists(), "nothing may be written to --out"
    assert case.snapshot() == before, "nothing may be written next to the inputs"
    return line


def _params(commands, cases, skip=lambda command, case: False):
    """(command, case name) pairs, with readable ids."""
    return [pytest.param(command, name, id=f"{command}-{name}") for command in commands for name in sorted(cases)
            if not skip(command, cases[name])]


# ---- motion (Storage) files ------------------------------------------------------------

def _garbage(case):
    case.motion.write_text("This is not a motion.\nJust some words, 1 2 3.\n")


def _binary(case):
    case.motion.write_bytes(bytes(range(256)) * 8)


def _no_endheader(case):
    case.edit(case.motion, "endheader\n", "")


def _edit_row(case, row, edit):
    """Apply ``edit`` to data row ``row`` (0-based) of the motion."""
    lines = case.motion.read_text().splitlines()
    start = lines.index("endheader") + 2
    lines[start + row] = edit(lines[start + row])
    case.motion.write_text("\n".join(lines) + "\n")


def _ragged(case):
    _edit_row(case, 20, lambda line: line.rsplit(None, 1)[0])


def _non_numeric(case):
    _edit_row(case, 20, lambda line: line.rsplit(None, 1)[0] + "\tabc")


def _n_rows(case):
    case.edit(case.motion, f"nRows={case.spec.n_rows}", "nRows=150")


def _n_columns(case):
    case.edit(case.motion, f"nColumns={len(case.spec.coordinates) + 1}", "nColumns=5")


def _set_cell(case, row, value, column=2):
    _edit_row(case, row, lambda line: "\t".join(value if i == column else cell
                                                for i, cell in enumerate(line.split())))


def _nan(case):
    _set_cell(case, 30, "NaN")


def _inf(case):
    _set_cell(case, 30, "-inf")


def _set_time(case, row, value):
    _set_cell(case, row, value, column=0)


def _duplicate_time(case):
    lines = case.motion.read_text().splitlines()
    _set_time(case, 41, lines[lines.index("endheader") + 2 + 40].split()[0])  # the time of row 40


def _decreasing_time(case):
    _set_time(case, 41, "0.1")


def _wrong_columns(case):
    case.edit(case.motion, case.spec.coordinates[-1], "elbow_angle")


def _other_model_motion(case):
    case.edit(case.motion, "\t".join(("time", *case.spec.coordinates)), "\t".join(("time", *case.spec.foreign_header)))


def _degrees_marked_radians(case):
    case.edit(case.motion, "inDegrees=yes", "inDegrees=no")


def _too_short(case):
    lines = case.motion.read_text().splitlines()
    start = lines.index("endheader") + 2
    case.motion.write_text("\n".join(lines[:start + 3]).replace(f"nRows={case.spec.n_rows}", "nRows=3") + "\n")


def _repeated_coordinate(case):
    """A second column of the last coordinate, with other values: which one is the coordinate?"""
    lines = case.motion.read_text().splitlines()
    start = lines.index("endheader") + 1
    lines[start] += "\t" + case.spec.coordinates[-1]
    for row in range(start + 1, len(lines)):
        if lines[row].strip():
            lines[row] += f"\t{row}"
    case.motion.write_text("\n".join(lines) + "\n")


def _repeated_unused_label(case):
    """Two 'marker_x' columns with different values (an IK file with markers appended twice): not needed."""
    lines = case.motion.read_text().splitlines()
    start = lines.index("endheader") + 1
    lines[start] += "\tmarker_x\tmarker_x"
    for row in range(start + 1, len(lines)):
        if lines[row].strip():
            lines[row] += f"\t{row}\t{-row}"
    case.motion.write_text("\n".join(lines) + "\n")


def _motion_missing(case):
    case.motion.unlink()


def _motion_folder(case):
    case.motion.unlink()
    case.motion.mkdir()


MOTION_CASES = {
    "missing": (_motion_missing, ["motion file not found"]),
    "folder": (_motion_folder, ["not found (this is a folder)"]),
    "garbage": (_garbage, ["no 'endheader' line", "not an OpenSim Storage file"]),
    "binary": (_binary, ["binary file"]),
    "no_endheader": (_no_endheader, ["no 'endheader' line"]),
    "ragged": (_ragged, ["row 21 has {n_ragged} values but there are {n_columns} columns"]),
    "non_numeric": (_non_numeric, ["non-numeric value 'abc'", "{last}"]),
    "nan": (_nan, ["NaN or infinite", "{col2}", "row 31"]),
    "inf": (_inf, ["NaN or infinite", "'-inf'"]),
    "decreasing_time": (_decreasing_time, ["time is not strictly increasing at row 42", "it goes back"]),
    "repeated_coordinate": (_repeated_coordinate, ["column '{last}' appears 2 times",
                                                   "coordinate {last} of model {model_name} needs it"]),
    "wrong_columns": (_wrong_columns, ["no column for coordinate(s) {last} of model {model_name}"]),
    "other_model": (_other_model_motion, ["{coords}",
                                          "no column matches a coordinate of this model"]),
    "degrees_marked_radians": (_degrees_marked_radians, ["look like degrees", "inDegrees=yes"]),
    "too_short": (_too_short, ["3 rows; at least 6"]),
}


@pytest.mark.parametrize("command, name", _params(COMMANDS, MOTION_CASES))
def test_bad_motion(trained_arm26, capfd, command, name):
    corrupt, fragments = MOTION_CASES[name]
    corrupt(trained_arm26)
    assert_nothing_written(trained_arm26, capfd, trained_arm26.argv(command), str(trained_arm26.motion), *fragments)


ACCEPTED_MOTION_CASES = {
    "n_rows": (_n_rows, "header says nrows=150 but the file has {n_rows} data rows"),
    "n_columns": (_n_columns, "header says ncolumns=5 but the file has {n_columns} columns"),
    "duplicate_time": (_duplicate_time, "time stamps repeated at t = "),
    "repeated_unused_label": (_repeated_unused_label, "ignoring columns that are not coordinates of {model_name}: marker_x"),
}
"""Quirks that OpenSim reads (tests/test_storage_quirks.py): accepted, with one warning naming the motion."""


@pytest.mark.parametrize("command, name", _params(COMMANDS, ACCEPTED_MOTION_CASES))
def test_motion_quirks_that_opensim_reads_are_accepted(trained_arm26, capfd, caplog, command, name):
    corrupt, warning = ACCEPTED_MOTION_CASES[name]
    warning = trained_arm26.fill(warning)
    corrupt(trained_arm26)
    with caplog.at_level(logging.WARNING):
        if command == "predict":
            assert cli.main(trained_arm26.argv(command)) == 0, capfd.readouterr().err
        else:  # every check passes: the first long step (mocked here) is reached
            with pytest.raises(AssertionError, match="ran: input checks must come before any long work"):
                cli.main(trained_arm26.argv(command))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and warning in r.getMessage()]
    assert warnings and all(str(trained_arm26.motion) in w and "\n" not in w for w in warnings)


@pytest.mark.parametrize("name", sorted(MOTION_CASES))
def test_train_checks_every_motion_before_long_work(trained_arm26, capfd, name):
    """The second of two trials is bad: refused before the first is prepared."""
    first = trained_arm26.folder / "first_trial.mot"
    shutil.copy(trained_arm26.motion, first)
    corrupt, fragments = MOTION_CASES[name]
    corrupt(trained_arm26)
    argv = trained_arm26.argv("train", motions=[first, trained_arm26.motion])
    assert_nothing_written(trained_arm26, capfd, argv, str(trained_arm26.motion), *fragments)


@pytest.mark.parametrize("name", ["garbage", "nan", "wrong_columns", "degrees_marked_radians"])
def test_inspect_bad_motion(arm26, capfd, name):
    corrupt, fragments = MOTION_CASES[name]
    corrupt(arm26)
    before = arm26.snapshot()
    assert_refused(capfd, cli.main(arm26.inspect("--motion", str(arm26.motion))), str(arm26.motion),
                   *map(arm26.fill, fragments))
    assert arm26.snapshot() == before


def _unreadable(monkeypatch, unreadable: Path) -> None:
    """Opening ``unreadable`` fails as a file without read permission does (also for root)."""
    real_open = open

    def refuse(path, *args, **kwargs):
        if Path(path) == unreadable:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(errors, "open", refuse, raising=False)


@pytest.mark.parametrize("command", COMMANDS)
def test_unreadable_motion(trained_arm26, capfd, monkeypatch, command):
    _unreadable(monkeypatch, trained_arm26.motion)
    assert_nothing_written(trained_arm26, capfd, trained_arm26.argv(command), str(trained_arm26.motion),
                           "cannot read the motion file (Permission denied)", "check its permissions")


def test_motion_with_crlf_and_bom_is_accepted(arm26, capfd):
    """A motion saved on Windows (CRLF, UTF-8 byte-order mark) is fine: the run gets as far as the
    existing-output check, which is the first refusal after every input check."""
    arm26.motion.write_bytes(b"\xef\xbb\xbf" + arm26.motion.read_bytes().replace(b"\n", b"\r\n"))
    arm26.out.mkdir()
    (arm26.out / "timing.json").write_text("{}")
    code = cli.main(arm26.static_opt("fast"))
    assert_refused(capfd, code, "already holds timing.json", "--force")


# ---- time window and options -----------------------------------------------------------

WINDOW_CASES = {
    "outside": (["--start", "5", "--end", "6"], ["time window 5 to 6 s is outside the data (0 to {end} s)",
                                                 "choose --start/--end inside it"]),
    "end_after": (["--end", "100"], ["time window 0 to 100 s is outside the data"]),
    "start_before": (["--start", "-2"], ["time window -2 to {end} s is outside the data"]),
    "start_after_end": (["--start", "0.8", "--end", "0.2"], ["--start 0.8 s must be before --end 0.2 s"]),
    "start_equals_end": (["--start", "0.5", "--end", "0.5"], ["must be before --end"]),
    "start_only_after_data": (["--start", "3"], ["time window 3 to {end} s is outside the data"]),
    "start_nan": (["--start", "nan"], ["--start must be a time in seconds"]),
    "step_interval_zero": (["--step-interval", "0"], ["--step-interval must be 1 or more"]),
    "step_interval_negative": (["--step-interval", "-3"], ["--step-interval must be 1 or more", "got -3"]),
    "step_interval_text": (["--step-interval", "abc"], ["argument --step-interval: invalid int value: 'abc'",
                                                        "see 'opensim-pinn {command} --help'"]),
    "step_interval_fraction": (["--step-interval", "1.5"], ["invalid int value: '1.5'"]),
    "lowpass_zero": (["--lowpass", "0"], ["--lowpass must be a cut-off frequency"]),
    "lowpass_inf": (["--lowpass", "inf"], ["--lowpass must be a cut-off frequency"]),
}


def _option_not_taken(command: str, case) -> bool:
    extra, _ = case
    return bool(set(extra) & set(OPTIONS_NOT_TAKEN.get(command, ())))


@pytest.mark.parametrize("command, name", _params(COMMANDS, WINDOW_CASES, skip=_option_not_taken))
def test_bad_window_or_option(trained_arm26, capfd, command, name):
    extra, fragments = WINDOW_CASES[name]
    fragments = [fragment.replace("{command}", _cli_name(command)) for fragment in fragments]
    assert_nothing_written(trained_arm26, capfd, trained_arm26.argv(command, *extra), *fragments)


def test_unknown_solver_is_one_line(arm26, capfd):
    code = _exit_code(lambda: cli.main(arm26.static_opt("slow")))
    assert_refused(capfd, code, "argument --solver: invalid choice: 'slow'")


def test_missing_required_option_is_one_line(arm26, capfd):
    code = _exit_code(lambda: cli.main(["static-opt", "--model", str(arm26.model), "--out", "x"]))
    assert_refused(capfd, code, "the following arguments are required: --motion")


def _exit_code(call) -> int:
    try:
        return call()
    except SystemExit as exit_:  # argparse
        return exit_.code


# ---- model files -----------------------------------------------------------------------

def _no_muscle_model(path: Path) -> None:
    osim = pytest.importorskip("opensim")
    model = osim.Model()
    model.setName("no_muscles")
    body = osim.Body("link", 1.0, osim.Vec3(0), osim.Inertia(0.1))
    model.addBody(body)
    model.addJoint(osim.PinJoint("pin", model.getGround(), body))
    model.finalizeConnections()
    model.printToXML(str(path))
    empty_force_set = ('<?xml version="1.0"?><OpenSimDocument Version="40000"><ForceSet name="none">'
                       '<objects/></ForceSet></OpenSimDocument>')
    return empty_force_set


MODEL_CASES = {
    "missing": (lambda case: case.model.unlink(), ["model file not found; check the path"]),
    "folder": (lambda case: (case.model.unlink(), case.model.mkdir()), ["model file not found (this is a folder)"]),
    "garbage": (lambda case: case.model.write_text("garbage, not a model\n"),
                ["not an OpenSim model file (not valid XML", "give the scaled OpenSim model (.osim)"]),
    "binary": (lambda case: case.model.write_bytes(bytes(range(256)) * 4), ["binary file, not an OpenSim model"]),
    "empty": (lambda case: case.model.write_bytes(b""), ["not valid XML"]),
    "truncated": (lambda case: case.model.write_bytes(case.model.read_bytes()[:5000]), ["not valid XML"]),
    "motion_as_model": (lambda case: shutil.copy(case.motion, case.model), ["not an OpenSim model file"]),
    "other_xml": (lambda case: case.model.write_text("<?xml version='1.0'?><svg><rect/></svg>"),
                  ["its root element is <svg>, not <OpenSimDocument>"]),
    "force_set": (lambda case: shutil.copy(case.reserves, case.model),
                  ["the OpenSim document holds <ForceSet>, not <Model>"]),
    "no_muscles": (lambda case: case.reserves.write_text(_no_muscle_model(case.model)),
                   ["the model has no muscles", "give a model with muscles"]),
}


@pytest.mark.parametrize("command, name", _params(TAKES_MODEL, MODEL_CASES))
def test_bad_model(trained_arm26, capfd, command, name):
    corrupt, fragments = MODEL_CASES[name]
    corrupt(trained_arm26)
    assert_nothing_written(trained_arm26, capfd, trained_arm26.argv(command), str(trained_arm26.model), *fragments)


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_inspect_bad_model(arm26, capfd, name):
    corrupt, fragments = MODEL_CASES[name]
    corrupt(arm26)
    assert_refused(capfd, cli.main(["inspect", str(arm26.model)]), str(arm26.model), *map(arm26.fill, fragments))


def test_unreadable_model(arm26, capfd, monkeypatch):
    _unreadable(monkeypatch, arm26.model)
    assert_refused(capfd, cli.main(["inspect", str(arm26.model)]), "cannot read the model file (Permission denied)")


@pytest.mark.parametrize("command", TAKES_MODEL)
def test_unreadable_model_for_every_command(trained_arm26, capfd, monkeypatch, command):
    _unreadable(monkeypatch, trained_arm26.model)
    assert_nothing_written(trained_arm26, capfd, trained_arm26.argv(command), str(trained_arm26.model),
                           "cannot read the model file (Permission denied)")


# ---- reserve actuators -----------------------------------------------------------------

OTHER_MODEL_RESERVES = """<?xml version="1.0"?>
<OpenSimDocument Version="40000"><ForceSet name="gait"><objects>
<CoordinateActuator name="reserve_other"><coordinate>{foreign_coordinate}</coordinate><optimal_force>1</optimal_force>
</CoordinateActuator></objects></ForceSet></OpenSimDocument>
"""

RESERVES_CASES = {
    "missing": (lambda case: case.reserves.unlink(), ["reserve actuator file not found"]),
    "garbage": (lambda case: case.reserves.write_text("1 2 3\n"), ["not an OpenSim ForceSet file (not valid XML"]),
    "model_not_force_set": (lambda case: shutil.copy(case.model, case.reserves),
                            ["the OpenSim document holds <Model>, not <ForceSet>", "or 'auto'"]),
    "other_model": (lambda case: case.reserves.write_text(case.fill(OTHER_MODEL_RESERVES)),
                    ["CoordinateActuator 'reserve_other' acts on coordinate '{foreign_coordinate}', which is not in"]),
}


@pytest.mark.parametrize("command, name", _params(TAKES_MODEL, RESERVES_CASES))
def test_bad_reserves(trained_arm26, capfd, command, name):
    corrupt, fragments = RESERVES_CASES[name]
    corrupt(trained_arm26)
    assert_nothing_written(trained_arm26, capfd, trained_arm26.argv(command), str(trained_arm26.reserves),
                           *fragments)


@pytest.mark.parametrize("name", sorted(RESERVES_CASES))
def test_inspect_bad_reserves(arm26, capfd, name):
    corrupt, fragments = RESERVES_CASES[name]
    corrupt(arm26)
    assert_refused(capfd, cli.main(arm26.inspect()), str(arm26.reserves), *map(arm26.fill, fragments))


# ---- external loads --------------------------------------------------------------------

def _loads_data_garbage(case):
    case.loads_data.write_text("force data\n1 2 3\n")


def _loads_data_short(case):
    table_time = np.linspace(0.0, 0.5, 51)
    labels = list(case.spec.loads_labels)
    write_storage(case.loads_data, StorageTable(name="short", labels=labels, time=table_time,
                                                data=np.zeros((51, len(labels)))))


def _loads_force_column_twice(case):
    """A second force x column with other values: which one does the ExternalForce apply?"""
    lines = case.loads_data.read_text().splitlines()
    labels = lines.index("endheader") + 1
    lines[labels] += f"\t{case.spec.force_id}x"
    case.loads_data.write_text("\n".join(lines[:labels + 1] + [line + "\t1.5" for line in lines[labels + 1:]]) + "\n")


LOADS_CASES = {
    "xml_missing": (lambda case: case.loads.unlink(), "loads", ["external loads file not found"]),
    "xml_malformed": (lambda case: case.loads.write_text(case.loads.read_text()[:300]), "loads",
                      ["not a valid XML file"]),
    "xml_not_loads": (lambda case: shutil.copy(case.reserves, case.loads), "loads",
                      ["not an OpenSim ExternalLoads file (no <ExternalLoads> element)"]),
    "no_datafile": (lambda case: case.edit(case.loads, f"<datafile>{case.spec.loads_data}</datafile>", ""), "loads",
                    ["names no <datafile>; add <datafile>"]),
    "datafile_missing": (lambda case: case.loads_data.unlink(), "loads",
                         ["its data file", "{loads_data} does not exist; fix <datafile>"]),
    "force_columns_missing": (lambda case: case.edit(case.loads, case.spec.force_id, "grf_v"), "data",
                              ["column 'grf_vx'", "is missing from the data file"]),
    "point_columns_missing": (lambda case: case.edit(case.loads, case.spec.point_id, "cop_"), "data",
                              ["column 'cop_x'", "point_identifier"]),
    "no_force_identifier": (lambda case: case.edit(case.loads,
                                                   f"<force_identifier>{case.spec.force_id}</force_identifier>",
                                                   ""), "loads", ["names no <force_identifier>"]),
    "body_not_in_model": (lambda case: case.edit(case.loads, case.spec.loads_body, case.spec.foreign_body), "loads",
                          ["applied to body '{foreign_body}', which is not in the model", "{other_body}"]),
    "frame_not_in_model": (lambda case: case.edit(case.loads, "<force_expressed_in_body>ground",
                                                  "<force_expressed_in_body>spine"), "loads",
                           ["<force_expressed_in_body> 'spine'"]),
    "data_garbage": (_loads_data_garbage, "data", ["no 'endheader' line"]),
    "data_too_short": (_loads_data_short, "loads",
                       ["its data cover 0 to 0.5 s but the analysed window is 0 to {end} s"]),
    "force_column_twice": (_loads_force_column_twice, "data",
                           ["column '{force_id}x' appears 2 times", "ExternalForce '"]),
}


@pytest.mark.parametrize("command, name", _params(COMMANDS, LOADS_CASES))
def test_bad_external_loads(trained_arm26, capfd, command, name):
    corrupt, named, fragments = LOADS_CASES[name]
    corrupt(trained_arm26)
    path = trained_arm26.loads if named == "loads" else trained_arm26.loads_data
    assert_nothing_written(trained_arm26, capfd, trained_arm26.argv(command), str(path), *fragments)


@pytest.mark.parametrize("command", TAKES_CHECKPOINT)
def test_loads_left_out_for_a_network_trained_with_them(trained_arm26, capfd, command):
    assert_nothing_written(trained_arm26, capfd, trained_arm26.argv(command, loads=False),
                           "trained with ground reaction forces", "give the trial's --external-loads")


@pytest.mark.parametrize("command", TAKES_CHECKPOINT)
def test_loads_given_to_a_network_trained_without(trained_arm26, checkpoints, capfd, command):
    shutil.copy(checkpoints["no_loads"], trained_arm26.checkpoint)
    assert_nothing_written(trained_arm26, capfd, trained_arm26.argv(command),
                           "trained without external loads", "leave out --external-loads")


@pytest.mark.parametrize("command", TAKES_CHECKPOINT)
def test_loads_on_another_body_than_training(trained_arm26, capfd, command):
    """The checkpoint's loads act on one body (the hand, the foot); these on another: refused, naming both."""
    spec = trained_arm26.spec
    trained_arm26.edit(trained_arm26.loads, f">{spec.loads_body}<", f">{spec.other_body}<")
    assert_nothing_written(trained_arm26, capfd, trained_arm26.argv(command),
                           f"they act on {spec.other_body} (forces expressed in ground)",
                           f"they leave out {spec.loads_body} (forces expressed in ground)")


@pytest.mark.parametrize("command", TAKES_CHECKPOINT)
def test_renamed_loads_are_the_same_loads(trained_arm26, capfd, command):
    """The force under another ExternalForce name passes every check."""
    text = trained_arm26.loads.read_text()
    name = text.split('<ExternalForce name="', 1)[1].split('"', 1)[0]
    trained_arm26.edit(trained_arm26.loads, f'name="{name}"', f'name="externalforce_{name}"')
    if command == "predict":
        assert cli.main(trained_arm26.argv(command)) == 0, capfd.readouterr().err
    else:
        with pytest.raises(AssertionError, match="ran: input checks must come before any long work"):
            cli.main(trained_arm26.argv(command))


# ---- checkpoints -----------------------------------------------------------------------

def _torch_file_not_ours(case):
    import torch

    torch.save({"a": 1}, case.checkpoint)


def _newer_checkpoint(case):
    import torch

    state = torch.load(case.checkpoint, weights_only=True)
    torch.save({**state, "format_version": 99}, case.checkpoint)


NOT_A_CHECKPOINT = ["not an opensim-pinn checkpoint", "give the checkpoint.pt written by 'opensim-pinn train'"]

CHECKPOINT_CASES = {
    "missing": (lambda case: case.checkpoint.unlink(), ["checkpoint not found; check the path"]),
    "folder": (lambda case: (case.checkpoint.unlink(), case.checkpoint.mkdir()),
               ["checkpoint not found (this is a folder)"]),
    "garbage": (lambda case: case.checkpoint.write_text("not a network\n"), NOT_A_CHECKPOINT),
    "empty": (lambda case: case.checkpoint.write_bytes(b""), NOT_A_CHECKPOINT),
    "binary": (lambda case: case.checkpoint.write_bytes(bytes(range(256)) * 8), NOT_A_CHECKPOINT),
    "truncated": (lambda case: case.checkpoint.write_bytes(case.checkpoint.read_bytes()[:100_000]),
                  NOT_A_CHECKPOINT),
    "torch_file_not_ours": (_torch_file_not_ours, NOT_A_CHECKPOINT),
    "motion_renamed": (lambda case: shutil.copy(case.motion, case.checkpoint), NOT_A_CHECKPOINT),
    "newer_format": (_newer_checkpoint, ["checkpoint format 99 is newer", "upgrade opensim-pinn"]),
}


@pytest.mark.parametrize("command, name", _params(TAKES_CHECKPOINT, CHECKPOINT_CASES))
def test_bad_checkpoint(trained_arm26, capfd, command, name):
    corrupt, fragments = CHECKPOINT_CASES[name]
    corrupt(trained_arm26)
    assert_nothing_written(trained_arm26, capfd, trained_arm26.argv(command), str(trained_arm26.checkpoint),
                           *fragments)


def _incomplete_checkpoint(case):
    import torch

    torch.save({"format": "opensim-pinn-checkpoint", "format_version": 1}, case.checkpoint)


def _network_does_not_fit(case):
    """The saved weights do not fit the network the checkpoint describes (another version's layout)."""
    import torch

    state = torch.load(case.checkpoint, weights_only=True)
    state["network_state"] = {name: weights[:1] for name, weights in state["network_state"].items()}
    torch.save(state, case.checkpoint)


DAMAGED_CHECKPOINT_CASES = {"incomplete": _incomplete_checkpoint, "network_does_not_fit": _network_does_not_fit}


@pytest.mark.parametrize("command, name", _params(TAKES_CHECKPOINT, DAMAGED_CHECKPOINT_CASES))
def test_damaged_checkpoint(trained_arm26, capfd, command, name):
    DAMAGED_CHECKPOINT_CASES[name](trained_arm26)
    assert_nothing_written(trained_arm26, capfd, trained_arm26.argv(command), str(trained_arm26.checkpoint),
                           "damaged or incompatible opensim-pinn checkpoint", "train it again")


@pytest.mark.parametrize("command", TAKES_CHECKPOINT)
def test_unreadable_checkpoint(trained_arm26, capfd, monkeypatch, command):
    _unreadable(monkeypatch, trained_arm26.checkpoint)
    assert_nothing_written(trained_arm26, capfd, trained_arm26.argv(command), str(trained_arm26.checkpoint),
                           "cannot read the checkpoint (Permission denied)")


OTHER_MODEL_CHECKPOINT = {
    # predict takes the model from the checkpoint: the project's motion does not fit it
    "predict": ["{motion_file}: no column for coordinate(s) pelvis_tilt",
                "which the checkpoint {checkpoint} was trained on",
                "are the motion and the checkpoint of the same model?"],
    "compare": ["{model_file}: the model {model_name} ({n_muscles} muscles, {n_coordinates} unlocked coordinates) "
                "is not the one the checkpoint "
                "{checkpoint} was trained on (Scaled_Model: 18 muscles, 10 coordinates)"],
}


@pytest.mark.parametrize("command", TAKES_CHECKPOINT)
def test_checkpoint_of_another_model(trained_arm26, checkpoints, capfd, command):
    if checkpoints["other_model"] is None:
        pytest.skip(f"shared OpenSim data not found at {SHARED_GAIT}")
    shutil.copy(checkpoints["other_model"], trained_arm26.checkpoint)
    fragments = [fragment.replace("{checkpoint}", str(trained_arm26.checkpoint))
                 for fragment in OTHER_MODEL_CHECKPOINT[command]]
    if command == "predict" and trained_arm26.spec.name == "builtin":
        # the built-in motion's coordinates are some of gait10dof18musc's: the others are missing
        fragments[-1] = "give a motion of that model, or the checkpoint trained on this motion's model"
    assert_nothing_written(trained_arm26, capfd, trained_arm26.argv(command, loads=False), *fragments)


# ---- the device ------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["train", *TAKES_CHECKPOINT])
def test_cuda_without_a_gpu(trained_arm26, capfd, command):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is available here")
    assert_nothing_written(trained_arm26, capfd, trained_arm26.argv(command, "--device", "cuda"),
                           "--device cuda: no CUDA GPU is available", "use --device cpu")


# ---- the output folder -----------------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_out_is_a_file(trained_arm26, capfd, command):
    trained_arm26.out.write_text("my notes")
    assert_refused(capfd, cli.main(trained_arm26.argv(command)), "exists and is not a folder")
    assert trained_arm26.out.read_text() == "my notes"


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_input_leaves_an_existing_out_folder_untouched(trained_arm26, capfd, command):
    trained_arm26.out.mkdir()
    (trained_arm26.out / "notes.txt").write_text("keep me")
    _nan(trained_arm26)
    before = trained_arm26.snapshot()
    assert_refused(capfd, cli.main(trained_arm26.argv(command)), "NaN")
    assert trained_arm26.snapshot() == before


# ---- --debug ---------------------------------------------------------------------------

def test_debug_shows_the_traceback(arm26, capfd):
    arm26.model.write_text("garbage")
    with pytest.raises(errors.InputError, match="not an OpenSim model file"):
        cli.main(["--debug", "inspect", str(arm26.model)])


def test_debug_traceback_from_the_console(arm26):
    arm26.model.write_text("garbage")
    command = [sys.executable, "-m", "opensim_pinn.cli", "inspect", str(arm26.model)]
    root = str(Path(__file__).resolve().parents[1])
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    plain = subprocess.run(command, capture_output=True, text=True, env=environment)
    debug = subprocess.run(command[:3] + ["--debug"] + command[3:], capture_output=True, text=True,
                           env=environment)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "InputError" in debug.stderr


# ---- good input is not refused ---------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_good_inputs_pass_every_check(trained_arm26, capfd, command):
    """The unbroken case is accepted: each refusal above comes from the one thing broken.

    predict runs to the end; the others get as far as their first long step (mocked here).
    """
    if command == "predict":
        assert cli.main(trained_arm26.argv(command)) == 0, capfd.readouterr().err
        written = sorted(p.name for p in trained_arm26.out.iterdir())
        assert len(written) == 3 and written[1].endswith("_forces.sto"), written  # named after the trial
        return
    with pytest.raises(AssertionError, match="ran: input checks must come before any long work"):
        cli.main(trained_arm26.argv(command))


def test_inspect_good_model_and_motion_reach_the_path_fit(arm26, capfd):
    """Every check passes on the real case; the first long step (mocked here) is reached."""
    with pytest.raises(AssertionError, match="the path fitter ran"):
        cli.main(arm26.inspect("--motion", str(arm26.motion)))


def test_inspect_good_model_prints_json(arm26, capfd):
    import json

    assert cli.main(arm26.inspect("--json")) == 0
    captured = capfd.readouterr()
    report = json.loads(captured.out)  # OpenSim's console messages stay off stdout
    assert report["model"]["n_muscles"] == arm26.spec.n_muscles
