"""A Merkle tree over the ledger's row digests, as RFC 9162 (Certificate Transparency 2.0) defines it.

The ledger's hash chain covers whole rows, so proving that one row belongs to a signed ledger head would take
every later row: other patients' items. The tree's leaves are the ledger's `row_sha256` values in `seq`
order (leaf i is entry i + 1). A checkpoint signs the tree's root, and an evidence bundle carries for each of
its rows the inclusion proof of RFC 9162 section 2.1.3: log2(n) hashes that tie the row to the signed root
and reveal nothing of the other rows. Anyone can check one with any RFC 9162 / RFC 6962 implementation.

    leaf hash = SHA-256(0x00 || row digest)        node hash = SHA-256(0x01 || left || right)

The tree of n leaves splits at the largest power of two below n (a left-balanced tree). Computed here in one
pass over the leaves with a frontier of perfect subtrees: memory is log2(n) hashes plus the requested proofs.
The frontier is all the tree keeps of its leaves, so a tree resumed from the frontier a checkpoint signed grows
by the entries after it alone (`TreeBuilder.resume`), to the same root as one built from the first leaf.

A consistency proof (RFC 9162 section 2.1.4) shows that the tree an earlier checkpoint signed is the first
leaves of a later one, unchanged: a bundle carries one from every earlier checkpoint to its own, so a checkpoint
copy kept elsewhere vouches for the bundle's rows it covered.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

LEAF = b"\x00"
NODE = b"\x01"
CHUNK_HEIGHT = 10
CHUNK = 1 << CHUNK_HEIGHT
HASH_SIZE = 32


def leaf_hash(digest: bytes) -> bytes:
    return hashlib.sha256(LEAF + digest).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE + left + right).digest()


class TreeBuilder:
    """Adds leaves (`extend`, or `add` one); `root()` is the tree head of the leaves added so far.

    `frontier` holds the roots of the perfect subtrees the leaves form, largest first, as (height, hash):
    the binary digits of the size."""

    def __init__(self, wanted: Iterable[tuple[int, int]] = ()):
        self.size = 0
        self.frontier: list[tuple[int, bytes]] = []
        self.wanted = set(wanted)  # (height, index) of perfect aligned subtrees to keep
        self.wanted_in: dict[int, list[tuple[int, int]]] = {}  # those below a chunk's root, by chunk
        for height, index in self.wanted:
            if height < CHUNK_HEIGHT:
                self.wanted_in.setdefault((index << height) // CHUNK, []).append((height, index))
        self.kept: dict[tuple[int, int], bytes] = {}

    @classmethod
    def resume(cls, size: int, hashes: list[bytes]) -> TreeBuilder:
        """The tree of `size` leaves whose frontier is `hashes` (as `frontier_hashes` gives them), to add the
        leaves after them. ValueError when they are not one 32-byte hash per perfect subtree of that size."""
        heights = frontier_heights(size)
        if size < 0 or len(hashes) != len(heights) or any(len(value) != HASH_SIZE for value in hashes):
            raise ValueError(f"a tree of {size} leaves has a frontier of {len(heights)} hashes of {HASH_SIZE} bytes")
        builder = cls()
        builder.size = size
        builder.frontier = list(zip(heights, hashes, strict=True))
        return builder

    def frontier_hashes(self) -> list[bytes]:
        """The frontier's hashes, largest subtree (leftmost) first: what `resume` takes back."""
        return [value for _, value in self.frontier]

    def extend(self, digests: Iterable[bytes]) -> None:
        """Add leaves: whole aligned chunks of CHUNK hashed level by level (about twice as fast as one leaf at
        a time), the leaves before the first and after the last one by one."""
        leaves = iter(digests)
        while self.size % CHUNK:
            digest = next(leaves, None)
            if digest is None:
                return
            self.add(digest)
        while True:
            chunk = list(itertools.islice(leaves, CHUNK))
            if len(chunk) < CHUNK:
                for digest in chunk:
                    self.add(digest)
                return
            self._add_chunk(chunk)

    def _add_chunk(self, digests: list[bytes]) -> None:
        base = self.size
        sha256 = hashlib.sha256
        level = [sha256(LEAF + d).digest() for d in digests]
        levels = [level]
        while len(level) > 1:
            level = [sha256(NODE + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
            levels.append(level)
        for height, index in self.wanted_in.get(base // CHUNK, ()):
            self.kept[(height, index)] = levels[height][index - (base >> height)]
        self.size += CHUNK
        self._push(CHUNK_HEIGHT, base >> CHUNK_HEIGHT, level[0])

    def add(self, digest: bytes) -> None:
        index = self.size
        self.size += 1
        self._push(0, index, leaf_hash(digest))

    def _push(self, height: int, index: int, value: bytes) -> None:
        """Append a perfect subtree's root to the frontier, merging it with equal-height ones on its left."""
        if (height, index) in self.wanted:
            self.kept[(height, index)] = value
        while self.frontier and self.frontier[-1][0] == height:
            _, left = self.frontier.pop()
            value = node_hash(left, value)
            height += 1
            index >>= 1
            if (height, index) in self.wanted:
                self.kept[(height, index)] = value
        self.frontier.append((height, value))

    def root(self) -> bytes:
        """The tree head: the empty tree's is SHA-256 of nothing (RFC 9162 section 2.1.1)."""
        return fold(self.frontier) if self.frontier else hashlib.sha256(b"").digest()

    def range_hash(self, height: int, index: int) -> bytes:
        """The hash of the node at `height` whose leaves start at index << height, cut at the current size: a
        perfect subtree kept while adding, or the right edge's partial one, folded from the frontier."""
        if (height, index) in self.kept:
            return self.kept[(height, index)]
        start, parts, at = index << height, [], 0
        for part_height, value in self.frontier:
            if at >= start:
                parts.append((part_height, value))
            at += 1 << part_height
        if not parts:
            raise ValueError(f"no subtree at height {height}, index {index} in a tree of {self.size}")
        return fold(parts)


def frontier_heights(size: int) -> list[int]:
    """The heights of the perfect subtrees the first `size` leaves make, largest first: the 1 bits of `size`."""
    return [height for height in range(size.bit_length() - 1, -1, -1) if size >> height & 1]


def frontier_root(size: int, hashes: list[bytes]) -> bytes:
    """The root a frontier folds to (ValueError when it is not one of a tree of `size` leaves)."""
    return TreeBuilder.resume(size, hashes).root()


def fold(parts: list[tuple[int, bytes]]) -> bytes:
    """The root of adjacent perfect subtrees, largest first (the left-balanced tree they make)."""
    value = parts[-1][1]
    for _, left in reversed(parts[:-1]):
        value = node_hash(left, value)
    return value


def path_nodes(index: int, size: int) -> Iterator[tuple[int, int]]:
    """The (height, index) of each sibling on leaf `index`'s path to the root of a tree of `size` leaves,
    bottom up. A node with no right sibling within the tree is carried up unchanged: no proof hash."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    height, node, last = 0, index, size - 1
    while last > 0:
        sibling = node ^ 1
        if sibling <= last:
            yield height, sibling
        height, node, last = height + 1, node >> 1, last >> 1


def consistency_nodes(old: int, size: int) -> list[tuple[int, int]]:
    """The (height, index) of each node of RFC 9162's consistency proof from the tree of the first `old` leaves to
    the tree of `size` (section 2.1.4.1, SUBPROOF), in the proof's order; empty when the sizes are equal. A node
    that is not a perfect subtree is the right edge's, cut at `size` (as `TreeBuilder.range_hash` gives it)."""
    if not 0 < old <= size:
        raise ValueError(f"no consistency proof from a tree of {old} leaves to one of {size}")
    ranges: list[tuple[int, int]] = []

    def subproof(m: int, start: int, end: int, whole: bool) -> None:
        if m == end - start:
            if not whole:
                ranges.append((start, end))
            return
        k = 1 << ((end - start - 1).bit_length() - 1)  # the largest power of two below the range's size
        if m <= k:
            subproof(m, start, start + k, whole)
            ranges.append((start + k, end))
        else:
            subproof(m - k, start + k, end, False)
            ranges.append((start, start + k))

    subproof(old, 0, size, True)
    nodes = []
    for start, end in ranges:
        height = (end - start - 1).bit_length()  # a range starts at a multiple of 2 ** height
        nodes.append((height, start >> height))
    return nodes


@dataclass(frozen=True)
class Proofs:
    root: bytes
    inclusion: dict[int, list[bytes]]  # by leaf index
    consistency: dict[int, list[bytes]]  # by the earlier tree's size


def prove(digests: Iterable[bytes], size: int, indices: Iterable[int], old_sizes: Iterable[int] = ()) -> Proofs:
    """Read the first `size` leaves, once; returns the root, the inclusion proof of each leaf in `indices` and the
    consistency proof from the tree of each of `old_sizes` leaves."""
    paths = {i: list(path_nodes(i, size)) for i in sorted(set(indices))}
    olds = {m: consistency_nodes(m, size) for m in sorted(set(old_sizes))}
    builder = TreeBuilder(node for nodes in (*paths.values(), *olds.values()) for node in nodes)
    builder.extend(itertools.islice(digests, size))
    if builder.size != size:
        raise ValueError(f"the tree has {builder.size} leaves, not {size}")
    return Proofs(
        builder.root(),
        {i: [builder.range_hash(h, n) for h, n in path] for i, path in paths.items()},
        {m: [builder.range_hash(h, n) for h, n in nodes] for m, nodes in olds.items()},
    )


def tree_with_proofs(
    digests: Iterable[bytes], size: int, indices: Iterable[int]
) -> tuple[bytes, dict[int, list[bytes]]]:
    """Read the first `size` leaves; returns the root and the inclusion proof of each leaf in `indices`."""
    proofs = prove(digests, size, indices)
    return proofs.root, proofs.inclusion


def root_of(digests: Iterable[bytes]) -> tuple[int, bytes]:
    builder = TreeBuilder()
    builder.extend(digests)
    return builder.size, builder.root()


def verify_inclusion(index: int, size: int, digest: bytes, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2: whether `proof` ties the leaf with row digest `digest` at `index` to `root`."""
    if not 0 <= index < size:
        return False
    fn, sn, value = index, size - 1, leaf_hash(digest)
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            value = node_hash(sibling, value)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            value = node_hash(value, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and value == root


def verify_consistency(old: int, size: int, old_root: bytes, root: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2: whether `proof` shows the tree of `old` leaves with root `old_root` to be the
    first leaves of the tree of `size` leaves with root `root`."""
    if old == size:
        return old > 0 and not proof and old_root == root
    if not 0 < old < size or not proof:
        return False
    path = [old_root, *proof] if old & (old - 1) == 0 else list(proof)  # a power of two: its root is a node
    fn, sn = old - 1, size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = fh = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, fh = node_hash(c, fr), node_hash(c, fh)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            fh = node_hash(fh, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and fh == root
