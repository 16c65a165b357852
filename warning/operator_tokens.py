"""Named operator tokens: ``<EWS_DATA_DIR>/tokens`` holds one ``NAME SHA256-HEX`` line per operator (never the
token itself), so a request's operator can be named (for an audit log) and one operator's token revoked alone.

``ews token add NAME`` makes a token, stores its hash and prints the token once; ``ews token list`` and
``ews token remove NAME``. The service re-reads the file when it changes, so no restart is needed. The main token
(``EWS_TOKEN`` or ``<EWS_DATA_DIR>/token``) keeps working and is named ``operator``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import re
import secrets
import sys
from pathlib import Path

from warning.shared.config import MIN_TOKEN_BYTES, Settings

MAIN_NAME = "operator"  # the name of the main token's requests
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_path(settings: Settings) -> Path:
    return settings.data_dir / "tokens"


def read_tokens(path: Path) -> dict[str, str]:
    """name -> sha256 hex of the file at ``path`` (missing: none); malformed lines are skipped."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and NAME.match(parts[0]) and re.fullmatch(r"[0-9a-f]{64}", parts[1]):
            out[parts[0]] = parts[1]
    return out


def write_tokens(path: Path, tokens: dict[str, str]) -> None:
    """Replace the file atomically, mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# ews operator tokens: name sha256(token); written by `ews token add`\n")
        for name, digest in sorted(tokens.items()):
            f.write(f"{name} {digest}\n")
    os.replace(tmp, path)


class OperatorTokens:
    """Who a bearer token belongs to: the main token (``operator``) or a named one from the tokens file."""

    def __init__(self, main_token: str, path: Path | None = None) -> None:
        self.main = main_token.encode()
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._hashes: dict[str, str] = {}

    def _current(self) -> dict[str, str]:
        if self.path is None:
            return {}
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp != self._stamp:
            self._stamp, self._hashes = stamp, read_tokens(self.path)
        return self._hashes

    def identify(self, given: str) -> str | None:
        """The operator's name for ``given``, or None; constant time against every known token."""
        raw = given.encode()
        found = MAIN_NAME if hmac.compare_digest(raw, self.main) else None
        digest = token_hash(given)
        for name, known in self._current().items():
            if hmac.compare_digest(digest, known) and found is None:
                found = name
        return found


# ---- ews token add | list | remove --------------------------------------------------------------------------

def add_token_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("token", help="named operator tokens (stored hashed in <EWS_DATA_DIR>/tokens)")
    actions = p.add_subparsers(dest="token_action", required=True, metavar="ACTION")
    a = actions.add_parser("add", help="make a token for NAME and print it once")
    a.add_argument("name")
    actions.add_parser("list", help="the names")
    a = actions.add_parser("remove", help="revoke NAME's token")
    a.add_argument("name")
    for sub in actions.choices.values():
        sub.add_argument("--data-dir", type=Path, default=None, help="data dir (env EWS_DATA_DIR, default ./data)")


def run_token(args: argparse.Namespace) -> int:
    settings = Settings.from_env(data_dir=args.data_dir)
    path = tokens_path(settings)
    tokens = read_tokens(path)
    if args.token_action == "list":
        for name in sorted(tokens):
            print(name)
        return 0
    if not NAME.match(args.name) or args.name == MAIN_NAME:
        print(f"ews token: a name is 1-64 of A-Z a-z 0-9 _ . @ - (not {MAIN_NAME!r})", file=sys.stderr)
        return 2
    if args.token_action == "remove":
        if tokens.pop(args.name, None) is None:
            print(f"ews token: no token named {args.name!r}", file=sys.stderr)
            return 1
        write_tokens(path, tokens)
        print(f"removed {args.name}")
        return 0
    if args.name in tokens:
        print(f"ews token: {args.name!r} exists; remove it first", file=sys.stderr)
        return 1
    token = secrets.token_urlsafe(MIN_TOKEN_BYTES)
    tokens[args.name] = token_hash(token)
    write_tokens(path, tokens)
    print(token)  # the only time it is shown
    print(f"(token for {args.name}: stored as its SHA-256 in {path}; shown once)", file=sys.stderr)
    return 0
