//! Key layout of the embedded store.
//!
//! Every tree's keys start with one byte that names the key space:
//!
//! | prefix | tree | key | value |
//! |---|---|---|---|
//! | `r` | customers, products, campaigns | `r` id | the record with its revision |
//! | `h` | transactions, interactions | `h` customer id | the customer's history head: its earliest lines and the directory of its other blocks |
//! | `o` | transactions, interactions | `o` customer id `0x00` block number | an overflow block of one customer's lines |
//! | `i` | transactions, interactions | `i` first id | a block of the id index |
//! | `n` | every entity tree | `n` | the number of records |
//! | `c` | every entity tree | `c` sequence number | the ids one upsert changed (the change log) |
//! | `q` | every entity tree | `q` | the sequence number of the last change |
//!
//! Ids never contain control characters, so `0x00` ends a customer id.
//!
//! Invariant: no key holds a byte 0xff. sled 0.34's reverse iteration seeks
//! the predecessor of a node boundary by decrementing its last byte and
//! appending four 0xff bytes, and loops forever when keys fall between the
//! two (so a `range(..).next_back()` panics). Ids are UTF-8, which never
//! holds 0xff; numbers in keys are written 7 bits per byte, big-endian, so
//! their byte order is numeric order and no byte exceeds 0x7f.

pub(crate) const RECORD: u8 = b'r';
pub(crate) const HEAD: u8 = b'h';
pub(crate) const OVERFLOW: u8 = b'o';
pub(crate) const INDEX: u8 = b'i';
pub(crate) const COUNT: &[u8] = b"n";
pub(crate) const CHANGE: u8 = b'c';
pub(crate) const SEQUENCE: &[u8] = b"q";

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

/// `h` customer: the head of a customer's history.
pub(crate) fn head(customer: &str) -> Vec<u8> {
    prefixed(HEAD, customer.as_bytes())
}

/// `o` customer `0x00` number: an overflow block of a customer's history.
pub(crate) fn overflow(customer: &str, number: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + customer.len() + 5);
    key.push(OVERFLOW);
    key.extend_from_slice(customer.as_bytes());
    key.push(0);
    key.extend((0..5).rev().map(|i| ((number >> (7 * i)) & 0x7f) as u8));
    key
}

/// `c` sequence: one entry of the change log, in sequence order.
pub(crate) fn change(sequence: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(11);
    key.push(CHANGE);
    key.extend((0..10).rev().map(|i| ((sequence >> (7 * i)) & 0x7f) as u8));
    key
}

/// The customer id of a head key.
pub(crate) fn head_customer(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.strip_prefix(&[HEAD])?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_no_0xff_and_parse_back() {
        for n in [0, 1, 127, 128, 255, 256, 65_535, u32::MAX >> 1, u32::MAX] {
            assert!(overflow("C1", n).iter().all(|&b| b <= 0x7f));
        }
        assert!(overflow("C1", 127) < overflow("C1", 128));
        assert!(overflow("C1", u32::MAX) < overflow("C10", 0));
        assert_eq!(head_customer(&head("C0000042")), Some("C0000042"));
        for n in [0, 1, 127, 128, u64::MAX >> 1, u64::MAX] {
            assert!(change(n).iter().all(|&b| b <= 0x7f || b == CHANGE));
            assert!(n == u64::MAX || change(n) < change(n + 1));
        }
    }
}
