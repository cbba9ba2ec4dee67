import pytest

from archiver.config import PackConfig, config_for_quality, parse_duration
from archiver.errors import InputError


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1.5m", 90)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "-5", "10x", "0"])
def test_parse_duration_rejects(text):
    with pytest.raises(InputError, match="time limit"):
        parse_duration(text)


def test_config_round_trip():
    cfg = config_for_quality(6, time_limit=60, seed=3)
    assert PackConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.train.lmbda > config_for_quality(5).train.lmbda


def test_quality_bounds():
    with pytest.raises(InputError, match="--quality must be an integer from 1 to 8, got 9"):
        config_for_quality(9)


def test_unknown_field_is_an_error():
    data = config_for_quality().to_dict()
    data["train"]["epochs"] = 3
    with pytest.raises(InputError, match="unknown TrainConfig field"):
        PackConfig.from_dict(data)
