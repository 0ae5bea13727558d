"""Config: defaults match the user's guide, files and --set are typed, bad values name their key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetmarl.config import DEFAULT, ENV_KEYS, Config, apply_overrides, load_config, parse_value
from fleetmarl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_the_guides() -> None:
    c = Config()
    assert (c.NUM_AGENTS, c.NUM_EPISODES, c.BATCH_SIZE, c.LR_ACTOR, c.RANDOM_SEED) == (5, 3000, 512, 5e-5, 123)
    assert (c.ENVIRONMENT_TYPE, c.MODEL_SAVE_INTERVAL, c.CHECKPOINTS_DIR) == ("full", 200, "checkpoints")
    assert c.ENABLE_MODEL_CHECKPOINTING is True


def test_root_config_py_is_what_init_config_writes() -> None:
    """One source of defaults: the repository's config.py is generated from Config, never hand-kept."""
    from fleetmarl.config_file import render_config_file

    assert (ROOT / "config.py").read_text(encoding="utf-8") == render_config_file(), \
        "config.py is out of date: run `fleetmarl init-config --force`"
    assert load_config(ROOT / "config.py") == DEFAULT


def test_init_config_writes_a_loadable_file_and_refuses_to_overwrite(tmp_path) -> None:
    from fleetmarl.cli import main
    from fleetmarl.cli.train import describe_config

    target = tmp_path / "config.py"
    assert main(["init-config", str(target)]) == 0
    assert load_config(target) == DEFAULT
    assert target.read_text(encoding="utf-8") == describe_config()  # --help-config shows the same text
    assert main(["init-config", str(target)]) == 2  # exists: one-line error, file untouched
    assert main(["init-config", str(target), "--force"]) == 0


def test_default_fleet_is_three_fast_two_slow() -> None:
    fleet = Config().fleet()
    assert fleet["speeds"] == (30.0, 30.0, 30.0, 15.0, 15.0)
    assert fleet["capacities"] == (8, 8, 8, 24, 24)
    assert Config(NUM_AGENTS=3).fleet()["speeds"] == (30.0, 30.0, 15.0)


def test_set_is_typed_from_the_default() -> None:
    c = apply_overrides(DEFAULT, ["NUM_EPISODES=400", "LR_ACTOR=1e-4", "ENABLE_LR_SCHEDULING=false",
                                  "ENVIRONMENT_TYPE=simplified", "NUM_AGENTS=2", "AGENT_SPEEDS=10,20"])
    assert c.NUM_EPISODES == 400 and isinstance(c.NUM_EPISODES, int)
    assert c.LR_ACTOR == 1e-4 and c.ENABLE_LR_SCHEDULING is False
    assert c.ENVIRONMENT_TYPE == "simplified" and c.AGENT_SPEEDS == (10, 20)


@pytest.mark.parametrize(("override", "key"), [
    ("BATCH_SIZ=3", "BATCH_SIZE"),          # unknown key suggests the close name
    ("NUM_AGENTS=0", "NUM_AGENTS"),
    ("BATCH_SIZE=200000", "BATCH_SIZE"),    # larger than CAPACITY
    ("LR_ACTOR=-1", "LR_ACTOR"),
    ("LR_CRITIC=0", "LR_CRITIC"),
    ("MODEL_SAVE_INTERVAL=-5", "MODEL_SAVE_INTERVAL"),
    ("MODEL_SAVE_INTERVAL=12", "MODEL_SAVE_INTERVAL"),  # not a multiple of NUM_ENVS=8
    ("ENVIRONMENT_TYPE=city", "ENVIRONMENT_TYPE"),
    ("AGENT_SPEEDS=1,2", "AGENT_SPEEDS"),   # wrong length
    ("AGENT_CAPACITIES=8,8,8,-1,24", "AGENT_CAPACITIES"),
    ("NUM_EPISODES=abc", "NUM_EPISODES"),   # unparsable
    ("GAMMA=1.5", "GAMMA"),
])
def test_bad_values_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        apply_overrides(DEFAULT, [override])


def test_unparsable_set_says_how_to_write_it() -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(DEFAULT, ["NUM_EPISODES"])


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="NUM_AGENTS"):
        Config(NUM_AGENTS=-1)


def test_python_and_toml_files(tmp_path: Path) -> None:
    py = tmp_path / "exp.py"
    py.write_text("NUM_EPISODES = 64\nNUM_ENVS = 4\nPRIORITY_WEIGHTS = (5.0, 2.0, 1.0)\nhelper = 3\n")
    toml = tmp_path / "exp.toml"
    toml.write_text('NUM_EPISODES = 64\nNUM_ENVS = 4\nPRIORITY_WEIGHTS = [5.0, 2.0, 1.0]\n')
    a, b = load_config(py), load_config(toml)
    assert a == b and a.NUM_EPISODES == 64 and a.PRIORITY_WEIGHTS == (5.0, 2.0, 1.0)
    assert load_config(py, ["NUM_EPISODES=128"]).NUM_EPISODES == 128


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    py = tmp_path / "exp.py"
    py.write_text("NUM_EPISODE = 64\n")
    with pytest.raises(ConfigError, match="NUM_EPISODES"):
        load_config(py)


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.py")
    bad = tmp_path / "bad.toml"
    bad.write_text("NUM_EPISODES = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_to_dict_round_trips_and_is_plain() -> None:
    c = Config(NUM_AGENTS=2, AGENT_SPEEDS=(10.0, 20.0))
    d = c.to_dict()
    assert all(not isinstance(v, tuple) for v in d.values())
    assert Config.from_dict(d) == c


def test_env_keys_are_the_environment_section() -> None:
    assert {"NUM_AGENTS", "NUM_POINTS", "ENVIRONMENT_TYPE", "MAX_NUM_STEPS"} <= ENV_KEYS
    assert not {"GAMMA", "LR_ACTOR", "CHECKPOINTS_DIR"} & ENV_KEYS


@given(st.integers(min_value=1, max_value=10**6))
def test_int_parsing_accepts_scientific_integers(n: int) -> None:
    assert parse_value("CAPACITY", str(n)) == n
    assert parse_value("CAPACITY", f"{n:.6e}") == int(float(f"{n:.6e}"))


# ---------------------------------------------------------------------- removed keys
def test_a_checkpoints_config_naming_removed_keys_loads_with_one_warning_naming_them() -> None:
    """A training_state config written before the removal stores every key, the removed ones included."""
    from fleetmarl.config import REMOVED_KEYS
    from fleetmarl.errors import FleetmarlWarning

    saved = {**DEFAULT.to_dict(), **REMOVED_KEYS, "NUM_EPISODES": 400}
    with pytest.warns(FleetmarlWarning) as caught:
        config = Config.from_dict(saved, source="run/training_state.pth")
    assert config == DEFAULT.replace(NUM_EPISODES=400)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "\n" not in message and "run/training_state.pth" in message
    assert all(key in message for key in REMOVED_KEYS) and "no longer applies" not in message


def test_a_file_setting_a_removed_key_says_that_setting_no_longer_applies(tmp_path: Path) -> None:
    from fleetmarl.errors import FleetmarlWarning

    path = tmp_path / "old.toml"
    path.write_text("EXPLORE_HOLD_PROB = 0.3\nBC_EPISODES = 0\nNUM_EPISODES = 16\n", encoding="utf-8")
    with pytest.warns(FleetmarlWarning, match=r"EXPLORE_HOLD_PROB=0.3 no longer applies") as caught:
        config = load_config(path)
    assert config == DEFAULT.replace(NUM_EPISODES=16)
    assert "BC_EPISODES" in str(caught[0].message) and "BC_EPISODES=" not in str(caught[0].message)


def test_set_of_a_removed_key_warns_in_one_line_and_training_goes_on(capsys, tmp_path: Path) -> None:
    from fleetmarl.cli import main
    from tests.conftest import tiny_overrides

    flags = tiny_overrides(NUM_EPISODES=4, ENABLE_MODEL_CHECKPOINTING=False, LOG_DIR=str(tmp_path / "runs"))
    assert main(["train", *flags, "--set", "EXPLORE_EPSILON=0.2"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warned == ["fleetmarl: warning: ignoring removed config key EXPLORE_EPSILON in --set; "
                      "EXPLORE_EPSILON=0.2 no longer applies; see docs/experiments.md"]
