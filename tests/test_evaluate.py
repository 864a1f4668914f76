"""Cross-validation (opensim-pinn evaluate) on the built-in model: folds, held-out frames, outputs, errors."""

import json

import numpy as np
import pytest

from opensim_pinn import cli
from opensim_pinn.errors import InputError


@pytest.fixture(scope="module")
def three_strides(builtin_project, tmp_path_factory):
    """The built-in model walking for three strides of 1.2 s (3.6 s at 100 Hz)."""
    from opensim_pinn.demo_model import synthesize_walking_trial

    return {"model": builtin_project["model"],
            **synthesize_walking_trial(builtin_project["model"], tmp_path_factory.mktemp("three_strides"),
                                       duration=3.6)}


def test_stride_folds_split_the_trial_and_leave_the_held_out_frames_out(three_strides):
    from opensim_pinn.evaluate import segment_folds
    from opensim_pinn.trial import load_kinematics, load_model_info

    files = {k: str(v) for k, v in three_strides.items()}
    plan = segment_folds(files["model"], files["motion"], files["external_loads"], folds="strides")
    # right heel strikes of the synthetic walk every 1.2 s (the first frame is already in contact)
    assert plan.gait["foot"] == "calcn_r"
    assert np.diff(plan.gait["heel_strikes_s"]) == pytest.approx([1.2, 1.2], abs=0.011)
    assert len(plan.folds) == 3

    info = load_model_info(files["model"])

    def times(settings):
        return load_kinematics(info, settings.motion, settings.external_loads, start=settings.start,
                               end=settings.end, lowpass=settings.lowpass).time

    every = times(plan.all_settings[0])
    held = [times(fold.held_out) for fold in plan.folds]
    assert np.array_equal(np.concatenate(held), every)  # each frame held out exactly once
    for fold, held_out in zip(plan.folds, held):
        trained = np.concatenate([times(s) for s in fold.training])
        assert not np.isin(held_out, trained).any()  # not one held-out frame is trained on
        assert len(trained) + len(held_out) == len(every)  # and every other frame is
    assert len(plan.folds[1].training) == 2  # the middle stride leaves two pieces, before and after it


def test_evaluate_writes_held_out_metrics_report_and_figures(three_strides, tmp_path, capsys):
    """Three identical synthetic strides: a network trained on two predicts the third as well as its own.

    200 epochs (a few seconds per fold) reach a training-frame median R^2 of about 0.96; the held-out strides
    are the same motion, so they must agree as well (measured 0.95-0.98; 0.9 allows for platform noise).
    """
    out = tmp_path / "cv"
    files = {k: str(v) for k, v in three_strides.items()}
    assert cli.main(["evaluate", "--model", files["model"], "--motion", files["motion"], "--external-loads",
                     files["external_loads"], "--folds", "strides", "--reference", "fast", "--epochs", "200",
                     "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["overall"]["n_frames"] == 361
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_folds"] == 3 and metrics["reference"] == "fast Static Optimization"
    for name, fold in metrics["folds"].items():
        assert fold["summary"]["median_r2"] > 0.9, name
        assert fold["summary"]["mean_nrmse"] < 0.15, name
        for training in fold["training_trials"]:  # the training windows lie outside the held-out one
            assert training["end_s"] < fold["held_out"]["start_s"] or training["start_s"] > fold["held_out"]["end_s"]
        agreement = [v["median_r2_vs_fast_static_optimization"] for v in fold["training_agreement"].values()]
        assert min(agreement) > 0.9, name
        assert set(fold["muscles"]) == set(metrics["muscles"])
    assert metrics["overall"]["median_r2"] > 0.9
    # no reserves: the muscles alone must balance the joints; measured 2.6-4.1 N m RMS at 200 epochs, against
    # walking torques that peak at 50-100 N m
    residual = metrics["overall"]["torque_residual"]
    assert set(residual) == set(fold["torque_residual"]) and max(residual.values()) < 10.0
    report = (out / "report.md").read_text()
    assert "held-out" in report and "calcn_r" in report
    for name in ("fold_r2.png", "fold_1_muscle_forces.png", "fold_3_muscle_forces.png"):
        assert (out / name).stat().st_size > 10_000


def test_manifest_folds_leave_one_trial_out(builtin_project, three_strides, tmp_path):
    from opensim_pinn.evaluate import cross_validate, manifest_folds
    from opensim_pinn.trainer import TrainConfig

    manifest = tmp_path / "trials.csv"
    manifest.write_text("name,motion,external_loads,start,end\n"
                        f"short,{builtin_project['motion']},{builtin_project['external_loads']},,\n"
                        f"long,{three_strides['motion']},{three_strides['external_loads']},1.2,3.6\n")
    plan = manifest_folds(str(builtin_project["model"]), manifest)
    assert [f.name for f in plan.folds] == ["short", "long"]
    assert [s.motion for s in plan.folds[0].training] == [str(three_strides["motion"])]
    result = cross_validate(plan, config=TrainConfig(epochs=200), reference="fast", progress=False)
    folds = result["metrics"]["folds"]
    assert folds["long"]["n_frames"] == 241 and folds["short"]["n_frames"] == 241
    for name, fold in folds.items():  # the same walk, other frames: it generalises (measured about 0.96)
        assert fold["summary"]["median_r2"] > 0.9, name


def test_held_out_check_refuses_overlapping_folds(three_strides):
    from opensim_pinn.evaluate import check_held_out
    from opensim_pinn.trial import TrialSettings, prepare_trial

    files = {k: str(v) for k, v in three_strides.items()}

    def trial(start, end):
        return prepare_trial(TrialSettings(model=files["model"], motion=files["motion"],
                                           external_loads=files["external_loads"], start=start, end=end))[0]

    check_held_out(trial(1.2, 2.4), [trial(0.0, 1.19), trial(2.41, 3.6)])
    with pytest.raises(RuntimeError, match="overlap"):
        check_held_out(trial(1.2, 2.4), [trial(0.0, 1.2)])


@pytest.mark.parametrize("extra, message", [
    (["--folds", "strides", "--no-loads"], "give --external-loads"),
    (["--folds", "5"], "cross-validation needs 2 or more"),
    (["--folds", "-1"], "above 0"),
    (["--folds", "often"], "'strides' or a duration"),
    ([], "--folds strides or --folds SECONDS"),
    (["--folds", "1.2", "--architecture", "transformer"], "--architecture transformer"),
    (["--folds", "1.2", "--epochs", "0"], "--epochs must be 1 or more"),
])
def test_bad_input_is_one_line_and_writes_nothing(builtin_project, tmp_path, capsys, extra, message):
    out = tmp_path / "cv"
    loads = [] if "--no-loads" in extra else ["--external-loads", str(builtin_project["external_loads"])]
    extra = [x for x in extra if x != "--no-loads"]
    code = cli.main(["evaluate", "--model", str(builtin_project["model"]), "--motion", str(builtin_project["motion"]),
                     *loads, *extra, "--reference", "fast", "--out", str(out)])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in error[-1] and "Traceback" not in "\n".join(error)
    assert not out.exists()


def test_manifest_of_one_trial_is_refused(builtin_project, tmp_path):
    from opensim_pinn.evaluate import manifest_folds

    manifest = tmp_path / "one.csv"
    manifest.write_text(f"motion\n{builtin_project['motion']}\n")
    with pytest.raises(InputError, match="needs 2 or more"):
        manifest_folds(str(builtin_project["model"]), manifest)
