"""The ledger's Merkle tree against RFC 9162's definitions, written out recursively as the RFC states them."""

from __future__ import annotations

import hashlib
import random

import pytest

from archiver.merkle import CHUNK, root_of, tree_with_proofs, verify_inclusion


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1: MTH(D[n])."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 section 2.1.3.1: PATH(m, D[n])."""
    if len(leaves) == 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def digests(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(32) for _ in range(n)]


SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 31, 64, 100, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5]


@pytest.mark.parametrize("n", SIZES)
def test_root_and_proofs_are_rfc_9162s(n):
    leaves = digests(n, n)
    wanted = sorted(
        {0, n - 1, n // 2, min(n - 1, CHUNK - 1), min(n - 1, CHUNK), *random.Random(n).sample(range(n), min(3, n))}
    )
    root, proofs = tree_with_proofs(iter(leaves), n, wanted)
    assert root == mth(leaves)
    assert root_of(leaves) == (n, root)
    for i in wanted:
        assert proofs[i] == path(i, leaves)
        assert verify_inclusion(i, n, leaves[i], proofs[i], root)


def test_the_empty_tree_and_a_prefix():
    assert root_of([]) == (0, hashlib.sha256(b"").digest())
    leaves = digests(50, 1)
    root, proofs = tree_with_proofs(iter(leaves), 37, [36])  # the first 37 leaves of a longer ledger
    assert root == mth(leaves[:37]) and proofs[36] == path(36, leaves[:37])
    with pytest.raises(ValueError):
        tree_with_proofs(iter(leaves), 51, [0])


def test_a_proof_ties_only_its_own_leaf_at_its_own_place():
    n = 300
    leaves = digests(n, 2)
    root, proofs = tree_with_proofs(iter(leaves), n, [5, 299])
    assert verify_inclusion(5, n, leaves[5], proofs[5], root)
    assert not verify_inclusion(5, n, leaves[6], proofs[5], root)  # another row
    assert not verify_inclusion(6, n, leaves[5], proofs[5], root)  # another place
    bigger = [*leaves, bytes(32)]
    assert not verify_inclusion(5, n + 1, leaves[5], proofs[5], mth(bigger))  # another tree's root
    assert not verify_inclusion(5, n, leaves[5], proofs[5][:-1], root)  # a hash dropped
    assert not verify_inclusion(5, n, leaves[5], [*proofs[5], root], root)  # a hash added
    changed = [bytes(32), *proofs[5][1:]]
    assert not verify_inclusion(5, n, leaves[5], changed, root)
    assert not verify_inclusion(299, n, leaves[299], proofs[299], mth(leaves[:299]))
    assert not verify_inclusion(n, n, leaves[5], proofs[5], root)
