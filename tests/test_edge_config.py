from pathlib import Path

import pytest

from edge.cli import main
from edge.config import ConfigError, load_config, parse_config


def test_empty_config_gets_safe_defaults():
    cfg = parse_config({})
    assert cfg.source.uri == "0" and cfg.detector.every_n_frames == 3
    assert cfg.output.annotated_video is None  # privacy: nothing written unless asked


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"detector": {"scale_factr": 1.1}}, "detector.scale_factr: unknown key (typo?)"),
        ({"detector": {"scale_factor": 1.0}}, "detector.scale_factor: Input should be greater than 1"),
        ({"tracker": {"smoothing_s": -1}}, "tracker.smoothing_s: Input should be greater than or equal to 0"),
        ({"source": {"type": "webcam"}}, "source.type: Input should be"),
        ({"sources": {}}, "sources: unknown key"),
        ({"source": {"reconnect_initial_s": 5, "reconnect_max_s": 1}}, "reconnect_max_s must be >="),
        (["not", "a", "mapping"], "top level must be a mapping"),
    ],
)
def test_invalid_config_names_key_and_problem(data, message):
    with pytest.raises(ConfigError) as info:
        parse_config(data, "cfg.yaml")
    assert message in str(info.value) and "cfg.yaml" in str(info.value)


def test_yaml_syntax_error_names_line(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("source:\n  uri: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML at line"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path):
    (tmp_path / "clip.mp4").write_bytes(b"")
    path = tmp_path / "c.yaml"
    path.write_text("source:\n  uri: clip.mp4\nclassifier:\n  model: m/x.tflite\n")
    cfg = load_config(path)
    assert cfg.source.uri == str(tmp_path / "clip.mp4")
    assert cfg.classifier.model == tmp_path / "m" / "x.tflite"


def test_validate_config_cli(tmp_path: Path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("source:\n  uri: 0\n")
    assert main(["validate-config", str(good)]) == 0
    assert "good.yaml: OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("tracker:\n  iou_threshold: 2\n")
    assert main(["validate-config", str(bad)]) == 2
    assert "tracker.iou_threshold: Input should be less than 1" in capsys.readouterr().err
