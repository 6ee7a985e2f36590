"""A self-signed certificate for serving the lab's services over HTTPS on this machine.

`ensure_certificate()` writes `data/tls/cert.pem` and `key.pem` (0600) once and reuses them.
The certificate names localhost, 127.0.0.1 and ::1, and is its own CA: pass `cert.pem` as the
CA file (httpx `verify=`, curl `--cacert`) to verify it instead of switching verification off.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from perflab import paths


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path


def _generate(cert_file: Path, key_file: Path, days: int) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "perflab local")])
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_tmp = key_file.with_name(f".{key_file.name}.{os.getpid()}.tmp")
    fd = os.open(key_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    cert_tmp = cert_file.with_name(f".{cert_file.name}.{os.getpid()}.tmp")
    cert_tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(key_tmp, key_file)
    os.replace(cert_tmp, cert_file)


def _still_valid(cert_file: Path, margin_days: int = 7) -> bool:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    return left > dt.timedelta(days=margin_days)


def ensure_certificate(directory: Path | None = None, days: int = 365) -> Certificate:
    """The lab's certificate and key, generated on first use (or when about to expire)."""
    directory = directory or paths.DATA / "tls"
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    if not (cert_file.exists() and key_file.exists() and _still_valid(cert_file)):
        _generate(cert_file, key_file, days)
    return Certificate(cert_file, key_file)


def client_context(ca_file: Path | str) -> ssl.SSLContext:
    """An SSL context that trusts the lab's certificate (httpx `verify=`)."""
    return ssl.create_default_context(cafile=str(ca_file))
