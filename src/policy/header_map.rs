//! The serialized header map of the proxy-wasm ABI (`proxy_get_header_map_pairs`), read
//! without trusting it.

/// Every line of header `name` (ASCII case-insensitive) combined into one value with `, `
/// between them (RFC 9110 §5.3); `Some(None)` when absent, `None` for malformed bytes.
pub fn combined(map: &[u8], name: &str) -> Option<Option<Vec<u8>>> {
    let mut combined: Option<Vec<u8>> = None;
    for (key, value) in pairs(map)? {
        if key.eq_ignore_ascii_case(name.as_bytes()) {
            match &mut combined {
                Some(all) => {
                    all.extend_from_slice(b", ");
                    all.extend_from_slice(value);
                }
                None => combined = Some(value.to_vec()),
            }
        }
    }
    Some(combined)
}

/// Every line of header `name` (ASCII case-insensitive), in order; `None` for malformed bytes.
pub fn lines(map: &[u8], name: &str) -> Option<Vec<Vec<u8>>> {
    Some(
        pairs(map)?
            .into_iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value.to_vec())
            .collect(),
    )
}

/// The pairs of a serialized header map (the proxy-wasm ABI's: the number of pairs, each
/// pair's name and value lengths, all as little-endian u32, then each name and each value
/// followed by a NUL); `None` when the bytes do not hold that.
pub fn pairs(map: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
        let word: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(word)).ok()
    }
    let count = u32_at(map, 0)?;
    let mut sizes_at = 4usize;
    let mut data_at = count.checked_mul(8)?.checked_add(4)?;
    let mut out = Vec::with_capacity(count.min(256));
    for _ in 0..count {
        let key_len = u32_at(map, sizes_at)?;
        let value_len = u32_at(map, sizes_at.checked_add(4)?)?;
        sizes_at = sizes_at.checked_add(8)?;
        let key = map.get(data_at..data_at.checked_add(key_len)?)?;
        data_at = data_at.checked_add(key_len)?.checked_add(1)?;
        let value = map.get(data_at..data_at.checked_add(value_len)?)?;
        data_at = data_at.checked_add(value_len)?.checked_add(1)?;
        out.push((key, value));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn serialized(map: &[(&str, &str)]) -> Vec<u8> {
        let mut out = (map.len() as u32).to_le_bytes().to_vec();
        for (k, v) in map {
            out.extend((k.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (k, v) in map {
            out.extend(k.as_bytes());
            out.push(0);
            out.extend(v.as_bytes());
            out.push(0);
        }
        out
    }

    #[test]
    fn a_serialized_header_map_reads_back_pair_by_pair() {
        let map = [
            (":path", "/v1"),
            ("x-tenant-id", "acme"),
            ("x-tenant-id", "globex"),
        ];
        let bytes = serialized(&map);
        let read = pairs(&bytes).unwrap();
        let expected: Vec<(&[u8], &[u8])> = map
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        assert_eq!(read, expected);
        assert_eq!(
            pairs(&serialized(&[])).unwrap(),
            Vec::<(&[u8], &[u8])>::new()
        );
        // Every truncation is refused, never read past.
        for cut in 0..bytes.len() - 1 {
            assert!(pairs(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        assert!(pairs(&u32::MAX.to_le_bytes()).is_none());
    }

    #[test]
    fn repeated_lines_are_combined_and_names_match_in_any_case() {
        let bytes = serialized(&[
            ("X-Tenant-Id", "acme"),
            (":path", "/"),
            ("x-tenant-id", "globex"),
        ]);
        assert_eq!(
            combined(&bytes, "x-tenant-id"),
            Some(Some(b"acme, globex".to_vec()))
        );
        assert_eq!(combined(&bytes, ":path"), Some(Some(b"/".to_vec())));
        assert_eq!(combined(&bytes, "x-other"), Some(None));
        assert_eq!(combined(&bytes[..7], "x-tenant-id"), None);
    }

    #[test]
    fn repeated_lines_are_read_one_by_one() {
        let bytes = serialized(&[("x-api-key", "k1"), (":path", "/"), ("X-Api-Key", "k2")]);
        assert_eq!(
            lines(&bytes, "x-api-key"),
            Some(vec![b"k1".to_vec(), b"k2".to_vec()])
        );
        assert_eq!(lines(&bytes, "authorization"), Some(vec![]));
        assert_eq!(lines(&bytes[..7], "x-api-key"), None);
    }
}
