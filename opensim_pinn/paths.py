"""Muscle-tendon paths as polynomials of the coordinates, fitted by OpenSim.

OpenSim 4.5+ ``PolynomialPathFitter`` samples coordinates around a reference
motion, computes each muscle's length and moment arms, and fits a
``MultivariatePolynomialFunction`` of the coordinates the muscle spans. This
module runs it (in a child process), reads the coefficients it writes, and
measures the fit against OpenSim on the frames of a trial. The torch
evaluation lives in :mod:`opensim_pinn.muscle`.

``MultivariatePolynomialFunction`` orders its terms by nested loops over the
exponents, first coordinate outermost, total degree <= order:
for 2 coordinates and order 2, (0,0) (0,1) (0,2) (1,0) (1,1) (2,0).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, OpenSimCrash
from .storage import write_atomically

log = logging.getLogger(__name__)

FITTERS = ("auto", "opensim", "lstsq")
"""Values of :attr:`PathFitSettings.fitter`."""


@dataclass(frozen=True)
class PathFitSettings:
    """Settings of OpenSim's PolynomialPathFitter.

    Attributes
    ----------
    max_order : int
        Highest polynomial degree tried (the fitter picks the lowest that meets the tolerances).
    samples_per_frame : int
        Random poses sampled around each reference frame.
    max_frames : int
        Reference frames used at most (the motion is subsampled evenly; cost grows with frames).
    sampling_range_deg : float
        Half-width of the sampling box around each frame, degrees (the fitter converts it to
        radians for every coordinate: translations get +/- that many "radians" of metres).
    length_tolerance, moment_arm_tolerance : float
        RMS tolerances (m) at which the fitter stops raising the order.
    fitter : {"auto", "opensim", "lstsq"}
        "opensim": OpenSim's PolynomialPathFitter; "lstsq": the same polynomials fitted by
        least squares to OpenSim's lengths and moment arms
        (:mod:`opensim_pinn.path_lstsq`); "auto": the fitter, and least squares for the
        muscles it leaves out or for the whole model when it fails.
    """

    max_order: int = 8
    samples_per_frame: int = 10
    max_frames: int = 40
    sampling_range_deg: float = 15.0
    length_tolerance: float = 1e-4
    moment_arm_tolerance: float = 1e-4
    fitter: str = "auto"

    def __post_init__(self) -> None:
        if self.fitter not in FITTERS:
            raise InputError(f"path fitter must be one of {', '.join(FITTERS)}, got {self.fitter!r}")

    def key(self) -> str:
        return repr(self)


@dataclass
class PathPolynomial:
    """One muscle's length polynomial: ``length = sum_k coefficients[k] * prod_j q[coordinates[j]] ** exponents[k, j]``."""

    muscle: str
    coordinates: list[str]
    exponents: np.ndarray  # (n_terms, n_coordinates), int
    coefficients: np.ndarray  # (n_terms,), metres

    def length(self, q: np.ndarray) -> np.ndarray:
        """Length (m), shape ``(n_frames,)``, from ``q`` of shape ``(n_frames, len(coordinates))``."""
        terms = np.prod(q[:, None, :] ** self.exponents[None], axis=2)
        return terms @ self.coefficients

    def to_dict(self) -> dict:
        """Plain lists (JSON, and torch files loaded with ``weights_only``)."""
        return {"muscle": self.muscle, "coordinates": list(self.coordinates),
                "exponents": np.asarray(self.exponents).tolist(),
                "coefficients": np.asarray(self.coefficients).tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "PathPolynomial":
        """Inverse of :meth:`to_dict`."""
        return cls(muscle=data["muscle"], coordinates=list(data["coordinates"]),
                   exponents=np.array(data["exponents"], dtype=int).reshape(-1, len(data["coordinates"])),
                   coefficients=np.array(data["coefficients"], dtype=float))


def term_exponents(dimension: int, order: int) -> np.ndarray:
    """Exponents of ``MultivariatePolynomialFunction`` terms, shape (n_terms, dimension)."""
    out: list[tuple[int, ...]] = []

    def recurse(prefix: tuple[int, ...], remaining: int) -> None:
        if len(prefix) == dimension:
            out.append(prefix)
            return
        for exponent in range(remaining + 1):
            recurse(prefix + (exponent,), remaining - exponent)

    recurse((), order)
    return np.array(out, dtype=int).reshape(-1, dimension)


def read_path_set(xml_path: str | Path) -> list[PathPolynomial]:
    """Read the ``*_FunctionBasedPathSet.xml`` written by PolynomialPathFitter."""
    polynomials = []
    for path in ElementTree.parse(xml_path).getroot().iter("FunctionBasedPath"):
        function = path.find("length_function/MultivariatePolynomialFunction")
        coefficients = np.array(function.find("coefficients").text.split(), dtype=float)
        dimension, order = int(function.find("dimension").text), int(function.find("order").text)
        exponents = term_exponents(dimension, order)
        if len(exponents) != len(coefficients):
            raise ValueError(f"{xml_path}: {path.get('name')} has {len(coefficients)} coefficients, "
                             f"expected {len(exponents)}")
        coordinates = [p.rstrip("/").split("/")[-1] for p in path.find("coordinate_paths").text.split()]
        polynomials.append(PathPolynomial(muscle=path.get("name").split("/")[-1],
                                          coordinates=coordinates, exponents=exponents,
                                          coefficients=coefficients))
    return polynomials


def fit_paths(model_path: str, coordinates: list[str], time: np.ndarray, q: np.ndarray,
              settings: PathFitSettings) -> list[PathPolynomial]:
    """Run OpenSim's PolynomialPathFitter around the poses ``q`` (child-process safe).

    Parameters
    ----------
    coordinates : list of str
        Every unlocked coordinate of the model (the fitter requires them all).
    time : ndarray, shape (n_frames,)
    q : ndarray, shape (n_frames, n_coordinates)
        Radians / metres.
    """
    import opensim

    from .osim import load_model

    model = load_model(model_path)
    table = opensim.TimeSeriesTable()
    table.setColumnLabels(coordinates)
    for i in reference_rows(len(time), settings.max_frames):
        table.appendRow(float(time[i]), opensim.RowVector(q[i].tolist()))
    table.addTableMetaDataString("inDegrees", "no")
    with tempfile.TemporaryDirectory(prefix="opensim_pinn_paths_") as folder:
        fitter = opensim.PolynomialPathFitter()
        fitter.setModel(opensim.ModelProcessor(model))
        fitter.setCoordinateValues(opensim.TableProcessor(table))
        fitter.setOutputDirectory(folder)
        fitter.setMaximumPolynomialOrder(settings.max_order)
        fitter.setNumSamplesPerFrame(settings.samples_per_frame)
        fitter.setNumParallelThreads(2)
        fitter.setGlobalCoordinateSamplingBounds(
            opensim.Vec2(-settings.sampling_range_deg, settings.sampling_range_deg))
        fitter.setPathLengthTolerance(settings.length_tolerance)
        fitter.setMomentArmTolerance(settings.moment_arm_tolerance)
        fitter.run()
        written = sorted(Path(folder).glob("*_FunctionBasedPathSet.xml"))
        if not written:
            raise RuntimeError("PolynomialPathFitter wrote no FunctionBasedPathSet file")
        return read_path_set(written[0])


def reference_rows(n_frames: int, max_frames: int) -> np.ndarray:
    """Rows of the reference motion the fit samples around: at most ``max_frames``, evenly strided."""
    return np.arange(0, n_frames, max(1, int(np.ceil(n_frames / max_frames))))


def paths_cache_key(model_path: str | Path, q: np.ndarray, settings: PathFitSettings) -> str:
    """Hash of the model file, the reference poses and the settings."""
    digest = hashlib.sha256(Path(model_path).read_bytes())
    digest.update(np.ascontiguousarray(np.round(q, 9)).tobytes())
    digest.update(settings.key().encode())
    return digest.hexdigest()[:20]


def load_or_fit_paths(model_path: str, coordinates: list[str], time: np.ndarray, q: np.ndarray,
                      muscles: list[str], settings: PathFitSettings = PathFitSettings()
                      ) -> list[PathPolynomial]:
    """Path polynomials for a model around poses ``q``: from the cache, or fitted (``settings.fitter``)."""
    from .cache import cache_folder, reused

    stored = cache_folder() / "paths" / f"{paths_cache_key(model_path, q, settings)}.json"
    if stored.is_file():
        reused(stored, "path polynomials")
        return [PathPolynomial.from_dict(p) for p in json.loads(stored.read_text())]
    polynomials = _fit(model_path, coordinates, time, q, muscles, settings)
    check_coverage(polynomials, muscles)
    stored.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(stored, json.dumps([p.to_dict() for p in polynomials]).encode())
    return polynomials


def _fit(model_path: str, coordinates: list[str], time: np.ndarray, q: np.ndarray, muscles: list[str],
         settings: PathFitSettings) -> list[PathPolynomial]:
    """Polynomials by the settings' fitter; with "auto", least squares where PolynomialPathFitter fails."""
    from .child import run_in_child
    from .path_lstsq import fit_paths_lstsq

    lstsq_step = "path fitting (least squares)"
    if settings.fitter == "lstsq":
        log.info("paths: fitting muscle paths by least squares to OpenSim's lengths and moment arms "
                 "(%d muscles; cached after)", len(muscles))
        return run_in_child(lstsq_step, fit_paths_lstsq, model_path, coordinates, time, q, settings)
    log.info("paths: fitting muscle paths with OpenSim's PolynomialPathFitter (%d muscles; cached after)",
             len(muscles))
    try:
        polynomials = run_in_child("path fitting", fit_paths, model_path, coordinates, time, q, settings)
    except OpenSimCrash as error:
        if settings.fitter == "opensim":
            raise
        log.warning("paths: %s; fitting the same polynomials by least squares to OpenSim's lengths and "
                    "moment arms instead", error)
        return run_in_child(lstsq_step, fit_paths_lstsq, model_path, coordinates, time, q, settings)
    fitted = {p.muscle for p in polynomials}
    missing = [m for m in muscles if m not in fitted]
    if missing and settings.fitter == "auto":
        log.warning("paths: PolynomialPathFitter fitted no polynomial for %s (moment arms below its "
                    "threshold); fitting them by least squares", ", ".join(missing))
        polynomials += run_in_child(lstsq_step, fit_paths_lstsq, model_path, coordinates, time, q, settings,
                                    muscles=missing)
    return polynomials


def check_coverage(polynomials: list[PathPolynomial], muscles: list[str]) -> None:
    """Raise if a muscle got no polynomial (the fitter skips muscles it cannot fit)."""
    fitted = {p.muscle for p in polynomials}
    missing = [m for m in muscles if m not in fitted]
    if missing:
        raise InputError(f"path fitting produced no polynomial for {', '.join(missing)}; "
                         "check that these muscles span an unlocked coordinate")
