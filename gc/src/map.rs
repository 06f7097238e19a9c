//! `GcMap<K, V>`: a hash map from plain keys to collected objects, living in the heap.

use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;

use crate::cell::{CellFamily, CellTrace, GcCell, Member};
use crate::handle::Local;
use crate::mutator::Scope;
use crate::trace::Trace;

/// The [`CellFamily`] of a [`GcMap`]: a std `HashMap` whose values are members.
pub struct MapFamily<K, V>(PhantomData<fn() -> (K, V)>);

impl<K, V> std::fmt::Debug for MapFamily<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MapFamily")
    }
}

impl<K, V> CellFamily for MapFamily<K, V>
where
    K: Hash + Eq + Send + CellTrace + 'static,
    V: Trace,
{
    type Value<'gc> = HashMap<K, Member<'gc, V>>;
}

/// A map from keys without GC pointers (strings, integers) to collected objects: a
/// [`GcCell`] around a std `HashMap` of [`Member`]s, with handle-based methods.
///
/// Each operation takes the cell's lock; while marking, one that changes the map first
/// shades every value (the cell's deletion barrier), which costs time proportional to the
/// map — fine for the small and medium maps of object graphs; for a very large, hot map
/// prefer a [`crate::GcVec`] of buckets.
pub type GcMap<K, V> = GcCell<MapFamily<K, V>>;

impl<K, V> GcCell<MapFamily<K, V>>
where
    K: Hash + Eq + Send + CellTrace + 'static,
    V: Trace,
{
    /// An empty map (allocate it with `scope.alloc(GcMap::empty())`).
    pub fn empty() -> Self {
        GcCell::new(HashMap::new())
    }

    /// Insert `key -> value`; returns the previous value.
    pub fn insert<'s>(
        &self,
        scope: &mut Scope<'s>,
        key: K,
        value: Local<'_, V>,
    ) -> Option<Local<'s, V>> {
        self.borrow_mut(scope, |m, cx| {
            let old = m.insert(key, cx.member(value));
            old.and_then(|o| cx.get(&o))
        })
    }

    /// The value for `key`.
    pub fn get<'s>(&self, scope: &mut Scope<'s>, key: &K) -> Option<Local<'s, V>> {
        self.borrow_mut(scope, |m, cx| m.get(key).and_then(|v| cx.get(v)))
    }

    /// Remove `key`; returns its value.
    pub fn remove<'s>(&self, scope: &mut Scope<'s>, key: &K) -> Option<Local<'s, V>> {
        self.borrow_mut(scope, |m, cx| m.remove(key).and_then(|v| cx.get(&v)))
    }

    /// Entries in the map.
    pub fn len(&self, scope: &mut Scope<'_>) -> usize {
        self.borrow_mut(scope, |m, _| m.len())
    }

    /// Whether the map is empty.
    pub fn is_empty(&self, scope: &mut Scope<'_>) -> bool {
        self.len(scope) == 0
    }
}
