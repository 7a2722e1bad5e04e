"""API keys: hashed with scrypt, loaded from the environment or a secrets file, resolved to an access level.

python -m server.auth new <name> [--level internal]   # a fresh random key and its entry
python -m server.auth hash <key> [--name N --level L]  # the entry for a key you already have
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import logging
import os
import secrets
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml

from server.access import LEVELS, Level, allows

__all__ = ["LEVELS", "Level", "allows", "KeyRing", "LiveKeyRing", "load_keyring", "presented_key", "hash_key"]
LOGGER = logging.getLogger(__name__)
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_CACHE_SIZE = 4096


class KeyConfigError(ValueError):
    """The key environment variable or secrets file is malformed; the message says where."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_key(key: str, salt: bytes | None = None) -> str:
    """`scrypt$n$r$p$salt$digest` (URL-safe base64: no `,` or `:` that would clash with the entry syntax)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(key.encode(), salt=salt, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def verify_key(key: str, hashed: str) -> bool:
    scheme, n, r, p, salt, expected = hashed.split("$")
    if scheme != "scrypt":
        raise KeyConfigError(f"unknown key hash scheme {scheme!r}")
    digest = hashlib.scrypt(key.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return hmac.compare_digest(digest, _unb64(expected))


@dataclass(frozen=True)
class ApiKey:
    name: str
    level: Level
    hash: str

    @classmethod
    def parse(cls, raw: dict, where: str) -> ApiKey:
        if not isinstance(raw, dict) or set(raw) != {"name", "level", "hash"}:
            raise KeyConfigError(f"{where}: expected exactly name, level, hash")
        if raw["level"] not in LEVELS:
            raise KeyConfigError(f"{where}: level {raw['level']!r} is not one of {list(LEVELS)}")
        if str(raw["hash"]).count("$") != 5:
            raise KeyConfigError(f"{where}: hash is not a `python -m server.auth hash` value")
        return cls(str(raw["name"]), raw["level"], str(raw["hash"]))


def parse_entries(text: str, where: str = "GEOPORTAL_SERVER_API_KEYS") -> list[ApiKey]:
    """`name:level:hash` entries separated by commas or whitespace."""
    keys = []
    for number, entry in enumerate(text.replace(",", " ").split()):
        parts = entry.split(":", 2)
        if len(parts) != 3:
            raise KeyConfigError(f"{where}: entry {number} is not name:level:hash")
        keys.append(ApiKey.parse(dict(zip(["name", "level", "hash"], parts, strict=True)), f"{where}[{number}]"))
    return keys


def read_key_file(path: Path) -> list[ApiKey]:
    """A YAML or JSON list of {name, level, hash}, or a mapping with such a list under `keys`."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise KeyConfigError(f"{path}: cannot read: {exc}") from None
    if isinstance(data, dict):
        data = data.get("keys")
    if not isinstance(data, list):
        raise KeyConfigError(f"{path}: expected a list of keys (or `keys:` with one)")
    return [ApiKey.parse(raw, f"{path}: keys[{number}]") for number, raw in enumerate(data)]


class KeyRing:
    """Resolves a presented key to its level. scrypt is slow by design, so outcomes are cached by the key's
    SHA-256 (the plaintext is never kept); a repeated wrong key costs one hash, not one per request."""

    def __init__(self, keys: list[ApiKey]):
        names = [k.name for k in keys]
        if len(set(names)) != len(names):
            raise KeyConfigError(f"duplicate key names: {sorted(n for n in set(names) if names.count(n) > 1)}")
        self.keys = tuple(keys)
        self._cache: dict[bytes, ApiKey | None] = {}
        self._lock = threading.Lock()

    def cached(self, presented: str) -> tuple[bool, ApiKey | None]:
        """(known, key) without hashing: `known` is False when `lookup` has to run scrypt."""
        fingerprint = hashlib.sha256(presented.encode()).digest()
        with self._lock:
            if fingerprint in self._cache:
                return True, self._cache[fingerprint]
        return False, None

    def lookup(self, presented: str) -> ApiKey | None:
        known, key = self.cached(presented)
        if known:
            return key
        key = next((k for k in self.keys if verify_key(presented, k.hash)), None)
        with self._lock:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[hashlib.sha256(presented.encode()).digest()] = key
        return key


def presented_key(headers: dict[str, str] | object) -> str | None:
    """The key of a request: `X-API-Key`, or `Authorization: Bearer <key>`; None when there is none."""
    get = headers.get  # type: ignore[attr-defined]
    key = get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = (get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def load_keyring(key_file: Path | None, entries: str | None) -> KeyRing:
    keys = read_key_file(key_file) if key_file else []
    keys += parse_entries(entries) if entries else []
    return KeyRing(keys)


FileStamp = tuple[int, int, int] | None


def _stamp(path: Path | None) -> FileStamp:
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_ino, stat.st_size


class LiveKeyRing:
    """The key ring of the secrets file as it is now: one stat per request notices a new, changed or revoked
    key, and the ring is read again. A file that no longer parses keeps the last good ring (logged)."""

    def __init__(self, key_file: Path | None, entries: str | None):
        self.key_file = key_file
        self.entries = entries
        self._stamp = _stamp(key_file)
        self._ring = load_keyring(key_file, entries)
        self._lock = threading.Lock()

    def current(self) -> KeyRing:
        stamp = _stamp(self.key_file)
        if stamp == self._stamp:
            return self._ring
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._ring = load_keyring(self.key_file if stamp else None, self.entries)
                    LOGGER.warning("API keys re-read from %s: %d key(s)", self.key_file, len(self._ring.keys))
                except KeyConfigError as exc:
                    LOGGER.error("API keys file changed but cannot be used, keeping the previous keys: %s", exc)
                self._stamp = stamp
        return self._ring


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.auth", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="generate a random key and print it with its entry")
    new.add_argument("name")
    new.add_argument("--level", choices=LEVELS, default="internal")
    hashed = commands.add_parser("hash", help="print the entry for an existing key")
    hashed.add_argument("key")
    hashed.add_argument("--name", default="staff")
    hashed.add_argument("--level", choices=LEVELS, default="internal")
    args = parser.parse_args(argv)
    key = secrets.token_urlsafe(32) if args.command == "new" else args.key
    name = args.name
    entry = hash_key(key)
    if args.command == "new":
        print(f"key (give it to the user, it is not stored): {key}")
    print(f"GEOPORTAL_SERVER_API_KEYS entry: {name}:{args.level}:{entry}")
    print("secrets file entry:")
    print(yaml.safe_dump([{"name": name, "level": args.level, "hash": entry}], allow_unicode=True).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
