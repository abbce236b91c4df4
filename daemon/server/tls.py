"""The daemon's TLS files, loaded as the server would load them, so that a bad one is named
before serving (gRPC itself only says that it failed to bind)."""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsFileError(ValueError):
    """A certificate, key or CA file that does not load; the message names it."""


def check_tls_files(cert: Path | None, key: Path | None, client_ca: Path | None, *,
                    names: tuple[str, str, str] = ("--tls-cert", "--tls-key", "--tls-client-ca")
                    ) -> None:
    """TlsFileError unless `cert` and `key` (when given) are a PEM certificate and its
    unencrypted private key and `client_ca` (when given) a PEM CA certificate. `names` say
    where each was given (flags by default), for the message."""
    cert_name, key_name, ca_name = names
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        if cert is not None and key is not None:  # a password callback: never a prompt
            context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        raise TlsFileError(f"{cert_name} {cert} and {key_name} {key} do not load"
                           f" ({exc.reason or 'not PEM'}): give a PEM certificate and its"
                           " matching private key, unencrypted") from exc
    try:
        if client_ca is not None:
            context.load_verify_locations(cafile=client_ca)
    except ssl.SSLError as exc:
        raise TlsFileError(f"{ca_name} {client_ca} does not load"
                           f" ({exc.reason or 'not PEM'}): give the PEM certificate of the CA"
                           " that signs client certificates") from exc
