//! What follows from the catalog's `implies` column ("Change implies Debug and Deploy"): for
//! every permission, the keys it reaches with their shortest chains, and the permissions that
//! reach it. Computed once from [`CATALOG`]; the engine works on these tables.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use super::catalog::{CATALOG, PermIndex, index};

/// A set of catalog permissions, one bit per [`PermIndex`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermSet(u128);

impl PermSet {
    /// Whether `i` is in the set.
    pub fn contains(self, i: PermIndex) -> bool {
        i < 128 && self.0 & (1 << i) != 0
    }

    fn insert(&mut self, i: PermIndex) {
        self.0 |= 1 << i;
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The permissions whose closure contains one target, for matching grant keys quickly: a key
/// whose length is not one of theirs is rejected with one bit test, the others by comparing
/// with the (one to three) keys.
#[derive(Debug, Default)]
pub struct Sources {
    /// Bit `n` set: some key has length `n` (keys of 64 bytes or more never match).
    lengths: u64,
    /// The keys and their indexes, the target first.
    keys: Vec<(&'static str, PermIndex)>,
}

impl Sources {
    /// Which of these permissions `key` is.
    pub fn find(&self, key: &str) -> Option<PermIndex> {
        let n = key.len();
        if n >= 64 || (self.lengths >> n) & 1 == 0 {
            return None;
        }
        self.keys.iter().find(|(k, _)| *k == key).map(|&(_, i)| i)
    }
}

/// The keys reachable from one permission, each with its implication chain.
type Closure = Vec<(&'static str, Vec<&'static str>)>;

/// Everything derived from [`CATALOG`] once: the implication closures and their chains, and for
/// every permission the ones that imply it.
struct Tables {
    /// `closures[i]`: every key reachable from `i` with its chain, breadth first.
    closures: Vec<Closure>,
    /// `chains[from][to]`: the shortest chain `[from, ..., to]`, when `to` is reachable.
    chains: Vec<Vec<Option<Box<[&'static str]>>>>,
    /// `sources[t]`: every permission whose closure contains `t` (`t` first), in catalog order
    /// after it.
    sources: Vec<Vec<PermIndex>>,
    /// Bit sets of `sources`.
    source_sets: Vec<PermSet>,
    /// `sources` for matching keys.
    source_keys: Vec<Sources>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    assert!(
        CATALOG.len() <= 128,
        "PermSet holds at most 128 permissions"
    );
    let closures: Vec<Closure> = CATALOG
        .iter()
        .map(|d| {
            let mut out: Closure = vec![(d.key, vec![d.key])];
            let mut seen: BTreeSet<&str> = BTreeSet::from([d.key]);
            let mut i = 0;
            while i < out.len() {
                let (at, chain) = out[i].clone();
                let implies = index(at).map_or(&[][..], |x| CATALOG[x].implies);
                for next in implies {
                    if seen.insert(next) {
                        let mut c = chain.clone();
                        c.push(next);
                        out.push((next, c));
                    }
                }
                i += 1;
            }
            out
        })
        .collect();
    let n = CATALOG.len();
    let mut chains: Vec<Vec<Option<Box<[&'static str]>>>> = vec![vec![None; n]; n];
    let mut source_sets = vec![PermSet::default(); n];
    for (from, closure) in closures.iter().enumerate() {
        for (reached, chain) in closure {
            if let Some(to) = index(reached) {
                chains[from][to] = Some(chain.clone().into_boxed_slice());
                source_sets[to].insert(from);
            }
        }
    }
    let sources: Vec<Vec<PermIndex>> = (0..n)
        .map(|t| {
            std::iter::once(t)
                .chain((0..n).filter(|&s| s != t && source_sets[t].contains(s)))
                .collect()
        })
        .collect();
    let source_keys = sources
        .iter()
        .map(|list| Sources {
            lengths: list
                .iter()
                .map(|&s| CATALOG[s].key.len())
                .filter(|&len| len < 64)
                .fold(0, |m, len| m | (1 << len)),
            keys: list.iter().map(|&s| (CATALOG[s].key, s)).collect(),
        })
        .collect();
    Tables {
        closures,
        chains,
        sources,
        source_sets,
        source_keys,
    }
});

/// Every key reachable from `key` through implication (including `key`), each with the chain
/// that leads to it (`[key, ..., reached]`). Breadth first, so each chain is a shortest one.
pub fn closure(key: &str) -> &'static [(&'static str, Vec<&'static str>)] {
    index(key).map_or(&[], |i| TABLES.closures[i].as_slice())
}

/// The keys reachable from `from` (including itself) with their chains, by index.
pub fn closure_at(from: PermIndex) -> &'static [(&'static str, Vec<&'static str>)] {
    TABLES.closures.get(from).map_or(&[], Vec::as_slice)
}

/// The shortest implication chain `[from, ..., to]`, if `from` implies `to` (or is `to`).
pub fn chain(from: PermIndex, to: PermIndex) -> Option<&'static [&'static str]> {
    TABLES.chains.get(from)?.get(to)?.as_deref()
}

/// Every permission whose closure contains `target`: `target` itself first, then the ones that
/// imply it, in catalog order.
pub fn sources(target: PermIndex) -> &'static [PermIndex] {
    TABLES.sources.get(target).map_or(&[], Vec::as_slice)
}

/// [`sources`] as a set.
pub fn source_set(target: PermIndex) -> PermSet {
    TABLES.source_sets.get(target).copied().unwrap_or_default()
}

/// [`sources`] for matching grant keys (see [`Sources::find`]).
pub fn sources_of(target: PermIndex) -> &'static Sources {
    static NONE: Sources = Sources {
        lengths: 0,
        keys: Vec::new(),
    };
    TABLES.source_keys.get(target).unwrap_or(&NONE)
}

/// Which of `sources(target)` a grant of `key` is, without hashing: `key` is compared with
/// the (one to three) keys that imply `target`, nearly always rejected on its length.
pub fn source_for(target: PermIndex, key: &str) -> Option<PermIndex> {
    sources_of(target).find(key)
}

#[cfg(test)]
mod tests;
