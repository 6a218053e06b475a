//! A JSON object of the policy whose member names are the operator's (`providers`, `tenants`,
//! `plans`, `upstreams`, credentials, headers, prices): its members sorted by name, the last of
//! a repeated name winning, as serde's `BTreeMap` gave them, but kept in a list; also the
//! tables compiled from them and keyed by those names (tenants, their credentials, headers and
//! object prefixes). A `BTreeMap` or `HashMap` is several KB of the module per value type;
//! these are built once, then walked in order or searched (binary search). A leaf: it imports
//! nothing of the domain.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use crate::policy::sorted;

/// The members of a JSON object, sorted by name, each name once.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectMap<V>(Vec<(String, V)>);

impl<V> Default for ObjectMap<V> {
    fn default() -> Self {
        ObjectMap(Vec::new())
    }
}

impl<V> ObjectMap<V> {
    /// The members as read: sorted by name, and the last of a repeated name kept.
    fn from_members(mut members: Vec<(String, V)>) -> Self {
        sorted::sort_by(&mut members, |(name, _)| (0, name));
        // Of a run of one name, the first stays and takes the last one's value.
        members.dedup_by(|later, kept| {
            let repeated = later.0 == kept.0;
            if repeated {
                std::mem::swap(&mut later.1, &mut kept.1);
            }
            repeated
        });
        members.shrink_to_fit();
        ObjectMap(members)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The member named `name`.
    pub fn get(&self, name: &str) -> Option<&V> {
        let found = self.0.binary_search_by(|(key, _)| key.as_str().cmp(name));
        found
            .ok()
            .and_then(|index| self.0.get(index))
            .map(|(_, value)| value)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Adds or replaces the member `name` (at the end, without moving the others, when the
    /// names come in order).
    pub fn insert(&mut self, name: String, value: V) {
        match self.0.binary_search_by(|(key, _)| key.as_str().cmp(&name)) {
            Ok(index) => {
                if let Some(member) = self.0.get_mut(index) {
                    member.1 = value;
                }
            }
            Err(index) => self.0.insert(index, (name, value)),
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, value)| value)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.0.iter_mut().map(|(_, value)| value)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(name, _)| name)
    }

    /// The members in name order.
    pub fn iter(&self) -> Iter<'_, V> {
        self.0.iter().map(|(name, value)| (name, value))
    }
}

/// [`ObjectMap::iter`]'s iterator: `(name, value)` in name order.
pub type Iter<'a, V> =
    std::iter::Map<std::slice::Iter<'a, (String, V)>, fn(&'a (String, V)) -> (&'a String, &'a V)>;

impl<V> FromIterator<(String, V)> for ObjectMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(members: I) -> Self {
        ObjectMap::from_members(members.into_iter().collect())
    }
}

impl<V> IntoIterator for ObjectMap<V> {
    type Item = (String, V);
    type IntoIter = std::vec::IntoIter<(String, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, V> IntoIterator for &'a ObjectMap<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Iter<'a, V> {
        self.iter()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for ObjectMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(Members(PhantomData))
    }
}

/// Reads an object's members (and says "a map" of anything else, as serde's maps do).
struct Members<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for Members<V> {
    type Value = ObjectMap<V>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ObjectMap<V>, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, V>()? {
            members.push(member);
        }
        Ok(ObjectMap::from_members(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn members_are_sorted_and_the_last_of_a_name_wins() {
        let map: ObjectMap<u32> =
            crate::policy::json::from_slice(br#"{"b": 1, "a": 2, "b": 3, "c": 4}"#).unwrap();
        let members: Vec<(&String, &u32)> = map.iter().collect();
        assert_eq!(members.len(), 3);
        assert_eq!(map.get("b"), Some(&3));
        assert_eq!(map.get("a"), Some(&2));
        assert_eq!(map.get("d"), None);
        let thrice: ObjectMap<u32> =
            crate::policy::json::from_slice(br#"{"x": 1, "y": 0, "x": 2, "x": 3}"#).unwrap();
        assert_eq!(thrice.get("x"), Some(&3));
        assert_eq!(thrice.len(), 2);
        let names: Vec<String> = map.into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let mut map: ObjectMap<u32> = ObjectMap::default();
        map.insert("b".into(), 1);
        map.insert("a".into(), 2);
        map.insert("b".into(), 3);
        assert!(map.contains_key("a") && !map.contains_key("c"));
        assert_eq!(map.values().copied().collect::<Vec<_>>(), [2, 3]);
        let e = crate::policy::json::from_slice::<ObjectMap<u32>>(b"[1]").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid type: sequence, expected a map"),
            "{e}"
        );
    }
}
