"""Settings: TOXIC_* variables over the TOML file over the defaults; bad values name the setting."""

import pytest
from toxic_service.settings import InvalidSettings, Settings


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
    assert settings.max_body_bytes == Settings.fields["max_body_bytes"].default


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
    with pytest.raises(InvalidSettings, match=name):
        Settings()


def test_a_missing_config_file_is_refused(clean_env, tmp_path):
    clean_env.setenv("TOXIC_CONFIG_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(FileNotFoundError, match="absent.toml"):
        Settings()


def test_the_mongodb_uri_is_never_printed(clean_env):
    clean_env.setenv("TOXIC_MONGODB_URI", "mongodb://app:s3cret@db:27017/")
    assert "s3cret" not in repr(Settings()) and "s3cret" not in str(Settings().mongodb_uri)


def test_the_file_is_checked_too(clean_env, tmp_path):
    config = tmp_path / "toxic.toml"
    config.write_text('max_batch = "ten"\nlog_text = true\n')
    clean_env.setenv("TOXIC_CONFIG_FILE", str(config))
    with pytest.raises(InvalidSettings, match="TOXIC_MAX_BATCH: must be a whole number"):
        Settings()
    config.write_text("max_bacth = 10\n")
    with pytest.raises(InvalidSettings, match="unknown setting 'max_bacth'"):
        Settings()
    config.write_text("max_batch = [\n")
    with pytest.raises(InvalidSettings, match="not valid TOML"):
        Settings()


@pytest.mark.parametrize(("text", "value"), [("1", True), ("true", True), ("On", True), ("0", False), ("no", False)])
def test_booleans_from_the_environment(clean_env, text, value):
    clean_env.setenv("TOXIC_LOG_TEXT", text)
    assert Settings().log_text is value


def test_every_problem_is_named_at_once_and_nothing_is_half_set(clean_env):
    clean_env.setenv("TOXIC_LOG_TEXT", "maybe")
    clean_env.setenv("TOXIC_CACHE_ENTRIES", "-1")
    with pytest.raises(InvalidSettings) as caught:
        Settings()
    assert [p.split(":")[0] for p in caught.value.problems] == ["TOXIC_CACHE_ENTRIES", "TOXIC_LOG_TEXT"]


def test_settings_are_immutable_and_replace_validates(clean_env):
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.max_batch = 5
    assert settings.replace(max_batch=5).max_batch == 5 and settings.max_batch == 64
    with pytest.raises(InvalidSettings, match="TOXIC_MAX_BATCH"):
        settings.replace(max_batch=0)
    with pytest.raises(InvalidSettings, match="unknown setting 'max_bacth'"):
        Settings(max_bacth=5)
