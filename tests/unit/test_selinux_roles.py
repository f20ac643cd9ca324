"""The SELinux tasks of the toxic_service and nginx roles, checked without an EL host.

No machine here runs SELinux, so this checks what can be checked: the tasks run
through ansible-playbook on localhost (connection local, fake facts, nothing on this
machine changes) and are all skipped where SELinux is off, as on the Debian container;
the file-context rules, rendered from the task files themselves with the roles'
defaults, match the socket path the units and nginx really use and the executable
systemd really starts, and are written for the canonical path of SELinux's path
equivalences (semanage refuses an alias such as EL 7/8's /run); both roles install the
same tools per EL version; every module and parameter used is one ansible-doc lists.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVICE_TASKS = REPO / "roles/toxic_service/tasks/selinux.yml"
NGINX_TASKS = REPO / "roles/nginx/tasks/selinux.yml"
SOCKET_UNIT = REPO / "roles/toxic_service/templates/toxic-service.socket.j2"
SERVICE_UNIT = REPO / "roles/toxic_service/templates/toxic-service.service.j2"
ENABLED = re.compile(r"ansible_facts\['selinux'\]\['status'\].*== 'enabled'")

# Path equivalences "alias canonical" as the policies ship them.
SUBS = {
    # EL 7/8/9 (file_contexts.subs_dist): /run is the alias of /var/run.
    "el": ["/run /var/run", "/run/lock /var/lock", "/lib64 /usr/lib"],
    # Newer policies (Fedora since 2024): the other way round.
    "fedora": ["/var/run /run", "/var/lock /run/lock"],
    # A site equivalence (semanage fcontext -a -e) moving /srv's labels to /data.
    "site": ["/run /var/run", "/srv /data"],
}


def load(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text())


def task_named(tasks: list[dict], name: str) -> dict:
    for task in tasks:
        if task.get("name") == name:
            return task
        found = [t for t in task.get("block", []) if t.get("name") == name]
        if found:
            return found[0]
    raise AssertionError(f"no task {name!r}")


def leaves(tasks: list[dict]) -> list[dict]:
    return [leaf for t in tasks for leaf in (leaves(t["block"]) if "block" in t else [t])]


def canonical(path: str, subs: list[str]) -> str:
    """The path semanage accepts: each alias prefix replaced by what it stands for."""
    for line in subs:
        alias, real = line.split()
        if path == alias or path.startswith(alias + "/"):
            path = real + path[len(alias):]
    return path


def run_playbook(tmp_path: Path, play: list[dict], hosts: dict[str, dict], **extra_env: str) -> subprocess.CompletedProcess:
    inventory = {"all": {"hosts": hosts, "vars": {"ansible_connection": "local",
                                                  "ansible_python_interpreter": sys.executable,
                                                  "out_dir": str(tmp_path)}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(os.environ)
    env.update(
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        **extra_env,
    )
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(tmp_path / "inventory.json"), str(tmp_path / "play.yml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


# ------------------------------------------------------------------ guards


@pytest.mark.parametrize("path", [SERVICE_TASKS, NGINX_TASKS], ids=lambda p: p.parts[-3])
def test_every_task_runs_only_where_selinux_is_enabled(path):
    for task in load(path):
        assert ENABLED.search(str(task.get("when", ""))), f"{path.name}: {task['name']!r} is not guarded"
        assert "rescue" not in task and "always" not in task, f"{task['name']!r}: unguarded rescue/always"


def test_the_debian_container_skips_every_selinux_task(tmp_path):
    facts = {"os_family": "Debian", "distribution": "Debian", "distribution_major_version": "12"}
    hosts = {
        "selinux-disabled": {"fake_facts": dict(facts, selinux={"status": "disabled"})},
        # What the facts say on Debian without python3-selinux.
        "selinux-no-bindings": {"fake_facts": dict(facts, selinux={"status": "Missing selinux Python library"})},
        "selinux-no-fact": {"fake_facts": facts},
    }
    play = [{
        "name": "The roles' SELinux tasks where SELinux is off",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [
            {"name": "Pretend to be the platform", "ansible.builtin.set_fact": {"ansible_facts": "{{ fake_facts }}"}},
            {"name": "Run the SELinux tasks", "ansible.builtin.include_role": {"name": "{{ item }}", "tasks_from": "selinux"},
             "loop": ["toxic_service", "nginx"]},
        ],
    }]
    result = run_playbook(tmp_path, play, hosts, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    # A block is not reported itself: the tasks in it are.
    names = {t["name"] for path in (SERVICE_TASKS, NGINX_TASKS) for t in leaves(load(path))}
    seen = set()
    for task in report["plays"][0]["tasks"]:
        name = task["task"]["name"].split(" : ", 1)[-1]
        if name not in names:
            continue
        seen.add(name)
        for host, outcome in task["hosts"].items():
            assert outcome.get("skipped") is True, f"{host}: {name!r} ran: {outcome}"
            assert not outcome.get("changed"), f"{host}: {name!r} changed something"
    assert seen == names, f"tasks never reached: {names - seen}"


# --------------------------------------------------------- what the rules cover


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    """Each file-context rule of the toxic_service role, rendered from the task file
    with the roles' defaults, once per set of path equivalences."""
    tmp_path = tmp_path_factory.mktemp("selinux-rules")
    tasks = load(SERVICE_TASKS)
    block = task_named(tasks, "Label the release tree and the socket's directory")
    rules = task_named(tasks, "Write the file context rules")
    packages = {path.parts[-3]: task_named(load(path), "Install the SELinux management tools")["vars"]
                for path in (SERVICE_TASKS, NGINX_TASKS)}
    play = [{
        "name": "Render the SELinux rules",
        "hosts": "all",
        "gather_facts": False,
        "vars_files": [str(REPO / "roles/toxic_service/defaults/main.yml"), str(REPO / "roles/nginx/defaults/main.yml")],
        "vars": block["vars"],
        "tasks": [
            {"name": "Pretend to be the platform", "ansible.builtin.set_fact": {"ansible_facts": "{{ fake_facts }}"}},
            {"name": "Render each rule as the task does", "ansible.builtin.set_fact": {
                "rendered_rules": "{{ rendered_rules | default([]) + [{'path': item.path, 'setype': item.setype, "
                                  "'target': __target}] }}"},
             "loop": "{{ __toxic_service_selinux_contexts }}",
             "vars": dict(rules["vars"], __target=rules["community.general.sefcontext"]["target"],
                          __toxic_service_selinux_subs={"stdout_lines": "{{ subs }}"})},
            {"name": "Write down what was rendered", "ansible.builtin.copy": {
                "dest": "{{ out_dir }}/{{ inventory_hostname }}.json", "mode": "0600",
                "content": "{{ {'rules': rendered_rules, 'nginx_upstream_socket': nginx_upstream_socket,"
                           " 'toxic_service_root': toxic_service_root,"
                           " 'packages': {'toxic_service': __service_packages, 'nginx': __nginx_packages}} | to_json }}"},
             "vars": {"__service_packages": packages["toxic_service"]["__toxic_service_selinux_packages"],
                      "__nginx_packages": packages["nginx"]["__nginx_selinux_packages"]}},
        ],
    }]
    hosts = {}
    for major in ("7", "8", "9"):
        for case, subs in SUBS.items():
            hosts[f"el{major}-{case}"] = {
                "subs": subs,
                "fake_facts": {"os_family": "RedHat", "distribution": "Rocky", "distribution_major_version": major,
                               "selinux": {"status": "enabled", "type": "targeted"}},
            }
    result = run_playbook(tmp_path, play, hosts)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in hosts}


def unit_value(path: Path, key: str) -> str:
    match = re.search(rf"^{key}=(\S+)", path.read_text(), re.MULTILINE)
    assert match, f"{path.name}: no {key}="
    return match.group(1)


def matching(rules: list[dict], setype: str, path: str) -> list[dict]:
    return [r for r in rules if r["setype"] == setype and re.fullmatch(r["target"], path)]


@pytest.mark.parametrize("case", sorted(SUBS))
def test_socket_rule_covers_the_socket_units_and_nginx_use(rendered, case):
    values = rendered[f"el9-{case}"]
    subs = SUBS[case]
    listen = unit_value(SOCKET_UNIT, "ListenStream")
    bind = re.search(r"--bind unix:(\S+)", SERVICE_UNIT.read_text()).group(1)
    for socket in {listen, bind, values["nginx_upstream_socket"]}:
        assert matching(values["rules"], "httpd_var_run_t", canonical(socket, subs)), (
            f"{socket} (as {canonical(socket, subs)}) has no httpd_var_run_t rule: {values['rules']}")


@pytest.mark.parametrize("case", sorted(SUBS))
def test_tree_rule_covers_what_systemd_executes(rendered, case):
    values = rendered[f"el9-{case}"]
    subs = SUBS[case]
    root = values["toxic_service_root"]
    match = re.search(r"^ExecStart=\{\{ toxic_service_root \}\}(\S+)", SERVICE_UNIT.read_text(), re.MULTILINE)
    assert match, f"{SERVICE_UNIT.name}: ExecStart= does not start with {{{{ toxic_service_root }}}}"
    exec_start = root + match.group(1)
    # systemd resolves current/ (a symlink) to the release; the wrapper execs the env's python.
    for path in (exec_start, f"{root}/releases/20260101T000000Z/bin/toxic-service",
                 f"{root}/shared/envs/0123abcd/bin/python", root):
        assert matching(values["rules"], "bin_t", canonical(path, subs)), f"{path} has no bin_t rule"
    assert not matching(values["rules"], "bin_t", canonical(root + "-other/bin/x", subs)), "the rule is not anchored"


@pytest.mark.parametrize("case", sorted(SUBS))
def test_rules_name_no_alias_path(rendered, case):
    """semanage: "File spec /run/x conflicts with equivalency rule '/run /var/run'"."""
    aliases = [line.split()[0] for line in SUBS[case]]
    for rule in rendered[f"el8-{case}"]["rules"]:
        spec = rule["target"].replace("\\.", ".").removesuffix("(/.*)?")
        clashes = [a for a in aliases if spec == a or spec.startswith(a + "/")]
        assert not clashes, f"{rule} would be refused: {spec} is under the alias {clashes}"


def test_both_roles_install_the_same_tools_per_el_version(rendered):
    for name, values in rendered.items():
        assert values["packages"]["toxic_service"] == values["packages"]["nginx"], name
    assert rendered["el7-el"]["packages"]["nginx"] == ["libselinux-python", "policycoreutils-python"]
    for major in ("8", "9"):
        assert rendered[f"el{major}-el"]["packages"]["nginx"] == [
            "python3-libselinux", "python3-policycoreutils", "policycoreutils-python-utils"]


# ------------------------------------------------------------ modules used

KEYWORDS = {"name", "when", "vars", "register", "loop", "loop_control", "changed_when", "failed_when", "tags",
            "block", "notify", "become", "no_log"}


def module_uses(tasks: list[dict]):
    for task in leaves(tasks):
        (module,) = [k for k in task if k not in KEYWORDS]
        args = task[module]
        yield module, set(args) if isinstance(args, dict) else set()


def test_modules_and_parameters_exist_in_the_installed_collections():
    uses: dict[str, set[str]] = {}
    for path in (SERVICE_TASKS, NGINX_TASKS):
        for module, params in module_uses(load(path)):
            uses.setdefault(module, set()).update(params)
    proc = subprocess.run([str(BIN / "ansible-doc"), "--json", *sorted(uses)], capture_output=True, text=True,
                          timeout=120, check=False, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    docs = json.loads(proc.stdout)
    for module, params in uses.items():
        assert module in docs, f"ansible-doc does not know {module}"
        options = docs[module]["doc"].get("options", {})
        known = set(options) | {a for o in options.values() for a in o.get("aliases", [])}
        # ansible.builtin.command's free form and argv.
        known |= {"argv", "_raw_params"} if module == "ansible.builtin.command" else set()
        assert params <= known, f"{module}: {sorted(params - known)} not in its documented options"
