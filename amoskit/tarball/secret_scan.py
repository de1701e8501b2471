"""Secrets judged by a file's content, not its name: private keys, cloud credentials, .env lines.

Why by content: CA bundles are .pem files too, and a key can sit in any file name. A secret in
any layer ships with the image, even when a later layer deletes it.
"""
from __future__ import annotations

import posixpath
import re

PEM_PRIVATE_KEY = re.compile(
    rb"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"
    rb"(?:\\n|\s)+(?:[A-Za-z0-9-]+: [^\n]*(?:\\n|\s)+)*[A-Za-z0-9+/=]{40,}")
AWS_KEY_ID = re.compile(rb"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
AWS_SECRET = re.compile(rb"(?i)aws_secret_access_key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}")
GCP_SERVICE_ACCOUNT = re.compile(rb"\"type\"\s*:\s*\"service_account\"")
GCP_PRIVATE_KEY_FIELD = re.compile(rb"\"private_key(?:_id)?\"\s*:\s*\"[^\"]{16,}")
ENV_SECRET_LINE = re.compile(
    rb"(?im)^\s*(?:export\s+)?[A-Z0-9_]*(?:SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|"
    rb"PRIVATE_?KEY|CREDENTIALS?)[A-Z0-9_]*\s*=\s*\S+")
QUICK_TRIGGERS = (b"PRIVATE KEY", b"AKIA", b"ASIA", b"service_account", b"ws_secret_access_key",
                  b"WS_SECRET_ACCESS_KEY")


def secrets_in(name: str, data: bytes) -> list[str]:
    """Kinds of secret found in one file's bytes, judged by content (CA bundles are .pem too)."""
    found = []
    base = posixpath.basename(name)
    if any(t in data for t in QUICK_TRIGGERS):
        if PEM_PRIVATE_KEY.search(data):
            found.append("private key")
        ids = [m for m in AWS_KEY_ID.findall(data) if not m.endswith(b"EXAMPLE")]
        if ids or AWS_SECRET.search(data):
            found.append("AWS credentials")
        if GCP_SERVICE_ACCOUNT.search(data) and GCP_PRIVATE_KEY_FIELD.search(data):
            found.append("GCP service-account key")
    if (base == ".env" or base.startswith(".env.") or base.endswith(".env")) and \
            ENV_SECRET_LINE.search(data):
        found.append(".env with secrets")
    return found
