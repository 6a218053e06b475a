//! The lists sorted at load time, all through one instance of the standard library's sort: a
//! sort is several KB of the module per element type, and these lists are short and sorted
//! once. A leaf: it imports nothing of the domain.

/// Sorts `items` by `key` (a number, then a string); items with equal keys keep their order.
pub fn sort_by<T>(items: &mut Vec<T>, key: impl Fn(&T) -> (u64, &str)) {
    let order: Vec<usize> = {
        let mut keyed: Vec<((u64, &str), usize)> = items.iter().map(key).zip(0..).collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|(_, index)| index).collect()
    };
    let mut slots: Vec<Option<T>> = items.drain(..).map(Some).collect();
    items.extend(
        order
            .into_iter()
            .filter_map(|index| slots.get_mut(index).and_then(Option::take)),
    );
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
        let mut ties = vec![("x", 1), ("x", 0)];
        sort_by(&mut ties, |(s, _)| (0, *s));
        assert_eq!(ties, [("x", 1), ("x", 0)]);
    }
}
