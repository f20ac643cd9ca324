"""Every role option that can hold a secret is `no_log: true` in its argument spec.

Ansible prints a failed argument-spec check with the values it was given; `no_log` keeps a
password (or a connection string carrying one) out of that output and out of the logs.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"password|passwd|secret|token|key|credential|_uri$", re.IGNORECASE)
# Options whose names match but that hold nothing secret, each with the reason.
NOT_SECRET = {
    "base_admin_keys": "public keys (authorized_keys lines)",
    "base_deploy_keys": "public keys (authorized_keys lines)",
    "mongodb_gpg_key_url": "the URL of MongoDB's public signing key",
    "nginx_tls_certificate_key": "the path on the host of the TLS key file, not the key",
}


def spec_options():
    for path in sorted((REPO / "roles").glob("*/meta/argument_specs.yml")):
        for entry, spec in (yaml.safe_load(path.read_text())["argument_specs"] or {}).items():
            for name, option in (spec.get("options") or {}).items():
                yield f"{path.relative_to(REPO)} ({entry})", name, option


def test_every_option_that_can_hold_a_secret_is_no_log():
    checked, missing = [], []
    for where, name, option in spec_options():
        if not SECRET_NAME.search(name) or name in NOT_SECRET or option.get("type") == "bool":
            continue
        checked.append(name)
        if option.get("no_log") is not True:
            missing.append(f"{where}: {name}")
    print("secret options:", ", ".join(checked))
    assert checked, "no option looked like a secret: the pattern no longer matches the specs"
    assert not missing, "without no_log: true:\n  " + "\n  ".join(missing)


def test_the_exemptions_still_exist():
    # A renamed option must not keep an exemption that no longer applies to anything.
    names = {name for _, name, _ in spec_options()}
    assert set(NOT_SECRET) <= names, set(NOT_SECRET) - names
