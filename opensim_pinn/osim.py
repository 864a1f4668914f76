"""Everything read from an OpenSim model: coordinates, muscles, actuators, curves.

This is the module that talks to ``opensim`` about models. Its functions return
plain dataclasses and numpy arrays, so that results cross process boundaries
(see :mod:`opensim_pinn.child`) and the rest of the package never holds an
OpenSim object. Units are OpenSim's: metres, radians, newtons, seconds.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, first_line

log = logging.getLogger(__name__)

MUSCLE_CLASSES = ("Millard2012EquilibriumMuscle", "Thelen2003Muscle", "DeGrooteFregly2016Muscle")
"""Muscle classes whose curves the torch muscle module reproduces."""

CURVE_GRID_SIZE = 400
"""Samples per tabulated Millard2012 curve (interpolated with cubic Hermite splines)."""


@dataclass
class CoordinateInfo:
    """One generalised coordinate. ``motion_type`` is 'rotational' or 'translational'."""

    name: str
    joint: str
    motion_type: str
    range: tuple[float, float]
    locked: bool
    default_value: float


@dataclass
class MuscleInfo:
    """One muscle's Hill-type parameters (OpenSim property names, SI units).

    ``curves`` holds what the torch module needs to evaluate this class's
    force-length and force-velocity curves: analytic parameters for
    Thelen2003/DeGrooteFregly2016, tabulated values and slopes for Millard2012.
    """

    name: str
    muscle_class: str
    max_isometric_force: float
    optimal_fiber_length: float
    tendon_slack_length: float
    pennation_angle_at_optimal: float
    max_contraction_velocity: float
    min_control: float
    max_control: float
    coordinates: list[str] = field(default_factory=list)
    curves: dict = field(default_factory=dict)


@dataclass
class ActuatorInfo:
    """A non-muscle actuator (reserve/residual): control in [min, max], force = control * optimal_force."""

    name: str
    actuator_class: str
    optimal_force: float
    min_control: float
    max_control: float
    coordinate: str = ""


@dataclass
class ModelInfo:
    """What the rest of the package knows about a model."""

    name: str
    path: str
    coordinates: list[CoordinateInfo]
    muscles: list[MuscleInfo]
    actuators: list[ActuatorInfo]
    bodies: list[str]
    state_variables: list[str] = field(default_factory=list)
    """OpenSim's state variable names (``/forceset/<muscle>/activation``, ...), for states files."""

    @property
    def free_coordinates(self) -> list[CoordinateInfo]:
        """Unlocked coordinates: the equations that Static Optimization balances."""
        return [c for c in self.coordinates if not c.locked]

    @property
    def rotational(self) -> set[str]:
        return {c.name for c in self.coordinates if c.motion_type == "rotational"}

    def to_dict(self) -> dict:
        return asdict(self)


def quiet_opensim(level: str = "error") -> None:
    """Stop OpenSim writing ``opensim.log`` into the current folder; log at ``level``."""
    import opensim

    opensim.Logger.removeFileSink()
    opensim.Logger.setLevelString(level)


def load_model(path: str | Path, reserves: str | Path | None = None, *, initialize: bool = True):
    """Load an ``.osim`` model (and append a reserve ForceSet file) into an OpenSim Model.

    With ``initialize`` (default) the model's system is built (``initSystem``).

    ``reserves`` is an OpenSim ForceSet ``.xml`` (like AnalyzeTool's
    ``force_set_files``) or ``"auto"`` (see :func:`auto_reserves`).
    """
    import opensim

    quiet_opensim()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file not found; check the path")
    try:
        model = opensim.Model(str(path.resolve()))
    except Exception as error:  # OpenSim raises RuntimeError with its own text
        first = first_line(error, type(error).__name__)
        first = re.sub(r"^std::exception in '[^']*':\s*", "", first)
        raise InputError(f"{path}: OpenSim cannot read this model ({first}); open it in the OpenSim GUI "
                         "to see what is wrong") from None
    if reserves is not None:
        append_reserves(model, reserves)
    if initialize:
        model.finalizeConnections()
        model.initSystem()
    return model


def append_reserves(model, reserves: str | Path) -> None:
    """Add reserve/residual actuators to ``model`` (not yet initialised)."""
    import opensim

    if str(reserves) == "auto":
        for actuator in auto_reserves(model):
            model.addForce(actuator)
        return
    force_set = opensim.ForceSet(str(Path(reserves).resolve()))  # checked by trial.check_reserves_file
    for i in range(force_set.getSize()):
        model.addForce(force_set.get(i).clone())


AUTO_RESERVE_WEAK = 1.0
"""Optimal force (N m or N) of ``--reserves auto`` actuators on coordinates that muscles span."""
AUTO_RESERVE_STRONG = 1000.0
"""Optimal force of ``--reserves auto`` actuators on coordinates no muscle spans (residuals)."""
AUTO_RESERVE_BOUND = 1000.0
"""Control bound of ``--reserves auto`` actuators (|control| <= this)."""


def auto_reserves(model) -> list:
    """One CoordinateActuator per unlocked coordinate, named ``reserve_<coordinate>``.

    Weak (optimal force :data:`AUTO_RESERVE_WEAK`) where a muscle acts, so that
    muscles carry the load; strong (:data:`AUTO_RESERVE_STRONG`) where no muscle
    acts, such as the pelvis translations, where they are the residuals.
    """
    import opensim

    state = model.initSystem()
    spanned = {name for names in _spanned_coordinates(model, state, _muscles(model)) for name in names}
    actuators = []
    for coordinate in _coordinates(model):
        if coordinate.get_locked():
            continue
        actuator = opensim.CoordinateActuator(coordinate.getName())
        actuator.setName(f"reserve_{coordinate.getName()}")
        actuator.setOptimalForce(AUTO_RESERVE_WEAK if coordinate.getName() in spanned
                                 else AUTO_RESERVE_STRONG)
        actuator.setMinControl(-AUTO_RESERVE_BOUND)
        actuator.setMaxControl(AUTO_RESERVE_BOUND)
        actuators.append(actuator)
    return actuators


def model_info(path: str | Path, reserves: str | Path | None = None) -> ModelInfo:
    """Read a model's coordinates, muscles (with curves) and actuators."""
    import opensim

    model = load_model(path, reserves)
    state = model.getWorkingState()
    coordinates = [
        CoordinateInfo(name=c.getName(), joint=c.getJoint().getName(),
                       motion_type="rotational" if c.getMotionType() == 1 else "translational",
                       range=(c.getRangeMin(), c.getRangeMax()), locked=bool(c.get_locked()),
                       default_value=c.getDefaultValue())
        for c in _coordinates(model)]
    muscles = []
    model_muscles = _muscles(model)
    for muscle, spanned in zip(model_muscles, _spanned_coordinates(model, state, model_muscles)):
        class_name = muscle.getConcreteClassName()
        if class_name not in MUSCLE_CLASSES:
            raise InputError(f"{path}: muscle {muscle.getName()!r} is a {class_name}; supported "
                             f"classes are {', '.join(MUSCLE_CLASSES)}")
        muscles.append(MuscleInfo(
            name=muscle.getName(), muscle_class=class_name,
            max_isometric_force=muscle.getMaxIsometricForce(),
            optimal_fiber_length=muscle.getOptimalFiberLength(),
            tendon_slack_length=muscle.getTendonSlackLength(),
            pennation_angle_at_optimal=muscle.getPennationAngleAtOptimalFiberLength(),
            max_contraction_velocity=muscle.getMaxContractionVelocity(),
            min_control=muscle.getMinControl(), max_control=muscle.getMaxControl(),
            coordinates=spanned,
            curves=_curve_parameters(muscle, class_name)))
    actuators = []
    for force in _forces(model):
        if opensim.Muscle.safeDownCast(force) is not None:
            continue
        actuator = opensim.ScalarActuator.safeDownCast(force)
        if actuator is None or not force.get_appliesForce():
            continue
        coordinate = opensim.CoordinateActuator.safeDownCast(force)
        actuators.append(ActuatorInfo(
            name=force.getName(), actuator_class=force.getConcreteClassName(),
            optimal_force=actuator.getOptimalForce(), min_control=actuator.getMinControl(),
            max_control=actuator.getMaxControl(),
            coordinate=coordinate.get_coordinate() if coordinate is not None else ""))
    bodies = [model.getBodySet().get(i).getName() for i in range(model.getBodySet().getSize())]
    state_names = model.getStateVariableNames()
    return ModelInfo(name=model.getName(), path=str(Path(path).resolve()), coordinates=coordinates,
                     muscles=muscles, actuators=actuators, bodies=bodies,
                     state_variables=[state_names.get(i) for i in range(state_names.getSize())])


def _curve_parameters(muscle, class_name: str) -> dict:
    """Parameters of the curves used by ``calcInextensibleTendonActiveFiberForce``."""
    import opensim

    if class_name == "Thelen2003Muscle":
        m = opensim.Thelen2003Muscle.safeDownCast(muscle)
        return {"KshapeActive": m.get_KshapeActive(), "Af": m.get_Af(), "Flen": m.get_Flen(),
                "fv_linear_extrap_threshold": m.get_fv_linear_extrap_threshold(),
                "maximum_pennation_angle": m.get_maximum_pennation_angle(),
                "minimum_fiber_length": m.getMinimumFiberLength()}
    if class_name == "DeGrooteFregly2016Muscle":
        m = opensim.DeGrooteFregly2016Muscle.safeDownCast(muscle)
        return {"active_force_width_scale": m.get_active_force_width_scale(),
                "fiber_damping": m.get_fiber_damping(),
                "minimum_fiber_length": m.getMinNormalizedFiberLength() * m.getOptimalFiberLength()}
    m = opensim.Millard2012EquilibriumMuscle.safeDownCast(muscle)
    active = m.getActiveForceLengthCurve()
    velocity = m.getForceVelocityCurve()
    lengths = np.linspace(active.getMinActiveFiberLength() - 0.05,
                          active.getMaxActiveFiberLength() + 0.05, CURVE_GRID_SIZE)
    speeds = np.linspace(-1.0, 1.0, CURVE_GRID_SIZE)
    return {
        "active_length": lengths.tolist(),
        "active_value": [active.calcValue(x) for x in lengths],
        "active_slope": [active.calcDerivative(x, 1) for x in lengths],
        "velocity": speeds.tolist(),
        "velocity_value": [velocity.calcValue(x) for x in speeds],
        "velocity_slope": [velocity.calcDerivative(x, 1) for x in speeds],
        "fiber_damping": m.get_fiber_damping(),
        "maximum_pennation_angle": m.get_maximum_pennation_angle(),
        "minimum_fiber_length": m.getMinimumFiberLength(),
    }


def _spanned_coordinates(model, state, muscles: list, n_poses: int = 3) -> list[list[str]]:
    """Per muscle, the unlocked coordinates with a non-zero moment arm in a few poses (model order).

    Each pose is assembled once for all muscles.
    """
    spanned = [[] for _ in muscles]
    rng = np.random.default_rng(0)
    coordinates = [c for c in _coordinates(model) if not c.get_locked()]
    saved = [c.getValue(state) for c in coordinates]
    poses = [saved] + [[rng.uniform(c.getRangeMin(), c.getRangeMax()) for c in coordinates]
                       for _ in range(n_poses - 1)]
    for pose in poses:
        for coordinate, value in zip(coordinates, pose):
            coordinate.setValue(state, value, False)
        model.assemble(state)
        model.realizePosition(state)
        for muscle, names in zip(muscles, spanned):
            for coordinate in coordinates:
                if (coordinate.getName() not in names
                        and abs(muscle.computeMomentArm(state, coordinate)) > 1e-5):
                    names.append(coordinate.getName())
    for coordinate, value in zip(coordinates, saved):
        coordinate.setValue(state, value, False)
    order = [c.getName() for c in coordinates]
    return [sorted(names, key=order.index) for names in spanned]


def _loads_for_window(external_loads: Path, start: float, end: float, folder: Path) -> Path:
    """A copy of the ExternalLoads file whose data keep only the rows near [start, end].

    OpenSim's ExternalForce evaluation cost grows with the rows of its data file
    (about 3 ms per inverse-dynamics call for 9,000 rows); the interpolating
    splines near the window do not depend on rows 0.1 s away (the influence of a
    cubic spline's knot decays by about 4x per knot), so results are unchanged.
    """
    from .external_loads import loads_datafile, parse_external_loads
    from .storage import read_storage, write_storage

    loads = parse_external_loads(external_loads)
    table = read_storage(loads_datafile(external_loads, loads))
    margin = max(0.1, 20 * float(np.median(np.diff(table.time))))
    keep = (table.time >= start - margin) & (table.time <= end + margin)
    table.time, table.data = table.time[keep], table.data[keep]
    write_storage(folder / "loads_window.mot", table)
    loads.find("datafile").text = str(folder / "loads_window.mot")
    loads.getroottree().write(str(folder / "loads_window.xml"))
    return folder / "loads_window.xml"


class _FrameJacobians:
    """Frame Jacobians (6 x n_u: angular rows, then the station's linear rows) of bodies at the current
    frame, each computed once: the usual residuals (three point and three torque actuators on the pelvis)
    share one. :meth:`clear` at every new frame."""

    def __init__(self, model):
        self.matter = model.getMatterSubsystem()
        self.cache: dict = {}  # (body index, station coordinates) -> Jacobian
        self.of_body: dict = {}  # body index -> one of its Jacobians (the angular rows are the same)

    def clear(self) -> None:
        self.cache.clear()
        self.of_body.clear()

    def at(self, state, index, station, key: tuple) -> np.ndarray:
        """Of mobilized body ``index`` at ``station`` (Vec3 in the body); ``key``: (int(index), its coordinates)."""
        import opensim

        if key not in self.cache:
            jacobian = opensim.Matrix()
            self.matter.calcFrameJacobian(state, index, station, jacobian)
            self.cache[key] = self.of_body[key[0]] = jacobian.to_numpy()
        return self.cache[key]

    def angular(self, state, index) -> np.ndarray:
        """Angular rows (3 x n_u) of mobilized body ``index``: the same at every station."""
        import opensim

        found = self.of_body.get(int(index))
        return (self.at(state, index, opensim.Vec3(0), (int(index), 0.0, 0.0, 0.0)) if found is None else found)[:3]


def _unit(vector) -> np.ndarray:
    along = vector.to_numpy()
    return along / np.linalg.norm(along)


def _unit_generalized_force(model, actuator, mobility_of: dict[str, int], jacobians: _FrameJacobians, n_u: int):
    """A function of the state giving the generalised force (mobility order) of ``actuator`` at unit
    actuation, from Jacobians (``jacobians``, shared by the actuators); None for actuator types other than
    CoordinateActuator, PointActuator and TorqueActuator. ``mobility_of`` maps coordinate names to mobility
    (u) indices. The actuator's type, bodies and properties are looked up once, here, not at every frame.
    """
    import opensim

    coordinate_actuator = opensim.CoordinateActuator.safeDownCast(actuator)
    if coordinate_actuator is not None:
        unit = np.zeros(n_u)
        unit[mobility_of[coordinate_actuator.get_coordinate()]] = 1.0
        return lambda state: unit
    point_actuator = opensim.PointActuator.safeDownCast(actuator)
    if point_actuator is not None:
        body = model.getBodySet().get(point_actuator.get_body())
        point, point_is_global = point_actuator.get_point(), point_actuator.get_point_is_global()
        direction, force_is_global = point_actuator.get_direction(), point_actuator.get_force_is_global()
        ground, index = model.getGround(), body.getMobilizedBodyIndex()
        fixed_key = None if point_is_global else (int(index), *point.to_numpy().tolist())
        fixed_direction = _unit(direction) if force_is_global else None

        def point_force(state):
            if point_is_global:
                station = ground.findStationLocationInAnotherFrame(state, point, body)
                key = (int(index), *station.to_numpy().tolist())
            else:
                station, key = point, fixed_key
            along = _unit(body.expressVectorInGround(state, direction)) if fixed_direction is None \
                else fixed_direction
            return jacobians.at(state, index, station, key)[3:].T @ along
        return point_force
    torque_actuator = opensim.TorqueActuator.safeDownCast(actuator)
    if torque_actuator is not None:
        body_a = torque_actuator.getBodyA()
        ground = int(model.getGround().getMobilizedBodyIndex())
        bodies = [(index, sign) for index, sign in ((body_a.getMobilizedBodyIndex(), 1.0),
                                                    (torque_actuator.getBodyB().getMobilizedBodyIndex(), -1.0))
                  if int(index) != ground]  # ground's Jacobian is zero
        axis = torque_actuator.get_axis()
        fixed_axis = _unit(axis) if torque_actuator.get_torque_is_global() else None

        def torque_force(state):
            along = _unit(body_a.expressVectorInGround(state, axis)) if fixed_axis is None else fixed_axis
            total = np.zeros(n_u)
            for index, sign in bodies:
                total += sign * (jacobians.angular(state, index).T @ along)
            return total
        return torque_force
    return None


def _mobility_order(state, coordinates) -> list[int]:
    """For each mobility (Simbody u index), the position of its coordinate in ``coordinates``."""
    order = [0] * state.getNU()
    for i, coordinate in enumerate(coordinates):
        saved = coordinate.getSpeedValue(state)
        state.updU().setToZero()
        coordinate.setSpeedValue(state, 1.0)
        order[int(np.argmax(state.getU().to_numpy()))] = i
        coordinate.setSpeedValue(state, saved)
    return order


def _coordinates(model):
    coordinate_set = model.getCoordinateSet()
    return [coordinate_set.get(i) for i in range(coordinate_set.getSize())]


def _muscles(model):
    muscle_set = model.getMuscles()
    return [muscle_set.get(i) for i in range(muscle_set.getSize()) if muscle_set.get(i).get_appliesForce()]


def _forces(model):
    force_set = model.getForceSet()
    return [force_set.get(i) for i in range(force_set.getSize())]


def generalized_forces(model_path: str, reserves: str | None, external_loads: str | None,
                       coordinates: list[str], time: np.ndarray, q: np.ndarray, qd: np.ndarray,
                       qdd: np.ndarray, actuators: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse dynamics without muscles, and each actuator's generalised force per unit control.

    Muscles are removed from the model (OpenSim Static Optimization replaces
    their whole force, passive included, by ``activation * F_act``); gravity,
    external loads and other passive forces stay.

    Parameters
    ----------
    coordinates : list of str, length n_coordinates
        Names of the columns of ``q``: every coordinate of the model.
    time : ndarray, shape (n_frames,)
    q, qd, qdd : ndarray, shape (n_frames, n_coordinates)
        Radians (metres), rad/s, rad/s^2.
    actuators : list of str, length n_actuators
        Non-muscle ScalarActuators (reserves, residuals) of the model.

    Returns
    -------
    tau : ndarray, shape (n_frames, n_coordinates)
        Generalised forces (N m or N) that the actuators and muscles must supply.
    actuator_map : ndarray, shape (n_frames, n_actuators, n_coordinates)
        Generalised forces of each actuator at control 1 (optimal force included).
    """
    import opensim

    model = load_model(model_path, reserves, initialize=False)
    for muscle in _muscles(model):
        muscle.set_appliesForce(False)
    with tempfile.TemporaryDirectory(prefix="opensim_pinn_loads_") as folder:
        if external_loads:
            window = _loads_for_window(Path(external_loads), time[0], time[-1], Path(folder))
            model.addModelComponent(opensim.ExternalLoads(str(window), True))
        model.finalizeConnections()
        state = model.initSystem()
    coordinate_set = model.getCoordinateSet()
    column = _mobility_order(state, [coordinate_set.get(name) for name in coordinates])
    mobility_of = {coordinates[c]: u for u, c in enumerate(column)}
    scalar = [opensim.ScalarActuator.safeDownCast(model.getForceSet().get(name)) for name in actuators]
    for actuator in scalar:
        actuator.overrideActuation(state, True)
        actuator.setOverrideActuation(state, 0.0)
    solver = opensim.InverseDynamicsSolver(model)
    n_frames = len(time)
    tau = np.empty((n_frames, len(coordinates)))
    actuator_map = np.zeros((n_frames, len(actuators), len(coordinates)))
    coordinate_objects = [coordinate_set.get(name) for name in coordinates]
    jacobians = _FrameJacobians(model)
    unit_forces = [_unit_generalized_force(model, actuator, mobility_of, jacobians, state.getNU())
                   for actuator in scalar]
    optimal_forces = [actuator.getOptimalForce() for actuator in scalar]
    # Without quaternions (n_q = n_u) a coordinate's q has its speed's index: q and u are set at once.
    whole_q = state.getNQ() == state.getNU()
    for frame in range(n_frames):
        state.setTime(float(time[frame]))
        if whole_q:
            state.setQ(opensim.Vector(q[frame, column].tolist()))
        else:
            for coordinate, value in zip(coordinate_objects, q[frame].tolist()):
                coordinate.setValue(state, value, False)
        state.setU(opensim.Vector(qd[frame, column].tolist()))
        udot = opensim.Vector(qdd[frame, column].tolist())
        base = solver.solve(state, udot).to_numpy()
        tau[frame, column] = base
        jacobians.clear()
        for a, actuator in enumerate(scalar):
            mobility_forces = None if unit_forces[a] is None else unit_forces[a](state)
            if mobility_forces is None:  # other actuator types: by difference of inverse dynamics
                actuator.setOverrideActuation(state, 1.0)
                mobility_forces = base - solver.solve(state, udot).to_numpy()
                actuator.setOverrideActuation(state, 0.0)
            actuator_map[frame, a, column] = mobility_forces * optimal_forces[a]
    return tau, actuator_map


def muscle_reference(model_path: str, coordinates: list[str], q: np.ndarray, qd: np.ndarray
                     ) -> dict[str, np.ndarray]:
    """OpenSim's own muscle quantities at the given frames, to check the torch module against.

    Parameters
    ----------
    coordinates : list of str
        Names of the columns of ``q`` and ``qd`` (the model's unlocked coordinates).
    q, qd : ndarray, shape (n_frames, n_coordinates)

    Returns
    -------
    dict with ``lengths`` and ``speeds`` (n_frames, n_muscles), ``moment_arms``
    (n_frames, n_muscles, n_coordinates; zero for coordinates a muscle does not
    span) and ``active_force`` (n_frames, n_muscles) =
    ``calcInextensibleTendonActiveFiberForce(state, 1.0)``.
    """
    model = load_model(model_path)
    state = model.getWorkingState()
    coordinate_set = model.getCoordinateSet()
    handles = [coordinate_set.get(name) for name in coordinates]
    muscles = _muscles(model)
    spans = [[coordinates.index(c) for c in names] for names in _spanned_coordinates(model, state, muscles)]
    n_frames, n_muscles = len(q), len(muscles)
    out = {"lengths": np.empty((n_frames, n_muscles)), "speeds": np.empty((n_frames, n_muscles)),
           "moment_arms": np.zeros((n_frames, n_muscles, len(coordinates))),
           "active_force": np.empty((n_frames, n_muscles))}
    for frame in range(n_frames):
        for i, coordinate in enumerate(handles):
            coordinate.setValue(state, float(q[frame, i]), False)
            coordinate.setSpeedValue(state, float(qd[frame, i]))
        model.realizeVelocity(state)
        for m, muscle in enumerate(muscles):
            out["lengths"][frame, m] = muscle.getLength(state)
            out["speeds"][frame, m] = muscle.getLengtheningSpeed(state)
            out["active_force"][frame, m] = muscle.calcInextensibleTendonActiveFiberForce(state, 1.0)
            for i in spans[m]:
                out["moment_arms"][frame, m, i] = muscle.computeMomentArm(state, handles[i])
    return out


def model_info_from_dict(data: dict) -> ModelInfo:
    """Inverse of :meth:`ModelInfo.to_dict` (for caches and checkpoints)."""
    return ModelInfo(name=data["name"], path=data["path"], bodies=list(data["bodies"]),
                     coordinates=[CoordinateInfo(**{**c, "range": tuple(c["range"])})
                                  for c in data["coordinates"]],
                     muscles=[MuscleInfo(**m) for m in data["muscles"]],
                     actuators=[ActuatorInfo(**a) for a in data["actuators"]],
                     state_variables=list(data.get("state_variables", [])))


def coordinate_directions(model_path: str) -> dict[str, np.ndarray]:
    """Direction of each coordinate's motion in ground, with every coordinate at 0 (or the nearest end
    of its range): the model's neutral pose, symmetric in a bilateral model.

    For each coordinate, the spatial velocity in ground of its joint's child body
    when that coordinate's speed is 1 and every other speed is 0: a rotational
    coordinate's axis is the angular part, a translational coordinate's the
    linear part (of the body's origin). :mod:`opensim_pinn.augment` compares the
    ``_r`` and ``_l`` sides with it, so that mirroring follows the model's own
    joint definitions.

    Returns
    -------
    dict
        Coordinate name to an array of shape (6,): angular (rad/s), then linear (m/s) velocity.
    """
    model = load_model(model_path)
    state = model.initSystem()
    for coordinate in _coordinates(model):
        value = min(max(0.0, coordinate.getRangeMin()), coordinate.getRangeMax())
        coordinate.setValue(state, value, False)
    model.assemble(state)
    directions = {}
    for coordinate in _coordinates(model):
        body = coordinate.getJoint().getChildFrame().findBaseFrame()
        state.updU().setToZero()
        coordinate.setSpeedValue(state, 1.0)
        model.realizeVelocity(state)
        velocity = body.getVelocityInGround(state)
        directions[coordinate.getName()] = np.concatenate([velocity.get(0).to_numpy(), velocity.get(1).to_numpy()])
    return directions


SAMPLE_MARGIN = 0.1
"""Share of a coordinate's range added on each side of the range sampled for the joint transforms."""

CHECK_SAMPLES = 200
"""Random samples of each joint's transform, besides those fitted to, for checking the fit."""


def joint_transform_samples(model_path: str, bodies: list[str], *, reach: dict | None = None, n_samples: int = 600,
                            seed: int = 0) -> list[dict]:
    """Samples of each joint's transform on the paths from ground to ``bodies``, for
    :mod:`opensim_pinn.body_kinematics`.

    For every joint between ground and a body of ``bodies`` (parents first), the child body's
    pose in the parent body (``findTransformBetween``) at ``n_samples`` values of the joint's
    unlocked coordinates over each coordinate's range in the model, widened to ``reach`` (coordinate
    name to the (lowest, highest) values to cover, e.g. the training trials') and by
    :data:`SAMPLE_MARGIN` on each side (rotations within +-pi): evenly spaced for a joint of one
    coordinate, drawn uniformly for several; and at :data:`CHECK_SAMPLES` other random values.
    Locked coordinates stay at their default values.

    Returns
    -------
    list of dict
        ``joint``, ``parent``, ``child`` (body names, "ground" for ground), ``coordinates`` (unlocked, in the
        joint's order), ``rotational`` (bool per coordinate), ``ranges`` (k, 2), the sampled ranges,
        ``values`` (n, k) rad or m and ``transforms`` (n, 3, 4): rotation matrix and origin (m) of the
        child body in the parent body; ``check_values`` and ``check_transforms`` likewise.

    Raises
    ------
    InputError
        A coordinate on those paths depends on others (a coordinate coupler): not supported.
    """
    import opensim

    model = load_model(model_path)
    state = model.initSystem()
    by_child = {}
    for joint in model.getJointSet():
        by_child[joint.getChildFrame().findBaseFrame().getName()] = joint
    chain: dict = {}  # joint name -> joint, parents first
    for body in bodies:
        path, name = [], body
        while name in by_child:
            path.append(by_child[name])
            name = by_child[name].getParentFrame().findBaseFrame().getName()
        for joint in reversed(path):
            chain.setdefault(joint.getName(), joint)
    generator = np.random.default_rng(seed)
    samples = []
    for joint in chain.values():
        coordinates = [joint.get_coordinates(i) for i in range(joint.numCoordinates())]
        for coordinate in coordinates:
            if coordinate.isDependent(state):
                raise InputError(f"{model_path}: coordinate {coordinate.getName()} of joint {joint.getName()} "
                                 "depends on other coordinates (a coupler constraint), which the loads' generalised "
                                 "forces cannot follow; train with --outputs activations")
            coordinate.setValue(state, coordinate.getDefaultValue(), False)
        free = [c for c in coordinates if not c.getDefaultLocked()]
        rotational = [c.getMotionType() == opensim.Coordinate.Rotational for c in free]
        covered = [(reach or {}).get(c.getName(), (np.inf, -np.inf)) for c in free]
        low = np.array([min(c.getRangeMin(), lowest) for c, (lowest, _) in zip(free, covered)])
        high = np.array([max(c.getRangeMax(), highest) for c, (_, highest) in zip(free, covered)])
        margin = SAMPLE_MARGIN * (high - low)
        low, high = low - margin, high + margin
        limit = np.where(rotational, np.pi, np.inf)
        low, high = np.maximum(low, -limit), np.minimum(high, limit)
        values = np.linspace(low, high, n_samples) if len(free) == 1 else \
            low + (high - low) * generator.random((n_samples if free else 1, len(free)))
        checks = low + (high - low) * generator.random((CHECK_SAMPLES if free else 0, len(free)))
        parent, child = joint.getParentFrame().findBaseFrame(), joint.getChildFrame().findBaseFrame()

        def poses(at: np.ndarray) -> np.ndarray:
            out = np.empty((len(at), 3, 4))
            for row, value in enumerate(at):
                for coordinate, v in zip(free, value.tolist()):
                    coordinate.setValue(state, v, False)
                model.realizePosition(state)
                pose = child.findTransformBetween(state, parent)
                rotation, origin = pose.R(), pose.p()
                out[row] = [[rotation.get(i, j) for j in range(3)] + [origin.get(i)] for i in range(3)]
            return out

        samples.append({"joint": joint.getName(), "parent": parent.getName(), "child": child.getName(),
                        "coordinates": [c.getName() for c in free], "rotational": rotational,
                        "ranges": np.column_stack([low, high]), "values": values, "transforms": poses(values),
                        "check_values": checks, "check_transforms": poses(checks)})
        for coordinate in coordinates:
            coordinate.setValue(state, coordinate.getDefaultValue(), False)
    return samples
