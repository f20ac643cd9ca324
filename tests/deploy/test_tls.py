"""TLS as the nginx role applies it, on the deploy suite's host once its deploy tests are done.

The certificate comes from a throwaway CA this module makes (tests/tls_probe.py): a leaf for
toxic.test and www.toxic.test, copied into the host and named by nginx_tls_certificate /
nginx_tls_certificate_key (so certbot is skipped, as for anyone with a certificate of their own).
The host is the one tests/deploy provisioned with site.yml (fixture fab_host); this module runs
after test_fab.py (file order) and turns TLS on with `site.yml --tags nginx` and the TLS
variables: a full site.yml of its own took 649-844 s on 2 shared CPUs, the nginx part is seconds.
Every check runs from this machine through the container's published ports: which protocol
versions and ciphers are offered and refused, the chain, the handshake for unknown names, HSTS,
the redirect of plain HTTP, and a comment scored over TLS. `make test-tls` runs it alone (the
deploy suite's host is then provisioned for it).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from tls_probe import ANY_CIPHER, FS_AEAD_TLS12, handshake, make_pki, request  # noqa: E402

from tools.fabhost import FIGURES, VENV_BIN, FabHost, HostError, record, run  # noqa: E402

NAME = "toxic.test"  # the canonical name: the first of toxic_server_name
ALIAS = "www.toxic.test"  # a second name: redirected to NAME, not to itself
CERT_DIR = "/etc/toxic-tls-test"  # on the host


@dataclass(frozen=True)
class TLSHost:
    """The deploy suite's host with TLS on: its published ports and the CA that signed its certificate."""

    ca: Path
    http_port: int
    https_port: int


def say(line: str) -> None:
    """What was checked: into the deploy suite's figures (printed at the end of the run) and, with -s, at once."""
    record(f"tls check {sum(name.startswith('tls check') for name in FIGURES) + 1}", checked=line)
    print(f"\n  tls: {line}")


@pytest.fixture(scope="module")
def tls_host(fab_host: FabHost) -> Iterator[TLSHost]:
    if shutil.which("openssl") is None:
        pytest.fail("the TLS test needs openssl on this machine", pytrace=False)
    pki = make_pki(fab_host.work / "pki", [NAME, ALIAS])
    started = time.monotonic()
    fab_host.exec("install", "-d", "-m", "0755", CERT_DIR)
    fab_host.docker_cp(pki.chain, f"{CERT_DIR}/fullchain.pem")
    fab_host.docker_cp(pki.key, f"{CERT_DIR}/privkey.pem")
    fab_host.exec("chmod", "0600", f"{CERT_DIR}/privkey.pem")
    extra = fab_host.work / "tls-vars.json"
    extra.write_text(json.dumps({
        "toxic_server_name": f"{NAME} {ALIAS}",
        "toxic_tls": True,
        "nginx_tls_certificate": f"{CERT_DIR}/fullchain.pem",
        "nginx_tls_certificate_key": f"{CERT_DIR}/privkey.pem",
    }))
    log = fab_host.work / "provision-tls.log"
    result = run([str(VENV_BIN / "ansible-playbook"), "-i", str(fab_host.write_inventory()), "site.yml",
                  "--tags", "nginx", "-e", f"@{extra}"], 600, f"site.yml --tags nginx on {fab_host.name}",
                 check=False, cwd=REPO)
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.strip().splitlines()[-30:])
        pytest.fail(str(HostError(f"turning TLS on at {fab_host.name} failed (exit {result.returncode}; log {log}):"
                                  f"\n{tail}")), pytrace=False)
    say(f"TLS for {NAME} turned on at {fab_host.name} (site.yml --tags nginx) in {time.monotonic() - started:.0f} s")
    yield TLSHost(pki.ca, fab_host.http_port, fab_host.https_port)


def test_tls11_refused_tls12_and_13_agreed_with_forward_secret_aead(tls_host):
    port = tls_host.https_port
    old = handshake(port, NAME, "-tls1_1", "-cipher", ANY_CIPHER)
    assert not old.ok, f"TLS 1.1 was agreed: {old.output}"
    tls12 = handshake(port, NAME, "-tls1_2", cafile=tls_host.ca)
    assert tls12.ok and tls12.protocol == "TLSv1.2", tls12.output
    assert FS_AEAD_TLS12.match(tls12.cipher), f"TLS 1.2 agreed {tls12.cipher}, not ECDHE + AEAD"
    tls13 = handshake(port, NAME, "-tls1_3", cafile=tls_host.ca)
    assert tls13.ok and tls13.protocol == "TLSv1.3", tls13.output
    say(f"TLS 1.1 refused; TLS 1.2 agreed {tls12.cipher}; TLS 1.3 agreed {tls13.cipher}")


def test_suites_without_forward_secrecy_or_aead_are_refused(tls_host):
    refused = []
    for suite in ("AES256-SHA", "AES128-GCM-SHA256", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA",
                  "DHE-RSA-AES128-GCM-SHA256"):
        answer = handshake(tls_host.https_port, NAME, "-tls1_2", "-cipher", f"{suite}:@SECLEVEL=0")
        assert not answer.ok, f"{suite} was agreed: {answer.output}"
        refused.append(suite)
    say(f"TLS 1.2 refused with only {', '.join(refused)} offered")


def test_the_chain_verifies_against_the_test_ca(tls_host):
    for name in (NAME, ALIAS):
        answer = handshake(tls_host.https_port, name, "-verify_return_error", "-verify_hostname", name, cafile=tls_host.ca)
        assert answer.ok and answer.verify_code == 0, answer.output
    say(f"chain for {NAME} and {ALIAS} verifies against the test CA (Verify return code: 0)")


def test_unknown_names_get_no_certificate_and_no_answer(tls_host):
    for name in ("evil.example", None):
        answer = handshake(tls_host.https_port, name)
        assert not answer.ok and "BEGIN CERTIFICATE" not in answer.output, (name, answer.output)
    other = request(tls_host.https_port, tls=True, servername=NAME, host_header="evil.example", cafile=tls_host.ca)
    assert other.status is None, other
    say("SNI evil.example and no SNI: handshake refused, no certificate; our SNI with Host evil.example: no answer")


def test_https_answers_carry_hsts(tls_host):
    answer = request(tls_host.https_port, tls=True, servername=NAME, host_header=NAME, cafile=tls_host.ca, path="/livez")
    assert answer.status == 200, answer
    hsts = answer.headers.get("strict-transport-security", "")
    assert hsts.startswith("max-age=") and int(hsts.split("=", 1)[1]) >= 31536000, answer.headers
    say(f"GET /livez over TLS: 200, Strict-Transport-Security: {hsts}")


def test_plain_http_redirects_to_the_configured_name(tls_host):
    for name in (NAME, ALIAS):
        answer = request(tls_host.http_port, tls=False, host_header=name, path="/detect-toxic?x=1")
        assert answer.status == 301 and answer.headers.get("location") == f"https://{NAME}/detect-toxic?x=1", answer
        assert "strict-transport-security" not in answer.headers
    for host in ("evil.example", f"{NAME}.evil.example"):
        assert request(tls_host.http_port, tls=False, host_header=host).status is None, host
    say(f"HTTP with Host {NAME} or {ALIAS}: 301 to {answer.headers['location']}; Host evil.example: no answer")


def test_a_comment_is_scored_over_tls(tls_host):
    body = json.dumps({"sequence": "I will kill you, you idiot!"}).encode()
    answer = request(tls_host.https_port, tls=True, servername=NAME, host_header=NAME, cafile=tls_host.ca,
                     method="POST", path="/detect-toxic", body=body)
    assert answer.status == 200, answer
    scores = json.loads(answer.body)["prediction"]
    assert scores and all(0.0 <= value <= 1.0 for value in scores.values()), scores
    say(f"POST /detect-toxic over TLS: 200, toxic={scores.get('toxic')}")
