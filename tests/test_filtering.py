"""Coordinate filtering and differentiation (opensim_pinn.filtering) against OpenSim's own
``Storage.pad``, ``Storage.lowpassIIR``, ``GCVSplineSet(5, ...)`` and ``Storage.findIndex``."""

from __future__ import annotations

import numpy as np
import pytest

from opensim_pinn import filtering

osim = pytest.importorskip("opensim")

N_SAMPLES = 61  # 0.6 s at 100 Hz: enough for the 6 Hz filter's transients, quick in OpenSim
CUTOFF_HZ = 6.0  # OpenSim's default low-pass for Static Optimization / Inverse Dynamics


@pytest.fixture(autouse=True)
def _quiet_opensim():
    osim.Logger.removeFileSink()
    osim.Logger.setLevelString("error")


def _signal(time: np.ndarray, seed: int = 0) -> np.ndarray:
    """Three coordinates: a sine, a noisy cosine (like marker-based IK) and a parabola."""
    rng = np.random.default_rng(seed)
    return np.column_stack([np.sin(2 * np.pi * 1.3 * time),
                            0.3 * np.cos(2 * np.pi * 0.7 * time) + 0.01 * rng.standard_normal(len(time)),
                            time ** 2 - 0.2])


def _storage(time: np.ndarray, values: np.ndarray):
    labels = osim.ArrayStr()
    labels.append("time")
    for j in range(values.shape[1]):
        labels.append(f"q{j}")
    storage = osim.Storage()
    storage.setColumnLabels(labels)
    for t, row in zip(time, values):
        storage.append(float(t), osim.Vector(row.tolist()))
    return storage


def _arrays(storage) -> tuple[np.ndarray, np.ndarray]:
    n_rows, n_columns = storage.getSize(), storage.getColumnLabels().size() - 1
    rows = [storage.getStateVector(i) for i in range(n_rows)]
    return (np.array([row.getTime() for row in rows]),
            np.array([[row.getData().get(j) for j in range(n_columns)] for row in rows]))


def _regular() -> tuple[np.ndarray, np.ndarray]:
    time = np.arange(N_SAMPLES) * 0.01
    return time, _signal(time)


def _irregular() -> tuple[np.ndarray, np.ndarray]:
    """Sampling with +-20 % jitter: OpenSim resamples at the smallest step before filtering."""
    rng = np.random.default_rng(1)
    time = np.concatenate([[0.0], np.cumsum(rng.uniform(0.008, 0.012, N_SAMPLES - 1))])
    return time, _signal(time)


def test_pad_matches_storage_pad():
    time, values = _regular()
    storage = _storage(time, values)
    n_pad = storage.getSize() // 2
    storage.pad(n_pad)
    padded_time, padded = _arrays(storage)
    tol = 1e-15  # same arithmetic (2 x0 - x), exact in practice; allow one rounding
    np.testing.assert_allclose(filtering.pad(time, n_pad), padded_time, rtol=0, atol=tol)
    np.testing.assert_allclose(filtering.pad(values, n_pad), padded, rtol=0, atol=tol)
    assert len(padded_time) == N_SAMPLES + 2 * n_pad
    np.testing.assert_array_equal(filtering.pad(values, 0), values)


@pytest.mark.parametrize("cutoff", [CUTOFF_HZ, 15.0, 80.0])  # 80 Hz > Nyquist: OpenSim caps at 0.49 fs
def test_lowpass_iir_matches_storage_regular(cutoff):
    time, values = _regular()
    n_pad = len(time) // 2
    storage = _storage(time, values)
    storage.pad(n_pad)
    storage.lowpassIIR(cutoff)
    expected_time, expected = _arrays(storage)
    got_time, got = filtering.lowpass_iir(filtering.pad(time, n_pad), filtering.pad(values, n_pad), cutoff)
    # rad; the same recursion in float64, with coefficients rounded differently (one ulp):
    # measured 0 at 6 Hz, 5e-15 at 15 Hz, 2.3e-12 at 49 Hz (near Nyquist, where the
    # recursion amplifies coefficient rounding most).
    tol = 1e-10
    np.testing.assert_allclose(got_time, expected_time, rtol=0, atol=tol)
    np.testing.assert_allclose(got, expected, rtol=0, atol=tol)


def test_lowpass_iir_matches_storage_irregular():
    time, values = _irregular()
    storage = _storage(time, values)
    storage.lowpassIIR(CUTOFF_HZ)
    expected_time, expected = _arrays(storage)
    got_time, got = filtering.lowpass_iir(time, values, CUTOFF_HZ)
    assert len(got_time) == len(expected_time) > N_SAMPLES, "resampled at the smallest time step"
    time_tol = 1e-14  # s; times accumulated by repeated addition of the step, as OpenSim does
    np.testing.assert_allclose(got_time, expected_time, rtol=0, atol=time_tol)
    # rad; scipy's natural quintic vs OpenSim's GCVSpline (two solvers of the same
    # interpolation system) before the same IIR recursion: measured 6e-15.
    tol = 1e-12
    np.testing.assert_allclose(got, expected, rtol=0, atol=tol)


def test_lowpass_iir_caps_the_resampling_like_storage():
    """One tiny step (5 microseconds, like RRA's variable-step output): OpenSim resamples at
    span / 100,000 instead of the smallest step."""
    time = np.concatenate([np.arange(50) * 0.02, [0.98 + 5e-6], np.arange(50, 100) * 0.02 + 0.01])
    values = _signal(time)
    storage = _storage(time, values)
    storage.lowpassIIR(CUTOFF_HZ)
    expected_time, expected = _arrays(storage)
    got_time, got = filtering.lowpass_iir(time, values, CUTOFF_HZ)
    assert len(got_time) == len(expected_time)
    assert abs(len(got_time) - filtering.MAX_RESAMPLE_SIZE) <= 1, "(accumulated steps may stop one short)"
    # s; times accumulated alike, as in the irregular test above (here over 1e5 additions).
    np.testing.assert_allclose(got_time, expected_time, rtol=0, atol=1e-12)
    # rad; natural quintic vs GCVSpline, two solvers of an interpolation system made
    # ill-conditioned by the 5 us step among 20 ms ones: measured 1.1e-7 (6e-6 degrees).
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_natural_quintic_matches_gcvsplineset(order):
    time, values = _irregular()
    splines = osim.GCVSplineSet(5, _storage(time, values))
    ours = filtering.natural_quintic(time, values)
    x = np.linspace(time[0], time[-1], 157)
    expected = np.array([[splines.get(j).calcValue(osim.Vector(1, float(v))) if order == 0 else
                          splines.get(j).calcDerivative(osim.StdVectorInt([0] * order), osim.Vector(1, float(v)))
                          for j in range(values.shape[1])] for v in x])
    got = ours(x, order)
    # Two solvers of the same interpolation system: round-off of samples of size max|y|,
    # amplified by 1/h per derivative order (h the smallest step). Measured at most 25
    # such units (eps max|y| / h^order); 1000 units is 2e-13 rad for values, 2e-7 rad/s^3
    # for third derivatives of size 3e5.
    units = np.finfo(float).eps * np.abs(values).max(axis=0) / np.diff(time).min() ** order
    tol = 1000 * units
    error = np.abs(got - expected).max(axis=0)
    assert np.all(error <= tol), error / units


def _opensim_kinematics(time, values, cutoff):
    """The AnalyzeTool / StaticOptimization sequence, with OpenSim objects: pad by half,
    lowpassIIR, GCVSplineSet(5) of q, its first derivative at the samples (speeds), and
    the first derivative of a GCVSplineSet(5) through those speeds (accelerations)."""
    storage = _storage(time, values)
    if cutoff is not None:
        storage.pad(storage.getSize() // 2)
        storage.lowpassIIR(cutoff)
    speeds = osim.GCVSplineSet(5, storage).constructStorage(1)
    accelerations = osim.GCVSplineSet(5, speeds).constructStorage(1)
    t, q = _arrays(storage)
    t_u, qd = _arrays(speeds)
    t_a, qdd = _arrays(accelerations)
    assert np.array_equal(t, t_u) and np.array_equal(t, t_a)
    return t, q, qd, qdd


@pytest.mark.parametrize("sampling", ["regular", "irregular"])
@pytest.mark.parametrize("cutoff", [CUTOFF_HZ, None])
def test_filtered_kinematics_matches_opensim_sequence(sampling, cutoff):
    time, values = _regular() if sampling == "regular" else _irregular()
    expected = _opensim_kinematics(time, values, cutoff)
    got = filtering.filtered_kinematics(time, values, cutoff)
    assert got[0].shape == expected[0].shape
    np.testing.assert_allclose(got[0], expected[0], rtol=0, atol=1e-14)  # s, same time grid
    # Relative to each quantity's largest value: round-off of two spline solvers,
    # amplified by differentiation (measured at most q 6e-15, qd 2e-13, qdd 3.4e-12 relative).
    rtol = {"q": 1e-12, "qd": 1e-11, "qdd": 1e-9}
    for name, ours, theirs in zip(("q", "qd", "qdd"), got[1:], expected[1:]):
        scale = np.abs(theirs).max()
        error = np.abs(ours - theirs).max() / scale
        assert error <= rtol[name], f"{name}: relative error {error:.2e}"


def test_negative_cutoff_means_no_filter():
    time, values = _regular()
    unfiltered = filtering.filtered_kinematics(time, values, None)
    negative = filtering.filtered_kinematics(time, values, -1.0)
    for a, b in zip(unfiltered, negative):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(unfiltered[1], values)  # interpolating spline: q unchanged


def test_spline_derivatives_of_sine_are_analytic():
    """sin(2 pi f t) at 100 Hz for 1 s: away from the ends (natural end conditions bend
    the spline there), the spline derivatives are the analytic ones."""
    frequency = 2.0  # Hz
    omega = 2 * np.pi * frequency
    time = np.arange(101) * 0.01
    values = np.sin(omega * time)[:, None]
    spline = filtering.natural_quintic(time, values)
    x = np.linspace(0.2, 0.8, 601)
    # Quintic interpolation error of the derivative ~ (omega h)^5: measured 6e-9 of the
    # amplitude omega; 1e-7 leaves a margin.
    rtol_speed = 1e-7
    speed_error = np.abs(spline(x, 1)[:, 0] - omega * np.cos(omega * x)).max() / omega
    assert speed_error < rtol_speed
    # Second derivative of the spline: one order less accurate (measured 3.5e-7 of omega^2).
    rtol_acceleration = 5e-6
    acceleration_error = np.abs(spline(x, 2)[:, 0] + omega ** 2 * np.sin(omega * x)).max() / omega ** 2
    assert acceleration_error < rtol_acceleration
    # The accelerations Static Optimization uses (spline through the sampled speeds),
    # at the samples inside [0.2, 0.8] s: measured 2e-8 of omega^2.
    _, _, qd, qdd = filtering.filtered_kinematics(time, values, None)
    inside = (time >= 0.2) & (time <= 0.8)
    assert np.abs(qd[inside, 0] - omega * np.cos(omega * time[inside])).max() / omega < rtol_speed
    assert np.abs(qdd[inside, 0] + omega ** 2 * np.sin(omega * time[inside])).max() / omega ** 2 < 1e-6


# ---- frame_indices ---------------------------------------------------------------------

TIMES = np.round(np.arange(11) * 0.01, 10)


@pytest.mark.parametrize("value", [-1.0, 0.0, 0.005, 0.01, 0.0099999999, 0.02, 0.035, 0.1, 1.0])
def test_frame_indices_bounds_follow_storage_find_index(value):
    """The first row is the last time <= start, the last row the last time <= end (findIndex)."""
    storage = _storage(TIMES, np.zeros((len(TIMES), 1)))
    expected = storage.findIndex(value)
    assert filtering.frame_indices(TIMES, value, 0.1)[0] == expected
    assert filtering.frame_indices(TIMES, 0.0, value)[-1] == expected


def test_frame_indices_step_and_final_row():
    np.testing.assert_array_equal(filtering.frame_indices(TIMES, 0.0, 0.1), np.arange(11))
    np.testing.assert_array_equal(filtering.frame_indices(TIMES, 0.015, 0.085, 1), [1, 2, 3, 4, 5, 6, 7, 8])
    # step 3 from row 1 to row 8: the first row, the rows whose index is a multiple of 3
    # (OpenSim's analyses count steps from the start of the coordinates, not from the first
    # analysed row: AnalyzeTool on RRA's kinematics, padded, first row 68853, step 10, records
    # 68853, 68860, 68870, ...), and the final row 8
    np.testing.assert_array_equal(filtering.frame_indices(TIMES, 0.015, 0.085, 3), [1, 3, 6, 8])
    # a step that lands exactly on the final row does not repeat it
    np.testing.assert_array_equal(filtering.frame_indices(TIMES, 0.0, 0.1, 5), [0, 5, 10])
    # times given in decimal that are 1 ulp below a sample still select it (1e-12 s slack)
    np.testing.assert_array_equal(filtering.frame_indices(TIMES, 0.03 - 1e-15, 0.05 - 1e-15), [3, 4, 5])
