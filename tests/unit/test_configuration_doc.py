"""docs/configuration.md lists every setting with its default: it must not drift from Settings."""

from pathlib import Path

from toxic_service.commands.config import settings_table
from toxic_service.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_configuration_doc_holds_the_current_settings_table():
    assert settings_table() in DOC.read_text(), "regenerate: toxic-service config --markdown"


def test_every_setting_has_a_description():
    assert all(setting.description for setting in Settings.fields.values())
