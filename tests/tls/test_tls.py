"""TLS as the nginx role applies it: container `toxic-tls`, provisioned once with site.yml and TLS on.

The certificate comes from a throwaway CA this module makes (tests/tls_probe.py): a leaf for
toxic.test and www.toxic.test, copied into the host and named by nginx_tls_certificate / nginx_tls_certificate_key
(so certbot is skipped, as for anyone with a certificate of their own). Every check runs from
this machine through the container's published ports (HTTP 18280, HTTPS 18643): which protocol
versions and ciphers are offered and refused, the chain, the handshake for unknown names, HSTS,
the redirect of plain HTTP, and a comment scored over TLS. `make test-tls`.

Environment: TOXIC_TLS_KEEP=1 leaves the container running afterwards (for a look around);
TOXIC_TLS_REUSE=1 checks the running, provisioned container as it is (development only: no
provisioning, the CA kept in .cache/tls-test/pki). Provisioning is most of the time: a fresh
site.yml run took 649 s and 844 s on 2 shared CPUs at a load average of about 4 (the checks:
seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tls_probe import ANY_CIPHER, FS_AEAD_TLS12, TestPKI, handshake, make_pki, request  # noqa: E402

from tools.fabhost import VENV_BIN, FabHost, HostError, run  # noqa: E402

NAME = "toxic.test"  # the canonical name: the first of toxic_server_name
ALIAS = "www.toxic.test"  # a second name: redirected to NAME, not to itself
CERT_DIR = "/etc/toxic-tls-test"  # on the host
HOST = FabHost(name="toxic-tls", http_port=18280, https_port=18643, ssh_port=12422, work=REPO / ".cache" / "tls-test")


def say(line: str) -> None:
    """What was checked, in the run's output (`make test-tls` runs pytest with -s)."""
    print(f"\n  tls: {line}")


@pytest.fixture(scope="module")
def tls_host() -> Iterator[TestPKI]:
    inputs = [REPO / ".cache" / "wheelhouse", REPO / ".cache" / "toxic-service" / "default" / "model",
              REPO / ".cache" / "toxic-service" / "default" / "vocab.sqlite"]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `make assets wheelhouse` first", pytrace=False)
    if shutil.which("docker") is None or shutil.which("openssl") is None:
        pytest.fail("the TLS test needs the docker CLI and openssl on this machine", pytrace=False)
    HOST.work.mkdir(parents=True, exist_ok=True)
    if os.environ.get("TOXIC_TLS_REUSE") == "1":
        yield TestPKI(*(HOST.work / "pki" / name for name in ("ca.pem", "fullchain.pem", "privkey.pem")))
        return
    pki = make_pki(HOST.work / "pki", [NAME, ALIAS])
    try:
        HOST.down()  # whatever an interrupted run left goes first
        started = time.monotonic()
        HOST.up()
        HOST.exec("install", "-d", "-m", "0755", CERT_DIR)
        HOST.docker_cp(pki.chain, f"{CERT_DIR}/fullchain.pem")
        HOST.docker_cp(pki.key, f"{CERT_DIR}/privkey.pem")
        HOST.exec("chmod", "0600", f"{CERT_DIR}/privkey.pem")
        extra = HOST.work / "tls-vars.json"
        extra.write_text(json.dumps({
            "toxic_server_name": f"{NAME} {ALIAS}",
            "toxic_tls": True,
            "nginx_tls_certificate": f"{CERT_DIR}/fullchain.pem",
            "nginx_tls_certificate_key": f"{CERT_DIR}/privkey.pem",
        }))
        log = HOST.work / "provision.log"
        result = run([str(VENV_BIN / "ansible-playbook"), "-i", str(HOST.write_inventory()), "site.yml",
                      "-e", f"@{extra}"], 1200, f"ansible-playbook site.yml on {HOST.name}", check=False, cwd=REPO)
        log.write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            tail = "\n".join(result.stdout.strip().splitlines()[-30:])
            raise HostError(f"provisioning {HOST.name} with TLS failed (exit {result.returncode}; log {log}):\n{tail}")
        say(f"{HOST.name} up and provisioned with TLS for {NAME} in {time.monotonic() - started:.0f} s")
    except HostError as exc:
        if os.environ.get("TOXIC_TLS_KEEP") != "1":
            HOST.down()
        pytest.fail(str(exc), pytrace=False)
    try:
        yield pki
    finally:
        if os.environ.get("TOXIC_TLS_KEEP") != "1":
            HOST.down()


def test_tls11_refused_tls12_and_13_agreed_with_forward_secret_aead(tls_host):
    port = HOST.https_port
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
        answer = handshake(HOST.https_port, NAME, "-tls1_2", "-cipher", f"{suite}:@SECLEVEL=0")
        assert not answer.ok, f"{suite} was agreed: {answer.output}"
        refused.append(suite)
    say(f"TLS 1.2 refused with only {', '.join(refused)} offered")


def test_the_chain_verifies_against_the_test_ca(tls_host):
    for name in (NAME, ALIAS):
        answer = handshake(HOST.https_port, name, "-verify_return_error", "-verify_hostname", name, cafile=tls_host.ca)
        assert answer.ok and answer.verify_code == 0, answer.output
    say(f"chain for {NAME} and {ALIAS} verifies against the test CA (Verify return code: 0)")


def test_unknown_names_get_no_certificate_and_no_answer(tls_host):
    for name in ("evil.example", None):
        answer = handshake(HOST.https_port, name)
        assert not answer.ok and "BEGIN CERTIFICATE" not in answer.output, (name, answer.output)
    other = request(HOST.https_port, tls=True, servername=NAME, host_header="evil.example", cafile=tls_host.ca)
    assert other.status is None, other
    say("SNI evil.example and no SNI: handshake refused, no certificate; our SNI with Host evil.example: no answer")


def test_https_answers_carry_hsts(tls_host):
    answer = request(HOST.https_port, tls=True, servername=NAME, host_header=NAME, cafile=tls_host.ca, path="/livez")
    assert answer.status == 200, answer
    hsts = answer.headers.get("strict-transport-security", "")
    assert hsts.startswith("max-age=") and int(hsts.split("=", 1)[1]) >= 31536000, answer.headers
    say(f"GET /livez over TLS: 200, Strict-Transport-Security: {hsts}")


def test_plain_http_redirects_to_the_configured_name(tls_host):
    for name in (NAME, ALIAS):
        answer = request(HOST.http_port, tls=False, host_header=name, path="/detect-toxic?x=1")
        assert answer.status == 301 and answer.headers.get("location") == f"https://{NAME}/detect-toxic?x=1", answer
        assert "strict-transport-security" not in answer.headers
    for host in ("evil.example", f"{NAME}.evil.example"):
        assert request(HOST.http_port, tls=False, host_header=host).status is None, host
    say(f"HTTP with Host {NAME} or {ALIAS}: 301 to {answer.headers['location']}; Host evil.example: no answer")


def test_a_comment_is_scored_over_tls(tls_host):
    body = json.dumps({"sequence": "I will kill you, you idiot!"}).encode()
    answer = request(HOST.https_port, tls=True, servername=NAME, host_header=NAME, cafile=tls_host.ca,
                     method="POST", path="/detect-toxic", body=body)
    assert answer.status == 200, answer
    scores = json.loads(answer.body)["prediction"]
    assert scores and all(0.0 <= value <= 1.0 for value in scores.values()), scores
    say(f"POST /detect-toxic over TLS: 200, toxic={scores.get('toxic')}")
