"""RFC 9162 Merkle tree: transparency-dev/merkle's reference vectors and broken proofs.

Vectors from transparency-dev/merkle ``testonly/constants.go`` (the 8-leaf tree, its node
hashes and its root at every size) and ``proof/verify_test.go`` (inclusion and consistency
proofs, and ``corruptInclusionProof`` / ``corruptConsistencyProof``: every named mutation
must fail to verify).
"""

from __future__ import annotations

import hashlib
import importlib.util

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustgrpo.errors import VerificationError
from trustgrpo.ledger.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_of,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex
LEAVES = [
    h(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    EMPTY_ROOT,
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
NODE_HASHES = [
    [
        h(x)
        for x in (
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        )
    ],
    [
        h(x)
        for x in (
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        )
    ],
    [
        h(x)
        for x in (
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        )
    ],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]
# (leaf index, 0-based; tree size; proof) from inclusionProofs (whose leaf is 1-based).
INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY = [
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    return MerkleTree(leaf_hash(x) for x in LEAVES)


def test_hasher_vectors() -> None:
    # transparency-dev/merkle rfc6962/rfc6962_test.go
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert leaf_hash(b"L123456").hex() == (
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert node_hash(b"N123", b"N456").hex() == (
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


def test_root_at_every_size(tree: MerkleTree) -> None:
    assert [tree.root(n) for n in range(9)] == ROOTS
    assert [root_of([leaf_hash(x) for x in LEAVES[:n]]) for n in range(9)] == ROOTS


def test_node_hashes(tree: MerkleTree) -> None:
    for level, nodes in enumerate(NODE_HASHES):
        for j, node in enumerate(nodes):
            assert tree._mth(j << level, (j + 1) << level) == node


def test_second_preimage_resistance() -> None:
    # TestRFC6962HasherCollisions: a leaf that is the concatenation of two hashes does not
    # hash to their parent node.
    l1, l2 = leaf_hash(b"Hello"), leaf_hash(b"World")
    assert leaf_hash(l1 + l2) != node_hash(l1, l2)


@pytest.mark.parametrize("index,size,proof", INCLUSION)
def test_inclusion_vectors(tree: MerkleTree, index: int, size: int, proof: list[str]) -> None:
    assert [p.hex() for p in tree.inclusion_proof(index, size)] == proof
    lh = leaf_hash(LEAVES[index])
    assert root_from_inclusion_proof(index, size, lh, [h(p) for p in proof]) == ROOTS[size]
    verify_inclusion(index, size, lh, [h(p) for p in proof], ROOTS[size])


@pytest.mark.parametrize("size1,size2,proof", CONSISTENCY)
def test_consistency_vectors(tree: MerkleTree, size1: int, size2: int, proof: list[str]) -> None:
    assert [p.hex() for p in tree.consistency_proof(size1, size2)] == proof
    verify_consistency(size1, size2, [h(p) for p in proof], ROOTS[size1], ROOTS[size2])


def corrupt_inclusion(
    index: int, size: int, proof: list[bytes], root: bytes, lh: bytes
) -> list[tuple[str, tuple[int, int, bytes, list[bytes], bytes]]]:
    """transparency-dev's corruptInclusionProof: (description, args of verify_inclusion)."""
    probes = [
        ("leafIndex - 1", (index - 1, size, lh, proof, root)),
        ("leafIndex + 1", (index + 1, size, lh, proof, root)),
        ("leafIndex ^ 2", (index ^ 2, size, lh, proof, root)),
        ("treeSize * 2", (index, size * 2, lh, proof, root)),
        ("treeSize / 2", (index, size // 2, lh, proof, root)),
        ("wrong leaf", (index, size, b"WrongLeaf", proof, root)),
        ("empty root", (index, size, lh, proof, EMPTY_ROOT)),
        ("random root", (index, size, lh, proof, SOME_HASH)),
        ("trailing garbage", (index, size, lh, [*proof, b""], root)),
        ("trailing root", (index, size, lh, [*proof, root], root)),
        ("preceding garbage", (index, size, lh, [b"", *proof], root)),
        ("preceding root", (index, size, lh, [root, *proof], root)),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
        probes.append((f"modified proof[{i}] bit 3", (index, size, lh, bad, root)))
    if proof:
        probes.append(("removed component", (index, size, lh, proof[:-1], root)))
    if len(proof) > 1:
        probes.append(
            ("inserted component", (index, size, lh, [proof[0], SOME_HASH, *proof[1:]], root))
        )
    return probes


def corrupt_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> list[tuple[str, tuple[int, int, list[bytes], bytes, bytes]]]:
    """transparency-dev's corruptConsistencyProof."""
    probes = [
        ("size1 - 1", (size1 - 1, size2, proof, root1, root2)),
        ("size1 + 1", (size1 + 1, size2, proof, root1, root2)),
        ("size1 ^ 2", (size1 ^ 2, size2, proof, root1, root2)),
        ("size2 * 2", (size1, size2 * 2, proof, root1, root2)),
        ("size2 / 2", (size1, size2 // 2, proof, root1, root2)),
        ("wrong root1", (size1, size2, proof, b"WrongRoot", root2)),
        ("wrong root2", (size1, size2, proof, root1, b"WrongRoot")),
        ("swapped roots", (size1, size2, proof, root2, root1)),
        ("empty proof", (size1, size2, [], root1, root2)),
        ("trailing garbage", (size1, size2, [*proof, b""], root1, root2)),
        ("trailing root1", (size1, size2, [*proof, root1], root1, root2)),
        ("trailing root2", (size1, size2, [*proof, root2], root1, root2)),
        ("preceding garbage", (size1, size2, [b"", *proof], root1, root2)),
        ("preceding root1", (size1, size2, [root1, *proof], root1, root2)),
        ("preceding root2", (size1, size2, [root2, *proof], root1, root2)),
        ("preceding proof[0]", (size1, size2, [proof[0], *proof], root1, root2)),
    ]
    if proof:
        probes.append(("truncated proof", (size1, size2, proof[:-1], root1, root2)))
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 16]) + bad[i][1:]
        probes.append((f"modified proof[{i}] bit 4", (size1, size2, bad, root1, root2)))
    return probes


@pytest.mark.parametrize("index,size,proof", INCLUSION)
def test_broken_inclusion_proofs_fail(index: int, size: int, proof: list[str]) -> None:
    probes = corrupt_inclusion(
        index, size, [h(p) for p in proof], ROOTS[size], leaf_hash(LEAVES[index])
    )
    assert len(probes) >= 14
    for desc, args in probes:
        with pytest.raises(VerificationError):
            verify_inclusion(*args)
            pytest.fail(f"verified despite mutation {desc!r}")


@pytest.mark.parametrize("size1,size2,proof", CONSISTENCY)
def test_broken_consistency_proofs_fail(size1: int, size2: int, proof: list[str]) -> None:
    probes = corrupt_consistency(size1, size2, ROOTS[size1], ROOTS[size2], [h(p) for p in proof])
    assert len(probes) >= 19
    for desc, args in probes:
        with pytest.raises(VerificationError):
            verify_consistency(*args)
            pytest.fail(f"verified despite mutation {desc!r}")


def test_single_entry_inclusion() -> None:
    # TestVerifyInclusionSingleEntry
    lh = leaf_hash(b"data")
    verify_inclusion(0, 1, lh, [], lh)
    for root, leaf in ((lh, b""), (b"", lh), (b"", b"")):
        with pytest.raises(VerificationError):
            verify_inclusion(0, 1, leaf, [], root)


@pytest.mark.parametrize("index,size", [(0, 0), (0, 1), (1, 0), (2, 1)])
def test_inclusion_probes_with_empty_proof(index: int, size: int) -> None:
    # TestVerifyInclusion's probes: none of these verifies
    for lh, root in ((SOME_HASH, b""), (b"", EMPTY_ROOT), (SOME_HASH, EMPTY_ROOT)):
        with pytest.raises(VerificationError):
            verify_inclusion(index, size, lh, [], root)


@pytest.mark.parametrize(
    "size1,size2,root1,root2,proof,ok",
    [
        (0, 0, b"r1", b"r2", [], False),
        (1, 1, b"r1", b"r2", [], False),
        (0, 0, b"r1", b"r1", [], True),
        (0, 1, b"r1", b"r2", [], True),
        (1, 1, b"r2", b"r2", [], True),
        (1, 0, b"r1", b"r2", [], False),
        (2, 1, b"r1", b"r2", [], False),
        (1, 2, b"r1", b"r2", [], False),
        (0, 0, EMPTY_ROOT, b"r2", [], False),
        (1, 1, EMPTY_ROOT, b"r2", [], False),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    ],
)
def test_consistency_edge_cases(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes], ok: bool
) -> None:
    # TestVerifyConsistency's table
    if ok:
        verify_consistency(size1, size2, proof, root1, root2)
    else:
        with pytest.raises(VerificationError):
            verify_consistency(size1, size2, proof, root1, root2)


def test_every_proof_of_small_trees() -> None:
    for n in range(1, 34):
        lhs = [leaf_hash(i.to_bytes(2, "big")) for i in range(n)]
        t = MerkleTree(lhs)
        for m in range(n + 1):
            assert t.root(m) == root_of(lhs[:m])
        for size in range(1, n + 1):
            for i in range(size):
                verify_inclusion(i, size, lhs[i], t.inclusion_proof(i, size), t.root(size))
            for old in range(size + 1):
                proof = t.consistency_proof(old, size)
                verify_consistency(old, size, proof, t.root(old), t.root(size))


def test_truncate_rolls_back() -> None:
    lhs = [leaf_hash(bytes([i])) for i in range(37)]
    t = MerkleTree(lhs)
    for n in (36, 32, 17, 1, 0):
        t.truncate(n)
        assert t.size == n and t.root() == root_of(lhs[:n])
        assert [bytes(x) for x in MerkleTree(lhs[:n])._levels if x] == [
            bytes(x) for x in t._levels if x
        ]
    t.extend(lhs)
    assert t.root() == root_of(lhs)
    with pytest.raises(ValueError):
        t.truncate(38)


def test_bad_arguments() -> None:
    t = MerkleTree([leaf_hash(b"a")])
    for call in (
        lambda: t.root(2),
        lambda: t.inclusion_proof(1, 1),
        lambda: t.consistency_proof(1, 2),
        lambda: t.leaf(1),
    ):
        with pytest.raises((ValueError, IndexError)):
            call()


@settings(max_examples=60, deadline=None)
@given(
    leaves=st.lists(st.binary(max_size=8), min_size=1, max_size=80),
    data=st.data(),
)
def test_random_trees_proofs(leaves: list[bytes], data: st.DataObject) -> None:
    lhs = [leaf_hash(x) for x in leaves]
    t = MerkleTree(lhs)
    n = len(lhs)
    size = data.draw(st.integers(1, n))
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(0, size))
    root = root_of(lhs[:size])
    assert t.root(size) == root
    path = t.inclusion_proof(index, size)
    verify_inclusion(index, size, lhs[index], path, root)
    cons = t.consistency_proof(old, size)
    verify_consistency(old, size, cons, root_of(lhs[:old]), root)
    # any single flipped bit in any component breaks the proof
    if path:
        k = data.draw(st.integers(0, len(path) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = list(path)
        bad[k] = bytes(b ^ (1 << (bit % 8)) if j == bit // 8 else b for j, b in enumerate(bad[k]))
        with pytest.raises(VerificationError):
            verify_inclusion(index, size, lhs[index], bad, root)
    if cons:
        k = data.draw(st.integers(0, len(cons) - 1))
        bad = list(cons)
        bad[k] = bytes([bad[k][0] ^ 1]) + bad[k][1:]
        with pytest.raises(VerificationError):
            verify_consistency(old, size, bad, root_of(lhs[:old]), root)


@pytest.mark.skipif(
    importlib.util.find_spec("pymerkle") is None,
    reason="pymerkle (GPL, dev-only oracle) not installed",
)
@settings(max_examples=30, deadline=None)
@given(leaves=st.lists(st.binary(max_size=16), min_size=1, max_size=64))
def test_roots_match_pymerkle(leaves: list[bytes]) -> None:
    from pymerkle import InmemoryTree

    ref = InmemoryTree(algorithm="sha256")
    for x in leaves:
        ref.append_entry(x)
    t = MerkleTree(leaf_hash(x) for x in leaves)
    for n in range(1, len(leaves) + 1):
        assert t.leaf(n - 1) == ref.get_leaf(n)  # pymerkle counts leaves from 1
        assert t.root(n) == ref.get_root(n)
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(0, 200),
    chunks=st.lists(st.integers(0, 40), min_size=1, max_size=30),
)
def test_extend_builds_the_tree_append_builds(n: int, chunks: list[int]) -> None:
    """``extend`` (how verify and reopening build the tree) hashes the levels in bulk; mixed
    with ``append`` in any chunking it must give the same tree, roots and proofs."""
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    one_by_one = MerkleTree()
    for lh in leaves:
        one_by_one.append(lh)
    mixed = MerkleTree()
    i = k = 0
    while i < n:
        size = chunks[k % len(chunks)]
        if size == 0:
            mixed.append(leaves[i])
            i += 1
        else:
            mixed.extend(leaves[i : i + size])
            i += size
        k += 1
    assert mixed.size == n and mixed._levels == one_by_one._levels
    for size in range(n + 1):
        assert mixed.root(size) == one_by_one.root(size)
    with pytest.raises(ValueError, match="expected 32 bytes"):
        mixed.extend([b"short"])
