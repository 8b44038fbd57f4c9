"""Settings helpers: a malformed value fails loudly and names its variable."""

import pytest

from core.env import env_bool, env_float, env_int, env_list, env_pairs, env_secret


def test_it_uses_the_default_when_unset_or_empty(monkeypatch):
    monkeypatch.delenv("ATELIER_X", raising=False)
    assert env_float("ATELIER_X", 0.5) == 0.5
    monkeypatch.setenv("ATELIER_X", "")
    assert env_int("ATELIER_X", 3) == 3
    assert env_bool("ATELIER_X", True) is True


def test_it_reads_well_formed_values(monkeypatch):
    monkeypatch.setenv("ATELIER_X", "0.25")
    assert env_float("ATELIER_X", 1.0) == 0.25
    monkeypatch.setenv("ATELIER_X", "off")
    assert env_bool("ATELIER_X", True) is False
    monkeypatch.setenv("ATELIER_X", " a, b,,c ")
    assert env_list("ATELIER_X", "") == ["a", "b", "c"]
    monkeypatch.setenv("ATELIER_X", "sd15=60,tiny=5")
    assert env_pairs("ATELIER_X", "") == {"sd15": 60.0, "tiny": 5.0}


@pytest.mark.parametrize(
    ("reader", "value"),
    [(env_float, "fast"), (env_int, "1.5"), (env_bool, "maybe"), (env_pairs, "sd15=soon")],
)
def test_it_names_the_variable_of_a_malformed_value(monkeypatch, reader, value):
    monkeypatch.setenv("ATELIER_BROKEN_SETTING", value)
    default = "" if reader is env_pairs else 1
    with pytest.raises(ValueError, match="ATELIER_BROKEN_SETTING"):
        reader("ATELIER_BROKEN_SETTING", default)


def test_it_reads_a_secret_from_its_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("ATELIER_TOKEN_FILE", str(secret))
    assert env_secret("ATELIER_TOKEN", "") == "s3cret"
