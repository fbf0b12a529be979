"""Signed notes and checkpoints (C2SP signed-note, tlog-checkpoint) with Ed25519.

Reference vectors: golang.org/x/mod/sumdb/note ``note_test.go`` (the PeterNeumann key, its
verifier key string and the exact signed note it produces).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trustgrpo.errors import LedgerError, VerificationError
from trustgrpo.ledger.sign import (
    SigningKey,
    VerifierKey,
    b64decode_strict,
    checkpoint_text,
    generate_private_key,
    key_id,
    load_private_key,
    load_public_key,
    open_note,
    parse_vkey,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
)

PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_B64 = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)
PETER_SIG = f"— PeterNeumann {PETER_B64}\n"
ENOCH_SIG = (
    "— EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)


@pytest.fixture
def peter() -> SigningKey:
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]
    return SigningKey("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed))


def test_go_note_vectors(peter: SigningKey) -> None:
    assert peter.verifier.to_vkey() == PETER_VKEY
    assert parse_vkey(PETER_VKEY) == peter.verifier
    assert sign_note(TEXT, peter) == TEXT + "\n" + PETER_SIG
    assert open_note(TEXT + "\n" + PETER_SIG, parse_vkey(PETER_VKEY)) == TEXT


def test_other_keys_signatures_are_ignored() -> None:
    peter, enoch = parse_vkey(PETER_VKEY), parse_vkey(ENOCH_VKEY)
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, peter) == TEXT
    assert open_note(note, enoch) == TEXT
    with pytest.raises(VerificationError, match="expected a signature by EnochRoot"):
        open_note(TEXT + "\n" + PETER_SIG, enoch)


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT + "\n" + f"— Bad Name {PETER_B64}\n",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:],  # invalid signature
    ],
)
def test_bad_notes_fail(note: str) -> None:
    # note_test.go TestOpen's bad messages
    with pytest.raises(VerificationError):
        open_note(note, parse_vkey(PETER_VKEY))


def test_bad_vkeys_fail() -> None:
    # note_test.go TestNewVerifier: every proper substring and every single-byte change fails
    for i in range(len(PETER_VKEY)):
        for j in range(i + 1, len(PETER_VKEY) + 1, 7):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(VerificationError):
                    parse_vkey(PETER_VKEY[i:j])
        changed = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
        with pytest.raises(VerificationError):
            parse_vkey(changed)
    with pytest.raises(VerificationError):
        parse_vkey("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


def test_noncanonical_base64_rejected() -> None:
    assert b64decode_strict("AQ==", "x") == b"\x01"
    for bad in ("AR==", "AQ=", "AQ", "A Q==", "AQ==\n"):
        with pytest.raises(VerificationError):
            b64decode_strict(bad, "x")


def test_checkpoint_round_trip_and_format(peter: SigningKey) -> None:
    root = bytes(range(32))
    cp = sign_checkpoint(peter, "example.com/log", 42, root, "2026-11-05T12:34:56.789Z")
    text = checkpoint_text("example.com/log", 42, root, "2026-11-05T12:34:56.789Z")
    b64 = base64.b64encode(root).decode()
    assert text == f"example.com/log\n42\n{b64}\ntime 2026-11-05T12:34:56.789Z\n"
    assert cp.note.startswith(text + "\n— PeterNeumann ")
    sig = base64.b64decode(cp.note.rsplit(" ", 1)[1])
    assert sig[:4] == key_id("PeterNeumann", peter.verifier.public_key) and len(sig) == 68
    back = verify_checkpoint(cp.note, peter.verifier)
    assert (back.origin, back.size, back.root, back.time) == ("example.com/log", 42, root, cp.time)
    assert verify_checkpoint(cp.note.encode(), peter.verifier) == back


def test_every_single_byte_change_of_a_checkpoint_fails(peter: SigningKey) -> None:
    cp = sign_checkpoint(peter, "example.com/log", 7, b"\x05" * 32, "2026-11-05T12:34:56.789Z")
    raw = cp.note.encode()
    for i in range(len(raw)):
        for delta in (1, 0x80):
            bad = raw[:i] + bytes([raw[i] ^ delta]) + raw[i + 1 :]
            with pytest.raises(VerificationError):
                verify_checkpoint(bad, peter.verifier)
                pytest.fail(f"byte {i} ^ {delta:#x} verified")


def test_checkpoint_body_checks(peter: SigningKey) -> None:
    root = base64.b64encode(b"\x00" * 32).decode()
    for text in (
        f"o\n007\n{root}\ntime 2026-11-05T12:34:56.789Z\n",  # leading zeros
        f"o\n-1\n{root}\ntime 2026-11-05T12:34:56.789Z\n",
        f"o\n7\n{base64.b64encode(b'x' * 31).decode()}\ntime 2026-11-05T12:34:56.789Z\n",
        f"o\n7\n{root}\n",  # no time
        f"o\n7\n{root}\ntime yesterday\n",
        f"\n7\n{root}\ntime 2026-11-05T12:34:56.789Z\n",
    ):
        with pytest.raises(VerificationError):
            verify_checkpoint(sign_note(text, peter), peter.verifier)


def test_wrong_key(peter: SigningKey) -> None:
    cp = sign_checkpoint(peter, "PeterNeumann", 1, b"\x00" * 32, "2026-11-05T12:34:56.789Z")
    other = SigningKey("PeterNeumann", Ed25519PrivateKey.generate())
    with pytest.raises(VerificationError, match="expected a signature by PeterNeumann"):
        verify_checkpoint(cp.note, other.verifier)
    # the same key under another name does not match either
    with pytest.raises(VerificationError):
        verify_checkpoint(cp.note, VerifierKey("Other", peter.verifier.public_key))


def test_key_files(tmp_path: Path, peter: SigningKey) -> None:
    path = tmp_path / "k.pem"
    key = generate_private_key(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_private_key(path).private_bytes_raw() == key.private_bytes_raw()
    assert generate_private_key(path).private_bytes_raw() == key.private_bytes_raw()  # kept
    pub = tmp_path / "k.pub"
    pub.write_text(PETER_VKEY + "\n")
    assert load_public_key(pub) == peter.verifier
    pem = tmp_path / "pem.pub"
    pem.write_bytes(
        peter.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    anon = load_public_key(pem)
    assert anon.name == "" and anon.public_key == peter.verifier.public_key
    assert open_note(TEXT + "\n" + PETER_SIG, anon) == TEXT  # matches by key ID under any name
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(LedgerError):
        load_private_key(tmp_path / "bad.pem")
    with pytest.raises(LedgerError):
        load_private_key(tmp_path / "missing.pem")
