//! The lists sorted at load time, all through one instance of the standard library's sort: a
//! sort is several KB of the module per element type, and these lists are short and sorted
//! once. A leaf: it imports nothing of the domain.

/// Sorts `items` by `key` (a number, then a string); items with equal keys keep their order.
/// The items are moved in place: a list of 10,000 tenants is never held twice.
pub fn sort_by<T>(items: &mut [T], key: impl Fn(&T) -> (u64, &str)) {
    // Where each item goes: `destination[i]` is the sorted position of `items[i]`.
    let mut destination = vec![0; items.len()];
    {
        let mut keyed: Vec<((u64, &str), usize)> = items.iter().map(key).zip(0..).collect();
        keyed.sort_unstable();
        for (position, (_, index)) in keyed.into_iter().enumerate() {
            if let Some(slot) = destination.get_mut(index) {
                *slot = position;
            }
        }
    }
    // Each swap puts one item where it belongs, so at most n - 1 swaps.
    for i in 0..items.len() {
        while let Some(&to) = destination
            .get(i)
            .filter(|&&to| to != i && to < items.len())
        {
            items.swap(i, to);
            destination.swap(i, to);
        }
    }
}

/// The first key (in order) that an earlier key repeats: `(its index, the earlier one's)`.
/// `None` keys take part in nothing.
pub fn first_repeat(keys: &[Option<&str>]) -> Option<(usize, usize)> {
    // Keyed as in `sort_by`, so both are one instance of the sort.
    let mut keyed: Vec<((u64, &str), usize)> = keys
        .iter()
        .zip(0..)
        .filter_map(|(key, index)| Some(((0, (*key)?), index)))
        .collect();
    keyed.sort_unstable();
    // Within a run of equal keys, indices ascend: the run's second is its first repeat.
    keyed
        .windows(2)
        .filter_map(|pair| match pair {
            [(a, first), (b, second)] if a == b => Some((*second, *first)),
            _ => None,
        })
        .min()
}

/// Whether sorted `keys` hold `key`.
pub fn contains(keys: &[&str], key: &str) -> bool {
    keys.binary_search(&key).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn sorts_by_number_then_string_and_keeps_ties_in_order() {
        let mut items = vec![("b", 1), ("a", 2), ("c", 0), ("a", 1), ("b", 0)];
        sort_by(&mut items, |(s, n)| (*n, *s));
        assert_eq!(items, [("b", 0), ("c", 0), ("a", 1), ("b", 1), ("a", 2)]);
        // Every cycle of a larger permutation, moved in place.
        let names: Vec<String> = (0..500)
            .map(|i| format!("{:03}", (i * 7919) % 500))
            .collect();
        let mut items: Vec<(String, usize)> = names.iter().cloned().zip(0..).collect();
        sort_by(&mut items, |(name, _)| (0, name));
        let sorted: Vec<String> = items.iter().map(|(name, _)| name.clone()).collect();
        let mut expected = names.clone();
        expected.sort();
        assert_eq!(sorted, expected);
        assert!(items.iter().all(|(name, index)| names[*index] == *name));
        let mut ties = vec![("x", 1), ("x", 0)];
        sort_by(&mut ties, |(s, _)| (0, *s));
        assert_eq!(ties, [("x", 1), ("x", 0)]);
    }

    #[test]
    fn the_first_repeat_is_found_with_the_key_it_repeats() {
        assert_eq!(first_repeat(&[Some("a"), Some("b"), None, Some("c")]), None);
        let keys = [
            Some("b"),
            None,
            Some("a"),
            Some("a"),
            Some("b"),
            None,
            Some("a"),
        ];
        assert_eq!(first_repeat(&keys), Some((3, 2)));
        assert_eq!(first_repeat(&[None, None]), None);
        let mut sorted_keys = vec!["b", "a"];
        sort_by(&mut sorted_keys, |k| (0, k));
        assert!(contains(&sorted_keys, "a") && !contains(&sorted_keys, "c"));
    }
}
