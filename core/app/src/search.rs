//! Search of customers by id and name, with case and accents ignored:
//! names are kept folded (Unicode NFD without combining marks, lowercased)
//! beside the snapshot, one per customer row.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// `text` with case and accents dropped: "José Núñez" → "jose nunez".
/// Scripts without case or accents (Chinese) stay as they are.
pub fn fold(text: &str) -> String {
    text.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The folded names of the customers, by snapshot row.
#[derive(Default)]
pub struct Search {
    names: Vec<String>,
}

impl Search {
    pub fn build(customers: &analysis::snapshot::Customers) -> Search {
        use rayon::prelude::*;
        let names = (0..customers.len())
            .into_par_iter()
            .map(|i| fold(customers.names.get(i)))
            .collect();
        Search { names }
    }

    /// Keeps row `row` current after its customer was written.
    pub fn set(&mut self, row: usize, name: &str) {
        if row >= self.names.len() {
            self.names.resize(row + 1, String::new());
        }
        self.names[row] = fold(name);
    }

    pub fn folded(&self, row: usize) -> &str {
        self.names.get(row).map_or("", String::as_str)
    }

    /// Whether customer `id` at `row` matches the folded query `q`: its id
    /// starts with it, or its name holds it.
    pub fn matches(&self, id: &str, row: usize, q: &str) -> bool {
        let id_match = if q.is_ascii() {
            id.len() >= q.len() && id.as_bytes()[..q.len()].eq_ignore_ascii_case(q.as_bytes())
        } else {
            fold(id).starts_with(q)
        };
        id_match || self.folded(row).contains(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_accents_are_ignored_and_chinese_kept() {
        assert_eq!(fold("José NÚÑEZ"), "jose nunez");
        assert_eq!(fold("Zoë Ångström"), "zoe angstrom");
        assert_eq!(fold("王小明"), "王小明");
        assert!(fold("王小明").contains(&fold("小明")));
    }
}
