"""No role puts a secret on a command line: every local user can read /proc/*/cmdline.

A secret goes to a command through its environment (which only the same user and root can read)
or a root-only file, never through argv. This reads every variable the roles and inventories
define (defaults, vars, task and block `vars:`, group_vars), marks as secret each one whose name
says so or whose spec is no_log, then every variable whose value is built from a secret (a URI
with the password in it, say), and checks the command lines of every command/shell/raw task
against that list.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"password|passwd|secret|token", re.IGNORECASE)
COMMAND_MODULES = {f"{prefix}{name}" for prefix in ("", "ansible.builtin.") for name in ("command", "shell", "raw", "script")}


class _Loader(yaml.SafeLoader):
    pass


# Ansible's own tags: an encrypted value is a string like any other here.
_Loader.add_constructor("!vault", lambda loader, node: loader.construct_scalar(node))
_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load(path: Path):
    return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def tasks_in(items):
    for task in items or []:
        if not isinstance(task, dict):
            continue
        yield task
        for key in ("block", "rescue", "always"):
            yield from tasks_in(task.get(key))


def definitions() -> dict[str, str]:
    """Every variable name defined in the repository's roles and inventories, with its value as text."""
    found: dict[str, list[str]] = {}

    def add(mapping, where: str) -> None:
        for name, value in (mapping or {}).items() if isinstance(mapping, dict) else ():
            found.setdefault(str(name), []).append(yaml.safe_dump(value) if not isinstance(value, str) else value)

    for path in sorted(REPO.glob("roles/*/defaults/*.yml")) + sorted(REPO.glob("roles/*/vars/*.yml")):
        add(load(path), str(path))
    for path in sorted(REPO.glob("inventory/*/group_vars/**/*.yml")) + sorted(REPO.glob("inventory/*/group_vars/*.yml")):
        add(load(path), str(path))
    for path in sorted(REPO.glob("roles/*/tasks/*.yml")) + sorted(REPO.glob("playbooks/*.yml")):
        for task in tasks_in(load(path)):
            add(task.get("vars"), str(path))
    return {name: "\n".join(texts) for name, texts in found.items()}


def no_log_options() -> set[str]:
    names = set()
    for path in REPO.glob("roles/*/meta/argument_specs.yml"):
        for spec in (load(path)["argument_specs"] or {}).values():
            names |= {n for n, o in (spec.get("options") or {}).items() if (o or {}).get("no_log") is True}
    return names


def secret_variables() -> set[str]:
    defined = definitions()
    secret = {n for n in defined if SECRET_NAME.search(n)} | no_log_options()
    while True:  # whatever is built from a secret is one too
        more = {n for n, text in defined.items() if n not in secret and any(re.search(rf"\b{re.escape(s)}\b", text)
                                                                              for s in secret)}
        if not more:
            return secret
        secret |= more


def command_lines():
    for path in sorted(REPO.glob("roles/*/tasks/*.yml")) + sorted(REPO.glob("roles/*/handlers/*.yml")) + sorted(
            REPO.glob("playbooks/*.yml")):
        for task in tasks_in(load(path)):
            for module in COMMAND_MODULES & set(task):
                args = task[module]
                if isinstance(args, dict):  # argv, cmd; `environment:` is a sibling of the module, not in here
                    text = yaml.safe_dump({k: v for k, v in args.items() if k in ("argv", "cmd", "_raw_params")})
                else:
                    text = str(args)
                yield f"{path.relative_to(REPO)}: {task.get('name', module)}", text


def test_no_command_line_is_built_from_a_secret():
    secret = secret_variables()
    print("secret variables:", ", ".join(sorted(secret)))
    assert {"mongodb_admin_password", "embeddings_mongodb_password", "toxic_mongodb_uri"} <= secret
    leaks = []
    for where, text in command_lines():
        used = sorted(s for s in secret if re.search(rf"\b{re.escape(s)}\b", text))
        if used:
            leaks.append(f"{where}: {', '.join(used)}")
    assert not leaks, "a secret on a command line (pass it in the environment or a root-only file):\n  " + "\n  ".join(leaks)


def test_the_commands_are_found():
    # The scan must see the MongoDB commands at all, or it proves nothing.
    found = [where for where, text in command_lines() if "mongosh" in text or "mongorestore" in text]
    print("\n".join(found))
    assert any("mongodb/tasks/users.yml" in w for w in found)
    assert any("embeddings/tasks/mongodb.yml" in w and "Restore the archive" in w for w in found)
