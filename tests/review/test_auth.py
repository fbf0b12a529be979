"""Reviewers, tokens stored as hashes, sessions, CSRF tokens; the reviewer CLI."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from trustgrpo.cli import main
from trustgrpo.errors import UserError
from trustgrpo.review.auth import Reviewers, Sessions, check_csrf


def test_tokens_are_stored_only_as_hashes(tmp_path: Path) -> None:
    reviewers = Reviewers(tmp_path)
    token = reviewers.add("alice")
    assert token.startswith("tgr_") and len(token) > 40
    text = reviewers.path.read_text()
    assert token not in text and token[4:] not in text
    entry = json.loads(text)["reviewers"]["alice"]
    assert entry["role"] == "reviewer" and len(entry["token_sha256"]) == 64
    assert stat.S_IMODE(reviewers.path.stat().st_mode) == 0o600
    r = reviewers.authenticate(token)
    assert r is not None and (r.name, r.can_write) == ("alice", True)
    assert reviewers.authenticate(token + "x") is None
    assert reviewers.authenticate("") is None
    viewer = reviewers.add("victor", "viewer")
    assert reviewers.authenticate(viewer).can_write is False  # type: ignore[union-attr]


def test_names_roles_and_duplicates_are_checked(tmp_path: Path) -> None:
    reviewers = Reviewers(tmp_path)
    reviewers.add("alice")
    with pytest.raises(UserError, match="already exists"):
        reviewers.add("alice")
    for bad in ["", "a b", "<script>", "-x", "x" * 65]:
        with pytest.raises(UserError, match="reviewer name"):
            reviewers.add(bad)
    with pytest.raises(UserError, match="role"):
        reviewers.add("bob", "admin")
    with pytest.raises(UserError, match="no reviewer"):
        reviewers.remove("bob")
    reviewers.path.write_text("{not json")
    with pytest.raises(UserError, match="expected a reviewers file"):
        reviewers.load()


def test_sessions_end_on_logout_removal_new_token_and_idle(tmp_path: Path) -> None:
    reviewers = Reviewers(tmp_path)
    token = reviewers.add("alice")
    sessions = Sessions(reviewers)
    assert sessions.login("wrong") is None
    s = sessions.login(f"  {token}\n")  # pasted with whitespace
    assert s is not None and sessions.get(s.id) is s
    assert check_csrf(s, s.csrf) and not check_csrf(s, s.csrf[:-1]) and not check_csrf(s, None)
    assert sessions.get("forged") is None and sessions.get(None) is None
    sessions.logout(s.id)
    assert sessions.get(s.id) is None

    s = sessions.login(token)
    assert s is not None
    new = reviewers.add("alice", replace=True)
    assert sessions.get(s.id) is None  # a new token ends the old sessions
    s = sessions.login(new)
    assert s is not None
    reviewers.remove("alice")
    assert sessions.get(s.id) is None

    token = reviewers.add("bob")
    quick = Sessions(reviewers, idle_s=0.05)
    s = quick.login(token)
    assert s is not None
    time.sleep(0.1)
    assert quick.get(s.id) is None


def test_add_reviewer_cli_prints_the_token_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    assert main(["review", "add-reviewer", str(run), "carol", "--role", "viewer"]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("tgr_") and "shown once" in out.err
    r = Reviewers(run).authenticate(token)
    assert r is not None and r.role == "viewer"
    assert main(["review", "add-reviewer", str(run), "carol"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["review", "remove-reviewer", str(run), "carol"]) == 0
    assert Reviewers(run).authenticate(token) is None
    assert main(["review", "add-reviewer", str(tmp_path / "nope"), "x"]) == 2
    assert "run directory not found" in capsys.readouterr().err
