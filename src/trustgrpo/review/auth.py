"""Who may see and label a run: reviewers, tokens, sessions, CSRF tokens.

Reviewers live in ``RUN/review/reviewers.json`` (mode 0600)::

    {"reviewers": {"alice": {"role": "reviewer", "token_sha256": "...", "created": "..."}}}

``trustgrpo review add-reviewer RUN NAME`` prints the reviewer's token once; only its
SHA-256 is stored. A slow password hash (scrypt, Argon2) exists to make guessing *low-entropy
passwords* expensive; these tokens are 256 random bits (``secrets.token_urlsafe(32)``), which
no amount of hashing speed makes guessable, so one SHA-256 is enough, and the comparison is
constant-time (``hmac.compare_digest``) against every stored hash.

Roles: ``reviewer`` may label, correct rewards and decide on paused alerts; ``viewer`` sees
everything and writes nothing.

Sessions are server-side (in memory, lost on restart): the browser holds only a random
session id in an ``HttpOnly; SameSite=Strict`` cookie. Each session has its own CSRF token,
which every form carries in a hidden field and every API write in the ``X-CSRF-Token``
header; it is compared in constant time. A session ends after ``idle_s`` without requests,
after ``max_s`` in all, on logout, or when its reviewer is removed or gets a new token.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trustgrpo.errors import UserError

ROLES = ("reviewer", "viewer")
"""``reviewer`` labels and decides; ``viewer`` only reads."""

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
"""A reviewer name: what the ledger records as ``reviewer``."""

TOKEN_PREFIX = "tgr_"


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Reviewer:
    """A person who may log in to a run's review page."""

    name: str
    role: str
    token_sha256: str

    @property
    def can_write(self) -> bool:
        return self.role == "reviewer"


class Reviewers:
    """The reviewers of one run (``RUN/review/reviewers.json``)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "review" / "reviewers.json"
        self._lock = threading.Lock()
        self._cache: tuple[float, int, dict[str, Reviewer]] | None = None

    def load(self) -> dict[str, Reviewer]:
        """Name → reviewer, re-read when the file changed (reviewers may be added while the
        server runs)."""
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                return {}
            if self._cache and self._cache[:2] == (st.st_mtime, st.st_size):
                return self._cache[2]
            try:
                raw = json.loads(self.path.read_text())
                entries = raw["reviewers"]
                found = {
                    str(name): Reviewer(str(name), str(e["role"]), str(e["token_sha256"]))
                    for name, e in entries.items()
                }
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise UserError(f"{self.path}: expected a reviewers file, found: {e}") from None
            self._cache = (st.st_mtime, st.st_size, found)
            return found

    def add(self, name: str, role: str = "reviewer", *, replace: bool = False) -> str:
        """Add reviewer ``name`` (or give an existing one a new token with ``replace``);
        returns the token, which is stored only as a hash."""
        if not NAME.fullmatch(name):
            raise UserError(
                f"reviewer name: expected 1-64 letters, digits or . _ @ - (starting with a "
                f"letter or digit), found {name!r}"
            )
        if role not in ROLES:
            raise UserError(f"role: expected one of {', '.join(ROLES)}, found {role!r}")
        raw = self._read_raw()
        if name in raw["reviewers"] and not replace:
            raise UserError(
                f"reviewer {name!r} already exists (use --replace to issue a new token, "
                "which ends their sessions)"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        raw["reviewers"][name] = {
            "role": role,
            "token_sha256": _sha256(token),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self._write_raw(raw)
        return token

    def remove(self, name: str) -> None:
        """Remove reviewer ``name``; their sessions end at their next request."""
        raw = self._read_raw()
        if name not in raw["reviewers"]:
            raise UserError(f"no reviewer {name!r} in {self.path}")
        del raw["reviewers"][name]
        self._write_raw(raw)

    def authenticate(self, token: str) -> Reviewer | None:
        """The reviewer whose token this is, or None (constant time per stored hash)."""
        digest = _sha256(token)
        found = None
        for r in self.load().values():
            if hmac.compare_digest(digest, r.token_sha256):
                found = r
        return found

    def current(self, name: str, token_sha256: str) -> Reviewer | None:
        """The reviewer ``name`` if they still hold the token a session was opened with."""
        r = self.load().get(name)
        return r if r is not None and hmac.compare_digest(r.token_sha256, token_sha256) else None

    def _read_raw(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"reviewers": {}}
        self.load()  # validates
        raw: dict[str, Any] = json.loads(self.path.read_text())
        return raw

    def _write_raw(self, raw: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(raw, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.path)
        with self._lock:
            self._cache = None


@dataclass
class Session:
    """A logged-in reviewer."""

    id: str
    reviewer: str
    role: str
    token_sha256: str
    csrf: str
    created: float
    seen: float

    @property
    def can_write(self) -> bool:
        return self.role == "reviewer"


class Sessions:
    """Server-side sessions (see the module docstring)."""

    def __init__(self, reviewers: Reviewers, *, idle_s: float = 8 * 3600, max_s: float = 86400):
        self.reviewers = reviewers
        self.idle_s = idle_s
        self.max_s = max_s
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def login(self, token: str) -> Session | None:
        """A new session for the holder of ``token``, or None when the token is unknown."""
        r = self.reviewers.authenticate(token.strip())
        if r is None:
            return None
        now = time.monotonic()
        s = Session(
            secrets.token_urlsafe(32),
            r.name,
            r.role,
            r.token_sha256,
            secrets.token_urlsafe(32),
            now,
            now,
        )
        with self._lock:
            self._expire(now)
            self._by_id[s.id] = s
        return s

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (expired, logged out, reviewer removed)."""
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            s = self._by_id.get(session_id)
            if s is None:
                return None
            if now - s.seen > self.idle_s or now - s.created > self.max_s:
                del self._by_id[session_id]
                return None
        try:
            current = self.reviewers.current(s.reviewer, s.token_sha256)
        except UserError:
            current = None
        if current is None:
            self.logout(session_id)
            return None
        s.role = current.role
        s.seen = now
        return s

    def logout(self, session_id: str) -> None:
        with self._lock, contextlib.suppress(KeyError):
            del self._by_id[session_id]

    def _expire(self, now: float) -> None:
        for sid in [
            sid
            for sid, s in self._by_id.items()
            if now - s.seen > self.idle_s or now - s.created > self.max_s
        ]:
            del self._by_id[sid]


def check_csrf(session: Session, token: str | None) -> bool:
    """True when ``token`` is the session's CSRF token (constant time)."""
    return bool(token) and hmac.compare_digest(session.csrf.encode(), str(token).encode())
