"""OpenSim Static Optimization setup files (an AnalyzeTool with a StaticOptimization analysis).

:func:`read_setup` reads the setup file that OpenSim's Static Optimization tool
saves and runs (``setup_static_optimization.xml``) without OpenSim, safely
(:func:`opensim_pinn.errors.parse_xml`), into an :class:`AnalyzeSetup`;
:meth:`AnalyzeSetup.options` merges it with the options a user gave (theirs win).

What OpenSim does with such a file, and so what is done here:

- relative paths (``model_file``, ``force_set_files``, ``coordinates_file``,
  ``external_loads_file``, ``results_directory``) are relative to the setup
  file's folder (the AnalyzeTool changes into that folder to load and to write);
  the ExternalLoads file's own ``datafile`` stays relative to the ExternalLoads file;
- the frames are ``initial_time`` to ``final_time`` (defaults 0 and 1 s); the
  analysis's own ``start_time``/``end_time`` are not used by OpenSim's
  StaticOptimization, so not here either;
- ``lowpass_cutoff_frequency_for_coordinates`` defaults to -1 (no filtering),
  ``step_interval`` to 1, ``results_directory`` to the setup's folder;
- the file names of ``static-opt`` start with the tool's ``name``, as OpenSim's do.

What cannot be honoured is an :class:`InputError` naming the element and the file:
an activation exponent other than 2, muscle physiology off, the model's force
set not used or replaced (``replace_force_set`` true removes the muscles), no
(or several, or a switched-off) StaticOptimization analysis, kinematics from a
``states_file``/``speeds_file`` instead of the coordinates, several force set files.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError, one_line, parse_xml, read_input_file

log = logging.getLogger(__name__)

OPTIONS = ("model", "motion", "external_loads", "reserves", "start", "end", "lowpass", "step_interval", "out")
"""The command-line options (argparse names) that a setup file can give."""
ELEMENTS = {"model": "model_file", "motion": "coordinates_file", "external_loads": "external_loads_file",
            "reserves": "force_set_files", "start": "initial_time", "end": "final_time",
            "lowpass": "lowpass_cutoff_frequency_for_coordinates", "step_interval": "step_interval",
            "out": "results_directory"}
"""The setup element behind each option, for messages."""


@dataclass
class AnalyzeSetup:
    """The Static Optimization settings of an OpenSim AnalyzeTool setup file.

    Paths are absolute (resolved from the setup's folder); an empty element is None.

    Attributes
    ----------
    path : Path
        The setup file.
    name : str
        The tool's name (OpenSim's prefix of the result files).
    model : Path or None
    force_set_files : list of Path
    coordinates_file, external_loads_file : Path or None
    states_files : dict of str to str
        ``states_file``, ``speeds_file``, ``pseudo_states_file`` elements that are not empty.
    initial_time, final_time : float
        Seconds.
    lowpass : float
        Hz; negative: no filtering.
    step_interval : int
    results_directory : Path
    """

    path: Path
    name: str
    model: Path | None
    force_set_files: list[Path]
    coordinates_file: Path | None
    external_loads_file: Path | None
    initial_time: float
    final_time: float
    lowpass: float
    step_interval: int
    results_directory: Path
    states_files: dict[str, str] = field(default_factory=dict)

    def options(self, given: dict) -> dict:
        """The command-line options: those in ``given`` that are not None, the rest from the setup.

        Parameters
        ----------
        given : dict
            Option name (see :data:`OPTIONS`) to the user's value, None where not given.

        Returns
        -------
        dict
            Every name of :data:`OPTIONS`, plus ``name``: the result files' prefix
            (the tool's name, or None when the motion does not come from the setup).

        Raises
        ------
        InputError
            A file that the setup names, and that is used, is missing; the
            setup's kinematics or force sets cannot be used as OpenSim would.
        """
        from_setup = {"model": self.model, "motion": self.coordinates_file, "external_loads": self.external_loads_file,
                      "reserves": None, "start": self.initial_time, "end": self.final_time, "lowpass": self.lowpass,
                      "step_interval": self.step_interval, "out": self.results_directory}
        taken = {name for name in OPTIONS if given.get(name) is None}
        if "motion" in taken and self.states_files:
            element, value = next(iter(self.states_files.items()))
            raise InputError(f"{self.path}: <{element}> {one_line(value)}: OpenSim would take the kinematics from it; "
                             "opensim-pinn differentiates the coordinates_file, as OpenSim does when only that is "
                             f"given: empty <{element}>, or give --motion")
        if "reserves" in taken and len(self.force_set_files) > 1:
            raise InputError(f"{self.path}: <force_set_files> lists {len(self.force_set_files)} files; opensim-pinn "
                             "appends one ForceSet: merge them into one file, or give --reserves FILE")
        if "reserves" in taken and self.force_set_files:
            from_setup["reserves"] = self.force_set_files[0]
        merged = {}
        for name in OPTIONS:
            if name not in taken:
                merged[name] = given[name]
                continue
            value = from_setup[name]
            if isinstance(value, Path) and name != "out":
                if not value.is_file():
                    option = f"--{name.replace('_', '-')}"
                    raise InputError(f"{self.path}: <{ELEMENTS[name]}> {value} not found; fix the setup (relative "
                                     f"paths are relative to its folder, as for OpenSim) or give {option}")
            merged[name] = None if value is None else str(value) if isinstance(value, Path) else value
        merged["name"] = self.name if "motion" in taken and self.name else None
        return merged


def read_setup(path: str | Path) -> AnalyzeSetup:
    """Read an OpenSim AnalyzeTool setup with a StaticOptimization analysis (no OpenSim needed).

    Raises
    ------
    InputError
        Not such a setup, or a setting that opensim-pinn cannot honour (see the module docstring).
    """
    path = Path(path)
    hint = "give the setup of OpenSim's Static Optimization tool (an AnalyzeTool with a StaticOptimization analysis)"
    raw = read_input_file(path, "setup file")
    try:
        root = parse_xml(raw)
    except ValueError as reason:
        raise InputError(f"{path}: not an OpenSim setup file (not valid XML: {reason}); {hint}") from None
    tool = root if root.tag == "AnalyzeTool" else root.find("AnalyzeTool") if root.tag == "OpenSimDocument" else None
    if tool is None:
        inner = [e for e in root if isinstance(e.tag, str)] if root.tag == "OpenSimDocument" else [root]
        holds = f"<{str(inner[0].tag)[:60]}>" if inner else "nothing"
        raise InputError(f"{path}: holds {holds}, not <AnalyzeTool>; {hint}")
    folder = path.absolute().parent
    reader = _Reader(path, tool, folder)
    analysis = _static_optimization(path, tool)
    so = _Reader(path, analysis, folder)
    exponent = so.number("activation_exponent", 2.0)
    if exponent != 2.0:
        raise InputError(f"{path}: <activation_exponent> is {exponent:g}; opensim-pinn solves Static Optimization "
                         "with exponent 2 (sum of squared activations): set it to 2")
    if not so.flag("use_muscle_physiology", True):
        raise InputError(f"{path}: <use_muscle_physiology> is false; opensim-pinn solves Static Optimization with "
                         "the muscles' force-length-velocity curves: set it to true")
    if not so.flag("use_model_force_set", True):
        raise InputError(f"{path}: <use_model_force_set> is false (OpenSim would use ideal actuators on every "
                         "coordinate, not the muscles); opensim-pinn estimates the model's muscles: set it to true")
    if reader.flag("replace_force_set", False):
        raise InputError(f"{path}: <replace_force_set> is true: OpenSim would replace the model's forces, its muscles "
                         "included, by the force_set_files; opensim-pinn appends them to the muscles: set it to false")
    step_interval = so.number("step_interval", 1)
    if step_interval != int(step_interval) or step_interval < 1:
        raise InputError(f"{path}: <step_interval> must be a whole number, 1 or more, got {step_interval:g}")
    lowpass = reader.number("lowpass_cutoff_frequency_for_coordinates", -1.0)
    if lowpass == 0:
        raise InputError(f"{path}: <lowpass_cutoff_frequency_for_coordinates> is 0; give a cut-off in Hz above 0, "
                         "or -1 for no filtering")
    initial, final = reader.number("initial_time", 0.0), reader.number("final_time", 1.0)
    if initial >= final:
        raise InputError(f"{path}: <initial_time> {initial:g} s must be before <final_time> {final:g} s")
    states = {name: text for name in ("states_file", "speeds_file", "pseudo_states_file")
              if (text := reader.text(name))}
    return AnalyzeSetup(
        path=path, name=(tool.get("name") or "").strip(), model=reader.path("model_file"),
        force_set_files=[folder / name for name in reader.text("force_set_files").split()],
        coordinates_file=reader.path("coordinates_file"), external_loads_file=reader.path("external_loads_file"),
        initial_time=initial, final_time=final, lowpass=lowpass, step_interval=int(step_interval),
        results_directory=reader.path("results_directory") or folder, states_files=states)


def _static_optimization(path: Path, tool):
    """The one switched-on StaticOptimization of the tool's AnalysisSet."""
    analyses = [e for e in tool.findall("AnalysisSet/objects/*") if isinstance(e.tag, str)]
    found = [e for e in analyses if e.tag == "StaticOptimization"]
    if not found:
        others = f" (it has {', '.join(sorted({str(e.tag) for e in analyses}))})" if analyses else ""
        raise InputError(f"{path}: no StaticOptimization in <AnalysisSet>{others}; give the setup of OpenSim's "
                         "Static Optimization tool")
    if len(found) > 1:
        raise InputError(f"{path}: {len(found)} StaticOptimization analyses in <AnalysisSet>; keep one")
    ignored = sorted({str(e.tag) for e in analyses if e.tag != "StaticOptimization"})
    if ignored:
        log.warning("%s: only the StaticOptimization analysis is run; ignoring %s", path, ", ".join(ignored))
    if not _Reader(path, found[0], path.parent).flag("on", True):
        raise InputError(f"{path}: the StaticOptimization analysis is off (<on> false); set it to true")
    return found[0]


class _Reader:
    """Typed values of an element's child properties, with messages naming the element and the file."""

    def __init__(self, path: Path, element, folder: Path):
        self.file, self.element, self.folder = path, element, folder

    def text(self, name: str) -> str:
        child = self.element.find(name)
        return "" if child is None or child.text is None else child.text.strip()

    def path(self, name: str) -> Path | None:
        text = self.text(name)
        return self.folder / text if text else None

    def number(self, name: str, default: float) -> float:
        text = self.text(name)
        if not text:
            return default
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise InputError(f"{self.file}: <{name}> must be a number, got {one_line(text)}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        text = self.text(name).lower()
        if not text:
            return default
        if text not in ("true", "false"):
            raise InputError(f"{self.file}: <{name}> must be true or false, got {one_line(text)}")
        return text == "true"


__all__ = ["AnalyzeSetup", "read_setup", "OPTIONS"]
