from pathlib import Path

import pytest
import yaml

from motionmasks.params import Params, ParamsError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_project_params_yaml_is_valid_and_complete():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = load_params(ROOT / "params.yaml")
    # every group and key of the model is spelled out in params.yaml, so users see all knobs
    assert set(raw) == set(Params.model_fields)
    for group, values in raw.items():
        assert set(values) == set(type(getattr(params, group)).model_fields), group


def test_defaults_match_the_reference_shot_rules():
    shots = parse_params({}).shots
    assert (shots.min_shot, shots.max_shot) == (10, 110)


def test_unknown_key_names_the_key_and_what_is_allowed():
    with pytest.raises(ParamsError) as err:
        parse_params({"shots": {"min_shots": 5}})
    assert "shots.min_shots: unknown key" in str(err.value)
    assert "min_shot" in str(err.value).split("allowed here:")[1]


def test_unknown_group_is_rejected():
    with pytest.raises(ParamsError, match="shot: unknown key; allowed here: corpus, download, shots"):
        parse_params({"shot": {}})


def test_bad_value_names_the_key_and_value():
    with pytest.raises(ParamsError) as err:
        parse_params({"download": {"retries": -1}})
    message = str(err.value)
    assert "download.retries" in message and "-1" in message


def test_bad_range_is_explained():
    with pytest.raises(ParamsError, match=r"corpus.shot_frames: must be \[low, high\]"):
        parse_params({"corpus": {"shot_frames": [50, 10]}})


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("shots: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_params_yaml_equals_the_built_in_defaults():
    # `motionmasks segment` outside the project uses the built-in defaults: they must be the pipeline's
    assert load_params(ROOT / "params.yaml") == Params()


def test_algorithm_groups_are_the_functions_keyword_arguments():
    import inspect

    from motionmasks.consensus import consensus_voting
    from motionmasks.motion import motion_saliency
    from motionmasks.shots import split_video

    params = Params()
    for function, group, own in [
        (split_video, params.shots, {"max_failure_fraction", "working_max_side"}),
        (motion_saliency, params.motion, {"max_failure_fraction"}),
        (consensus_voting, params.consensus, {"max_failure_fraction"}),
    ]:
        accepted = inspect.signature(function).parameters
        for key, value in group.model_dump(exclude=own).items():
            assert key in accepted, f"{function.__name__} has no argument {key}"
            assert accepted[key].default == value, f"{function.__name__}({key}=...) default differs from params"


def test_evaluate_threshold_must_be_one_of_the_thresholds():
    with pytest.raises(ParamsError, match=r"evaluate.threshold: must be one of evaluate.thresholds \[0.4, 0.7\]"):
        parse_params({"evaluate": {"thresholds": [0.4, 0.7], "threshold": 0.5}})


def test_the_segmenter_of_the_params_is_the_segmenters_default():
    from motionmasks.segment import Segmenter

    segmenter = Segmenter.from_params(Params())
    assert segmenter.working_max_side == Segmenter().working_max_side == 256
    assert "working_max_side" not in segmenter.shots and "max_failure_fraction" not in segmenter.motion


@pytest.mark.parametrize("value", [-0.1, 1.5, "much"])
def test_an_absurd_appearance_weight_is_named(value):
    with pytest.raises(ParamsError, match="consensus.appearance"):
        parse_params({"consensus": {"appearance": value}})


@pytest.mark.parametrize("value", [0, 129, 256, 8.5])
def test_an_absurd_colour_model_bin_count_is_named(value):
    with pytest.raises(ParamsError, match="consensus.appearance_bins"):
        parse_params({"consensus": {"appearance_bins": value}})


@pytest.mark.parametrize(
    ("group", "key", "value"),
    [("consensus", "appearance_bins", True), ("consensus", "appearance", False), ("runtime", "workers", True)],
)
def test_true_or_false_for_a_number_is_named_not_read_as_1_or_0(group, key, value):
    """YAML reads yes/no/on/off as booleans, and pydantic would read true as 1: a silent typo."""
    with pytest.raises(ParamsError, match=rf"{group}\.{key}: needs a number, not true/false"):
        parse_params({group: {key: value}})


def test_a_boolean_knob_still_takes_true_or_false():
    assert parse_params({"prune": {"drop_unreliable": False}}).prune.drop_unreliable is False
