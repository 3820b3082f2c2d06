//! An RFC 9162 (Certificate Transparency v2) Merkle tree over the audit chain.
//!
//! The chain alone proves order and integrity to someone who holds every record; the tree lets
//! a holder of one signed root check that a single record is in the log (inclusion) or that a
//! later root extends an earlier one (consistency) with a logarithmic number of hashes, and
//! without trusting the server. Leaf `i` (0-based) is the record with sequence number `i + 1`,
//! and its input is that record's 32-byte chain hash.
//!
//! Proofs are described as ranges of leaves rather than computed from a leaf vector, so that a
//! store can answer them from hashes of perfect subtrees it saved as it appended (see
//! [`Frontier::push`]) plus a few hundred leaves at most: [`inclusion_ranges`] or
//! [`consistency_ranges`] name the ranges, [`decompose`] splits each into aligned perfect
//! subtrees, and [`fold`] combines their hashes into the proof hash for the range.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, a node hash or a root.
pub type Hash = [u8; 32];

/// The hash of one audit record as a leaf: SHA-256(0x00 || the 32 bytes of its chain hash).
///
/// `None` unless `chain_hash_hex` is 64 hex digits; a chain hash of any other shape is not one
/// the chain produces, and hashing it anyway would put an unverifiable leaf in the tree.
pub fn leaf_hash(chain_hash_hex: &str) -> Option<Hash> {
    let raw = from_hex(chain_hash_hex)?;
    Some(leaf_hash_bytes(&raw))
}

// The 0x00 and 0x01 prefixes keep a leaf from ever being passed off as an interior node
// (RFC 9162 section 2.1.1, second-preimage resistance).
fn leaf_hash_bytes(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (`n >= 2`): where RFC 9162 splits a tree.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The Merkle tree hash MTH of `leaves` (RFC 9162 section 2.1.1); the empty tree's root is
/// SHA-256 of the empty string.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [leaf] => *leaf,
        _ => {
            let k = split(leaves.len() as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The perfect, aligned subtrees `[start, start+size)` whose hashes make up MTH(D\[a:b\]) when
/// the range is one RFC 9162 proofs ask for: the binary digits of `b - a`, largest first.
///
/// Because RFC 9162 always splits at the largest power of two below the size, the MTH of any
/// range is the right fold of the perfect subtrees given by the binary digits of its length.
/// The parts are aligned (each start a multiple of its size) whenever `a` is a multiple of
/// the largest part, which holds for every range [`inclusion_ranges`] and
/// [`consistency_ranges`] return; aligned parts are exactly the subtrees a store sees
/// completed as it appends, so each one is either stored or cheap to recompute. Empty when
/// `b <= a`.
pub fn decompose(a: u64, b: u64) -> Vec<(u64, u64)> {
    let mut parts = Vec::new();
    if b <= a {
        return parts;
    }
    let len = b - a;
    let mut start = a;
    for bit in (0..64).rev() {
        let size = 1u64 << bit;
        if len & size != 0 {
            parts.push((start, size));
            start += size;
        }
    }
    parts
}

/// MTH of a range from the hashes of its decomposition, in [`decompose`] order (right fold
/// with [`node_hash`]); the empty list folds to the empty tree's root.
pub fn fold(parts: &[Hash]) -> Hash {
    let Some((last, rest)) = parts.split_last() else {
        return empty_root();
    };
    rest.iter()
        .rev()
        .fold(*last, |acc, left| node_hash(left, &acc))
}

/// The ranges `[a, b)` whose MTHs make the inclusion proof of leaf `index` in a tree of
/// `size` (RFC 9162 section 2.1.3.1 PATH), in proof order (the order [`verify_inclusion`]
/// consumes them: the leaf's sibling first, the root's child last).
///
/// Empty when `index >= size` (there is no proof) and when `size == 1` (the leaf is the root).
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    if index >= size {
        return ranges;
    }
    // Walk down from the root, recording the sibling subtree at each level; PATH lists them
    // bottom-up, so reverse at the end.
    let (mut offset, mut n, mut m) = (0u64, size, index);
    while n > 1 {
        let k = split(n);
        if m < k {
            ranges.push((offset + k, offset + n));
            n = k;
        } else {
            ranges.push((offset, offset + k));
            offset += k;
            m -= k;
            n -= k;
        }
    }
    ranges.reverse();
    ranges
}

/// The ranges whose MTHs make the consistency proof between sizes `old` and `new`
/// (RFC 9162 section 2.1.4.1 PROOF/SUBPROOF), in proof order.
///
/// Empty when there is nothing to prove (`old == 0` or `old == new`) or nothing true to prove
/// (`old > new`).
pub fn consistency_ranges(old: u64, new: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    if old == 0 || old >= new {
        return ranges;
    }
    // SUBPROOF(m, D[offset:offset+n], b), unrolled: each level appends its sibling after the
    // deeper levels' hashes, so collect top-down and reverse.
    let (mut offset, mut n, mut m, mut whole_old_tree) = (0u64, new, old, true);
    while m != n {
        let k = split(n);
        if m <= k {
            ranges.push((offset + k, offset + n));
            n = k;
        } else {
            ranges.push((offset, offset + k));
            offset += k;
            m -= k;
            n -= k;
            whole_old_tree = false;
        }
    }
    // The subtree the old tree ends in: the verifier already has it when it is the whole old
    // tree (its root), and needs it otherwise.
    if !whole_old_tree {
        ranges.push((offset, offset + n));
    }
    ranges.reverse();
    ranges
}

/// Whether `proof` shows that `leaf` is leaf `index` of the tree of `size` leaves whose root
/// is `root` (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            // Past the right edge of a smaller tree the path skips levels with no sibling.
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// Whether `proof` shows that the tree of `new` leaves with root `new_root` extends the tree
/// of `old` leaves with root `old_root` (RFC 9162 section 2.1.4.2).
///
/// With `old == new` it holds only for an empty proof and equal roots; with `old == 0` only for
/// an empty proof (every tree extends the empty one); never with `old > new`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        return proof.is_empty();
    }
    let Some((first, rest)) = proof.split_first() else {
        return false;
    };
    // When the old tree is a perfect subtree of the new one the proof leaves out its root,
    // which the verifier already holds.
    let (start, rest) = if old.is_power_of_two() {
        (old_root, proof)
    } else {
        (first, rest)
    };
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *old_root && sr == *new_root && sn == 0
}

/// The tree's right edge: the roots of its perfect subtrees, largest first, enough to append
/// leaves and compute the root without the leaves before.
///
/// Serialized as `{"size": n, "hashes": ["<hex>", ...]}`; deserializing checks that there is
/// one hash per binary digit of the size, as [`Frontier::from_parts`] does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FrontierText", into = "FrontierText")]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The empty tree's frontier.
    pub fn new() -> Self {
        Frontier::default()
    }

    /// A frontier saved earlier; `None` unless there is one hash per binary digit of `size`,
    /// since any other shape cannot be the right edge of a tree of that size.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Option<Self> {
        (hashes.len() == size.count_ones() as usize).then_some(Frontier { size, hashes })
    }

    /// How many leaves have been appended.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtrees' roots, largest first (the subtrees of `decompose(0, size)`).
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends a leaf; returns every perfect subtree it completed, as (start, size, hash),
    /// smallest first (size 1 = the leaf itself).
    ///
    /// These are exactly the parts [`decompose`] can ask for later, so a store that saves the
    /// large ones as it appends can answer any proof without rereading the leaves under them.
    pub fn push(&mut self, leaf: Hash) -> Vec<(u64, u64, Hash)> {
        let index = self.size;
        let mut completed = vec![(index, 1, leaf)];
        let (mut hash, mut size) = (leaf, 1u64);
        // Each trailing 1 bit of the old size is a perfect subtree of that size that the new
        // leaf's subtree now pairs with.
        while index & size != 0 {
            let Some(left) = self.hashes.pop() else {
                unreachable!("a frontier holds one hash per binary digit of its size");
            };
            hash = node_hash(&left, &hash);
            size <<= 1;
            completed.push((index + 1 - size, size, hash));
        }
        self.hashes.push(hash);
        self.size = index + 1;
        completed
    }

    /// The root of the tree so far; equal to [`root`] of every leaf pushed.
    pub fn root(&self) -> Hash {
        fold(&self.hashes)
    }
}

/// The serialized shape of a [`Frontier`]: hex is what the audit chain already uses for hashes.
#[derive(Serialize, Deserialize)]
struct FrontierText {
    size: u64,
    hashes: Vec<String>,
}

impl From<Frontier> for FrontierText {
    fn from(f: Frontier) -> Self {
        FrontierText {
            size: f.size,
            hashes: f.hashes.iter().map(to_hex).collect(),
        }
    }
}

impl TryFrom<FrontierText> for Frontier {
    type Error = String;

    fn try_from(t: FrontierText) -> Result<Self, Self::Error> {
        let hashes = t
            .hashes
            .iter()
            .map(|h| from_hex(h).ok_or_else(|| format!("not a 64-digit hex hash: {h:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        Frontier::from_parts(t.size, hashes).ok_or_else(|| {
            format!(
                "a frontier of size {} needs {} hashes",
                t.size,
                t.size.count_ones()
            )
        })
    }
}

/// A hash as 64 lowercase hex digits, as chain hashes are stored.
pub fn to_hex(h: &Hash) -> String {
    hex::encode(h)
}

/// A hash from 64 hex digits; `None` for any other text.
pub fn from_hex(s: &str) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    let mut h = [0u8; 32];
    hex::decode_to_slice(s, &mut h).ok()?;
    Some(h)
}

/// Serde for a single [`Hash`] as hex, for structs that embed one.
pub(crate) mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{Hash, from_hex, to_hex};

    pub(crate) fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(h))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let text = String::deserialize(d)?;
        from_hex(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test-only: any byte string as a leaf, for the published vectors whose leaves are not
    /// 32 bytes.
    fn leaf_of(data: &[u8]) -> Hash {
        leaf_hash_bytes(data)
    }

    fn h(s: &str) -> Hash {
        from_hex(s).unwrap()
    }

    // RFC 6962 reference data as used by the certificate-transparency and
    // transparency-dev/merkle test suites (proof/verify_test.go): the leaf inputs, the root
    // for every tree size 1..=8, and a few inclusion and consistency proofs.
    const VECTOR_LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const VECTOR_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn vector_leaves() -> Vec<Hash> {
        VECTOR_LEAVES
            .iter()
            .map(|s| leaf_of(&hex::decode(s).unwrap()))
            .collect()
    }

    /// (0-based leaf index, tree size, proof).
    fn vector_inclusion() -> Vec<(u64, u64, Vec<Hash>)> {
        vec![
            (0, 1, vec![]),
            (
                0,
                8,
                vec![
                    h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
                ],
            ),
            (
                5,
                8,
                vec![
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                    h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
            (
                2,
                3,
                vec![h(
                    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                )],
            ),
            (
                1,
                5,
                vec![
                    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                ],
            ),
        ]
    }

    /// (old size, new size, proof).
    fn vector_consistency() -> Vec<(u64, u64, Vec<Hash>)> {
        vec![
            (1, 1, vec![]),
            (
                1,
                8,
                vec![
                    h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
                ],
            ),
            (
                6,
                8,
                vec![
                    h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                    h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
            (
                2,
                5,
                vec![
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                ],
            ),
            (
                6,
                7,
                vec![
                    h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                    h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
        ]
    }

    /// A straightforward recursive MTH, independent of `root`'s index arithmetic.
    fn ref_mth(d: &[Hash]) -> Hash {
        if d.is_empty() {
            return Sha256::digest([]).into();
        }
        if d.len() == 1 {
            return d[0];
        }
        let mut k = 1;
        while k * 2 < d.len() {
            k *= 2;
        }
        node_hash(&ref_mth(&d[..k]), &ref_mth(&d[k..]))
    }

    /// RFC 9162 section 2.1.3.1 PATH(m, D[n]), transcribed.
    fn ref_path(m: usize, d: &[Hash]) -> Vec<Hash> {
        let n = d.len();
        if n <= 1 {
            return vec![];
        }
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        if m < k {
            let mut p = ref_path(m, &d[..k]);
            p.push(ref_mth(&d[k..]));
            p
        } else {
            let mut p = ref_path(m - k, &d[k..]);
            p.push(ref_mth(&d[..k]));
            p
        }
    }

    /// RFC 9162 section 2.1.4.1 SUBPROOF(m, D[n], b), transcribed.
    fn ref_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![ref_mth(d)] };
        }
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        if m <= k {
            let mut p = ref_subproof(m, &d[..k], b);
            p.push(ref_mth(&d[k..]));
            p
        } else {
            let mut p = ref_subproof(m - k, &d[k..], false);
            p.push(ref_mth(&d[..k]));
            p
        }
    }

    /// Distinct, deterministic leaves built the way the store builds them: from chain hashes.
    fn chain_leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| {
                let chain: Hash = Sha256::digest(format!("record {}", i + 1)).into();
                leaf_hash(&to_hex(&chain)).unwrap()
            })
            .collect()
    }

    /// Builds a proof the way the store will: ranges, then aligned perfect parts, then fold.
    fn build(ranges: &[(u64, u64)], leaves: &[Hash], size: u64) -> Vec<Hash> {
        ranges
            .iter()
            .map(|&(a, b)| {
                let parts: Vec<Hash> = decompose(a, b)
                    .into_iter()
                    .map(|(start, len)| {
                        assert!(len.is_power_of_two(), "part {start}+{len} of [{a},{b})");
                        assert_eq!(start % len, 0, "part {start}+{len} of [{a},{b}) unaligned");
                        assert!(start + len <= size, "part {start}+{len} beyond {size}");
                        root(&leaves[start as usize..(start + len) as usize])
                    })
                    .collect();
                fold(&parts)
            })
            .collect()
    }

    #[test]
    fn roots_match_the_published_vectors() {
        let leaves = vector_leaves();
        for (size, want) in VECTOR_ROOTS.iter().enumerate() {
            assert_eq!(to_hex(&root(&leaves[..size])), *want, "size {size}");
        }
    }

    #[test]
    fn proofs_match_the_published_vectors() {
        let leaves = vector_leaves();
        for (index, size, want) in vector_inclusion() {
            let got = build(&inclusion_ranges(index, size), &leaves, size);
            assert_eq!(got, want, "inclusion of {index} in {size}");
            let r = h(VECTOR_ROOTS[size as usize]);
            assert!(verify_inclusion(
                &leaves[index as usize],
                index,
                size,
                &want,
                &r
            ));
        }
        for (old, new, want) in vector_consistency() {
            let got = build(&consistency_ranges(old, new), &leaves, new);
            assert_eq!(got, want, "consistency {old} -> {new}");
            let (r1, r2) = (h(VECTOR_ROOTS[old as usize]), h(VECTOR_ROOTS[new as usize]));
            assert!(verify_consistency(old, new, &r1, &r2, &want));
        }
    }

    #[test]
    fn root_agrees_with_the_reference_and_decompose_fold() {
        let leaves = chain_leaves(300);
        for n in 0..=leaves.len() {
            let want = ref_mth(&leaves[..n]);
            assert_eq!(root(&leaves[..n]), want, "size {n}");
            assert_eq!(build(&[(0, n as u64)], &leaves, n as u64), vec![want]);
        }
    }

    #[test]
    fn leaf_hash_takes_only_a_chain_hash() {
        let chain = "ab".repeat(32);
        let mut want = vec![0u8];
        want.extend([0xab; 32]);
        assert_eq!(leaf_hash(&chain), Some(Sha256::digest(&want).into()));
        assert_eq!(leaf_hash(&chain[..62]), None);
        assert_eq!(leaf_hash(&format!("{chain}00")), None);
        assert_eq!(leaf_hash(&format!("{}zz", &chain[..62])), None);
        assert_eq!(leaf_hash(""), None);
        assert_eq!(from_hex(&to_hex(&[7; 32])), Some([7; 32]));
    }

    #[test]
    fn decompose_gives_binary_digits_largest_first() {
        assert_eq!(decompose(0, 0), vec![]);
        assert_eq!(decompose(5, 3), vec![]);
        assert_eq!(decompose(0, 13), vec![(0, 8), (8, 4), (12, 1)]);
        assert_eq!(decompose(16, 23), vec![(16, 4), (20, 2), (22, 1)]);
        assert_eq!(decompose(0, 256), vec![(0, 256)]);
        assert_eq!(fold(&[]), root(&[]));
    }

    /// Ways a proof can be damaged: bytes of each hash flipped (every byte, or for speed the
    /// first, a middle and the last), hashes dropped, added or swapped.
    fn damaged(proof: &[Hash], every_byte: bool) -> Vec<Vec<Hash>> {
        let bytes: Vec<usize> = if every_byte {
            (0..32).collect()
        } else {
            vec![0, 13, 31]
        };
        let mut out = Vec::new();
        for i in 0..proof.len() {
            for &byte in &bytes {
                let mut p = proof.to_vec();
                p[i][byte] ^= 0x01;
                out.push(p);
            }
            let mut p = proof.to_vec();
            p.remove(i);
            out.push(p);
        }
        let mut p = proof.to_vec();
        p.push([0; 32]);
        out.push(p);
        let mut p = proof.to_vec();
        p.insert(0, [0; 32]);
        out.push(p);
        if proof.len() > 1 {
            let mut p = proof.to_vec();
            p.swap(0, 1);
            if p != proof {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn inclusion_proofs_for_every_leaf_of_every_size_to_70() {
        let leaves = chain_leaves(140);
        let roots: Vec<Hash> = (0..=leaves.len()).map(|n| root(&leaves[..n])).collect();
        for size in 1..=70u64 {
            let r = roots[size as usize];
            for index in 0..size {
                let leaf = leaves[index as usize];
                let proof = build(&inclusion_ranges(index, size), &leaves, size);
                assert_eq!(
                    proof,
                    ref_path(index as usize, &leaves[..size as usize]),
                    "PATH({index}, {size})"
                );
                assert!(verify_inclusion(&leaf, index, size, &proof, &r));

                for bad in damaged(&proof, size <= 24) {
                    assert!(!verify_inclusion(&leaf, index, size, &bad, &r));
                }
                assert!(!verify_inclusion(
                    &leaves[index as usize + 1],
                    index,
                    size,
                    &proof,
                    &r
                ));
                assert!(!verify_inclusion(&leaf, index, size, &proof, &roots[0]));
                assert!(!verify_inclusion(&leaf, index, size, &proof, &[0xee; 32]));
                for other in [index.wrapping_sub(1), index + 1, index ^ 1, index ^ 2, size] {
                    if other != index {
                        assert!(
                            !verify_inclusion(&leaf, other, size, &proof, &r),
                            "index {other} accepted for {index} in {size}"
                        );
                    }
                }
                // A proof for one size can be shaped like a proof for another, so a wrong size
                // must fail against that size's real root unless it is that size's real proof.
                for other in [size - 1, size + 1, size * 2, size / 2, 0] {
                    if other == size {
                        continue;
                    }
                    if verify_inclusion(&leaf, index, other, &proof, &roots[other as usize]) {
                        assert_eq!(
                            ref_path(index as usize, &leaves[..other as usize]),
                            proof,
                            "size {other} accepted for {index} in {size}"
                        );
                    }
                }
            }
        }
        assert!(inclusion_ranges(3, 3).is_empty());
        assert!(inclusion_ranges(0, 0).is_empty());
        assert!(!verify_inclusion(&leaves[0], 0, 0, &[], &roots[0]));
    }

    #[test]
    fn consistency_proofs_for_every_pair_of_sizes_to_70() {
        let leaves = chain_leaves(140);
        let roots: Vec<Hash> = (0..=leaves.len()).map(|n| root(&leaves[..n])).collect();
        for new in 1..=70u64 {
            for old in 1..=new {
                let (r1, r2) = (roots[old as usize], roots[new as usize]);
                let proof = build(&consistency_ranges(old, new), &leaves, new);
                let want = if old == new {
                    vec![]
                } else {
                    ref_subproof(old as usize, &leaves[..new as usize], true)
                };
                assert_eq!(proof, want, "PROOF({old}, {new})");
                assert!(verify_consistency(old, new, &r1, &r2, &proof));

                if old == new {
                    assert!(!verify_consistency(old, new, &r1, &[0xee; 32], &proof));
                    assert!(!verify_consistency(old, new, &r1, &r2, &[r1]));
                    continue;
                }
                for bad in damaged(&proof, new <= 24) {
                    assert!(
                        !verify_consistency(old, new, &r1, &r2, &bad),
                        "damaged proof accepted for {old} -> {new}"
                    );
                }
                assert!(!verify_consistency(old, new, &r2, &r1, &proof));
                assert!(!verify_consistency(old, new, &[0xee; 32], &r2, &proof));
                assert!(!verify_consistency(old, new, &r1, &[0xee; 32], &proof));
                assert!(!verify_consistency(new, old, &r2, &r1, &proof));
                // Wrong sizes, each against the real roots for the sizes claimed.
                for (o, n) in [
                    (old - 1, new),
                    (old + 1, new),
                    (old ^ 2, new),
                    (old, new - 1),
                    (old, new + 1),
                    (old, new * 2),
                    (old, new / 2),
                ] {
                    if (o, n) == (old, new) || o == 0 || o > n {
                        continue;
                    }
                    if verify_consistency(o, n, &roots[o as usize], &roots[n as usize], &proof) {
                        assert!(o != n, "{o} -> {n} with the proof for {old} -> {new}");
                        assert_eq!(
                            ref_subproof(o as usize, &leaves[..n as usize], true),
                            proof,
                            "{o} -> {n} accepted with the proof for {old} -> {new}"
                        );
                    }
                }
            }
        }
        assert!(consistency_ranges(0, 5).is_empty());
        assert!(consistency_ranges(5, 5).is_empty());
        assert!(consistency_ranges(6, 5).is_empty());
        assert!(verify_consistency(0, 5, &roots[0], &roots[5], &[]));
        assert!(!verify_consistency(0, 5, &roots[0], &roots[5], &[roots[5]]));
        assert!(verify_consistency(0, 0, &roots[0], &roots[0], &[]));
        assert!(!verify_consistency(6, 5, &roots[6], &roots[5], &[]));
        assert!(!verify_consistency(3, 5, &roots[3], &roots[5], &[]));
    }

    #[test]
    fn frontier_tracks_the_root_and_reports_completed_subtrees() {
        let leaves = chain_leaves(300);
        let mut f = Frontier::new();
        assert_eq!(f.root(), root(&[]));
        for (i, leaf) in leaves.iter().enumerate() {
            let done = f.push(*leaf);
            let n = i + 1;
            assert_eq!(f.size(), n as u64);
            assert_eq!(f.root(), root(&leaves[..n]), "size {n}");
            assert_eq!(done.len(), i.trailing_ones() as usize + 1);
            assert_eq!(done[0], (i as u64, 1, *leaf));
            for w in done.windows(2) {
                assert_eq!(w[1].1, w[0].1 * 2, "smallest first");
            }
            for &(start, size, hash) in &done {
                assert_eq!(start + size, n as u64);
                assert_eq!(hash, root(&leaves[start as usize..n]));
            }
            let edge: Vec<Hash> = decompose(0, n as u64)
                .into_iter()
                .map(|(s, z)| root(&leaves[s as usize..(s + z) as usize]))
                .collect();
            assert_eq!(f.hashes(), edge.as_slice());

            let again = Frontier::from_parts(f.size(), f.hashes().to_vec()).unwrap();
            assert_eq!(again, f);
            let text = serde_json::to_string(&f).unwrap();
            assert_eq!(serde_json::from_str::<Frontier>(&text).unwrap(), f);
        }
        // A frontier restored mid-way carries on to the same root.
        let mut resumed = Frontier::from_parts(100, {
            let mut g = Frontier::new();
            leaves[..100].iter().for_each(|l| {
                g.push(*l);
            });
            g.hashes().to_vec()
        })
        .unwrap();
        leaves[100..].iter().for_each(|l| {
            resumed.push(*l);
        });
        assert_eq!(resumed, f);
    }

    #[test]
    fn frontier_rejects_the_wrong_shape() {
        assert_eq!(Frontier::from_parts(0, vec![]), Some(Frontier::new()));
        assert_eq!(Frontier::from_parts(0, vec![[0; 32]]), None);
        assert_eq!(Frontier::from_parts(5, vec![[0; 32]]), None);
        assert!(Frontier::from_parts(5, vec![[0; 32]; 2]).is_some());
        let text = format!(r#"{{"size":3,"hashes":["{}"]}}"#, "00".repeat(32));
        assert!(serde_json::from_str::<Frontier>(&text).is_err());
        let text = r#"{"size":1,"hashes":["00"]}"#;
        assert!(serde_json::from_str::<Frontier>(text).is_err());
        let text = format!(r#"{{"size":1,"hashes":["{}"]}}"#, "ab".repeat(32));
        let f: Frontier = serde_json::from_str(&text).unwrap();
        assert_eq!(f.hashes(), &[[0xab; 32]]);
    }
}
