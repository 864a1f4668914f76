"""Path polynomials fitted by least squares to OpenSim's lengths and moment arms.

The fallback of :func:`opensim_pinn.paths.load_or_fit_paths` for models on which
OpenSim's ``PolynomialPathFitter`` fails (OpenSim 4.6 fails, for example, on every
model with a locked coordinate: it welds the locked joints into a model copy that it
never finalises, then raises "Component ... of type Model is the root but has no
subcomponents listed"). It does what the fitter does, with numpy:

1. sample poses around the reference frames (each frame, then ``samples_per_frame``
   Latin-hypercube poses within +/- ``sampling_range_deg``, clamped to the range of
   clamped coordinates);
2. compute each muscle's length and moment arms at those poses with OpenSim
   (``Muscle.getLength``, ``Muscle.computeMomentArm``; locked coordinates stay at their
   default value, where the fitter welds them at zero);
3. per muscle, drop the samples the fitter would reject as outliers (wrapping jumps),
   and fit a ``MultivariatePolynomialFunction`` of the coordinates with a moment arm of
   at least :data:`MOMENT_ARM_THRESHOLD`: lengths and moment arms jointly (a moment arm
   is ``-dl/dq``, so its rows are linear in the coefficients too), the order raised from
   :data:`MINIMUM_ORDER` until the RMS errors meet the tolerances of
   :class:`~opensim_pinn.paths.PathFitSettings`.

The polynomials have the fitter's term order (:func:`~opensim_pinn.paths.term_exponents`)
and go through the same cache, torch module and error report.
"""

from __future__ import annotations

import logging
from math import comb

import numpy as np

from .paths import PathFitSettings, PathPolynomial, reference_rows, term_exponents

log = logging.getLogger(__name__)

MOMENT_ARM_THRESHOLD = 1e-3
"""m; a coordinate enters a muscle's polynomial when its moment arm reaches this on some
sample (PolynomialPathFitter's default ``moment_arm_threshold``)."""
MINIMUM_ORDER = 2
"""Lowest polynomial order tried (PolynomialPathFitter's default ``minimum_polynomial_order``)."""
OUTLIER_DEVIATIONS = 5.0
"""A sample whose length or moment arm differs from its reference frame's by more than
this many average within-frame standard deviations is dropped (the fitter's rule)."""
EQUATIONS_PER_TERM = 2
"""An order is tried only while the fit has at least this many equations per coefficient,
so that a polynomial never interpolates its samples (and oscillates between them)."""
SEED = 0
"""Seed of the pose sampling: the same inputs give the same polynomials."""


def fit_paths_lstsq(model_path: str, coordinates: list[str], time: np.ndarray, q: np.ndarray,
                    settings: PathFitSettings, muscles: list[str] | None = None) -> list[PathPolynomial]:
    """Fit path polynomials around the poses ``q`` by least squares (OpenSim part: child-process safe).

    Parameters
    ----------
    model_path : str
    coordinates : list of str, length n_coordinates
        The model's unlocked coordinates, the columns of ``q``.
    time : ndarray, shape (n_frames,)
    q : ndarray, shape (n_frames, n_coordinates)
        Reference poses, radians / metres.
    settings : PathFitSettings
        The fitter's settings (frames, samples per frame, sampling range, order, tolerances).
    muscles : list of str, optional
        Fit only these muscles (default: every muscle of the model).

    Returns
    -------
    list of PathPolynomial
        One per muscle that spans a coordinate, in model order.
    """
    from .osim import _coordinates, _muscles, _spanned_coordinates, load_model

    model = load_model(model_path)
    state = model.getWorkingState()
    by_name = {c.getName(): c for c in _coordinates(model)}
    handles = [by_name[name] for name in coordinates]
    clamped = np.array([bool(c.get_clamped()) for c in handles])
    lower = np.where(clamped, [c.getRangeMin() for c in handles], -np.inf)
    upper = np.where(clamped, [c.getRangeMax() for c in handles], np.inf)
    frames = q[reference_rows(len(time), settings.max_frames)]
    # PolynomialPathFitter converts its degree bounds to radians for every coordinate
    # (translations included), and so do we.
    half_width = np.full(len(coordinates), np.deg2rad(settings.sampling_range_deg))
    poses = sample_poses(frames, half_width, lower, upper, settings.samples_per_frame,
                         np.random.default_rng(SEED))
    model_muscles = _muscles(model)
    spans = _spanned_coordinates(model, state, model_muscles)
    chosen = [(m, muscle, [coordinates.index(c) for c in span])
              for m, (muscle, span) in enumerate(zip(model_muscles, spans))
              if span and (muscles is None or muscle.getName() in muscles)]
    lengths = np.empty((len(poses), len(chosen)))
    moment_arms = np.zeros((len(poses), len(chosen), len(coordinates)))
    log.info("paths: computing %d muscles' lengths and moment arms at %d poses with OpenSim",
             len(chosen), len(poses))
    for row, pose in enumerate(poses):
        for handle, value in zip(handles, pose):
            handle.setValue(state, float(value), False)
        model.realizePosition(state)
        for k, (_, muscle, columns) in enumerate(chosen):
            lengths[row, k] = muscle.getLength(state)
            for c in columns:
                moment_arms[row, k, c] = muscle.computeMomentArm(state, handles[c])
    polynomials = []
    for k, (_, muscle, columns) in enumerate(chosen):
        polynomials.append(fit_muscle(muscle.getName(), coordinates, columns, poses, lengths[:, k],
                                      moment_arms[:, k], settings))
    return polynomials


def fit_muscle(name: str, coordinates: list[str], spanned: list[int], poses: np.ndarray, lengths: np.ndarray,
               moment_arms: np.ndarray, settings: PathFitSettings) -> PathPolynomial:
    """One muscle's polynomial from OpenSim's values at the sampled poses.

    Parameters
    ----------
    spanned : list of int
        Columns of ``poses`` (coordinates) the muscle spans.
    poses : ndarray, shape (n_samples, n_coordinates)
        As from :func:`sample_poses`: groups of ``samples_per_frame + 1`` rows, reference frame first.
    lengths : ndarray, shape (n_samples,)
        m.
    moment_arms : ndarray, shape (n_samples, n_coordinates)
        m (zero where not computed).
    """
    group = settings.samples_per_frame + 1
    keep = keep_samples(np.column_stack([lengths, moment_arms[:, spanned]]), group)
    reach = np.abs(moment_arms[keep][:, spanned]).max(axis=0, initial=0.0)
    columns = [c for c, r in zip(spanned, reach) if r >= MOMENT_ARM_THRESHOLD] or spanned
    exponents, coefficients, errors = fit_polynomial(
        poses[keep][:, columns], lengths[keep], moment_arms[keep][:, columns],
        max_order=settings.max_order, length_tolerance=settings.length_tolerance,
        moment_arm_tolerance=settings.moment_arm_tolerance)
    log.debug("paths: %s: order %d, %d samples, RMS length %.4f mm, moment arm %.4f mm", name,
              exponents.sum(axis=1).max(), keep.sum(), errors[0] * 1000, errors[1] * 1000)
    return PathPolynomial(muscle=name, coordinates=[coordinates[c] for c in columns],
                          exponents=exponents, coefficients=coefficients)


def sample_poses(frames: np.ndarray, half_width: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                 samples_per_frame: int, rng: np.random.Generator) -> np.ndarray:
    """Each reference frame followed by Latin-hypercube poses around it (PolynomialPathFitter's sampling).

    Parameters
    ----------
    frames : ndarray, shape (n_frames, n_coordinates)
    half_width : ndarray, shape (n_coordinates,)
        Half-width of the sampling box around each frame.
    lower, upper : ndarray, shape (n_coordinates,)
        Samples outside are moved onto these bounds (``-inf``/``inf`` for none).

    Returns
    -------
    ndarray, shape (n_frames * (samples_per_frame + 1), n_coordinates)
    """
    n_frames, n_coordinates = frames.shape
    strata = np.argsort(rng.random((n_frames, samples_per_frame, n_coordinates)), axis=1)
    unit = (strata + rng.random(strata.shape)) / samples_per_frame  # one sample per stratum per coordinate
    samples = np.clip(frames[:, None] + (2 * unit - 1) * half_width, lower, upper)
    return np.concatenate([frames[:, None], samples], axis=1).reshape(-1, n_coordinates)


def keep_samples(values: np.ndarray, group: int) -> np.ndarray:
    """Samples within :data:`OUTLIER_DEVIATIONS` average within-frame deviations of their frame's values.

    Parameters
    ----------
    values : ndarray, shape (n_frames * group, n_values)
        Rows in groups of ``group``: a reference frame, then the poses sampled around it.

    Returns
    -------
    ndarray of bool, shape (n_frames * group,)
    """
    grouped = values.reshape(-1, group, values.shape[1])
    spread = grouped.std(axis=1).mean(axis=0)  # (n_values,)
    deviation = np.abs(grouped - grouped[:, :1])
    return np.all(deviation <= OUTLIER_DEVIATIONS * spread, axis=2).reshape(-1)


def design_matrix(x: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    """Rows of polynomial terms for the lengths, then of minus their derivatives for the moment arms.

    Parameters
    ----------
    x : ndarray, shape (n_samples, dimension)
    exponents : ndarray, shape (n_terms, dimension)

    Returns
    -------
    ndarray, shape ((dimension + 1) * n_samples, n_terms)
        Block 0: ``prod_j x_j ** e_j``; block ``c + 1``: ``-d/dx_c`` of the same terms.
    """
    powers = x[:, None, :] ** exponents[None]  # (n, T, d)
    blocks = [powers.prod(axis=2)]
    for c in range(x.shape[1]):
        lowered = np.where(exponents[:, c] > 0, exponents[:, c] - 1, 0)
        derivative = powers.copy()
        derivative[:, :, c] = exponents[:, c] * x[:, None, c] ** lowered
        blocks.append(-derivative.prod(axis=2))
    return np.concatenate(blocks)


def fit_polynomial(x: np.ndarray, lengths: np.ndarray, moment_arms: np.ndarray, *, max_order: int,
                   length_tolerance: float, moment_arm_tolerance: float
                   ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Least-squares polynomial of ``x`` whose value fits ``lengths`` and whose -gradient fits ``moment_arms``.

    The order rises from :data:`MINIMUM_ORDER` until both RMS errors are below their
    tolerances, ``max_order`` is reached, or a higher order would leave fewer than
    :data:`EQUATIONS_PER_TERM` equations per coefficient.

    Parameters
    ----------
    x : ndarray, shape (n_samples, dimension)
        Coordinates, radians / metres.
    lengths : ndarray, shape (n_samples,)
    moment_arms : ndarray, shape (n_samples, dimension)

    Returns
    -------
    exponents : ndarray, shape (n_terms, dimension)
        :func:`~opensim_pinn.paths.term_exponents` of the chosen order.
    coefficients : ndarray, shape (n_terms,)
    errors : (float, float)
        RMS length and moment-arm errors on the samples, m.
    """
    n_samples, dimension = x.shape
    target = np.concatenate([lengths, moment_arms.T.reshape(-1)])
    n_equations = len(target)
    order = MINIMUM_ORDER
    while True:
        exponents = term_exponents(dimension, order)
        matrix = design_matrix(x, exponents)
        scale = np.linalg.norm(matrix, axis=0)
        scale[scale == 0] = 1.0
        coefficients = np.linalg.lstsq(matrix / scale, target, rcond=None)[0] / scale
        residual = matrix @ coefficients - target
        errors = (float(np.sqrt(np.mean(residual[:n_samples] ** 2))),
                  float(np.sqrt(np.mean(residual[n_samples:] ** 2))))
        larger = comb(dimension + order + 1, dimension)
        if ((errors[0] < length_tolerance and errors[1] < moment_arm_tolerance) or order >= max_order
                or larger * EQUATIONS_PER_TERM > n_equations):
            return exponents, coefficients, errors
        order += 1
