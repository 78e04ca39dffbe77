//! The compact collections of the state: [`SortedSet`] (a set as a sorted vector) and
//! [`ScopedAssignments`] (one principal's assignments by scope), sized for the one-to-three
//! items most of them hold.

use std::borrow::Borrow;

use crate::domain::model::{Assignment, ScopeKey};

/// Spare capacity a [`SortedSet`] or [`ScopedAssignments`] adds when it grows: none while
/// small (most sets of the state hold one to three items and stay exact), an eighth of the
/// length once larger, so that filling a large group one member at a time stays linear.
fn grow_for_one<T>(v: &mut Vec<T>) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 8).max(1));
    }
}

/// Gives back capacity after a removal once more than a quarter of the length is spare.
fn shrink_after_remove<T>(v: &mut Vec<T>) {
    if v.capacity() - v.len() > v.len() / 4 + 1 {
        v.shrink_to_fit();
    }
}

/// A set kept as a sorted vector without duplicates.
///
/// Most sets of the state (the groups of a user, the roles of a group, a user's direct
/// end-user grants) hold a handful of items; a `BTreeSet` allocates a whole B-tree leaf (eleven
/// slots, ~200 bytes for `Uuid`s) for even one item, this allocates exactly what it holds.
/// Lookups are binary searches; an insertion or a removal moves the items after it, which for a
/// group of 100k members is a `memmove` of 1.6 MB at worst.
///
/// The API is the subset of `BTreeSet`'s the callers use, with the same meaning and iteration
/// order (ascending). The vector is visible to the rest of `state` so that its tests can check
/// the spare capacity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SortedSet<T>(pub(super) Vec<T>);

impl<T> Default for SortedSet<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T: Ord> SortedSet<T> {
    /// An empty set (no allocation).
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no item.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position<Q>(&self, value: &Q) -> Result<usize, usize>
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.0.binary_search_by(|x| x.borrow().cmp(value))
    }

    /// Whether `value` is in the set.
    pub fn contains<Q>(&self, value: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.position(value).is_ok()
    }

    /// Adds `value`; false when it was already there (the set is unchanged then).
    pub fn insert(&mut self, value: T) -> bool {
        match self.position(&value) {
            Ok(_) => false,
            Err(i) => {
                grow_for_one(&mut self.0);
                self.0.insert(i, value);
                true
            }
        }
    }

    /// Removes `value`; false when it was not there.
    pub fn remove<Q>(&mut self, value: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self.position(value) {
            Ok(i) => {
                self.0.remove(i);
                shrink_after_remove(&mut self.0);
                true
            }
            Err(_) => false,
        }
    }

    /// The items in ascending order.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    /// The items in ascending order, as a slice.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }
}

impl<'a, T> IntoIterator for &'a SortedSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: Ord> FromIterator<T> for SortedSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut v: Vec<T> = iter.into_iter().collect();
        v.sort();
        v.dedup();
        v.shrink_to_fit();
        Self(v)
    }
}

/// The assignments of one principal by scope: a map `ScopeKey → Assignment` kept as a vector
/// sorted by scope (the key is the assignment's own `scope`, not stored twice).
///
/// Almost every principal holds one to three assignments; a `BTreeMap` allocated a whole leaf
/// (~1.1 KB with these types) for each of them. The API is the subset of `BTreeMap`'s the
/// callers use: `get`, `contains_key`, `iter`/`&x` yielding `(&ScopeKey, &Assignment)` in scope
/// order, `keys`, `values`, `len`, `is_empty`; `insert` takes the assignment and replaces the
/// one with the same scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopedAssignments(Vec<Assignment>);

impl ScopedAssignments {
    /// No assignment (no allocation).
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Number of assignments.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no assignment.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position(&self, scope: &ScopeKey) -> Result<usize, usize> {
        self.0.binary_search_by(|a| a.scope.cmp(scope))
    }

    /// The assignment at `scope`.
    pub fn get(&self, scope: &ScopeKey) -> Option<&Assignment> {
        self.position(scope).ok().map(|i| &self.0[i])
    }

    /// Whether there is an assignment at `scope`.
    pub fn contains_key(&self, scope: &ScopeKey) -> bool {
        self.position(scope).is_ok()
    }

    /// Adds `a` at its scope; returns the assignment it replaced there.
    pub fn insert(&mut self, a: Assignment) -> Option<Assignment> {
        match self.position(&a.scope) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i], a)),
            Err(i) => {
                grow_for_one(&mut self.0);
                self.0.insert(i, a);
                None
            }
        }
    }

    /// Removes and returns the assignment at `scope`.
    pub fn remove(&mut self, scope: &ScopeKey) -> Option<Assignment> {
        let i = self.position(scope).ok()?;
        let a = self.0.remove(i);
        shrink_after_remove(&mut self.0);
        Some(a)
    }

    /// `(scope, assignment)` pairs in scope order.
    pub fn iter(&self) -> ScopedIter<'_> {
        ScopedIter(self.0.iter())
    }

    /// Scopes in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &ScopeKey> + ExactSizeIterator {
        self.0.iter().map(|a| &a.scope)
    }

    /// Assignments in scope order.
    pub fn values(&self) -> std::slice::Iter<'_, Assignment> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a ScopedAssignments {
    type Item = (&'a ScopeKey, &'a Assignment);
    type IntoIter = ScopedIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over `(&ScopeKey, &Assignment)` pairs of [`ScopedAssignments`], in scope order.
#[derive(Debug, Clone)]
pub struct ScopedIter<'a>(std::slice::Iter<'a, Assignment>);

impl<'a> Iterator for ScopedIter<'a> {
    type Item = (&'a ScopeKey, &'a Assignment);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|a| (&a.scope, a))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for ScopedIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|a| (&a.scope, a))
    }
}

impl ExactSizeIterator for ScopedIter<'_> {}

impl std::iter::FusedIterator for ScopedIter<'_> {}
