//! Key layout of the embedded store.
//!
//! Every tree's keys start with one byte that names the key space:
//!
//! | prefix | tree | key | value |
//! |---|---|---|---|
//! | `r` | customers, products, campaigns | `r` id | the record with its revision |
//! | `b` | transactions, interactions | `b` customer id `0x00` ts first-line-id | a block of one customer's lines |
//! | `i` | transactions, interactions | `i` first id | a block of the id index |
//! | `n` | every entity tree | `n` | the number of records |
//!
//! Ids never contain control characters, so `0x00` ends a customer id and
//! all blocks of one customer form one contiguous, time-ordered range.
//!
//! Invariant: no key holds a byte 0xff. sled 0.34's reverse iteration seeks
//! the predecessor of a node boundary by decrementing its last byte and
//! appending four 0xff bytes, and loops forever when keys fall between the
//! two (so a `range(..).next_back()` panics). Ids are UTF-8, which never
//! holds 0xff; timestamps are written 7 bits per byte, big-endian, so their
//! byte order is time order and no byte exceeds 0x7f.

pub(crate) const RECORD: u8 = b'r';
pub(crate) const BLOCK: u8 = b'b';
pub(crate) const INDEX: u8 = b'i';
pub(crate) const COUNT: &[u8] = b"n";

pub(crate) fn record(id: &str) -> Vec<u8> {
    prefixed(RECORD, id.as_bytes())
}

pub(crate) fn index(id: &str) -> Vec<u8> {
    prefixed(INDEX, id.as_bytes())
}

fn prefixed(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + rest.len());
    key.push(prefix);
    key.extend_from_slice(rest);
    key
}

/// `b` customer `0x00`: the prefix of all blocks of one customer.
pub(crate) fn customer_blocks(customer: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + customer.len() + TS_LEN + 16);
    key.push(BLOCK);
    key.extend_from_slice(customer.as_bytes());
    key.push(0);
    key
}

/// The key of a block whose first line is at `ts` with id `first_id`, in
/// the key space `space` of its customer (see [`customer_blocks`]).
pub(crate) fn block(space: &[u8], ts: i64, first_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(space.len() + TS_LEN + first_id.len());
    key.extend_from_slice(space);
    key.extend_from_slice(&encode_ts(ts));
    key.extend_from_slice(first_id.as_bytes());
    key
}

/// Bytes of an encoded timestamp.
pub(crate) const TS_LEN: usize = 10;

/// The timestamp, with its sign bit flipped so that unsigned order is time
/// order, as ten 7-bit digits, most significant first.
pub(crate) fn encode_ts(ts: i64) -> [u8; TS_LEN] {
    let unsigned = (ts as u64) ^ (1 << 63);
    std::array::from_fn(|i| ((unsigned >> (7 * (TS_LEN - 1 - i))) & 0x7f) as u8)
}

/// The customer id of a block key.
pub(crate) fn block_customer(key: &[u8]) -> Option<&str> {
    let rest = key.strip_prefix(&[BLOCK])?;
    let end = rest.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn timestamps_encode_in_order_without_0xff(a: i64, b: i64) {
            let (ea, eb) = (encode_ts(a), encode_ts(b));
            prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
            prop_assert!(ea.iter().all(|&byte| byte <= 0x7f));
        }
    }

    #[test]
    fn block_keys_sort_by_customer_then_time() {
        let block = |customer, ts, id| super::block(&customer_blocks(customer), ts, id);
        let a = block("C1", -5, "T9");
        let b = block("C1", 3, "T1");
        let c = block("C1", 3, "T2");
        let d = block("C10", -100, "T0");
        let e = block("C2", i64::MIN, "T0");
        let mut keys = vec![e.clone(), d.clone(), c.clone(), b.clone(), a.clone()];
        keys.sort();
        assert_eq!(keys, vec![a, b, c, d, e]);
        assert_eq!(block_customer(&block("C10", 7, "x")), Some("C10"));
        assert!(block("C1", 0, "x").starts_with(&customer_blocks("C1")));
        assert!(!block("C10", 0, "x").starts_with(&customer_blocks("C1")));
    }
}
