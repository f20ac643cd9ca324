// Creates or updates the administrator, the feedback role and the app's user
// (read on the vocabulary database, and through the feedback role insert + find
// on its one feedback collection, nothing else writable). Run by
// roles/mongodb with mongosh against 127.0.0.1. Every name and password comes
// from the environment, so nothing secret is on a command line or in this file.
// Prints one JSON line: {"changed": bool, "actions": [...]}; exits 3 when the
// administrator exists but the vault password does not authenticate.
// mongosh would otherwise try to send usage data from a database host.
disableTelemetry();
const env = process.env;
const adminName = env.TOXIC_MONGO_ADMIN_USER;
const adminPwd = env.TOXIC_MONGO_ADMIN_PASSWORD;
const adminRoles = JSON.parse(env.TOXIC_MONGO_ADMIN_ROLES).map((r) => ({ role: r, db: 'admin' }));
const appName = env.TOXIC_MONGO_APP_USER;
const appPwd = env.TOXIC_MONGO_APP_PASSWORD;
const vocabDb = env.TOXIC_MONGO_VOCAB_DB;
// The collection comments:suggestscore writes; its owner is FEEDBACK_COLLECTION in
// app/src/toxic_service/feedback/mongo.py (tests/unit/test_mongodb_users_js.py checks they agree).
const feedbackCollection = 'feedback';
const feedbackRole = 'toxic_feedback';
// Least privilege for the feedback store: insert a suggestion and find the last one (next _id and the
// running byte count) and all of them (export, stats). No update, remove, createIndex or drop.
const feedbackPrivileges = [
  { resource: { db: vocabDb, collection: feedbackCollection }, actions: ['find', 'insert'] },
];
const appRoles = [{ role: 'read', db: vocabDb }, { role: feedbackRole, db: vocabDb }];
const uri = env.TOXIC_MONGO_URI;
const admin = db.getSiblingDB('admin');
const actions = [];

function isAuthFailure(e) {
  return e.code === 18 || e.codeName === 'AuthenticationFailed' || /Authentication failed/i.test(String(e.message));
}

// Privileges compared as sorted "db.collection:action" strings (the server may reorder actions).
function samePrivileges(a, b) {
  const keys = (list) => list.flatMap((p) => p.actions.map((action) => `${p.resource.db}.${p.resource.collection}:${action}`)).sort();
  const x = keys(a);
  const y = keys(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function sameRoles(a, b) {
  const key = (r) => `${r.db}.${r.role}`;
  const x = a.map(key).sort();
  const y = b.map(key).sort();
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

// True when `pwd` authenticates `user` (checked on a separate connection so the
// session used for administration keeps its identity).
function passwordWorks(user, pwd) {
  const probe = new Mongo(uri);
  try {
    probe.getDB('admin').auth(user, pwd);
    return true;
  } catch (e) {
    if (isAuthFailure(e)) return false;
    throw e;
  } finally {
    probe.close();
  }
}

let authenticated = false;
try {
  admin.auth(adminName, adminPwd);
  authenticated = true;
} catch (e) {
  if (!isAuthFailure(e)) throw e;
}

if (!authenticated) {
  // First run: no user exists, so the localhost exception lets this one command
  // through. Once a user exists the exception is gone and this fails instead.
  try {
    admin.createUser({ user: adminName, pwd: adminPwd, roles: adminRoles });
    actions.push(`created administrator ${adminName} through the localhost exception`);
  } catch (e) {
    print(JSON.stringify({
      changed: false,
      actions,
      error: `users already exist but ${adminName} does not authenticate with vault_mongodb_admin_password ` +
        `(${e.codeName || e.message}); fix the vault value or reset the user by hand`,
    }));
    quit(3);
  }
  admin.auth(adminName, adminPwd);
}

const adminUser = admin.getUser(adminName);
if (!sameRoles(adminUser.roles, adminRoles)) {
  admin.updateUser(adminName, { roles: adminRoles });
  actions.push(`set roles of ${adminName}`);
}

// The role lives in the vocabulary database, next to the collection it grants on.
const vocab = db.getSiblingDB(vocabDb);
const existingRole = vocab.getRole(feedbackRole, { showPrivileges: true });
if (existingRole === null) {
  vocab.createRole({ role: feedbackRole, privileges: feedbackPrivileges, roles: [] });
  actions.push(`created role ${feedbackRole} (insert, find on ${vocabDb}.${feedbackCollection})`);
} else if (!samePrivileges(existingRole.privileges, feedbackPrivileges) || existingRole.roles.length > 0) {
  vocab.updateRole(feedbackRole, { privileges: feedbackPrivileges, roles: [] });
  actions.push(`set privileges of ${feedbackRole} to insert, find on ${vocabDb}.${feedbackCollection}`);
}

const appUser = admin.getUser(appName);
if (appUser === null) {
  admin.createUser({ user: appName, pwd: appPwd, roles: appRoles });
  actions.push(`created ${appName} (read on ${vocabDb}, ${feedbackRole})`);
} else {
  if (!sameRoles(appUser.roles, appRoles)) {
    admin.updateUser(appName, { roles: appRoles });
    actions.push(`set roles of ${appName} to read on ${vocabDb}, ${feedbackRole}`);
  }
  if (!passwordWorks(appName, appPwd)) {
    admin.updateUser(appName, { pwd: appPwd });
    actions.push(`changed password of ${appName}`);
  }
}

print(JSON.stringify({ changed: actions.length > 0, actions }));
