"""The role's TLS server, rendered from its template with its own defaults and per-OS values.

As text: the TLS 1.2 cipher list is forward-secret AEAD only, session tickets are off, unknown
names on 443 meet a catch-all that refuses the handshake, plain HTTP is redirected to the
configured name (never to one built from the client's Host). Then a real nginx on loopback
(as test_nginx_error_pages.py: TOXIC_TEST_NGINX, else skipped) with a certificate from a
throwaway CA: what a client is offered and refused. The container test (tests/deploy/test_tls.py) checks the
same through the role as site.yml applies it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from test_nginx_error_pages import NGINX_BIN, _free_port, render, start_nginx
from test_nginx_metrics_access import SECRET, _upstream
from tls_probe import ANY_CIPHER, FS_AEAD_TLS12, handshake, make_pki, request

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "nginx"
NAME = "toxic.test"
ACME_TOKEN = b"acme-token-for-the-test"
needs_nginx = pytest.mark.skipif(NGINX_BIN is None, reason="no nginx binary here: set TOXIC_TEST_NGINX")


def role_values(os_file: str = "Debian.yml") -> dict:
    """The role's TLS defaults and one OS's values, as the role would use them."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values = yaml.safe_load((ROLE / "vars" / os_file).read_text())
    return {"nginx_tls_ciphers": defaults["nginx_tls_ciphers"], "__nginx_tls_protocols": values["__nginx_tls_protocols"]}


def render_tls(tmp: Path, http_port: int, https_port: int, pki=None, **overrides) -> str:
    """The template with TLS on for NAME; listen lines moved to loopback ports (IPv6 ones dropped)."""
    variables = {
        "nginx_server_name": f"{NAME} www.{NAME}",
        "nginx_tls": True,
        "__nginx_tls_ready": True,
        "nginx_tls_certificate": str(pki.chain) if pki else "/etc/ssl/x.pem",
        "nginx_tls_certificate_key": str(pki.key) if pki else "/etc/ssl/x.key",
        "nginx_rate_limit": "100r/s",
        "nginx_rate_limit_burst": 100,
        **role_values(),
        **overrides,
    }
    conf = render(tmp, http_port, tmp / "gunicorn.sock", **variables)
    text = conf.read_text()
    text = re.sub(r"\n\s*listen \[::\]:\d+[^;]*;", "", text)
    text = text.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    text = re.sub(r"listen 443 ", f"listen 127.0.0.1:{https_port} ", text)
    conf.write_text(text)
    return text


def servers(text: str) -> list[str]:
    """Each `server { ... }` block of the http context (they hold no nested server)."""
    found, start = [], 0
    while (at := text.find("\n    server {", start)) != -1:
        depth, i = 0, text.index("{", at)
        while True:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        found.append(text[at:i + 1])
        start = i
    return found


# ------------------------------------------------------------------ the rendered text


def test_tls12_ciphers_are_forward_secret_aead_only(tmp_path):
    text = render_tls(tmp_path, 1, 2)
    lines = re.findall(r"^\s*ssl_ciphers (\S+);", text, re.M)
    assert lines, "no ssl_ciphers: TLS 1.2 would offer OpenSSL's defaults, RSA key exchange and CBC among them"
    for suite in lines[0].split(":"):
        assert FS_AEAD_TLS12.match(suite), f"{suite} is not ECDHE + AEAD"
    assert re.findall(r"^\s*ssl_protocols ([^;]+);", text, re.M) == ["TLSv1.2 TLSv1.3"]
    assert re.search(r"^\s*ssl_session_tickets off;", text, re.M), "a never-rotated ticket key undoes forward secrecy"


def test_el7_offers_tls12_only_and_the_others_both():
    assert yaml.safe_load((ROLE / "vars" / "RedHat-7.yml").read_text())["__nginx_tls_protocols"] == ["TLSv1.2"]
    for family in ("Debian.yml", "RedHat.yml"):
        assert role_values(family)["__nginx_tls_protocols"] == ["TLSv1.2", "TLSv1.3"]


def test_unknown_names_on_443_meet_a_catch_all_that_refuses_the_handshake(tmp_path):
    text = render_tls(tmp_path, 1, 2)
    defaults = [s for s in servers(text) if re.search(r"listen \S+:2 ssl[^;]*default_server;", s)]
    assert len(defaults) == 1, "no default server on 443: unknown names would get our certificate and site"
    assert "ssl_reject_handshake on;" in defaults[0]
    assert "return 444;" in defaults[0]
    assert "ssl_certificate" not in defaults[0]


def test_plain_http_redirects_to_the_configured_name_never_the_clients_host(tmp_path):
    text = render_tls(tmp_path, 1, 2)
    redirects = re.findall(r"return 30[1278] (\S+);", text)
    assert redirects == [f"https://{NAME}$request_uri"], redirects
    assert "$host" not in "".join(re.findall(r"return 30[1278][^;]*;", text))


def test_hsts_is_sent_always_on_https(tmp_path):
    text = render_tls(tmp_path, 1, 2)
    assert re.search(r"^\s*add_header Strict-Transport-Security \$toxic_hsts always;", text, re.M)
    assert re.search(r'^\s*on "max-age=1";', text, re.M)  # the map: HTTPS answers (max-age from the test's value)


def test_without_tls_nothing_listens_on_443(tmp_path):
    conf = render(tmp_path, 1, tmp_path / "s.sock", nginx_server_name=NAME, nginx_tls=False)
    assert "443" not in conf.read_text() and "ssl_" not in conf.read_text()


# ------------------------------------------------------------------ a real nginx


@pytest.fixture(scope="module")
def tls_front(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nginx-tls")
    pki = make_pki(tmp / "pki", [NAME, f"www.{NAME}"])
    http_port, https_port = _free_port(), _free_port()
    render_tls(tmp, http_port, https_port, pki)  # the ACME webroot is tmp itself (render())
    (tmp / ".well-known" / "acme-challenge").mkdir(parents=True)
    (tmp / ".well-known" / "acme-challenge" / "token").write_bytes(ACME_TOKEN)
    listener = _upstream(tmp / "gunicorn.sock")
    try:
        process = start_nginx(tmp, tmp / "nginx.conf", https_port)
    except RuntimeError:
        listener.close()
        raise
    try:
        yield http_port, https_port, pki
    finally:
        process.terminate()
        process.wait(timeout=10)
        listener.close()


@needs_nginx
def test_real_nginx_offers_tls12_and_13_with_fs_aead_only(tls_front):
    _, port, pki = tls_front
    assert not handshake(port, NAME, "-tls1_1", "-cipher", ANY_CIPHER).ok
    tls12 = handshake(port, NAME, "-tls1_2", cafile=pki.ca)
    assert tls12.ok and tls12.protocol == "TLSv1.2" and FS_AEAD_TLS12.match(tls12.cipher), tls12.output
    assert tls12.verify_code == 0, tls12.output
    tls13 = handshake(port, NAME, "-tls1_3", cafile=pki.ca)
    assert tls13.ok and tls13.protocol == "TLSv1.3" and tls13.verify_code == 0, tls13.output
    for suite in ("AES256-SHA", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA", "DHE-RSA-AES128-GCM-SHA256"):
        refused = handshake(port, NAME, "-tls1_2", "-cipher", f"{suite}:@SECLEVEL=0")
        assert not refused.ok, f"{suite} was agreed: {refused.output}"


@needs_nginx
def test_real_nginx_refuses_the_handshake_for_unknown_names(tls_front):
    _, port, pki = tls_front
    assert handshake(port, f"www.{NAME}", cafile=pki.ca).ok
    for name in ("evil.example", None):
        refused = handshake(port, name)
        assert not refused.ok and "BEGIN CERTIFICATE" not in refused.output, (name, refused.output)


def _http(port: int, host: str, source: str = "127.0.0.2", path: str = "/x/y?z=1"):
    """GET over plain HTTP from `source` (127.0.0.2: nginx sees a peer that is not loopback's 127.0.0.1)."""
    return request(port, tls=False, host_header=host, path=path, source=source, timeout=10)


@needs_nginx
def test_real_nginx_redirects_plain_http_to_the_configured_name(tls_front):
    port, _, _ = tls_front
    for host in (NAME, f"www.{NAME}", NAME.upper()):
        answer = _http(port, host)
        assert answer.status == 301, answer
        assert answer.headers["location"] == f"https://{NAME}/x/y?z=1", answer
        assert "strict-transport-security" not in answer.headers
    assert _http(port, "evil.example").status is None  # not our name: 444, no answer at all


@needs_nginx
def test_real_nginx_serves_loopback_and_acme_over_http(tls_front):
    port, _, _ = tls_front
    # toxic-release's health check asks http://127.0.0.1/ with the server's name: served, not redirected.
    local = _http(port, NAME, source="127.0.0.1")
    assert (local.status, local.body) == (200, SECRET), local
    # certbot's renewals answer the ACME challenge over plain HTTP; a missing token is the JSON 404.
    acme = _http(port, NAME, path="/.well-known/acme-challenge/token")
    assert (acme.status, acme.body) == (200, ACME_TOKEN), acme
    missing = _http(port, NAME, path="/.well-known/acme-challenge/nothing")
    assert missing.status == 404 and missing.headers.get("content-type") == "application/json", missing


@needs_nginx
def test_real_nginx_https_answers_with_hsts_and_only_for_our_names(tls_front):
    _, port, pki = tls_front
    answer = request(port, tls=True, servername=NAME, host_header=NAME, cafile=pki.ca, path="/livez", timeout=10)
    assert (answer.status, answer.body) == (200, SECRET), answer
    assert answer.headers.get("strict-transport-security") == "max-age=1", answer.headers
    # Our certificate, someone else's Host: the catch-all's 444, as on 80.
    other = request(port, tls=True, servername=NAME, host_header="evil.example", cafile=pki.ca, timeout=10)
    assert other.status is None, other
