"""toxic_build_info{version,revision,model} on /metrics: what is serving, read from the real sources.

version: the package's one version; revision: TOXIC_REVISION or the release's REVISION file
(toxic-release writes <release>/REVISION beside <release>/lib); model: the id toxic-release
add-model gives the same bundle (shared/models/<id>).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import toxic_service
from toxic_service.api import create_app, metrics

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "roles" / "toxic_service" / "files" / "toxic-release"
# As root toxic-release refuses its settings hook (TOXIC_RELEASE_CONFIG): run it as a non-root uid in a user namespace.
AS_TEST_USER = ["unshare", "--user", "--map-user=65534", "--map-group=65534", "--"] if os.geteuid() == 0 else []
LINE = re.compile(r'^toxic_build_info\{model="([^"]*)",revision="([^"]*)",version="([^"]*)"\} 1\.0$', re.M)


def build_info(text: str) -> dict[str, str]:
    found = LINE.findall(text)
    assert len(found) == 1, f"expected one toxic_build_info sample in:\n{text}"
    model, revision, version = found[0]
    return {"model": model, "revision": revision, "version": version}


def scrape(settings, *, others: bool = True) -> dict[str, str]:
    response = create_app(settings).test_client().get("/metrics")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    if others:  # in multiprocess mode they come from the workers' files, none in this test's directory
        assert 'toxic_scorer_builds_total{outcome="ok"}' in text, "the other metrics are still there"
    return build_info(text)


def add_model_id(bundle: Path, tmp_path: Path) -> str:
    """The id toxic-release itself gives this bundle on a host (its shared/models/<id> directory)."""
    tmp_path.mkdir(exist_ok=True)
    config = tmp_path / "release.json"
    config.write_text(json.dumps({"root": str(tmp_path / "srv")}))
    done = subprocess.run(
        [*AS_TEST_USER, sys.executable, str(TOOL), "add-model", "--from", str(bundle)],
        capture_output=True,
        text=True,
        env={**os.environ, "TOXIC_RELEASE_CONFIG": str(config)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1]).name


def test_metric_names_version_revision_and_the_bundle_toxic_release_installed(
    tiny_settings, tiny_bundle_dir, tmp_path, monkeypatch
):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, bundle)
    monkeypatch.setenv("TOXIC_REVISION", "0123abc")
    info = scrape(tiny_settings.replace(bundle=bundle))
    assert info == {"model": add_model_id(bundle, tmp_path), "revision": "0123abc", "version": toxic_service.__version__}


def test_model_id_changes_with_the_bundle(tiny_settings, tiny_bundle_dir, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_bundle_dir, first)
    shutil.copytree(tiny_bundle_dir, second)
    (second / "notes.txt").write_text("a different bundle\n")
    assert metrics.bundle_id(first) != metrics.bundle_id(second)
    assert metrics.bundle_id(second) == add_model_id(second, tmp_path / "host")


def test_multiprocess_mode_also_reports_it(tiny_settings, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.delenv("TOXIC_REVISION", raising=False)
    info = scrape(tiny_settings, others=False)
    assert info["version"] == toxic_service.__version__
    assert info["model"] == metrics.bundle_id(tiny_settings.bundle_dir) != metrics.UNKNOWN


def test_revision_comes_from_the_release_the_package_is_installed_in(tmp_path):
    # The layout toxic-release prepares: <release>/lib/toxic_service and <release>/REVISION.
    release = tmp_path / "20261201T120000Z"
    shutil.copytree(Path(toxic_service.__file__).parent, release / "lib" / "toxic_service",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (release / "REVISION").write_text("feedface\n")
    env = {k: v for k, v in os.environ.items() if k != "TOXIC_REVISION"}
    code = "import toxic_service.api.metrics as m, toxic_service as t; print(t.__file__); print(m.revision())"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**env, "PYTHONPATH": str(release / "lib")}, cwd=tmp_path,
    )
    imported, revision = done.stdout.split()
    assert imported == str(release / "lib" / "toxic_service" / "__init__.py")
    assert revision == "feedface"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**env, "PYTHONPATH": str(release / "lib"), "TOXIC_REVISION": "cafe"}, cwd=tmp_path,
    )
    assert done.stdout.split()[1] == "cafe", "TOXIC_REVISION wins over the file"


def test_unreadable_bundle_is_unknown_not_an_error(tmp_path):
    assert metrics.bundle_id(tmp_path / "missing") == metrics.UNKNOWN
    (tmp_path / "metadata.json").write_text("{not json")
    assert metrics.bundle_id(tmp_path) == metrics.UNKNOWN


@pytest.mark.parametrize("value", ["", "   "])
def test_blank_toxic_revision_falls_back(value, monkeypatch):
    monkeypatch.setenv("TOXIC_REVISION", value)
    assert metrics.revision() == metrics.UNKNOWN  # a checkout has no REVISION file two levels up
