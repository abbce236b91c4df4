"""Self-signed certificates for the TLS tests (the `cryptography` test dependency)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest


def certificates(folder: Path) -> dict[str, bytes]:
    """A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate
    signed by it, as PEM bytes, also written to `folder` as ca.pem, server_cert.pem,
    server_key.pem, client_cert.pem and client_key.pem."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(text: str) -> Any:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def pem_key(key: Any) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    start = datetime.now(UTC) - timedelta(hours=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test ca")).issuer_name(name("test ca"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(start)
          .not_valid_after(start + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    out = {"ca": ca.public_bytes(serialization.Encoding.PEM)}
    for role, serial in (("server", 2), ("client", 3)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(role)).issuer_name(name("test ca"))
                .public_key(key.public_key()).serial_number(serial).not_valid_before(start)
                .not_valid_after(start + timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        out[f"{role}_cert"] = cert.public_bytes(serialization.Encoding.PEM)
        out[f"{role}_key"] = pem_key(key)
    folder.mkdir(parents=True, exist_ok=True)
    for label, data in out.items():
        (folder / f"{label}.pem").write_bytes(data)
    return out
