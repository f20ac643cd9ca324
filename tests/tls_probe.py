"""What the TLS tests share: a throwaway CA with a leaf certificate, and a TLS client (openssl s_client).

The CA lives only in the test's directory and signs one leaf for the names asked for (RSA 2048,
SHA-256, valid for a day). `handshake()` runs `openssl s_client` against 127.0.0.1:PORT and says
what was agreed: protocol, cipher, whether the chain verified against the CA; `request()` sends
one HTTP request, over TLS or not, and reads the answer (or its absence). Used by
tests/unit/test_nginx_tls.py (a real nginx on loopback) and tests/deploy/test_tls.py (the role on the deploy suite's container).
"""

from __future__ import annotations

import datetime
import re
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# A client that may offer TLS 1.0/1.1 and every cipher: OpenSSL 3 refuses them itself above
# security level 0, and a refusal must be the server's to mean anything.
ANY_CIPHER = "ALL:@SECLEVEL=0"


@dataclass(frozen=True)
class TestPKI:
    ca: Path  # the CA certificate (what a client trusts)
    chain: Path  # leaf + CA, PEM: nginx's ssl_certificate
    key: Path  # the leaf's key: ssl_certificate_key

    __test__ = False  # not a pytest class


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(directory: Path, names: list[str]) -> TestPKI:
    """A CA and a leaf for `names` (the first is the subject), written under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name("toxic-service test CA")).issuer_name(_name("toxic-service test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf_cert = (
        x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pki = TestPKI(directory / "ca.pem", directory / "fullchain.pem", directory / "privkey.pem")
    pki.ca.write_bytes(ca_cert.public_bytes(pem))
    pki.chain.write_bytes(leaf_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    pki.key.write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL,
                                               serialization.NoEncryption()))
    pki.key.chmod(0o600)
    return pki


@dataclass(frozen=True)
class Handshake:
    ok: bool  # a session was agreed
    protocol: str  # e.g. TLSv1.3 ("" when none)
    cipher: str  # OpenSSL's name ("" when none)
    verify_code: int | None  # `Verify return code` (0: the chain verified against the CA given)
    output: str  # what s_client said, for a failing assertion's message


def handshake(port: int, servername: str | None, *options: str, cafile: Path | None = None,
              host: str = "127.0.0.1", timeout: float = 15) -> Handshake:
    """One `openssl s_client` handshake; `servername` None sends no SNI. Never raises for a refusal."""
    cmd = ["openssl", "s_client", "-connect", f"{host}:{port}"]
    cmd += ["-servername", servername] if servername else ["-noservername"]
    if cafile:
        cmd += ["-CAfile", str(cafile)]
    proc = subprocess.run([*cmd, *options], input="", capture_output=True, text=True, timeout=timeout, check=False)
    output = proc.stdout + proc.stderr
    agreed = re.search(r"^(?:New|Reused), (\S+), Cipher is (\S+)", output, re.M)
    verify = re.search(r"^\s*Verify return code: (\d+)", output, re.M)
    ok = bool(agreed) and agreed.group(2) != "(NONE)" and proc.returncode == 0
    return Handshake(ok, agreed.group(1) if ok else "", agreed.group(2) if ok else "",
                     int(verify.group(1)) if verify else None, output[-1500:])


# What a forward-secret AEAD TLS 1.2 suite is called in OpenSSL: ECDHE key exchange, GCM or ChaCha20-Poly1305.
FS_AEAD_TLS12 = re.compile(r"^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$")


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: the connection closed with no answer (nginx's 444)
    headers: dict[str, str]  # lower-case names
    body: bytes


def request(port: int, *, tls: bool, host_header: str, servername: str | None = None, cafile: Path | None = None,
            method: str = "GET", path: str = "/", body: bytes | None = None, source: str | None = None,
            timeout: float = 30) -> Answer:
    """One HTTP/1.1 request to 127.0.0.1:PORT, over TLS (verified against `cafile`, SNI `servername`) or not."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    payload = (head + "\r\n").encode() + (body or b"")
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                   source_address=(source, 0) if source else None)
    try:
        if tls:
            context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
            raw = context.wrap_socket(raw, server_hostname=servername)
        raw.sendall(payload)
        data = b""
        try:
            while chunk := raw.recv(65536):
                data += chunk
        except (ConnectionResetError, ssl.SSLEOFError):  # 444: closed at once, unread bytes make it a reset
            pass
    finally:
        raw.close()
    if not data:
        return Answer(None, {}, b"")
    head_bytes, _, content = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return Answer(int(lines[0].split()[1]), headers, content)
