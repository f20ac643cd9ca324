"""Settings: TOXIC_* variables over the TOML file over the defaults; bad values name the setting."""

import pytest
from pydantic import ValidationError
from toxic_service.settings import Settings


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("TOXIC_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_environment_beats_the_file_which_beats_the_defaults(clean_env, tmp_path):
    config = tmp_path / "toxic.toml"
    config.write_text('max_batch = 10\nmax_text_chars = 500\nvocab_backend = "mongodb"\n')
    clean_env.setenv("TOXIC_CONFIG_FILE", str(config))
    clean_env.setenv("TOXIC_MAX_BATCH", "20")
    settings = Settings()
    assert (settings.max_batch, settings.max_text_chars, settings.vocab_backend) == (20, 500, "mongodb")
    assert settings.max_body_bytes == Settings.model_fields["max_body_bytes"].default


def test_paths_default_under_the_data_dir(clean_env, tmp_path):
    clean_env.setenv("TOXIC_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.bundle_dir == tmp_path / "model" and settings.sqlite_file == tmp_path / "vocab.sqlite"


@pytest.mark.parametrize(
    ("name", "value"),
    [("TOXIC_RUNTIME", "tensorflow"), ("TOXIC_MAX_BATCH", "0"), ("TOXIC_MAX_BATCH", "many"), ("TOXIC_MONGODB_COLLECTION", " ")],
)
def test_a_bad_value_is_refused_naming_the_setting(clean_env, name, value):
    clean_env.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("TOXIC_").lower()):
        Settings()


def test_a_missing_config_file_is_refused(clean_env, tmp_path):
    clean_env.setenv("TOXIC_CONFIG_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(FileNotFoundError, match="absent.toml"):
        Settings()


def test_the_mongodb_uri_is_never_printed(clean_env):
    clean_env.setenv("TOXIC_MONGODB_URI", "mongodb://app:s3cret@db:27017/")
    assert "s3cret" not in repr(Settings()) and "s3cret" not in str(Settings().mongodb_uri)
