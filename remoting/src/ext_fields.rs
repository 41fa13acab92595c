//! A command's `extFields` (Java `HashMap<String, String>`): the custom header of every
//! request and response.
//!
//! Kept sorted by key, so both header encoders write fastjson's key order directly. A sorted
//! vector of [`CompactString`]s rather than a `BTreeMap<String, String>`: a header holds a
//! handful to ~30 short entries and one is built or decoded for every request and response;
//! keys and most values (≤ 24 bytes) then live inline, with no allocation of their own.
//! Measured building a 13-field SEND_MESSAGE_V2 header: ~650 ns as a `BTreeMap<String,
//! String>`, ~300 ns as a vector of compact strings.

use std::cmp::Ordering;

use compact_str::CompactString;

/// Up to this many entries lookups scan instead of bisecting.
const LINEAR_SEARCH_MAX: usize = 16;

/// Key order, the same as `str::cmp` (bytewise), decided inline whenever the first bytes
/// differ or one key is a single byte: header keys are short and mostly differ in their
/// first byte (V2 send headers are single letters), and one out-of-line `memcmp` per
/// comparison was ~2 % of a group leader's CPU.
#[inline]
fn key_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    match (a.first(), b.first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        // Same first byte and one key is just that byte: it is a prefix of the other.
        (Some(_), Some(_)) if a.len() == 1 || b.len() == 1 => a.len().cmp(&b.len()),
        _ => a.cmp(b),
    }
}

/// Sorted string → string map of a command's custom header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtFieldMap {
    entries: Vec<(CompactString, CompactString)>,
}

impl ExtFieldMap {
    pub fn new() -> Self {
        ExtFieldMap::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        ExtFieldMap {
            entries: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        // Decoders and typed headers mostly insert in key order: check the end first.
        match self.entries.last() {
            Some((last, _)) if key_cmp(last, key) == Ordering::Less => Err(self.entries.len()),
            None => Err(0),
            _ if self.entries.len() <= LINEAR_SEARCH_MAX => {
                // Short keys, few entries: a forward scan beats bisection here.
                for (i, (k, _)) in self.entries.iter().enumerate() {
                    match key_cmp(k, key) {
                        Ordering::Less => continue,
                        Ordering::Equal => return Ok(i),
                        Ordering::Greater => return Err(i),
                    }
                }
                Err(self.entries.len())
            }
            _ => self.entries.binary_search_by(|(k, _)| key_cmp(k, key)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|i| self.entries[i].1.as_str())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; returns the value it replaces.
    pub fn insert(
        &mut self,
        key: impl Into<CompactString>,
        value: impl Into<CompactString>,
    ) -> Option<CompactString> {
        let key = key.into();
        let value = value.into();
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Empties the map and keeps its capacity (a handler reuses its request's map for the
    /// response).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn remove(&mut self, key: &str) -> Option<CompactString> {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// Keeps the entries for which `keep` returns true, in one pass; `keep` may move a
    /// value out of an entry it drops.
    pub fn retain_mut(&mut self, mut keep: impl FnMut(&str, &mut CompactString) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<'a> IntoIterator for &'a ExtFieldMap {
    type Item = (&'a str, &'a str);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (CompactString, CompactString)>,
        fn(&'a (CompactString, CompactString)) -> (&'a str, &'a str),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<CompactString>, V: Into<CompactString>> FromIterator<(K, V)> for ExtFieldMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = ExtFieldMap::new();
        m.extend(iter);
        m
    }
}

impl<K: Into<CompactString>, V: Into<CompactString>> Extend<(K, V)> for ExtFieldMap {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #[test]
        fn key_order_is_str_order(a in ".{0,4}", b in ".{0,4}", c in "[a-c]{0,3}", d in "[a-c]{0,3}") {
            prop_assert_eq!(key_cmp(&a, &b), a.cmp(&b));
            prop_assert_eq!(key_cmp(&c, &d), c.cmp(&d));
        }

        /// Same contents and order as a BTreeMap fed the same operations.
        #[test]
        fn behaves_like_a_sorted_map(ops in proptest::collection::vec(
            (0u8..3, "[a-e]{0,3}", ".{0,30}"), 0..60)) {
            let mut ours = ExtFieldMap::new();
            let mut model: BTreeMap<String, String> = BTreeMap::new();
            for (op, k, v) in ops {
                match op {
                    0 | 1 => prop_assert_eq!(
                        ours.insert(k.as_str(), v.as_str()).map(|s| s.to_string()),
                        model.insert(k, v)
                    ),
                    _ => prop_assert_eq!(
                        ours.remove(&k).map(|s| s.to_string()),
                        model.remove(&k)
                    ),
                }
                let got: Vec<(&str, &str)> = ours.iter().collect();
                let want: Vec<(&str, &str)> =
                    model.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                prop_assert_eq!(got, want);
            }
            for k in ["", "a", "ab", "e", "zz"] {
                prop_assert_eq!(ours.get(k), model.get(k).map(String::as_str));
                prop_assert_eq!(ours.contains_key(k), model.contains_key(k));
            }
        }
    }
}
