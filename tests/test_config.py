import pytest

from facesets.core import config


def test_defaults_are_filled_in():
    cfg = config.validate({})
    assert cfg["model"]["pack"] == "buffalo_l"
    assert cfg["model"]["det_size"] == 640
    assert cfg["embed"]["flush_every"] == 50
    assert cfg["results"] == "results"


def test_partial_section_keeps_other_defaults():
    cfg = config.validate({"model": {"det_thresh": 0.3}})
    assert cfg["model"]["det_thresh"] == 0.3
    assert cfg["model"]["providers"] == ["CPUExecutionProvider"]


def test_unknown_key_is_named():
    with pytest.raises(config.ConfigError) as err:
        config.validate({"model": {"det_tresh": 0.5}})
    assert "det_tresh" in str(err.value) and "model" in str(err.value)


def test_out_of_range_and_wrong_type_name_the_key():
    with pytest.raises(config.ConfigError, match=r"model\.det_thresh"):
        config.validate({"model": {"det_thresh": 1.5}})
    with pytest.raises(config.ConfigError, match=r"embed\.shards"):
        config.validate({"embed": {"shards": "many"}})


def test_flush_bound_cannot_exceed_50():
    with pytest.raises(config.ConfigError, match=r"embed\.flush_every"):
        config.validate({"embed": {"flush_every": 51}})


def test_duplicate_source_names_rejected():
    with pytest.raises(config.ConfigError, match="duplicate"):
        config.validate({"sources": [{"name": "a", "path": "/x"}, {"name": "a", "path": "/y"}]})


def test_overlay_files(tmp_path):
    base = tmp_path / "a.yaml"
    over = tmp_path / "b.yaml"
    base.write_text("model:\n  pack: buffalo_l\n  det_size: 320\n")
    over.write_text("model:\n  pack: /packs/x\n")
    cfg = config.load(base, over)
    assert cfg["model"] == dict(config.defaults()["model"], pack="/packs/x", det_size=320)


def test_repo_config_file_is_valid():
    from conftest import REPO

    cfg = config.load(REPO / "config" / "config.yaml")
    assert cfg["sources"] == []
