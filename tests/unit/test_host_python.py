"""The Python the roles put on a host runs on Python 3.6 (EL7, EL8's platform python3).

`make lint` runs `tools/host_python_files.py check` (vermin -t=3.6-); these tests run that same
command on scratch role trees to show it fails on what 3.6 lacks, that ruff reads every such
file, and, where a real Python 3.6 is installed, run the files under it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from host_pythons import NO_PYTHON36, PYTHON36

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "host_python_files.py"
BIN = Path(sys.executable).parent


needs_python36 = pytest.mark.skipif(PYTHON36 is None, reason=NO_PYTHON36)


def host_check(root: Path) -> subprocess.CompletedProcess:
    """The command `make lint` runs, on another tree."""
    return subprocess.run([sys.executable, str(TOOL), "check", "--root", str(root)],
                          capture_output=True, text=True, check=False, env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})


def scratch_role(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "roles" / "scratch" / ("templates" if name.endswith(".j2") else "files") / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_the_list_holds_the_host_side_python_and_no_shell_script() -> None:
    listed = subprocess.run([sys.executable, str(TOOL)], capture_output=True, text=True, check=True).stdout.split()
    assert "roles/toxic_service/files/toxic-release" in listed
    assert "tools/loadgen.py" in listed  # run on the test hosts' own python3
    assert "roles/base/files/toxic-sshd-check" not in listed and "roles/toxic_service/files/verify-unit" not in listed


def test_the_roles_pass_the_check() -> None:
    result = host_check(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Minimum required versions: 3.6" in result.stdout


def test_ruff_reads_every_host_side_python_file() -> None:
    """Extension-less scripts are invisible to ruff unless ruff.toml names them."""
    listed = subprocess.run([sys.executable, str(TOOL)], capture_output=True, text=True, check=True).stdout.split()
    shown = subprocess.run([str(BIN / "ruff"), "check", "--show-files", "."], cwd=REPO, capture_output=True, text=True,
                           check=False).stdout
    seen = {str(Path(line.strip()).relative_to(REPO)) for line in shown.splitlines() if line.strip().startswith(str(REPO))}
    missing = [path for path in listed if not path.endswith(".j2") and path not in seen]
    assert not missing, f"ruff does not read {missing}: add them to extend-include in ruff.toml"


NEEDS_37 = {
    "future annotations": ("from __future__ import annotations\n", "__future__.annotations"),
    "capture_output": ("import subprocess\nsubprocess.run(['true'], capture_output=True)\n", "capture_output"),
    "text=": ("import subprocess\nsubprocess.run(['true'], text=True)\n", "subprocess.run(text)"),
    "add_subparsers(required=)": (
        "import argparse\nargparse.ArgumentParser().add_subparsers(dest='c', required=True)\n", "add_subparsers(required)"),
    "walrus": ("import sys\nif (n := len(sys.argv)) > 1:\n    print(n)\n", "named expressions"),
    "f-string =": ("x = 1\nprint(f'{x=}')\n", "self-documenting f-strings"),
    "dataclasses": ("import dataclasses\n", "dataclasses"),
    "list[str] annotation": ("def f(a: list[str]) -> None:\n    pass\n", "list[..]"),
}


@pytest.mark.parametrize("feature", sorted(NEEDS_37))
def test_the_check_fails_on_what_python_3_6_lacks(tmp_path: Path, feature: str) -> None:
    code, reported = NEEDS_37[feature]
    scratch_role(tmp_path, "tool", "#!/usr/bin/python3\n" + code)  # extension-less, like toxic-release
    result = host_check(tmp_path)
    assert result.returncode != 0, result.stdout
    assert reported in result.stdout
    assert "needs more than Python 3.6" in result.stderr


def test_templated_scripts_are_rendered_then_checked(tmp_path: Path) -> None:
    """A .py.j2 is checked as a host gets it: Jinja syntax alone must not fail it, 3.7 code in it must."""
    scratch_role(tmp_path, "probe.py.j2", """\
        #!/usr/bin/python3
        {% if true %}PORT = {{ 8080 }}{% endif %}
        NAME = "{{ undefined_variable }}"
        print(PORT, NAME)
        """)
    result = host_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    bad = scratch_role(
        tmp_path, "bad.py.j2", "#!/usr/bin/python3\nimport subprocess\nsubprocess.run({{ argv | default([]) }}, text=True)\n"
    )
    result = host_check(tmp_path)
    assert result.returncode != 0 and "subprocess.run(text)" in result.stdout
    bad.write_text("#!/usr/bin/python3\nARGV = {{ argv }}\n")  # renders to `ARGV = `: vermin alone would pass it
    result = host_check(tmp_path)
    assert result.returncode != 0 and "bad.py:2: not valid Python" in result.stderr


@needs_python36
def test_toxic_release_answers_on_python_3_6(tmp_path: Path) -> None:
    """The quick proof; test_toxic_release.py's 3.6 tour runs the subcommands for real."""
    tool = REPO / "roles" / "toxic_service" / "files" / "toxic-release"
    # As root toxic-release refuses --root and TOXIC_RELEASE_CONFIG: run it as a non-root uid in a user namespace.
    as_test_user = ["unshare", "--user", "--map-user=65534", "--map-group=65534", "--"] if os.geteuid() == 0 else []
    result = subprocess.run([*as_test_user, PYTHON36, str(tool), "status", "--json", "--root", str(tmp_path / "srv")],
                            capture_output=True, text=True, check=False,
                            env={**os.environ, "TOXIC_RELEASE_CONFIG": str(tmp_path / "none.json")})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["current"] is None
