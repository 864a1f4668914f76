"""The ``opensim-pinn`` command: parse, call the API, report. Nothing else lives here."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time

from . import __version__
from .errors import InputError, OpenSimCrash, require_file
from .snapshots import DEFAULT_SNAPSHOT_EVERY

log = logging.getLogger("opensim_pinn")

RESERVES_HELP = ("reserve/residual actuators: an OpenSim ForceSet .xml appended to the model (like "
                 "OpenSim's force_set_files), or 'auto': a CoordinateActuator on every unlocked coordinate, "
                 "optimal force 1 (N m or N) where muscles act and 1000 where none does, controls within "
                 "+-1000")


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error (exit code 2) instead of usage + error."""

    def error(self, message: str):
        self.exit(2, f"opensim-pinn: error: {message}; see '{self.prog} --help'\n")


def _trial_options(parser: argparse.ArgumentParser, *, several: bool = False, model: bool = True,
                   required: bool = True, needed: str = " (needed unless --resume)",
                   model_needed: str | None = None) -> None:
    needed = "" if required else needed
    if model:
        parser.add_argument("--model", required=required, metavar="MODEL.osim",
                            help="scaled OpenSim model" + (needed if model_needed is None else model_needed))
    parser.add_argument("--motion", required=required, metavar="IK.mot", action="append" if several else None,
                        help="inverse-kinematics coordinates (.mot/.sto)"
                        + (", repeat to train on several trials" if several else "") + needed)
    parser.add_argument("--external-loads", metavar="LOADS.xml", action="append" if several else None,
                        help="OpenSim ExternalLoads file with its ground reaction force data"
                        + (", one per --motion, in the same order" if several else ""))
    parser.add_argument("--start", type=float, metavar="T", help="first time analysed (s); default: motion start")
    parser.add_argument("--end", type=float, metavar="T", help="last time analysed (s); default: motion end")


def _augmentations(text: str) -> list[str]:
    """``--augment mirror,timescale`` as a list of names (checked by the API)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _outputs_option(parser):
    parser.add_argument("--outputs", default="activations", choices=("activations", "multipliers", "forces"),
                        help="what the network outputs: activations, one per muscle (default); multipliers, "
                             "Static Optimization's multipliers, one per coordinate, with the activations from "
                             "the muscles at each frame; forces, the generalised forces of motion, one per "
                             "coordinate, fitted to the trials' inverse dynamics, with the loads' own computed "
                             "exactly and Static Optimization solved per frame: far better on new trials (each "
                             "load's force in ground, its point in ground or in its body; without loads the "
                             "network learns all the generalised forces). The last two are not for stream or "
                             "export")


def _reserves_option(parser):
    parser.add_argument("--reserves", metavar="FILE|auto", help=RESERVES_HELP)


def _lowpass_option(parser):
    parser.add_argument("--lowpass", type=float, metavar="HZ",
                        help="low-pass cut-off for the coordinates, Hz, as OpenSim's tools (default 6, or "
                             "--setup's; -1: no filtering)")


def _step_option(parser):
    parser.add_argument("--step-interval", type=int, metavar="N",
                        help="analyse every N-th frame, as OpenSim's step_interval (default 1, or "
                             "--setup's)")


SETUP_NEEDED = " (needed unless --setup gives it)"


def _setup_option(parser):
    parser.add_argument("--setup", metavar="SETUP.xml",
                        help="an OpenSim Static Optimization setup (AnalyzeTool with a StaticOptimization analysis): "
                             "its model_file, force_set_files, coordinates_file, external_loads_file, initial_time, "
                             "final_time, lowpass_cutoff_frequency_for_coordinates, step_interval and "
                             "results_directory (as --out) are used, relative paths from the setup's folder as "
                             "OpenSim does; options given here override them")


MANIFEST_NEEDED = " (needed unless --manifest or --setup)"


def _manifest_option(parser, what: str):
    parser.add_argument("--manifest", metavar="TRIALS.csv|.toml",
                        help=f"{what} every trial of a manifest (CSV or TOML: motion, external_loads, start, end, "
                             "name per trial; paths relative to it) instead of --motion: the model is prepared "
                             "once, each trial's files are named by its name, and all are written together "
                             "after every input is checked; under torchrun (RANK, WORLD_SIZE) each process "
                             "takes trials i with i %% WORLD_SIZE == RANK")


def _device_option(parser, what: str):
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help=f"where {what} (default cpu)")


def _threads_option(parser):
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="CPU threads torch uses for the (timed) inference (default 1: the work is small, "
                             "and more threads wait for each other, badly so on a busy machine)")


def _out_options(parser, default=None, *, required: bool = True, needed: str = " (needed unless --resume)"):
    parser.add_argument("--out", required=required and default is None, default=default, metavar="DIR",
                        help="output folder" + (f" (default {default})" if default else "")
                        + ("" if required else needed))
    parser.add_argument("--force", action="store_true", help="replace existing output files")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="opensim-pinn",
        description="Muscle activations and forces for OpenSim models in milliseconds: a physics-informed "
                    "MJCA-BiGRU network trained without labels, compared with OpenSim Static Optimization.")
    parser.add_argument("--version", action="version", version=f"opensim-pinn {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    inspect = commands.add_parser("inspect", help="describe a model's muscles, coordinates and actuators",
                                  description="Describe a model: muscles (class, Hill parameters, coordinates "
                                  "spanned), coordinates, actuators. With --motion, fit the muscle path "
                                  "polynomials around it (cached) and report their error against OpenSim in mm.")
    inspect.add_argument("model", metavar="MODEL.osim")
    _reserves_option(inspect)
    inspect.add_argument("--motion", metavar="IK.mot", help="report the path polynomials' fit on this motion")
    _lowpass_option(inspect)
    inspect.add_argument("--path-fitter", choices=["auto", "opensim", "lstsq"], default="auto",
                         help="how --motion's path polynomials are fitted: 'opensim' (OpenSim's "
                              "PolynomialPathFitter), 'lstsq' (the same polynomials by least squares to "
                              "OpenSim's lengths and moment arms), 'auto' (default: the fitter, least squares "
                              "where it fails)")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")

    so = commands.add_parser("static-opt", help="Static Optimization: OpenSim's own or the fast batched solver",
                             description="Solve OpenSim Static Optimization (activation exponent 2, muscle "
                             "physiology on) on a trial and write <trial>_StaticOptimization_force.sto, "
                             "<trial>_StaticOptimization_activation.sto and timing.json.")
    _setup_option(so)
    _trial_options(so, required=False, needed=MANIFEST_NEEDED, model_needed=SETUP_NEEDED)
    _manifest_option(so, "solve")
    _device_option(so, "the fast solver runs")
    _reserves_option(so)
    _lowpass_option(so)
    _step_option(so)
    so.add_argument("--solver", choices=("fast", "opensim"), default="fast",
                    help="fast: the project's batched solver with the torch muscle model (default); "
                         "opensim: OpenSim's AnalyzeTool, in a child process")
    _out_options(so, required=False, needed=SETUP_NEEDED)

    train = commands.add_parser("train", help="train the network on trials, label-free",
                                description="Train the PI-MJCA-BiGRU network on one or more trials of a "
                                "model with the physics-informed loss (no labels). Writes checkpoint.pt and "
                                "history.csv. While it trains, resume.pt in --out keeps a snapshot: after "
                                "Ctrl-C or a killed process, 'opensim-pinn train --resume DIR' finishes the run "
                                "as if it had not stopped.")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue the interrupted training whose --out was RUN_DIR, with its settings "
                            "(give no other training option); on the CPU it ends with the weights of an "
                            "uninterrupted run (not with --time-limit)")
    _setup_option(train)
    _trial_options(train, several=True, required=False,
                   needed=" (needed unless --manifest, --resume or --setup)")
    train.add_argument("--manifest", metavar="TRIALS.csv|.toml",
                       help="many trials of the model in one file, instead of --motion/--external-loads: a CSV "
                            "with a header row 'motion,external_loads,start,end' (only motion is required; empty "
                            "cells: none) or TOML [[trial]] tables with those keys; paths relative to the manifest")
    train.add_argument("--validation", metavar="TRIALS.csv|.toml",
                       help="a manifest of held-out trials: their physics loss (no labels) goes into history.csv "
                            "every --validate-every epochs, and checkpoint.pt keeps the epoch with the lowest one")
    train.add_argument("--validate-every", type=int, metavar="N",
                       help="epochs between validations with --validation (default 10, and the last epoch)")
    train.add_argument("--batch-windows", type=int, metavar="N",
                       help="training windows per optimiser step, drawn across all trials (under torchrun: "
                            "all processes together); default: all windows, one step per epoch")
    train.add_argument("--distributed", action="store_true",
                       help="train in torchrun's processes with DistributedDataParallel (gloo on CPUs, NCCL on "
                            "GPUs); automatic when torchrun started the process: 'torchrun --nproc_per_node N -m "
                            "opensim_pinn train ...'")
    _reserves_option(train)
    _lowpass_option(train)
    _step_option(train)
    train.add_argument("--epochs", type=int, metavar="N", help="training epochs (default: the trainer's)")
    train.add_argument("--time-limit", type=float, metavar="SECONDS", help="stop training after this long")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _device_option(train, "to train")
    train.add_argument("--architecture", default="mjca", choices=("mjca", "bigru", "cnn", "mlp"),
                       help="mjca: multi-joint cross-attention + BiGRU (default); bigru: without attention; "
                            "cnn: a temporal CNN in place of the attention; mlp: a per-frame MLP baseline "
                            "(no attention, no GRU)")
    _outputs_option(train)
    train.add_argument("--augment", type=_augmentations, default=[], metavar="KINDS",
                       help="also train on augmented versions of each trial, each with its own inverse dynamics: "
                            "comma-separated mirror (left/right, for _r/_l models), timescale (15%% slower and "
                            "faster), perturb (2-degree pose offsets); default none")
    train.add_argument("--snapshot-every", type=int, default=DEFAULT_SNAPSHOT_EVERY, metavar="N",
                       help=f"epochs between snapshots for --resume (default {DEFAULT_SNAPSHOT_EVERY})")
    _out_options(train, required=False, needed=" (needed unless --resume or --setup)")
    train.set_defaults(command_parser=train)

    predict = commands.add_parser("predict", help="activations and forces of a new trial from a checkpoint",
                                  description="Predict muscle activations and forces for a motion with a "
                                  "trained checkpoint. Writes <trial>_forces.sto, <trial>_activations.sto and "
                                  "<trial>_states.sto. No OpenSim run is needed, unless --model is given: then "
                                  "OpenSim's inverse dynamics gives the exact actuator controls and "
                                  "<trial>_physics_check.sto.")
    predict.add_argument("--checkpoint", required=True, metavar="checkpoint.pt")
    _trial_options(predict, model=False, required=False, needed=" (needed unless --manifest)")
    _manifest_option(predict, "predict")
    predict.add_argument("--model", metavar="MODEL.osim",
                         help="the model the checkpoint was trained on: compute inverse dynamics, write the exact "
                              "least-cost reserve/residual controls for the predicted activations (instead of the "
                              "network's) and a per-frame physics check (needs OpenSim)")
    predict.add_argument("--reserves", metavar="FILE|auto",
                         help="with --model: the reserve/residual actuators used in training (ForceSet .xml or auto)")
    _device_option(predict, "the network and the muscle module run")
    _threads_option(predict)
    _out_options(predict)

    compare = commands.add_parser("compare", help="network vs OpenSim Static Optimization on a trial",
                                  description="Run OpenSim Static Optimization and the network on the same "
                                  "trial; write metrics.json, report.md and figures.")
    compare.add_argument("--checkpoint", required=True, metavar="checkpoint.pt")
    _setup_option(compare)
    _trial_options(compare, required=False, needed=SETUP_NEEDED)
    _reserves_option(compare)
    _step_option(compare)
    _device_option(compare, "the network and the muscle module run")
    _threads_option(compare)
    _out_options(compare, required=False, needed=SETUP_NEEDED)

    stream = commands.add_parser("stream", help="real-time predictions, frame by frame",
                                 description="Stream frames through a checkpoint as they arrive: from a motion "
                                 "file replayed at real-time pace, or tab-separated lines on stdin (time, the "
                                 "coordinates in radians/metres in the checkpoint's order, then the GRF components). "
                                 "Each finished frame is printed as one line (time, activations, forces in N); "
                                 "with --out the results are written as .sto files at the end; latency statistics "
                                 "go to stderr.")
    stream.add_argument("--checkpoint", required=True, metavar="checkpoint.pt",
                        help="checkpoint written by 'opensim-pinn train'")
    stream.add_argument("--motion", required=True, metavar="IK.mot|-",
                        help="inverse-kinematics motion (.mot/.sto) to replay, or '-' for lines on stdin")
    stream.add_argument("--external-loads", metavar="LOADS.xml",
                        help="ExternalLoads file of the motion file (stdin lines carry the GRF themselves)")
    stream.add_argument("--start", type=float, metavar="T", help="first time of the motion file replayed (s)")
    stream.add_argument("--end", type=float, metavar="T", help="last time of the motion file replayed (s)")
    stream.add_argument("--lookahead", type=float, default=0.0, metavar="SECONDS",
                        help="wait for this much later data before finishing a frame (default 0); latency = "
                             "lookahead + compute")
    stream.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=True,
                        help="replay a motion file at the pace of its time column (default), or as fast as possible")
    stream.add_argument("--out", metavar="DIR", help="folder for <name>_stream_forces.sto and "
                        "<name>_stream_activations.sto, written at the end")
    stream.add_argument("--backend", default="torch", choices=("torch", "torchscript", "onnxruntime"),
                        help="what computes each frame: PyTorch (default), TorchScript, or ONNX Runtime (the "
                             "fastest; needs the onnx and onnxruntime packages: pip install 'opensim-pinn[export]')")
    stream.add_argument("--force", action="store_true", help="replace existing output files")

    export = commands.add_parser("export", help="the network and the muscle module as one TorchScript or ONNX file",
                                 description="Export a checkpoint as one file that runs without opensim-pinn. "
                                 "Input 'features' float32 (n_frames, 3*n_coordinates+n_grf): filtered q (rad, m), "
                                 "qd, qdd, then GRF (N); outputs 'activations' and 'forces' (N), (n_frames, "
                                 "n_muscles). The frames are read as one BiGRU window (names and layout are stored "
                                 "in the file).")
    export.add_argument("--checkpoint", required=True, metavar="checkpoint.pt",
                        help="checkpoint written by 'opensim-pinn train'")
    export.add_argument("--format", required=True, choices=("torchscript", "onnx"),
                        help="torchscript (torch.jit.load) or onnx (ONNX Runtime; needs the onnx package)")
    export.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    export.add_argument("--frames", type=int, metavar="N", help="onnx of a cnn or stacked-GRU network only: frames "
                        "per call, fixed in the file (default: the training window); other files take any number")
    export.add_argument("--force", action="store_true", help="replace an existing file")

    evaluate = commands.add_parser(
        "evaluate", help="cross-validation: train on some trials or strides, test on the held-out ones",
        description="Cross-validation in one command. Folds are the trials of a --manifest (leave one trial "
        "out), or segments of one --motion: --folds strides (from heel strikes: the vertical ground reaction "
        "force of the foot with the most strikes rising through 20 N or 5 %% of its peak) or --folds SECONDS. "
        "For each fold the network is trained label-free on the other folds and compared, on the held-out "
        "frames only, with OpenSim Static Optimization (or --reference fast). Writes metrics.json, report.md "
        "and figures to --out.")
    evaluate.add_argument("--model", required=True, metavar="MODEL.osim", help="scaled OpenSim model")
    evaluate.add_argument("--manifest", metavar="TRIALS.csv|toml",
                          help="trials of the model (see 'train --help'), one fold each")
    _trial_options(evaluate, model=False, required=False, needed=" (instead of --manifest)")
    evaluate.add_argument("--folds", metavar="strides|SECONDS",
                          help="how --motion is cut into folds: 'strides' (needs --external-loads) or a duration in s")
    _reserves_option(evaluate)
    _lowpass_option(evaluate)
    evaluate.add_argument("--reference", default="opensim", choices=("opensim", "fast"),
                          help="what the held-out predictions are compared with: OpenSim's Static Optimization "
                               "(default) or the project's fast solver of the same problem (seconds, no OpenSim run)")
    evaluate.add_argument("--epochs", type=int, metavar="N", help="training epochs per fold (default: the trainer's)")
    evaluate.add_argument("--architecture", default="mjca",
                          help="network of every fold: one of opensim_pinn.network.ARCHITECTURES (default mjca; "
                               "see 'train --help')")
    evaluate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _outputs_option(evaluate)
    _out_options(evaluate)

    demo = commands.add_parser("demo", help="the whole job on the built-in example",
                               description="Build the built-in planar lower-limb model, synthesize a walking "
                               "trial, train the network, predict, and compare with OpenSim Static "
                               "Optimization (a few minutes on 2 CPU cores).")
    _out_options(demo, default="opensim-pinn-demo")

    cache = commands.add_parser("cache", help="where the cache is, what it holds; empty it",
                                description="The cache keeps model descriptions, prepared trials (OpenSim "
                                "inverse dynamics) and muscle path fits, keyed by the input files' contents, in "
                                "$OPENSIM_PINN_CACHE, else $XDG_CACHE_HOME/opensim-pinn, else "
                                "~/.cache/opensim-pinn. 'info' lists it; 'clear' removes its entries (only "
                                "files opensim-pinn wrote there).")
    cache.add_argument("action", choices=("info", "clear"), help="info: folder, entries by kind, size; "
                                                                  "clear: remove the entries")
    cache.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def run(args: argparse.Namespace) -> None:
    """Dispatch a parsed command line to the API."""
    progress = sys.stderr.isatty() and not args.quiet  # progress bars on a terminal only, not in logs
    if args.command == "inspect":
        from .model_report import format_report, inspect_model

        report = inspect_model(args.model, reserves=args.reserves, motion=args.motion, lowpass=args.lowpass,
                               path_fitter=args.path_fitter)
        print(json.dumps(report, indent=2) if args.json else format_report(report))
    elif args.command == "static-opt" and args.manifest is not None:
        from .batch import static_opt_manifest

        summary = static_opt_manifest(args.model, args.manifest, out=args.out, reserves=args.reserves,
                                      lowpass=args.lowpass, step_interval=args.step_interval, force=args.force,
                                      device=args.device, progress=progress)
        print(json.dumps(summary, indent=2, default=str))
    elif args.command == "static-opt":
        from .static_opt import static_optimization

        result = static_optimization(args.model, args.motion, out=args.out, external_loads=args.external_loads,
                                     reserves=args.reserves, start=args.start, end=args.end,
                                     lowpass=args.lowpass, step_interval=args.step_interval,
                                     solver=args.solver, force=args.force, name=getattr(args, "name", None),
                                     device=args.device)
        print(f"{args.solver} static optimization: {result['n_frames']} frames in "
              f"{result['timing']['wall_s']:.3f} s; wrote {', '.join(result['files'])}")
    elif args.command == "train" and args.resume is not None:
        from .train import resume_training

        summary = resume_training(args.resume, progress=progress, distributed=args.distributed)
        if summary is not None:  # under torchrun, process 0 reports
            print(json.dumps(summary, indent=2, default=str))
    elif args.command == "train":
        from .train import train_network

        summary = train_network(args.model, args.motion, args.external_loads, manifest=args.manifest,
                                validation=args.validation, validate_every=args.validate_every,
                                batch_windows=args.batch_windows, reserves=args.reserves,
                                start=args.start, end=args.end, lowpass=args.lowpass, step_interval=args.step_interval,
                                epochs=args.epochs,
                                time_limit=args.time_limit, seed=args.seed, device=args.device,
                                architecture=args.architecture, outputs=args.outputs, out=args.out,
                                force=args.force,
                                snapshot_every=args.snapshot_every, progress=progress,
                                distributed=args.distributed, augment=args.augment)
        if summary is not None:  # under torchrun, process 0 reports
            print(json.dumps(summary, indent=2, default=str))
    elif args.command == "predict" and args.manifest is not None:
        from .batch import predict_manifest

        summary = predict_manifest(args.checkpoint, args.manifest, out=args.out, force=args.force,
                                   device=args.device, threads=args.threads, progress=progress)
        print(json.dumps(summary, indent=2, default=str))
    elif args.command == "predict":
        from .predict import predict

        summary = predict(args.checkpoint, args.motion, args.external_loads, out=args.out, start=args.start,
                          end=args.end, force=args.force, device=args.device, threads=args.threads,
                          model=args.model, reserves=args.reserves)
        print(json.dumps(summary, indent=2, default=str))
    elif args.command == "compare":
        from .compare import compare

        summary = compare(args.checkpoint, args.model, args.motion, args.external_loads, reserves=args.reserves,
                          start=args.start, end=args.end, step_interval=args.step_interval, out=args.out,
                          force=args.force, device=args.device, threads=args.threads,
                          lowpass=getattr(args, "lowpass", None))
        print(json.dumps(summary, indent=2, default=str))
    elif args.command == "stream":
        from .live import stream

        summary = stream(args.checkpoint, args.motion, args.external_loads, lookahead=args.lookahead,
                         realtime=args.realtime, out=args.out, force=args.force, start=args.start, end=args.end,
                         backend=args.backend)
        print(json.dumps(summary, default=str), file=sys.stderr)
    elif args.command == "export":
        from .export import export_model

        print(json.dumps(export_model(args.checkpoint, args.out, args.format, frames=args.frames,
                                                     force=args.force), indent=2))
    elif args.command == "cache":
        from .cache import cache_info, clear_cache, format_size

        result = cache_info() if args.action == "info" else clear_cache()
        if args.json:
            print(json.dumps(result, indent=2))
        elif args.action == "info":
            print(f"cache: {result['folder']}{'' if result['exists'] else ' (not created yet)'}")
            for kind in result["kinds"].values():
                print(f"  {kind['entries']:5d} {kind['what']} ({format_size(kind['bytes'])})")
            print(f"  total {result['entries']} entries, {format_size(result['bytes'])}"
                  + (f"; {result['other_files']} other file(s), not opensim-pinn's" if result["other_files"] else ""))
        else:
            print(f"cache: removed {result['removed']} entries ({format_size(result['bytes'])}) from "
                  f"{result['folder']}" + (f"; left {result['kept']} file(s) opensim-pinn did not write"
                                           if result["kept"] else ""))
    elif args.command == "evaluate":
        from .evaluate import evaluate

        summary = evaluate(args.model, manifest=args.manifest, motion=args.motion, external_loads=args.external_loads,
                           reserves=args.reserves, folds=args.folds, start=args.start, end=args.end,
                           lowpass=args.lowpass, reference=args.reference, epochs=args.epochs,
                           architecture=args.architecture, outputs=args.outputs, seed=args.seed, out=args.out,
                           force=args.force,
                           progress=progress)
        print(json.dumps(summary, indent=2, default=str))
    elif args.command == "demo":
        from .demo import run_demo

        summary = run_demo(args.out, force=args.force, progress=progress)
        print(json.dumps(summary, indent=2, default=str))


def check_options(args: argparse.Namespace) -> None:
    """Cheap checks of the command line before any work: numbers in range, input files readable.

    Raises
    ------
    InputError
        With a one-line message naming the option or file.
    """
    if getattr(args, "resume", None) is None:
        _apply_setup(args)
    if args.command == "train":
        _check_train_options(args)
    if args.command == "static-opt" and args.device != "cpu" and args.solver != "fast":
        raise InputError("--device is for --solver fast (OpenSim's Static Optimization runs on the CPU)")
    if args.command == "static-opt" and args.manifest is not None and args.solver != "fast":
        raise InputError("--manifest runs the fast solver; leave out --solver opensim")
    if getattr(args, "manifest", None) is not None:
        given = [f"--{n.replace('_', '-')}" for n in ("motion", "external_loads", "start", "end")
                 if getattr(args, n) is not None]
        if given:
            raise InputError(f"--manifest lists each trial's motion, external loads, start and end: leave out "
                             f"{', '.join(given)}")
        if args.command == "predict" and args.model is not None:
            raise InputError("predict --manifest writes the network's actuator controls; leave out --model and "
                             "--reserves (predict one trial with --motion for the exact controls)")
        require_file(args.manifest, "manifest")
    elif args.command == "predict" and args.motion is None:
        raise InputError("predict needs --motion IK.mot or --manifest TRIALS.csv; see 'opensim-pinn predict --help'")
    if args.command in ("static-opt", "compare"):
        needed = ("model", "out") if getattr(args, "manifest", None) is not None else ("model", "motion", "out")
        missing = [f"--{name}" for name in needed if getattr(args, name) is None]
        if missing:
            raise InputError(f"the following arguments are required: {', '.join(missing)} (or --setup FILE "
                             f"giving them); see 'opensim-pinn {args.command} --help'")
    step_interval = getattr(args, "step_interval", None)
    if step_interval is not None and step_interval < 1:
        raise InputError(f"--step-interval must be 1 or more (analyse every N-th frame), got {step_interval}")
    lowpass = getattr(args, "lowpass", None)
    if lowpass is not None and (not math.isfinite(lowpass) or lowpass == 0):
        raise InputError(f"--lowpass must be a cut-off frequency in Hz above 0, or -1 for no filtering, "
                         f"got {lowpass:g}")
    for option in ("start", "end"):
        value = getattr(args, option, None)
        if value is not None and not math.isfinite(value):
            raise InputError(f"--{option} must be a time in seconds, got {value:g}")
    start, end = getattr(args, "start", None), getattr(args, "end", None)
    if start is not None and end is not None and start >= end:
        raise InputError(f"--start {start:g} s must be before --end {end:g} s")
    if getattr(args, "threads", None) is not None and args.threads < 1:
        raise InputError(f"--threads must be 1 or more, got {args.threads}")
    if getattr(args, "epochs", None) is not None and args.epochs < 1:
        raise InputError(f"--epochs must be 1 or more, got {args.epochs}")
    if getattr(args, "time_limit", None) is not None and not (args.time_limit > 0):
        raise InputError(f"--time-limit must be a number of seconds above 0, got {args.time_limit:g}")
    motions = _as_list(getattr(args, "motion", None))
    loads = _as_list(getattr(args, "external_loads", None))
    if loads and len(motions) > 1 and len(loads) != len(motions):
        raise InputError(f"{len(loads)} --external-loads for {len(motions)} --motion; give one per motion, "
                         "in the same order")
    files = [(getattr(args, "model", None), "model file"), (getattr(args, "checkpoint", None), "checkpoint")]
    files += [(motion, "motion file") for motion in motions if motion != "-" or args.command != "stream"]
    files += [(load, "external loads file") for load in loads]
    reserves = getattr(args, "reserves", None)
    if reserves is not None and reserves != "auto":
        files.append((reserves, "reserve actuator file"))
    for path, what in files:
        if path is not None:
            require_file(path, what)
    if getattr(args, "device", None) == "cuda":
        from .trainer import check_device

        check_device(args.device)


def _apply_setup(args: argparse.Namespace) -> None:
    """Options left out taken from ``--setup FILE`` (explicit options win), then the defaults."""
    from .trial import DEFAULT_LOWPASS_HZ

    if getattr(args, "setup", None) is not None:
        from .setup_file import OPTIONS, read_setup

        several = args.command == "train"  # --motion and --external-loads are lists there
        given = {name: getattr(args, name, None) for name in OPTIONS}
        merged = read_setup(args.setup).options(given)
        for name, value in merged.items():
            if several and name in ("motion", "external_loads") and given[name] is None and value is not None:
                value = [value]
            setattr(args, name, value)
    if hasattr(args, "lowpass") and args.lowpass is None:
        args.lowpass = DEFAULT_LOWPASS_HZ
    if hasattr(args, "step_interval") and args.step_interval is None:
        args.step_interval = 1


def _check_train_options(args: argparse.Namespace) -> None:
    """``train`` needs --model, --motion and --out, unless it resumes a run (which brings its own settings)."""
    if args.resume is not None:
        not_settings = {"command", "command_parser", "resume", "verbose", "quiet", "debug", "distributed"}
        given = [f"--{name.replace('_', '-')}" for name, value in vars(args).items()
                 if name not in not_settings and value != args.command_parser.get_default(name)]
        if given:
            raise InputError(f"--resume continues a run with the settings it began with; leave out {', '.join(given)}")
        return
    if args.manifest is not None and (args.motion or args.external_loads):
        raise InputError("give the trials with --manifest or with --motion/--external-loads, not both")
    trials = "manifest" if args.manifest is not None else "motion"
    missing = [f"--{name}" for name in ("model", trials, "out") if getattr(args, name) is None]
    if missing:
        raise InputError(f"train needs {', '.join(missing)} (or --manifest FILE instead of --motion, or --resume "
                         "RUN_DIR); see 'opensim-pinn train --help'")
    if args.snapshot_every < 1:
        raise InputError(f"--snapshot-every must be 1 or more, got {args.snapshot_every}")


def _resume_hint(args: argparse.Namespace, since: float | None) -> str | None:
    """How to continue a training left unfinished (its snapshot written after ``since``, if given)."""
    from .snapshots import interrupted

    run_dir = (args.resume or args.out) if args.command == "train" else None
    if run_dir is not None and interrupted(run_dir, since=since):
        return f"continue the training with 'opensim-pinn train --resume {run_dir}'"
    return None


def _after_interrupt(args: argparse.Namespace, started: float) -> str:
    """What an interrupted command leaves behind, and what to do next."""
    from pathlib import Path

    resumable = _resume_hint(args, None if args.command == "train" and args.resume else started)
    if resumable:
        return resumable
    if args.command == "demo" and Path(args.out).is_dir():
        from .demo import made_by_demo

        again = "opensim-pinn demo" if made_by_demo(args.out) else "opensim-pinn demo --force"
        return f"the steps it finished are in {args.out}; '{again}' starts it again"
    return "outputs of this run were not written"


def _as_list(value) -> list:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split("\n")).replace("\r", " ")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``opensim-pinn`` console script; returns the exit code.

    Exit codes: 0 done; 1 OpenSim crashed or a system error (disk full, ...);
    2 bad input or options (one line on stderr, nothing written); 130
    interrupted. ``--debug`` lets errors propagate with their traceback.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a one-line usage error (code 2)
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    started = time.time()
    try:
        check_options(args)
        run(args)
    except (InputError, OpenSimCrash, OSError) as error:
        if args.debug:
            raise
        if isinstance(error, (InputError, OpenSimCrash)):
            message = _one_line(error)
        else:
            where = f"{error.filename}: " if getattr(error, "filename", None) else ""
            message = f"{where}{error.strerror or _one_line(error)} (--debug shows the traceback)"
        hint = _resume_hint(args, started)  # only a training this command got going
        print(f"opensim-pinn: error: {message}{f'; {hint}' if hint else ''}", file=sys.stderr)
        return 2 if isinstance(error, InputError) else 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"opensim-pinn: interrupted; {_after_interrupt(args, started)}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
