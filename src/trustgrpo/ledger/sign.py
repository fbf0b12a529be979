"""Signed checkpoints: C2SP tlog-checkpoint notes signed with Ed25519.

A checkpoint is a C2SP signed note (c2sp.org/signed-note) whose text is a C2SP
tlog-checkpoint body::

    trustgrpo/demo/3f9a0c1d            origin (the log's identity; also the key name)
    1234                                tree size
    Zm9vYmFy...=                        base64 of the RFC 9162 root at that size
    time 2026-11-05T12:34:56.789Z       extension line: when it was signed (UTC, RFC 3339)

    — trustgrpo/demo/3f9a0c1d <base64(4-byte key ID || 64-byte Ed25519 signature)>

The time is an extension line, so it is covered by the signature (the tlog-checkpoint spec
allows extension lines; monitors that do not know it ignore it). The key ID is
``SHA-256(key name || 0x0A || 0x01 || public key)[:4]``.

Keys: the private key is an unencrypted PKCS#8 PEM file (mode 0600, never in the ledger or a
report). The public key is written as a note verifier key, ``<name>+<key ID hex>+<base64(0x01
|| public key)>``, the format of Go's ``golang.org/x/mod/sumdb/note``; PEM public keys are read
too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from trustgrpo.errors import LedgerError, VerificationError

ED25519 = 0x01
"""Signature type byte of Ed25519 in C2SP signed notes."""
_SIG_PREFIX = "— "
_NAME_RE = re.compile(r"^[^\s+]+$")
_TIME_FMT = "%Y-%m-%dT%H:%M:%S.%fZ"


def b64decode_strict(text: str, what: str) -> bytes:
    """Standard base64 (RFC 4648 §4), rejecting non-canonical encodings.

    A lenient decoder ignores the unused low bits of the last character, so two different
    strings would decode to the same bytes; a changed byte in a stored note must not pass.
    """
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise VerificationError(f"{what}: expected base64, found {text[:80]!r}") from None
    if base64.b64encode(raw).decode() != text:
        raise VerificationError(f"{what}: expected canonical base64, found {text[:80]!r}")
    return raw


def key_id(name: str, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` (C2SP signed-note, Ed25519)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class VerifierKey:
    """A public key with the note key name it signs under."""

    name: str
    public_key: bytes
    """32-byte raw Ed25519 public key."""

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def to_vkey(self) -> str:
        """``<name>+<key ID hex>+<base64(0x01 || public key)>``."""
        blob = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the raw public key, hex: a name-independent identity of the key."""
        return hashlib.sha256(self.public_key).hexdigest()

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def parse_vkey(text: str) -> VerifierKey:
    """Read a note verifier key ``name+hash+base64(0x01 || key)``."""
    text = text.strip()
    parts = text.split("+", 2)  # the name has no "+", base64 may
    if len(parts) != 3 or not parts[0] or not _NAME_RE.match(parts[0]):
        raise VerificationError(f"public key: expected name+hash+key, found {text[:80]!r}")
    name, hash_hex, blob = parts
    raw = b64decode_strict(blob, "public key")
    if len(raw) != 33 or raw[0] != ED25519:
        raise VerificationError(
            f"public key: expected type 0x01 and 32 bytes, found {len(raw) - 1} bytes of type "
            f"{raw[:1].hex() or 'none'}"
        )
    vk = VerifierKey(name, raw[1:])
    if vk.key_id.hex() != hash_hex:
        raise VerificationError(f"public key: key ID expected {vk.key_id.hex()}, found {hash_hex}")
    return vk


def load_public_key(path: Path, name: str | None = None) -> VerifierKey:
    """A public key from a file: a note verifier key, or a PEM public key (then ``name`` is
    the key name, or empty to match any signature name)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LedgerError(f"cannot read public key {path}: {e.strerror}") from None
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as e:
            raise VerificationError(f"{path}: not a PEM public key: {e}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise VerificationError(f"{path}: expected an Ed25519 key, found {type(key).__name__}")
        return VerifierKey(name or "", _raw_public(key))
    return parse_vkey(data.decode("utf-8", "replace"))


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key and the note key name it signs under."""

    name: str
    private_key: Ed25519PrivateKey

    @property
    def verifier(self) -> VerifierKey:
        return VerifierKey(self.name, _raw_public(self.private_key.public_key()))

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


def generate_private_key(path: Path) -> Ed25519PrivateKey:
    """Create a new key and write it to ``path`` (PKCS#8 PEM, mode 0600, never overwritten)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_private_key(path)  # another process created it first
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key (PKCS#8 PEM, unencrypted)."""
    try:
        data = path.read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
    except OSError as e:
        raise LedgerError(f"cannot read signing key {path}: {e.strerror}") from None
    except (ValueError, TypeError) as e:
        raise LedgerError(f"{path}: expected an unencrypted PEM private key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise LedgerError(f"{path}: expected an Ed25519 key, found {type(key).__name__}")
    return key


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head: ``size`` leaves with root ``root``, signed at ``time``."""

    origin: str
    size: int
    root: bytes
    time: str
    """UTC time of signing, RFC 3339 (``2026-11-05T12:34:56.789Z``)."""
    note: str
    """The whole signed note, as stored and as handed to auditors."""

    def to_json(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "size": self.size,
            "root": self.root.hex(),
            "time": self.time,
            "note": self.note,
        }


def now_rfc3339() -> str:
    """The current UTC time with milliseconds, ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    return datetime.now(timezone.utc).strftime(_TIME_FMT)[:-4] + "Z"


def checkpoint_text(origin: str, size: int, root: bytes, time: str) -> str:
    """The note text of a checkpoint (C2SP tlog-checkpoint), with the ``time`` extension."""
    if not origin or "\n" in origin:
        raise LedgerError(f"checkpoint origin: expected one non-empty line, found {origin!r}")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\ntime {time}\n"


def sign_note(text: str, key: SigningKey) -> str:
    """A C2SP signed note: ``text`` (ending in a newline), a blank line, one signature line."""
    if not text.endswith("\n") or not text.strip():
        raise LedgerError("note text: expected non-empty text ending in a newline")
    sig = key.verifier.key_id + key.sign(text.encode())
    return f"{text}\n{_SIG_PREFIX}{key.name} {base64.b64encode(sig).decode()}\n"


def sign_checkpoint(key: SigningKey, origin: str, size: int, root: bytes, time: str) -> Checkpoint:
    """Sign a checkpoint; the key name is ``key.name`` (by convention the origin)."""
    note = sign_note(checkpoint_text(origin, size, root, time), key)
    return Checkpoint(origin=origin, size=size, root=root, time=time, note=note)


def _split_note(note: str) -> tuple[str, list[str]]:
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise VerificationError("signed note: expected no control characters, found some")
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise VerificationError(
            "signed note: expected text, a blank line and signature lines, found no blank line"
        )
    text, sigs = note[: cut + 1], note[cut + 2 : -1].split("\n")
    if not sigs or sigs == [""]:
        raise VerificationError("signed note: expected at least one signature line, found none")
    return text, sigs


def parse_checkpoint_text(text: str) -> tuple[str, int, bytes, str]:
    """``(origin, size, root, time)`` from a checkpoint's note text."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise VerificationError(
            f"checkpoint: expected origin, size and root lines, found {len(lines) - 1} lines"
        )
    origin, size_s, root_s, *ext = lines[:-1]
    if not origin:
        raise VerificationError("checkpoint: expected a non-empty origin line, found none")
    if not size_s.isdigit() or not size_s.isascii() or (size_s != "0" and size_s[0] == "0"):
        raise VerificationError(f"checkpoint: tree size expected a decimal, found {size_s!r}")
    root = b64decode_strict(root_s, "checkpoint root")
    if len(root) != 32:
        raise VerificationError(f"checkpoint root: expected 32 bytes, found {len(root)}")
    times = [e[5:] for e in ext if e.startswith("time ")]
    if any(not e for e in ext) or len(times) != 1:
        raise VerificationError(f"checkpoint: expected one 'time' extension line, found {ext!r}")
    try:
        datetime.strptime(times[0], _TIME_FMT)
    except ValueError:
        raise VerificationError(
            f"checkpoint time: expected RFC 3339 UTC, found {times[0]!r}"
        ) from None
    return origin, int(size_s), root, times[0]


def open_note(note: str | bytes, key: VerifierKey) -> str:
    """Check a signed note's signature by ``key``; returns the note text.

    Per the signed-note spec, signature lines of other keys (another name or key ID) are
    ignored; the note must carry a valid signature of ``key`` (a key with an empty name, read
    from a PEM file, matches by key ID under any name). Raises :class:`VerificationError`
    saying what was expected and what was found.
    """
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as e:
            raise VerificationError(f"signed note: expected UTF-8, found {e}") from None
    text, sig_lines = _split_note(note)
    sigs: list[tuple[str, bytes]] = []
    for line in sig_lines:  # check every line's syntax before trusting any of them
        if not line.startswith(_SIG_PREFIX):
            raise VerificationError(f"signed note: expected '— name signature', found {line!r}")
        name, _, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not name or not _NAME_RE.match(name) or " " in b64:
            raise VerificationError(f"signed note: malformed signature line {line!r}")
        sig = b64decode_strict(b64, "note signature")
        if len(sig) < 5:
            raise VerificationError(f"note signature: expected >= 5 bytes, found {len(sig)}")
        sigs.append((name, sig))
    found: list[str] = []
    for name, sig in sigs:
        kid = key_id(name, key.public_key)
        found.append(f"{name}+{sig[:4].hex()}")
        if (key.name and name != key.name) or sig[:4] != kid:
            continue  # a signature of another key: ignored
        if not key.verify(sig[4:], text.encode()):
            raise VerificationError(
                f"signature by {name}+{kid.hex()}: expected valid, found invalid"
            )
        return text
    expected = f"{key.name}+{key.key_id.hex()}" if key.name else f"*+{key.public_key.hex()[:8]}"
    raise VerificationError(
        f"signed note: expected a signature by {expected}, found signatures by "
        f"{', '.join(found) or 'nobody'}"
    )


def verify_checkpoint(note: str | bytes, key: VerifierKey) -> Checkpoint:
    """Check a checkpoint note's signature by ``key`` (see :func:`open_note`) and parse it."""
    text = open_note(note, key)
    origin, size, root, time = parse_checkpoint_text(text)
    full = note if isinstance(note, str) else note.decode("utf-8")
    return Checkpoint(origin=origin, size=size, root=root, time=time, note=full)
