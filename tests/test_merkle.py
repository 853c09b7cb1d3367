"""The ledger's Merkle tree against RFC 9162's definitions, written out recursively as the RFC states them."""

from __future__ import annotations

import hashlib
import random

import pytest

from archiver.merkle import (
    CHUNK,
    TreeBuilder,
    frontier_heights,
    frontier_root,
    prove,
    root_of,
    tree_with_proofs,
    verify_consistency,
    verify_inclusion,
)


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


def subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    """RFC 9162 section 2.1.4.1: SUBPROOF(m, D[n], b); PROOF(m, D[n]) is SUBPROOF(m, D[n], true)."""
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return subproof(m, leaves[:k], whole) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


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


# Powers of two and one either side, across the 1,024-leaf chunks a builder hashes whole.
RESUMED = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 63, 64, 65, 100]
RESUMED += [CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 1, 2 * CHUNK, 2 * CHUNK + 1, 3 * CHUNK + 5]
RESUMED += [4 * CHUNK - 1, 4 * CHUNK, 4 * CHUNK + 1]


def built(leaves: list[bytes]) -> TreeBuilder:
    builder = TreeBuilder()
    builder.extend(leaves)
    return builder


def test_the_frontier_is_the_perfect_subtrees_roots_largest_first():
    """As schemas/ledger.md states it: one hash per 1 bit of the size, each the RFC 9162 root of its leaves."""
    leaves = digests(RESUMED[-1], 4)
    for n in RESUMED:
        frontier, start = built(leaves[:n]).frontier_hashes(), 0
        assert len(frontier) == n.bit_count() == len(frontier_heights(n))
        for height, value in zip(frontier_heights(n), frontier, strict=True):
            assert value == mth(leaves[start : start + (1 << height)])
            start += 1 << height
        assert start == n and frontier_root(n, frontier) == mth(leaves[:n])


def test_a_tree_resumed_from_its_frontier_grows_to_the_root_built_from_the_first_leaf():
    leaves = digests(RESUMED[-1], 3)
    whole = {n: built(leaves[:n]) for n in RESUMED}
    for n, builder in whole.items():
        assert builder.root() == mth(leaves[:n])
    for m in RESUMED:
        for n in (n for n in RESUMED if n >= m):
            resumed = TreeBuilder.resume(m, whole[m].frontier_hashes())
            resumed.extend(leaves[m:n])
            assert (resumed.size, resumed.root(), resumed.frontier_hashes()) == (
                n,
                whole[n].root(),
                whole[n].frontier_hashes(),
            ), (m, n)


def test_a_chain_of_resumed_trees_each_from_the_last_frontier():
    """Checkpoint after checkpoint, each resumed from the one before, a few leaves or a few chunks apart."""
    rng = random.Random(5)
    leaves = digests(12 * CHUNK, 6)
    size, frontier = 0, []
    while size < len(leaves):
        grown = min(len(leaves), size + rng.choice([1, 2, 3, rng.randrange(CHUNK), rng.randrange(3 * CHUNK)]))
        resumed = TreeBuilder.resume(size, frontier)
        resumed.extend(leaves[size:grown])
        size, frontier = resumed.size, resumed.frontier_hashes()
        assert (size, resumed.root()) == (grown, root_of(leaves[:grown])[1])


def test_a_frontier_of_the_wrong_shape_is_refused():
    frontier = built(digests(6, 7)).frontier_hashes()  # 6 = 4 + 2: two hashes
    wrong = [(6, frontier[:1]), (7, frontier), (6, [frontier[0], frontier[1][:31]]), (0, frontier), (-2, frontier[:1])]
    for size, hashes in wrong:
        with pytest.raises(ValueError):
            TreeBuilder.resume(size, hashes)
    assert TreeBuilder.resume(0, []).root() == hashlib.sha256(b"").digest()


def test_consistency_proofs_are_rfc_9162s_for_every_pair_of_small_sizes():
    leaves = digests(40, 3)
    for n in range(1, 41):
        olds = range(1, n + 1)
        proofs = prove(iter(leaves), n, [], olds)
        assert proofs.root == mth(leaves[:n])
        for m in olds:
            assert proofs.consistency[m] == subproof(m, leaves[:n], True), (m, n)
            assert verify_consistency(m, n, mth(leaves[:m]), proofs.root, proofs.consistency[m]), (m, n)


@pytest.mark.parametrize("n", [CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5])
def test_consistency_proofs_across_the_chunks_a_builder_hashes_whole(n):
    leaves = digests(n, n)
    olds = sorted({1, 2, 3, 5, 64, 100, CHUNK - 1, CHUNK, CHUNK + 1, n - 1, n} & set(range(1, n + 1)))
    proofs = prove(iter(leaves), n, [0, n - 1], olds)
    assert proofs.inclusion[n - 1] == path(n - 1, leaves)
    for m in olds:
        assert proofs.consistency[m] == subproof(m, leaves, True)
        assert verify_consistency(m, n, mth(leaves[:m]), proofs.root, proofs.consistency[m])


def test_a_consistency_proof_holds_only_for_a_prefix_left_unchanged():
    n, m = 300, 77
    leaves = digests(n, 4)
    proofs = prove(iter(leaves), n, [], [m, 64, n])
    proof, root, old_root = proofs.consistency[m], proofs.root, mth(leaves[:m])
    assert verify_consistency(m, n, old_root, root, proof)
    changed = [*leaves[:10], bytes(32), *leaves[11:m]]
    assert not verify_consistency(m, n, mth(changed), root, proof)  # a row of the earlier tree changed since
    assert not verify_consistency(m, n, old_root, mth([*leaves[:-1], bytes(32)]), proof)  # another later tree
    assert not verify_consistency(m + 1, n, old_root, root, proof)  # another earlier size
    assert not verify_consistency(m, n, old_root, root, proof[:-1])  # a hash dropped
    assert not verify_consistency(m, n, old_root, root, [*proof, root])  # a hash added
    for i in range(len(proof)):
        assert not verify_consistency(m, n, old_root, root, [*proof[:i], bytes(32), *proof[i + 1 :]])
    assert verify_consistency(64, n, mth(leaves[:64]), root, proofs.consistency[64])  # a power of two
    assert not verify_consistency(64, n, mth(leaves[:64]), root, [])
    assert proofs.consistency[n] == [] and verify_consistency(n, n, root, root, [])
    assert not verify_consistency(n, n, old_root, root, [])  # the same size, another root
    assert not verify_consistency(0, n, hashlib.sha256(b"").digest(), root, [])
    with pytest.raises(ValueError):
        prove(iter(leaves), n, [], [n + 1])
