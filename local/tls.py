"""A throwaway self-signed certificate so the emulator speaks HTTPS on loopback.

The program's buckets carry a TLS-only bucket policy (deny when `aws:SecureTransport` is false).
Serving HTTPS only makes "every request is secure transport" true, so the emulator can evaluate
that condition honestly instead of pretending plain HTTP is encrypted.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class CertificatePair:
    """PEM files: `certificate` doubles as the CA bundle clients trust (AWS_CA_BUNDLE)."""

    certificate: Path
    private_key: Path


def write_loopback_certificate(directory: Path, *, valid_days: int = 7) -> CertificatePair:
    """Create a self-signed certificate valid only for 127.0.0.1 and localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "image-pipeline local emulator")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    pair = CertificatePair(directory / "emulator-cert.pem", directory / "emulator-key.pem")
    pair.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    pair.private_key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pair.private_key.chmod(0o600)
    return pair
