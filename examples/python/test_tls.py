"""Playwright over wss:// (no mocks): browserd given a certificate serves
gRPC over TLS and its relay as wss:// (discovery as https://). The test
makes its own CA and a certificate for 127.0.0.1; Playwright's driver is
Node, which trusts an extra CA through NODE_EXTRA_CA_CERTS, and gRPC
Python is given it as root_certificates."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from playwright.sync_api import sync_playwright

from browserd.v1 import sessions_pb2 as pb
from browserd.v1 import sessions_pb2_grpc as rpc
from browserd_server import Browserd


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signed for 127.0.0.1 and localhost:
    the paths of the CA, the certificate and its key, as PEM."""
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = dict(not_valid_before=now - datetime.timedelta(minutes=5), not_valid_after=now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder(**valid)
        .subject_name(_name("browserd example CA"))
        .issuer_name(_name("browserd example CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    cert = (
        x509.CertificateBuilder(**valid)
        .subject_name(_name("browserd example"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@pytest.fixture
def tls_browserd(tmp_path):
    """A browserd with a certificate, and the path of the CA that signed it."""
    ca, cert, key = make_certificates(tmp_path)
    server = Browserd(args=("--tls-cert", str(cert), "--tls-key", str(key)), ca_pem=ca.read_bytes())
    try:
        yield server, ca
    finally:
        server.cleanup()


def test_playwright_connects_over_wss(tls_browserd, monkeypatch, tmp_path):
    """connect_over_cdp with the wss:// connect_url, and with its https://
    form (discovery answers a wss:// webSocketDebuggerUrl); an upload by
    path still works, since the relay tells its own user's client by the
    TCP socket under the TLS."""
    server, ca = tls_browserd
    # Read when the driver starts: set before sync_playwright().
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", str(ca))
    upload = tmp_path / "upload.txt"
    upload.write_text("sent by path over TLS")
    with server.channel() as channel:
        stub = rpc.SessionServiceStub(channel)
        session = stub.CreateSession(pb.CreateSessionRequest(keep_alive=True), timeout=60).session
        assert session.connect_url.startswith("wss://"), session.connect_url
        https_url = "https://" + session.connect_url.removeprefix("wss://")
        with sync_playwright() as p:
            for url in (session.connect_url, https_url):
                browser = p.chromium.connect_over_cdp(url, timeout=30_000)
                page = browser.contexts[0].new_page()
                page.set_content("<title>over TLS</title><input type=file>")
                assert page.title() == "over TLS"
                page.set_input_files("input", upload)
                text = page.evaluate("() => document.querySelector('input').files[0].text()")
                assert text == "sent by path over TLS"
                page.close()
                browser.close()
        stub.ReleaseSession(pb.ReleaseSessionRequest(session_id=session.id), timeout=30)
    assert server.stop() == 0, server.tail()


def test_playwright_without_the_ca_is_refused(tls_browserd):
    """A driver that does not trust the CA fails the handshake; the server
    keeps serving."""
    server, _ = tls_browserd
    with server.channel() as channel:
        stub = rpc.SessionServiceStub(channel)
        session = stub.CreateSession(pb.CreateSessionRequest(keep_alive=True), timeout=60).session
        with sync_playwright() as p:
            with pytest.raises(Exception, match="certificate"):
                p.chromium.connect_over_cdp(session.connect_url, timeout=10_000)
        current = stub.GetSession(pb.GetSessionRequest(session_id=session.id), timeout=10).session
        assert current.status == pb.SESSION_STATUS_LIVE, current
        stub.ReleaseSession(pb.ReleaseSessionRequest(session_id=session.id), timeout=30)
    assert server.stop() == 0, server.tail()
