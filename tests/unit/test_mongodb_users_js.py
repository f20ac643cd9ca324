"""roles/mongodb/files/mongodb-users.js: the app user may write only the feedback collection, and only insert there.

No MongoDB server (nor mongosh) can be installed here (see datasets.md), so
the script runs under node against a small fake of the mongosh API it uses
(getSiblingDB, auth, createUser/getUser/updateUser, createRole/getRole/updateRole,
new Mongo, print, quit), which keeps users and roles in a JSON file between
runs. That checks the script's logic: the grants, idempotence (a second run
changes nothing) and repair of drift. Whether a real server then refuses the
app user an update is checked only where a server is (tests/unit/test_feedback_mongo.py
real-server variants and the molecule matrix).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from toxic_service.feedback.mongo import FEEDBACK_COLLECTION

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "mongodb" / "files" / "mongodb-users.js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the users script cannot be run")

VOCAB_DB = "word_embeddings"
ENV = {
    "TOXIC_MONGO_URI": "mongodb://127.0.0.1:27017/admin",
    "TOXIC_MONGO_ADMIN_USER": "admin",
    "TOXIC_MONGO_ADMIN_PASSWORD": "admin-password-1234",
    "TOXIC_MONGO_ADMIN_ROLES": json.dumps(["root"]),
    "TOXIC_MONGO_APP_USER": "toxic_app",
    "TOXIC_MONGO_APP_PASSWORD": "app-password-1234",
    "TOXIC_MONGO_VOCAB_DB": VOCAB_DB,
}

# The fake mongosh: globals the script calls, state in argv[2], the script in argv[3].
HARNESS = r"""
const fs = require('fs');
const vm = require('vm');
const [stateFile, scriptFile] = process.argv.slice(2);
const state = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
const clone = (x) => JSON.parse(JSON.stringify(x));
let identity = null;
class Quit extends Error { constructor(code) { super(`quit(${code})`); this.code = code; } }
function authFailure() {
  const e = new Error('Authentication failed.'); e.code = 18; e.codeName = 'AuthenticationFailed'; return e;
}
function unauthorized() { const e = new Error('not authorized'); e.code = 13; e.codeName = 'Unauthorized'; return e; }
function need() { if (identity === null && Object.keys(state.users).length > 0) throw unauthorized(); }
function database(name, session) {
  return {
    auth(user, pwd) {
      const u = state.users[`admin.${user}`];
      if (!u || u.pwd !== pwd) throw authFailure();
      if (session) identity = user;
      return { ok: 1 };
    },
    createUser(doc) {
      // The localhost exception: the first user may be created without authenticating.
      if (Object.keys(state.users).length > 0) need();
      const key = `${name}.${doc.user}`;
      if (state.users[key]) { const e = new Error('user exists'); e.code = 51003; throw e; }
      state.users[key] = { user: doc.user, db: name, pwd: doc.pwd, roles: clone(doc.roles) };
      state.calls.push(`createUser ${key}`);
    },
    getUser(user) {
      need();
      const u = state.users[`${name}.${user}`];
      return u ? { user: u.user, db: u.db, roles: clone(u.roles) } : null;
    },
    updateUser(user, update) {
      need();
      const u = state.users[`${name}.${user}`];
      if (update.roles) u.roles = clone(update.roles);
      if (update.pwd) u.pwd = update.pwd;
      state.calls.push(`updateUser ${name}.${user}`);
    },
    getRole(role, options) {
      need();
      const r = state.roles[`${name}.${role}`];
      if (!r) return null;
      const shown = { role: r.role, db: r.db, roles: clone(r.roles) };
      if (options && options.showPrivileges) shown.privileges = clone(r.privileges);
      return shown;
    },
    createRole(doc) {
      need();
      const key = `${name}.${doc.role}`;
      if (state.roles[key]) { const e = new Error('role exists'); e.code = 51002; throw e; }
      state.roles[key] = { role: doc.role, db: name, privileges: clone(doc.privileges), roles: clone(doc.roles) };
      state.calls.push(`createRole ${key}`);
    },
    updateRole(role, update) {
      need();
      const r = state.roles[`${name}.${role}`];
      if (update.privileges) r.privileges = clone(update.privileges);
      if (update.roles) r.roles = clone(update.roles);
      state.calls.push(`updateRole ${name}.${role}`);
    },
  };
}
globalThis.db = { getSiblingDB: (name) => database(name, true) };
globalThis.Mongo = class { getDB(name) { return database(name, false); } close() {} };
globalThis.disableTelemetry = () => {};
globalThis.print = (s) => console.log(s);
globalThis.quit = (code) => { throw new Quit(code); };
let code = 0;
try {
  vm.runInThisContext(fs.readFileSync(scriptFile, 'utf8'), { filename: scriptFile });
} catch (e) {
  if (!(e instanceof Quit)) throw e;
  code = e.code;
}
fs.writeFileSync(stateFile, JSON.stringify(state));
process.exit(code);
"""


@pytest.fixture()
def mongosh(tmp_path):
    """Run the script against the fake; the fake's state (users, roles, calls) after each run."""
    harness, state_file = tmp_path / "harness.js", tmp_path / "state.json"
    harness.write_text(HARNESS)
    state_file.write_text(json.dumps({"users": {}, "roles": {}, "calls": []}))

    def run(**env_changes) -> tuple[dict, dict]:
        state = json.loads(state_file.read_text())
        state["calls"] = []
        state_file.write_text(json.dumps(state))
        result = subprocess.run([NODE, str(harness), str(state_file), str(SCRIPT)], env={**ENV, **env_changes},
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        [line] = [line for line in result.stdout.splitlines() if line.startswith("{")]
        return json.loads(line), json.loads(state_file.read_text())

    run.state_file = state_file
    return run


def _writable(actions: list[str]) -> set[str]:
    """Every action that changes data or schema (anything but reading)."""
    return set(actions) - {"find", "collStats", "listIndexes", "listCollections", "dbStats"}


def test_the_script_is_valid_javascript():
    result = subprocess.run([NODE, "--check", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_the_feedback_collection_is_the_one_the_store_writes():
    [name] = re.findall(r"^const feedbackCollection = '([^']+)';$", SCRIPT.read_text(), re.MULTILINE)
    assert name == FEEDBACK_COLLECTION


def test_the_app_user_reads_the_vocabulary_and_may_only_insert_into_the_feedback_collection(mongosh):
    report, state = mongosh()
    assert report["changed"] is True
    app = state["users"]["admin.toxic_app"]
    assert sorted((r["db"], r["role"]) for r in app["roles"]) == [(VOCAB_DB, "read"), (VOCAB_DB, "toxic_feedback")]
    role = state["roles"][f"{VOCAB_DB}.toxic_feedback"]
    assert role["roles"] == []  # inherits nothing
    grants = [(p["resource"], sorted(p["actions"])) for p in role["privileges"]]
    assert grants == [({"db": VOCAB_DB, "collection": FEEDBACK_COLLECTION}, ["find", "insert"])]
    assert {a for p in role["privileges"] for a in _writable(p["actions"])} == {"insert"}
    assert "createRole word_embeddings.toxic_feedback" in state["calls"]


def test_a_second_run_changes_nothing(mongosh):
    mongosh()
    report, state = mongosh()
    assert report == {"changed": False, "actions": []}
    assert state["calls"] == []


def test_a_role_that_drifted_is_set_back_to_insert_and_find(mongosh):
    _, state = mongosh()
    key = f"{VOCAB_DB}.toxic_feedback"
    state["roles"][key]["privileges"][0]["actions"] += ["update", "remove"]
    state["roles"][key]["roles"] = [{"role": "readWrite", "db": VOCAB_DB}]
    mongosh.state_file.write_text(json.dumps(state))
    report, state = mongosh()
    assert report["changed"] is True and any("toxic_feedback" in action for action in report["actions"])
    assert sorted(state["roles"][key]["privileges"][0]["actions"]) == ["find", "insert"]
    assert state["roles"][key]["roles"] == []
    # Actions listed in another order are the same grant: no change.
    state["roles"][key]["privileges"][0]["actions"] = ["insert", "find"]
    mongosh.state_file.write_text(json.dumps(state))
    assert mongosh()[0]["changed"] is False


def test_an_app_user_from_before_the_feedback_role_gets_it(mongosh):
    _, state = mongosh()
    state["users"]["admin.toxic_app"]["roles"] = [{"role": "read", "db": VOCAB_DB}]  # what older runs made
    mongosh.state_file.write_text(json.dumps(state))
    report, state = mongosh()
    assert report["changed"] is True
    assert {r["role"] for r in state["users"]["admin.toxic_app"]["roles"]} == {"read", "toxic_feedback"}
