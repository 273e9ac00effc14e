//! JSON written piece by piece, for the answers served most (the customer
//! 360 and its scores): the document's fixed parts (braces, keys) as they
//! are, values straight into the buffer. A derived `Serialize` escapes
//! every key anew on every value, and serde_json escapes every string a
//! byte at a time; together that was half the instructions of a 360.
//!
//! The text is the text serde_json writes for the same values (strings
//! escaped the same way, numbers through serde_json), so a document
//! written here parses to the one a derived `Serialize` gives; the tests
//! of the 360 compare the two.

use model::{Date, Money, Timestamp};

pub(crate) struct Json(pub(crate) Vec<u8>);

impl Json {
    pub(crate) fn with_capacity(bytes: usize) -> Json {
        Json(Vec::with_capacity(bytes))
    }

    /// JSON text as it is (keys with their quotes, punctuation, `null`).
    pub(crate) fn raw(&mut self, text: &str) {
        self.0.extend_from_slice(text.as_bytes());
    }

    /// Bytes already written as JSON (a value written before).
    pub(crate) fn raw_bytes(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// A string that needs no escaping (a word of a closed vocabulary).
    pub(crate) fn word(&mut self, text: &str) {
        debug_assert!(!needs_escape(text.as_bytes()));
        self.0.reserve(text.len() + 2);
        self.0.push(b'"');
        self.0.extend_from_slice(text.as_bytes());
        self.0.push(b'"');
    }

    /// A string, escaped as serde_json escapes it. Most have nothing to
    /// escape: they are checked in one pass and copied whole.
    pub(crate) fn text(&mut self, text: &str) {
        if needs_escape(text.as_bytes()) {
            // Writing to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.0, text);
        } else {
            self.word(text);
        }
    }

    pub(crate) fn opt_text(&mut self, text: Option<&str>) {
        match text {
            Some(text) => self.text(text),
            None => self.raw("null"),
        }
    }

    pub(crate) fn bool(&mut self, value: bool) {
        self.raw(if value { "true" } else { "false" });
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    pub(crate) fn i64(&mut self, value: i64) {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// A number as serde_json writes an `f64` (`null` if not finite).
    pub(crate) fn f64(&mut self, value: f64) {
        let _ = serde_json::to_writer(&mut self.0, &value);
    }

    pub(crate) fn money(&mut self, value: Money) {
        self.f64(value.as_f64());
    }

    pub(crate) fn date(&mut self, value: Date) {
        match value.text() {
            Some(text) => {
                self.0.push(b'"');
                self.0.extend_from_slice(&text);
                self.0.push(b'"');
            }
            None => {
                let _ = serde_json::to_writer(&mut self.0, &value);
            }
        }
    }

    pub(crate) fn timestamp(&mut self, value: Timestamp) {
        match value.text() {
            Some(text) => {
                self.0.push(b'"');
                self.0.extend_from_slice(&text);
                self.0.push(b'"');
            }
            None => {
                let _ = serde_json::to_writer(&mut self.0, &value);
            }
        }
    }

    /// `value` or `null`, written by `write`.
    pub(crate) fn opt<T>(&mut self, value: Option<T>, write: impl FnOnce(&mut Json, T)) {
        match value {
            Some(value) => write(self, value),
            None => self.raw("null"),
        }
    }
}

/// Whether JSON needs any of these bytes escaped: a quote, a backslash, or
/// a control character. One pass without an early exit, which the compiler
/// turns into vector instructions.
pub(crate) fn needs_escape(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(write: impl FnOnce(&mut Json)) -> String {
        let mut out = Json::with_capacity(0);
        write(&mut out);
        String::from_utf8(out.0).unwrap()
    }

    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        for text in [
            "",
            "plain",
            "Baker & Sons, Ltd.",
            "quote \" and backslash \\",
            "tab\tnew line\ncarriage\rbell\u{7}",
            "张伟",
            "Zoë Ångström",
            "\u{1f}\u{0}",
            "a\u{7f}b",
        ] {
            assert_eq!(
                written(|j| j.text(text)),
                serde_json::to_string(text).unwrap(),
                "{text:?}"
            );
        }
        for value in [
            0.0,
            1.0,
            -2.5,
            426.65,
            0.1 + 0.2,
            1e21,
            155.333_333_333_333_34,
            f64::NAN,
            f64::INFINITY,
        ] {
            assert_eq!(
                written(|j| j.f64(value)),
                serde_json::to_string(&value).unwrap()
            );
        }
        for cents in [0, 5, 100, 42_665, -1_999, 123_456_789_012] {
            let money = Money::from_cents(cents);
            assert_eq!(
                written(|j| j.money(money)),
                serde_json::to_string(&money).unwrap()
            );
        }
        for days in [Date::MIN.days(), -1, 0, 20_000, Date::MAX.days()] {
            let date = Date::from_days(days);
            assert_eq!(
                written(|j| j.date(date)),
                serde_json::to_string(&date).unwrap()
            );
            let ts = date.start();
            let later = Timestamp::from_seconds(ts.seconds() + 86_399);
            assert_eq!(
                written(|j| j.timestamp(ts)),
                serde_json::to_string(&ts).unwrap()
            );
            assert_eq!(
                written(|j| j.timestamp(later)),
                serde_json::to_string(&later).unwrap()
            );
        }
        assert_eq!(written(|j| j.u64(u64::MAX)), u64::MAX.to_string());
        assert_eq!(written(|j| j.i64(i64::MIN)), i64::MIN.to_string());
        assert_eq!(written(|j| j.opt(None::<u64>, Json::u64)), "null");
        assert_eq!(written(|j| j.opt_text(Some("x"))), "\"x\"");
        assert_eq!(written(|j| j.bool(false)), "false");
    }

    #[test]
    fn only_quotes_backslashes_and_control_characters_need_escaping() {
        for b in 0..=255u8 {
            assert_eq!(
                needs_escape(&[b'a', b, b'z']),
                b < 0x20 || b == b'"' || b == b'\\',
                "{b}"
            );
        }
        assert!(!needs_escape("张伟 Zoë".as_bytes()));
    }
}
