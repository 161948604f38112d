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


# ---------------------------------------------------------------- config/config.yaml is generated from the schema
def test_repo_config_file_is_the_generated_one():
    from conftest import REPO

    text = (REPO / "config" / "config.yaml").read_text(encoding="utf-8")
    assert text == config.render_config_yaml(), \
        "config/config.yaml is stale: run `python -m facesets.core.config --write config/config.yaml`"


def test_generated_config_loads_to_exactly_the_defaults():
    import yaml

    data = yaml.safe_load(config.render_config_yaml())
    assert data == config.defaults()  # every key, at its default, nothing else
    assert config.validate(data) == config.defaults()


def test_generated_config_has_one_line_why_per_key():
    lines = config.render_config_yaml().splitlines()
    for j, ln in enumerate(lines):
        if not ln.strip() or ln.lstrip().startswith("#"):
            continue
        in_default_map = ln.startswith("      ") and "#" not in ln  # rows of curation.occlusion.prompts
        # a key line carries its why, or (a top-level section or list) stands under its comment line
        assert "#" in ln or lines[j - 1].startswith("# ") or in_default_map, ln
        assert "#" not in ln or len(ln.split(" # ", 1)[-1]) <= config.MAX_WHY


def test_write_and_check_entry_point(tmp_path, capsys):
    target = tmp_path / "config.yaml"
    assert config.main(["--check", str(target)]) == 1  # missing
    assert config.main(["--write", str(target)]) == 0
    assert config.main(["--check", str(target)]) == 0
    target.write_text(target.read_text() + "# hand edit\n")
    assert config.main(["--check", str(target)]) == 1
    assert "--write" in capsys.readouterr().err


# ---------------------------------------------------------------- renamed keys
@pytest.mark.parametrize("section, old, new", [
    ("dedup", "similarity", "near_duplicate_similarity"),
    ("export", "dup_similarity", "burst_similarity"),
])
def test_renamed_key_is_one_line_naming_the_new_key(section, old, new):
    msg = (f"config key {section}.{old} was renamed to {section}.{new}: rename it in your config file")
    with pytest.raises(config.ConfigError) as err:
        config.check_renamed({section: {old: 0.9}})
    assert str(err.value) == msg
    with pytest.raises(config.ConfigError) as err:  # validate checks renames before the schema
        config.validate({section: {old: 0.9}})
    assert str(err.value) == msg
    cfg = config.validate({section: {new: 0.9}})
    assert cfg[section][new] == 0.9 and old not in cfg[section]


def test_renamed_keys_found_in_a_config_file(tmp_path):
    f = tmp_path / "old.yaml"
    f.write_text("dedup:\n  similarity: 0.9\n")
    with pytest.raises(config.ConfigError, match=r"^config key dedup\.similarity was renamed"):
        config.load(f)


def test_unrenamed_threshold_and_clean_config_pass():
    config.check_renamed(config.defaults())
    config.check_renamed({"curation": {"neardup": {"similarity": 0.9}}})  # this one keeps its name
    config.check_renamed(None)
