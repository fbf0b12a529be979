"""The Merkle tree of the ledger, per RFC 9162 §2.1 (which obsoletes RFC 6962).

Hashes (§2.1.1)::

    MTH({})       = SHA-256()
    leaf hash     = SHA-256(0x00 || leaf)
    node hash     = SHA-256(0x01 || left || right)
    MTH(D[0:n])   = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n

:class:`MerkleTree` keeps every complete (perfect) subtree hash, level by level, in flat
``bytearray``\\ s: 64 bytes per leaf in all. That makes appends O(1) amortised, and the root at
any earlier size, inclusion proofs (§2.1.3.1) and consistency proofs (§2.1.4.1) O(log² n).

:func:`verify_inclusion` (§2.1.3.2) and :func:`verify_consistency` (§2.1.4.2) need no tree,
only hashes; they raise :class:`~trustgrpo.errors.VerificationError` saying what was expected
and what was found. Edge cases follow transparency-dev/merkle's ``proof/verify.go``: a
consistency proof from size 0, or between equal sizes, is empty.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from trustgrpo.errors import VerificationError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""``MTH({})``: the root of the empty tree (RFC 9162 §2.1.1)."""

_sha256 = hashlib.sha256


def leaf_hash(leaf: bytes) -> bytes:
    """``SHA-256(0x00 || leaf)`` (RFC 9162 §2.1.1)."""
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)`` (RFC 9162 §2.1.1)."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``), the ``k`` of RFC 9162 §2.1.1."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """``MTH(D[0:n])`` by the definition's recursion (a slow reference, for tests)."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = _split(n)
    return node_hash(root_of(leaf_hashes[:k]), root_of(leaf_hashes[k:]))


class MerkleTree:
    """An append-only RFC 9162 tree over leaf hashes, with roots and proofs at any size."""

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0]) // HASH_SIZE

    def __len__(self) -> int:
        return self.size

    def append(self, lh: bytes) -> None:
        """Append one leaf hash (already ``leaf_hash(data)``)."""
        levels = self._levels
        level = levels[0]
        level += lh
        n = len(level) // HASH_SIZE
        k = 0
        while not n & 1:  # the new node completes a pair: hash it into the level above
            if k + 1 == len(levels):
                levels.append(bytearray())
            level = levels[k]
            levels[k + 1] += _sha256(b"\x01" + level[-64:]).digest()
            n >>= 1
            k += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes: the same tree as ``append`` one by one, with the levels
        above hashed once, level by level (how ``audit verify`` and reopening build it)."""
        levels = self._levels
        level = levels[0]
        for lh in leaf_hashes:
            if len(lh) != HASH_SIZE:
                raise ValueError(f"leaf hash: expected {HASH_SIZE} bytes, got {len(lh)}")
            level += lh
        sha = _sha256
        k = 0
        while len(levels[k]) >= 2 * HASH_SIZE:  # new complete pairs hash into the level above
            if k + 1 == len(levels):
                levels.append(bytearray())
            above = levels[k + 1]
            below = bytes(levels[k][2 * len(above) :])  # not yet hashed into ``above``
            above += b"".join(
                sha(b"\x01" + below[i : i + 2 * HASH_SIZE]).digest()
                for i in range(0, len(below) - 2 * HASH_SIZE + 1, 2 * HASH_SIZE)
            )
            k += 1

    def truncate(self, size: int) -> None:
        """Forget every leaf from ``size`` on (used to roll back a failed append)."""
        if not 0 <= size <= self.size:
            raise ValueError(f"truncate: expected 0 <= size <= {self.size}, got {size}")
        for k, level in enumerate(self._levels):
            del level[(size >> k) * HASH_SIZE :]

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf index {index} out of range for tree size {self.size}")
        return bytes(self._levels[0][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def _mth(self, start: int, end: int) -> bytes:
        """``MTH(D[start:end])``; a lookup when the range is a complete, aligned subtree."""
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            level = n.bit_length() - 1
            j = start >> level
            return bytes(self._levels[level][j * HASH_SIZE : (j + 1) * HASH_SIZE])
        k = _split(n)
        return node_hash(self._mth(start, start + k), self._mth(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        """``MTH(D[0:size])``: the root at ``size`` (default: the current size)."""
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"root: expected 0 <= size <= {self.size}, got {size}")
        return EMPTY_ROOT if size == 0 else self._mth(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """``PATH(index, D[0:size])`` (RFC 9162 §2.1.3.1), leaf to root order."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ValueError(
                f"inclusion_proof: expected 0 <= index < size <= {self.size}, "
                f"got index {index}, size {size}"
            )
        path: list[bytes] = []
        start, end, m = 0, size, index
        while end - start > 1:  # descend; the sibling subtree goes on the path
            k = _split(end - start)
            if m < k:
                path.append(self._mth(start + k, end))
                end = start + k
            else:
                path.append(self._mth(start, start + k))
                start, m = start + k, m - k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """``PROOF(old_size, D[0:new_size])`` (RFC 9162 §2.1.4.1); empty when either size is
        0 or the sizes are equal."""
        new_size = self.size if new_size is None else new_size
        if not 0 <= old_size <= new_size <= self.size:
            raise ValueError(
                f"consistency_proof: expected 0 <= old <= new <= {self.size}, "
                f"got old {old_size}, new {new_size}"
            )
        if old_size == 0 or old_size == new_size:
            return []
        proof: list[bytes] = []
        start, end, m, whole = 0, new_size, old_size, True  # SUBPROOF(m, D[start:end], whole)
        while m != end - start:
            k = _split(end - start)
            if m <= k:
                proof.append(self._mth(start + k, end))
                end = start + k
            else:
                proof.append(self._mth(start, start + k))
                start, m, whole = start + k, m - k, False
        if not whole:
            proof.append(self._mth(start, end))
        proof.reverse()
        return proof


# --------------------------------------------------------------------------- verification


def _check_hash(name: str, h: bytes) -> None:
    if len(h) != HASH_SIZE:
        raise VerificationError(f"{name}: expected {HASH_SIZE} bytes, found {len(h)}")


def root_from_inclusion_proof(index: int, size: int, lh: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 §2.1.3.2, steps 1–3)."""
    if not 0 <= index < size:
        raise VerificationError(
            f"inclusion proof: expected leaf index in [0, {size}), found {index}"
        )
    _check_hash("leaf hash", lh)
    for i, p in enumerate(proof):
        _check_hash(f"inclusion proof[{i}]", p)
    fn, sn, r = index, size - 1, lh
    for p in proof:
        if sn == 0:
            raise VerificationError(
                f"inclusion proof: too long for index {index} in size {size} "
                f"(found {len(proof)} components)"
            )
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError(
            f"inclusion proof: too short for index {index} in size {size} "
            f"(found {len(proof)} components)"
        )
    return r


def verify_inclusion(index: int, size: int, lh: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that leaf hash ``lh`` sits at ``index`` of the tree of ``size`` with ``root``
    (RFC 9162 §2.1.3.2). Raises :class:`VerificationError`."""
    _check_hash("root", root)
    found = root_from_inclusion_proof(index, size, lh, proof)
    if found != root:
        raise VerificationError(
            f"inclusion proof of leaf {index} in size {size}: root expected {root.hex()}, "
            f"found {found.hex()}"
        )


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Check that the tree of ``new_size`` with ``new_root`` extends the tree of ``old_size``
    with ``old_root`` (RFC 9162 §2.1.4.2). Raises :class:`VerificationError`."""
    if not 0 <= old_size <= new_size:
        raise VerificationError(
            f"consistency proof: expected 0 <= old size <= new size, found {old_size} > {new_size}"
        )
    if old_size == new_size:
        if proof:
            raise VerificationError(
                f"consistency proof between equal sizes: expected no components, found {len(proof)}"
            )
        if old_root != new_root:
            raise VerificationError(
                f"consistency at equal size {old_size}: root expected {old_root.hex()}, found "
                f"{new_root.hex()}"
            )
        return
    if old_size == 0:
        if proof:
            raise VerificationError(
                f"consistency proof from size 0: expected no components, found {len(proof)}"
            )
        return
    if not proof:
        raise VerificationError(
            f"consistency proof {old_size} -> {new_size}: expected components, found none"
        )
    _check_hash("old root", old_root)
    _check_hash("new root", new_root)
    for i, p in enumerate(proof):
        _check_hash(f"consistency proof[{i}]", p)
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # step 2: old_size is a power of two
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise VerificationError(
                f"consistency proof {old_size} -> {new_size}: too long ({len(proof)} components)"
            )
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # step 7
        raise VerificationError(
            f"consistency proof {old_size} -> {new_size}: too short ({len(proof)} components)"
        )
    if fr != old_root:
        raise VerificationError(
            f"consistency proof {old_size} -> {new_size}: old root expected {old_root.hex()}, "
            f"found {fr.hex()}"
        )
    if sr != new_root:
        raise VerificationError(
            f"consistency proof {old_size} -> {new_size}: new root expected {new_root.hex()}, "
            f"found {sr.hex()}"
        )
