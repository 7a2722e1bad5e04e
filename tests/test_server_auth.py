"""API keys: stored as salted scrypt hashes, read from the environment or a secrets file, resolved to a level."""

from __future__ import annotations

import json

import pytest
import yaml

from server.auth import (
    KeyConfigError,
    KeyRing,
    allows,
    hash_key,
    load_keyring,
    main,
    parse_entries,
    presented_key,
    read_key_file,
    verify_key,
)


def test_a_hash_is_salted_and_verifies_only_its_key():
    first, second = hash_key("s3cret"), hash_key("s3cret")
    assert first != second  # salted
    assert "s3cret" not in first
    assert verify_key("s3cret", first) and verify_key("s3cret", second)
    assert not verify_key("s3cret!", first)


def test_internal_sees_public_but_not_the_other_way():
    assert allows("internal", "public") and allows("internal", "internal") and allows("public", "public")
    assert not allows("public", "internal")


def test_environment_entries_are_name_level_hash():
    keys = parse_entries(f"alice:internal:{hash_key('a')}, bob:public:{hash_key('b')}")
    assert [(k.name, k.level) for k in keys] == [("alice", "internal"), ("bob", "public")]


@pytest.mark.parametrize("entry", ["alice:internal", "alice:root:scrypt$1$1$1$x$y", "alice:internal:plaintext-key"])
def test_malformed_environment_entries_are_refused(entry):
    with pytest.raises(KeyConfigError):
        parse_entries(entry)


def test_secrets_file_in_yaml_or_json(tmp_path):
    entries = [{"name": "staff", "level": "internal", "hash": hash_key("k")}]
    (tmp_path / "keys.yaml").write_text(yaml.safe_dump({"keys": entries}))
    (tmp_path / "keys.json").write_text(json.dumps(entries))
    assert read_key_file(tmp_path / "keys.yaml") == read_key_file(tmp_path / "keys.json")
    ring = load_keyring(tmp_path / "keys.yaml", f"other:public:{hash_key('p')}")
    assert ring.lookup("k").level == "internal" and ring.lookup("p").level == "public"


def test_duplicate_key_names_are_refused():
    entries = parse_entries(f"a:public:{hash_key('x')} a:internal:{hash_key('y')}")
    with pytest.raises(KeyConfigError, match="duplicate"):
        KeyRing(entries)


def test_lookups_are_cached_both_ways():
    ring = KeyRing(parse_entries(f"staff:internal:{hash_key('right')}"))
    assert ring.cached("right") == (False, None)
    assert ring.lookup("right").name == "staff"
    assert ring.cached("right")[0] is True
    assert ring.lookup("wrong") is None
    assert ring.cached("wrong") == (True, None)


def test_key_from_header_or_bearer_token():
    assert presented_key({"x-api-key": " k1 "}) == "k1"
    assert presented_key({"authorization": "Bearer k2"}) == "k2"
    assert presented_key({"authorization": "Basic dXNlcjpwYXNz"}) is None
    assert presented_key({}) is None


def test_cli_prints_an_entry_that_loads(capsys):
    assert main(["hash", "my-key", "--name", "gis", "--level", "public"]) == 0
    entry = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("GEOPORTAL_SERVER_API_KEYS"))
    ring = KeyRing(parse_entries(entry.split(": ", 1)[1]))
    assert ring.lookup("my-key").level == "public"


def test_the_live_key_ring_follows_its_file_and_keeps_the_last_good_one(tmp_path):
    import os

    from server.auth import LiveKeyRing

    path = tmp_path / "keys.yaml"

    def write(text: str) -> None:
        staged = tmp_path / "keys.new"
        staged.write_text(text, encoding="utf-8")
        os.replace(staged, path)  # as a secrets manager does: a new inode, so a new stat even within a tick

    write(yaml.safe_dump([{"name": "a", "level": "internal", "hash": hash_key("first")}]))
    live = LiveKeyRing(path, None)
    assert live.current().lookup("first").name == "a"
    write(yaml.safe_dump([{"name": "b", "level": "public", "hash": hash_key("second")}]))
    assert live.current().lookup("second").level == "public"
    assert live.current().lookup("first") is None  # revoked
    write("keys: [this is not a key list")  # a broken edit keeps the keys that worked, and says so in the log
    assert live.current().lookup("second").name == "b"
