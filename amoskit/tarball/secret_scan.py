"""Secrets judged by a file's content, not its name, in every text file of every layer.

Why by content: CA bundles are .pem files too, and a key can sit in any file name. A secret in
any layer ships with the image, even when a later layer deletes it.

Rules: the token formats of detect-secrets (Yelp's maintained rule set; `TOKEN_PLUGINS` below:
AWS, GitHub, GitLab, Slack, Stripe, OpenAI, PyPI, npm, SendGrid, Twilio, Discord, Telegram,
Mailchimp, Square, Azure storage), never matched inside a longer base64 run, plus ours for what it lacks or gets wrong:
Hugging Face tokens, PEM private keys with a key body (a bare `BEGIN ... PRIVATE KEY` header is a
string constant in every crypto library), GCP service-account keys, and `.env` files assigning
secrets. Left out on purpose, being noise in a Python image: detect-secrets' entropy detectors
(every checksum and hash), its keyword detector (`password = ...` in library code), JWT, basic
auth, public-IP and Artifactory detectors (the last matches numeric tables in scikit-image).
False-positive policy: documented example values (containing EXAMPLE, xxxx, a placeholder) are
not findings; pip `RECORD` files and other checksum lists are not scanned (their sha256 digests
are not secrets).
Time: binary files (a NUL byte in their first 8 KiB: weights, libraries) are skipped after that
first block; text files are scanned whole, in windows of WINDOW bytes, whatever their size, so
the time grows with the image's text, not its weights (about 1 s per 100 MB of text here).
Findings name the kind of secret, never its value.
"""
from __future__ import annotations

import posixpath
import re
from functools import lru_cache

WINDOW = 4 << 20           # text is scanned in windows of this size ...
OVERLAP = 4 << 10          # ... overlapping by this much, so a token across a border is seen
BINARY_PROBE = 8 << 10

PEM_PRIVATE_KEY = re.compile(
    rb"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"
    rb"(?:\\n|\s)+(?:[A-Za-z0-9-]+: [^\n]*(?:\\n|\s)+)*[A-Za-z0-9+/=]{40,}")
AWS_SECRET = re.compile(rb"(?i)aws_secret_access_key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}")
GCP_SERVICE_ACCOUNT = re.compile(rb"\"type\"\s*:\s*\"service_account\"")
GCP_PRIVATE_KEY_FIELD = re.compile(rb"\"private_key(?:_id)?\"\s*:\s*\"[^\"]{16,}")
HUGGING_FACE = re.compile(rb"hf_[A-Za-z]{34}(?![A-Za-z0-9_])")     # starts with a literal: fast
ENV_SECRET_LINE = re.compile(
    rb"(?im)^\s*(?:export\s+)?[A-Z0-9_]*(?:SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|"
    rb"PRIVATE_?KEY|CREDENTIALS?)[A-Z0-9_]*\s*=\s*\S+")
PLACEHOLDER = re.compile(rb"(?i)example|xxxx|your[_-]|<[a-z_]+>|\*\*\*\*|0{16}|1234567890")
CHECKSUM_LISTS = ("RECORD", "SHA256SUMS", "MD5SUMS", "sha256sums.txt", "checksums.txt")

TOKEN_PLUGINS = ("AWSKeyDetector", "AzureStorageKeyDetector", "DiscordBotTokenDetector",
                 "GitHubTokenDetector", "GitLabTokenDetector", "MailchimpDetector", "NpmDetector",
                 "OpenAIDetector", "PypiTokenDetector", "SendGridDetector", "SlackDetector",
                 "SquareOAuthDetector", "StripeDetector", "TelegramBotTokenDetector",
                 "TwilioKeyDetector")
# Speed: a regex that starts with a literal scans at hundreds of MB/s, one that starts with a
# character class (or is case-insensitive) at a few MB/s. Such kinds get a gate: literals every
# match contains (the regex runs only on windows holding one), or an anchor regex that starts
# with a literal plus how far a match reaches before and after it (the regex runs only around
# each anchor hit). Kinds without a gate start with literals already.
GATES = {"AWS Access Key": (b"AKIA", b"ASIA", b"ABIA", b"ACCA", b"A3T", b"aws", b"AWS", b"Aws"),
         "Discord Bot Token": (re.compile(rb"\.[a-zA-Z\d_-]{6}\.[a-zA-Z\d_-]{27}"), 26, 0),
         "Mailchimp Access Key": (re.compile(rb"-us[0-9]"), 32, 2),
         "Slack Token": (b"xox", b"XOX", b"Xox", b"hooks.slack.com"),
         "Stripe Access Key": (b"k_live_",),
         "Telegram Bot Token": (re.compile(rb":[0-9A-Za-z_-]{35}"), 10, 0)}
SAME_AS_OURS = {"AWS Access Key": "AWS credentials"}     # one name per kind in the verdict
BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


@lru_cache(maxsize=1)
def token_rules() -> tuple[tuple[str, tuple | None, re.Pattern], ...]:
    """(kind as the verdict names it, its gate, bytes regex) for each pattern of the chosen
    detect-secrets plugins."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    plugins = get_mapping_from_secret_type_to_class()
    missing = set(TOKEN_PLUGINS) - {c.__name__ for c in plugins.values()}
    if missing:
        raise RuntimeError(f"detect-secrets lacks the plugins {sorted(missing)}: pin the version "
                           f"in requirements-host.txt")
    rules = []
    for kind, cls in sorted(plugins.items()):
        if cls.__name__ in TOKEN_PLUGINS:
            for pattern in cls.denylist:
                rules.append((SAME_AS_OURS.get(kind, kind), GATES.get(kind),
                              re.compile(pattern.pattern.encode(), pattern.flags & re.I)))
    return tuple(rules)


def is_binary(head: bytes) -> bool:
    return b"\0" in head[:BINARY_PROBE]


def _real(match: re.Match) -> bool:
    """Not a documented placeholder, and not a piece of a longer base64 run (embedded fonts,
    data tables: checked here, as a look-behind would slow every rule down)."""
    start = match.start()
    inside = start > 0 and match.string[start - 1] in BASE64
    return not inside and not PLACEHOLDER.search(match.group(0))


def _matches(gate: tuple | None, rule: re.Pattern, data: bytes):
    """The rule's matches in data, looked for only where its kind's gate allows."""
    if gate is None:
        yield from rule.finditer(data)
    elif isinstance(gate[0], bytes):
        if any(g in data for g in gate):
            yield from rule.finditer(data)
    else:
        anchor, back, fwd = gate
        for a in anchor.finditer(data):
            m = rule.search(data, max(0, a.start() - back), a.end() + fwd)
            if m:
                yield m


def secrets_in(name: str, data: bytes) -> list[str]:
    """Kinds of secret in one window of a text file's bytes (never the values)."""
    found = []
    if b"PRIVATE KEY" in data and PEM_PRIVATE_KEY.search(data):
        found.append("private key")
    if (b"ws_secret_access_key" in data or b"WS_SECRET_ACCESS_KEY" in data) and \
            any(_real(m) for m in AWS_SECRET.finditer(data)):
        found.append("AWS credentials")
    if b"service_account" in data and GCP_SERVICE_ACCOUNT.search(data) and \
            GCP_PRIVATE_KEY_FIELD.search(data):
        found.append("GCP service-account key")
    if any(_real(m) and (m.start() == 0 or data[m.start() - 1:m.start()] != b"_")
           for m in HUGGING_FACE.finditer(data)):
        found.append("Hugging Face token")
    for kind, gate, rule in token_rules():
        if kind not in found and any(_real(m) for m in _matches(gate, rule, data)):
            found.append(kind)
    base = posixpath.basename(name)
    if (base == ".env" or base.startswith(".env.") or base.endswith(".env")) and \
            ENV_SECRET_LINE.search(data):
        found.append(".env with secrets")
    return found


def skip_by_name(name: str) -> bool:
    """Checksum lists: their digests are not secrets (pip RECORD files above all)."""
    return posixpath.basename(name) in CHECKSUM_LISTS


def secrets_in_stream(name: str, read) -> list[str]:
    """Kinds of secret in a file read through read(n), whatever its size; [] for binary files
    (only their first block is read) and checksum lists (nothing is read)."""
    if skip_by_name(name):
        return []
    window = read(WINDOW)
    if is_binary(window):
        return []
    found: list[str] = []
    tail = b""
    while window:
        for kind in secrets_in(name, tail + window):
            if kind not in found:
                found.append(kind)
        tail = window[-OVERLAP:]
        window = read(WINDOW)
    return found
