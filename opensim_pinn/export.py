"""Export a checkpoint's network and muscle module as one TorchScript or ONNX file.

The exported file runs without opensim-pinn (TorchScript: ``torch.jit.load``;
ONNX: any ONNX runtime, e.g. ``onnxruntime``). It holds :class:`WindowModel`:

- input ``features``: float32, shape (n_frames, 3 * n_coordinates + n_grf) (any n_frames;
  ONNX of a ``cnn`` or stacked-GRU network: the fixed ``frames`` of the metadata, by default
  the training window, as their layers trace with fixed sizes): per
  frame, the *filtered* coordinates q (rad; m for translations), speeds qd,
  accelerations qdd (in the checkpoint's coordinate order), then the ground
  reaction force components (N, in ``grf_labels`` order), unnormalised;
- outputs ``activations`` and ``forces`` (N): float32, shape (n_frames, n_muscles).

The network reads the frames as one BiGRU window. For up to ``window`` frames
(the training window, in the metadata) this is exactly what ``predict`` computes;
``predict`` cuts longer trials into windows of ``window`` frames that overlap by
half and blends them with triangular weights; :mod:`opensim_pinn.streaming` does
the same frame by frame. A checkpoint with an internal rate (``rate_hz`` in the
metadata, :attr:`~opensim_pinn.trainer.TrainConfig.rate`) takes frames at that rate:
resample others to it first (``predict`` does, :mod:`opensim_pinn.timebase`).

The names, the feature layout and these descriptions are stored in the file as
JSON: ``opensim_pinn.json`` among the TorchScript file's extra files, and the
``opensim_pinn`` metadata property of the ONNX model.

:func:`frame_step_runner` runs the streaming step (:class:`~opensim_pinn.streaming.FrameStep`)
with PyTorch, TorchScript or ONNX Runtime.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .errors import InputError
from .multipliers import require_activation_outputs

log = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx")
BACKENDS = ("torch", "torchscript", "onnxruntime")
ONNX_OPSET = 17
METADATA_KEY = "opensim_pinn"


class WindowModel(nn.Module):
    """Raw features of a window to activations and muscle forces (float32; see the module docstring).

    Networks with a per-frame encoder and one GRU layer (the defaults) use the fused parts
    of the streaming step (:class:`~opensim_pinn.fused.FusedNetwork`) and take any number
    of frames, in ONNX too; others (``cnn``, stacked GRUs) run the network as it is.
    """

    def __init__(self, trainer):
        super().__init__()
        from .fused import FusedNetwork, fusable

        self.n_coordinates = len(trainer.coordinates)
        self.fused = fusable(trainer.network)
        if self.fused:
            self.parts = FusedNetwork(trainer)
            return
        self.network = copy.deepcopy(trainer.network).cpu().float().eval()
        self.register_buffer("mean", torch.tensor(trainer.feature_mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(trainer.feature_std, dtype=torch.float32))
        lower, upper = trainer._bounds("cpu")
        self.register_buffer("lower", lower)
        self.register_buffer("span", upper - lower)
        self.muscles = copy.deepcopy(trainer.inference_muscle_model()).cpu()
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.n_coordinates
        if not self.fused:
            logits = self.network.logits(((features - self.mean) / self.std).unsqueeze(0))[0]
            activations = torch.addcmul(self.lower, self.span, torch.sigmoid(logits))
            return activations, self.muscles.muscle_forces(features[:, :c], features[:, c:2 * c], activations)
        parts = self.parts
        frame = parts.encoder(features)  # (n_frames, D)
        weights = [getattr(parts, f"{d}_{n}") for d in ("forward", "backward")
                   for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        sequence = torch.gru(frame.unsqueeze(1), frame.new_zeros(2, 1, parts.hidden_size), weights, True, 1, 0.0,
                             False, True, False)[0][:, 0]  # (n_frames, 2H), both directions
        logits = parts.heads(torch.cat([sequence, frame], dim=-1))[:, :parts.n_muscles]
        activations = torch.addcmul(parts.lower, parts.span, torch.sigmoid(logits))
        return activations, parts.muscle_forces(features[:, :c], features[:, c:2 * c], activations)


def metadata(trainer) -> dict:
    """What an exported file says about itself: names, layout, inputs and outputs."""
    from .network import feature_layout

    layout = feature_layout(len(trainer.coordinates), len(trainer.grf_labels))
    return {"format": "opensim-pinn-export", "package_version": __version__, "model": trainer.info.name,
            "coordinates": list(trainer.coordinates), "muscles": list(trainer.muscles),
            "grf_labels": list(trainer.grf_labels), "window": trainer.config.window_frames(),
            "rate_hz": trainer.config.rate, "lowpass_hz": trainer.lowpass,
            "feature_layout": {k: [v.start, v.stop] for k, v in layout.items()},
            "inputs": {"features": "float32 (n_frames, 3*n_coordinates+n_grf): filtered q (rad, m), qd, qdd, "
                                   "then GRF (N), unnormalised"},
            "outputs": {"activations": "float32 (n_frames, n_muscles)",
                        "forces": "float32 (n_frames, n_muscles), muscle forces (N)"}}


def export_model(checkpoint: str | Path, out: str | Path, format: str, *, frames: int | None = None,
                 force: bool = False) -> dict:
    """Write the checkpoint's :class:`WindowModel` to ``out`` as TorchScript or ONNX.

    Parameters
    ----------
    checkpoint : path
        ``checkpoint.pt`` from ``opensim-pinn train``.
    out : path
        The file to write (replaced only with ``force``).
    format : "torchscript" or "onnx"
    frames : int, optional
        ONNX of a network that is not fused (``cnn``, stacked GRU layers: its attention's
        reshapes are traced with fixed sizes): the number of frames the file takes; default
        the training window. Other files take any number of frames.

    Returns
    -------
    dict
        ``file``, ``format``, ``inputs``, ``outputs``, ``muscles``, ``coordinates``, ``grf_labels``.
    """
    from .storage import write_atomically
    from .trainer import Trainer

    if format not in FORMATS:
        raise InputError(f"--format {format}: choose {' or '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; give the file to write as --out")
    if out.exists() and not force:
        raise InputError(f"{out}: already exists; use --force to replace it, or choose another --out")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: no such folder; create it or choose another --out")
    if format == "onnx":
        _require_onnx()
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
        raise InputError(f"--frames must be a whole number of frames, 1 or more, got {frames!r}")
    trainer = Trainer.load(checkpoint)
    require_activation_outputs(trainer, "be exported")
    model = WindowModel(trainer)
    n_frames = frames or trainer.config.window_frames() or 16
    example = torch.zeros(n_frames, len(trainer.feature_mean))
    info = metadata(trainer)
    info["frames"] = "any" if format == "torchscript" or model.fused else n_frames
    if format == "torchscript":
        content = _torchscript_bytes(model, (example,), info)
    else:
        dynamic = {name: {0: "frames"} for name in ("features", "activations", "forces")} if model.fused else {}
        content = _onnx_bytes(model, (example,), ["features"], ["activations", "forces"], dynamic, info)
    write_atomically(out, content)
    return {"file": str(out), "format": format, "inputs": info["inputs"], "outputs": info["outputs"],
            "coordinates": info["coordinates"], "muscles": info["muscles"], "grf_labels": info["grf_labels"],
            "window": info["window"], "frames": info["frames"]}


def _torchscript_bytes(module: nn.Module, example: tuple, info: dict) -> bytes:
    traced = _trace(module, example)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={f"{METADATA_KEY}.json": json.dumps(info)})
    return buffer.getvalue()


def _trace(module: nn.Module, example: tuple):
    """TorchScript trace of ``module`` (with gradients on: attention then avoids its fused inference kernel)."""
    with torch.enable_grad():
        return torch.jit.trace(module, example, check_trace=False)


def _onnx_bytes(module: nn.Module, example: tuple, inputs: list[str], outputs: list[str], dynamic: dict,
                info: dict) -> bytes:
    import onnx

    buffer = io.BytesIO()
    with torch.enable_grad(), warnings.catch_warnings():
        # the exporter warns about GRUs whenever the batch is not 1; ours are exported with fixed batch sizes
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(module, example, buffer, input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                          opset_version=ONNX_OPSET, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(info)
    return proto.SerializeToString()


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise InputError("ONNX export needs the onnx package: pip install 'opensim-pinn[export]'") from None


class _StepRunner:
    """Runs a :class:`~opensim_pinn.streaming.FrameStep` with one backend on numpy float32 arrays.

    The runner owns its input arrays ``features``, ``hidden``, ``lengths`` (int64) and ``weights`` (the
    step's inputs, shapes of :class:`~opensim_pinn.streaming.FrameStep`): a stream writes a frame's inputs
    into them and calls :meth:`run`, without copies (ONNX Runtime reads them in place through its I/O
    binding, PyTorch through tensors sharing their memory).
    """

    def __init__(self, step, backend: str):
        if backend not in BACKENDS:
            raise InputError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        self.window, self.stride, self.n_windows, self.n_frames = step.window, step.stride, step.n_windows, step.n_frames
        self.hidden_size = step.hidden_size
        self.backend = backend
        example = (torch.zeros(step.n_frames, step.n_features), torch.zeros(step.n_windows, self.hidden_size),
                   torch.ones(step.n_windows, dtype=torch.long), torch.ones(step.n_windows))
        self.features, self.hidden, self.lengths, self.weights = self._inputs = tuple(x.numpy().copy() for x in example)
        if backend == "torch":
            self._module = step
        elif backend == "torchscript":
            self._module = torch.jit.freeze(_trace(step, example).eval())
        else:
            self._bind(step, example)
            return
        self._tensors = tuple(torch.from_numpy(x) for x in self._inputs)

    def _bind(self, step, example: tuple) -> None:
        """ONNX Runtime session of ``step``, its inputs and outputs bound once to arrays of the runner."""
        _require_onnx()
        try:
            import onnxruntime
        except ImportError:
            raise InputError("the onnxruntime backend needs the onnxruntime package: "
                             "pip install 'opensim-pinn[export]'") from None

        names = ["features", "hidden", "lengths", "weights"]
        outputs = ["activations", "forces", "controls", "actuator_forces", "next_hidden"]
        content = _onnx_bytes(step, example, names, outputs, {}, {})
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(content, options, providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            self._outputs = tuple(o.numpy().copy() for o in step(*example))
        self._binding = self._session.io_binding()
        for i in graph_inputs(self._session, names):
            self._binding.bind_ortvalue_input(names[i], onnxruntime.OrtValue.ortvalue_from_numpy(self._inputs[i]))
        for name, array in zip(outputs, self._outputs):
            self._binding.bind_ortvalue_output(name, onnxruntime.OrtValue.ortvalue_from_numpy(array))

    def run(self) -> tuple[np.ndarray, ...]:
        """The step on the runner's input arrays: activations (n_muscles,), forces (n_muscles,), actuator
        controls and forces (n_actuators,), next forward states (n_windows, hidden), as numpy arrays that
        the next run may overwrite."""
        if self.backend == "onnxruntime":
            self._session.run_with_iobinding(self._binding)
            return self._outputs
        with torch.inference_mode():
            return tuple(o.numpy() for o in self._module(*self._tensors))

    def __call__(self, features: np.ndarray, hidden: np.ndarray, lengths: np.ndarray, weights: np.ndarray):
        """:meth:`run` on these inputs (copied in), with outputs of their own; ``lengths`` int64."""
        for bound, given in zip(self._inputs, (features, hidden, lengths, weights)):
            np.copyto(bound, given)
        return tuple(o.copy() for o in self.run())


def graph_inputs(session, names: list[str]) -> list[int]:
    """Positions in ``names`` of the inputs an ONNX Runtime ``session``'s graph reads: the exporter drops the
    inputs a graph does not use (the frame step's ``lengths`` without lookahead)."""
    used = {i.name for i in session.get_inputs()}
    return [i for i, name in enumerate(names) if name in used]


def frame_step_runner(step, backend: str = "torch") -> _StepRunner:
    """A callable running ``step`` (a FrameStep) with ``backend`` ("torch", "torchscript", "onnxruntime")."""
    return _StepRunner(step, backend)


__all__ = ["WindowModel", "export_model", "frame_step_runner", "graph_inputs", "metadata", "FORMATS", "BACKENDS"]
