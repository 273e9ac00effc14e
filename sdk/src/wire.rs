//! The data that crosses between the CRM and a plugin, encoded with
//! postcard. Both sides use these types, so they cannot drift apart.
//!
//! Days are counted from 1970-01-01; money is integer cents; JSON values
//! travel as JSON text.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

// Text is `Cow<'a, str>` with `#[serde(borrow)]`, spelled out: serde
// borrows from the encoded batch only for a field it can see is a `Cow`
// (not through a type alias). The host builds batches borrowing from its
// snapshot, and a plugin decodes them without copying a string.

/// A batch of customers for a hook.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch<'a> {
    /// The day the data is as of: the day after the last transaction.
    pub as_of: i32,
    /// The products the customers' lines refer to, by position.
    #[serde(borrow)]
    pub products: Vec<Product<'a>>,
    #[serde(borrow)]
    pub customers: Vec<Customer<'a>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Product<'a> {
    #[serde(borrow)]
    pub sku: Cow<'a, str>,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub category: Cow<'a, str>,
    #[serde(borrow)]
    pub brand: Cow<'a, str>,
    /// Cents.
    pub unit_price: i64,
    pub unit_cost: i64,
    /// The product's industry fields, a JSON object.
    #[serde(borrow)]
    pub attributes: Cow<'a, str>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Customer<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// M, F or U.
    #[serde(borrow)]
    pub gender: Cow<'a, str>,
    pub birth_date: Option<i32>,
    #[serde(borrow)]
    pub region: Cow<'a, str>,
    #[serde(borrow)]
    pub city: Cow<'a, str>,
    /// Acquisition channel.
    #[serde(borrow)]
    pub channel: Cow<'a, str>,
    pub joined_at: i32,
    #[serde(borrow)]
    pub tier: Cow<'a, str>,
    /// The customer's industry fields, a JSON object.
    #[serde(borrow)]
    pub attributes: Cow<'a, str>,
    pub metrics: Metrics,
    /// Transaction lines of the last days the manifest asks for, oldest first.
    #[serde(borrow)]
    pub lines: Vec<Line<'a>>,
}

/// The CRM's per-customer metrics (the same definitions as its analyses).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Cents.
    pub revenue: i64,
    pub cost: i64,
    pub lines: u32,
    /// Days with a purchase.
    pub baskets: u32,
    pub first_purchase: Option<i32>,
    pub last_purchase: Option<i32>,
    pub recency_days: Option<i64>,
    pub avg_interbasket_days: Option<f64>,
    /// Recency, frequency and monetary scores (1..5, 5 best; 0 for non-buyers).
    pub r: u8,
    pub f: u8,
    pub m: u8,
    pub churn_risk: bool,
    pub avg_rating: Option<f64>,
    pub open_opinions: u32,
}

/// One transaction line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Line<'a> {
    pub day: i32,
    /// Position in `Batch::products`.
    pub product: u32,
    pub quantity: u32,
    /// Cents.
    pub amount: i64,
    pub cost: i64,
    #[serde(borrow)]
    pub channel: Cow<'a, str>,
}

/// What `validate` says of one customer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Problems that reject the write.
    pub issues: Vec<Issue>,
    /// Changes to the plugin's own fields.
    pub patches: Vec<Patch>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    pub field: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Patch {
    pub field: String,
    /// The new value as JSON text; `None` removes the field.
    pub value: Option<String>,
}

/// A derived field's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    /// JSON text.
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub value: f64,
    /// A label for the value, such as "high".
    pub band: String,
    /// What made the score, most important first.
    pub reasons: Vec<Reason>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub feature: String,
    /// How much it moved the score.
    pub weight: f64,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Text,
    Integer,
    Number,
    /// Cents, shown with two decimals.
    Money,
    Boolean,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
}

impl Column {
    pub fn new(name: &str, kind: Kind) -> Column {
        Column {
            name: name.into(),
            kind,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Cell {
    Null,
    Text(String),
    Integer(i64),
    Number(f64),
    Money(i64),
    Boolean(bool),
}

/// An industry analysis' result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
}

/// The parts of a customer a plugin can ask for (`[inputs] customer` in
/// its manifest), as bits. The host fills in only those; the others arrive
/// empty (empty text, zero metrics). The id and the lines (by `lines_days`)
/// always travel.
pub mod inputs {
    /// name, gender, birth date, region, city, channel, joined, tier.
    pub const PROFILE: u8 = 1;
    /// The industry fields.
    pub const ATTRIBUTES: u8 = 2;
    /// The per-customer metrics.
    pub const METRICS: u8 = 4;
    pub const ALL: u8 = PROFILE | ATTRIBUTES | METRICS;
}

/// Per-item results of a hook.
pub type Results<T> = Vec<Result<T, String>>;

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("wire types encode")
}

/// The head of an encoded batch: its day and products.
pub struct BatchHead<'a> {
    pub as_of: i32,
    pub products: Vec<Product<'a>>,
}

/// The customers of an encoded batch, read one at a time, so that a
/// plugin never holds the decoded customers of a whole batch in memory.
pub struct CustomerReader<'a> {
    /// Customers not read yet.
    remaining: u64,
    rest: &'a [u8],
}

fn unreadable(e: postcard::Error) -> String {
    format!("the batch cannot be read: {e}")
}

/// Reads the head of an encoded [`Batch`]; its customers follow.
pub fn read_batch(bytes: &[u8]) -> Result<(BatchHead<'_>, CustomerReader<'_>), String> {
    let (as_of, rest) = postcard::take_from_bytes::<i32>(bytes).map_err(unreadable)?;
    let (products, rest) = postcard::take_from_bytes::<Vec<Product>>(rest).map_err(unreadable)?;
    // A sequence's length is encoded as a varint, as a u64 is.
    let (remaining, rest) = postcard::take_from_bytes::<u64>(rest).map_err(unreadable)?;
    Ok((
        BatchHead { as_of, products },
        CustomerReader { remaining, rest },
    ))
}

impl<'a> CustomerReader<'a> {
    /// How many customers are left.
    pub fn remaining(&self) -> usize {
        self.remaining as usize
    }
}

impl<'a> Iterator for CustomerReader<'a> {
    type Item = Result<Customer<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        Some(match postcard::take_from_bytes::<Customer<'a>>(self.rest) {
            Ok((customer, rest)) => {
                self.rest = rest;
                Ok(customer)
            }
            Err(e) => {
                self.remaining = 0;
                Err(unreadable(e))
            }
        })
    }
}

impl Batch<'_> {
    /// The batch encoded into one buffer, sized up front from the contents
    /// so that it does not grow (and copy) as it is written.
    pub fn encode(&self) -> Vec<u8> {
        let text = |t: &str| t.len() + 2;
        let mut size = 16;
        for p in &self.products {
            size += 24 + text(&p.sku) + text(&p.name) + text(&p.category);
            size += text(&p.brand) + text(&p.attributes);
        }
        for c in &self.customers {
            size += 96 + text(&c.id) + text(&c.name) + text(&c.region) + text(&c.city);
            size += text(&c.tier) + text(&c.attributes) + 8 + c.lines.len() * 40;
        }
        postcard::to_extend(self, Vec::with_capacity(size)).expect("wire types encode")
    }
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("undecodable batch: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_back_one_customer_at_a_time() {
        let customer = |id: &'static str, lines: usize| Customer {
            id: id.into(),
            name: "Ana Núñez, \"la jefa\"".into(),
            attributes: r#"{"credit_score":700}"#.into(),
            metrics: Metrics {
                baskets: 3,
                avg_rating: Some(4.5),
                ..Metrics::default()
            },
            lines: vec![
                Line {
                    day: -3,
                    product: 1,
                    quantity: 2,
                    amount: -150,
                    cost: 90,
                    channel: "store".into(),
                };
                lines
            ],
            ..Customer::default()
        };
        let batch = Batch {
            as_of: 20_454,
            products: vec![Product {
                sku: "P1".into(),
                attributes: "{}".into(),
                ..Product::default()
            }],
            customers: (0..300)
                .map(|i| customer(if i % 2 == 0 { "A" } else { "B" }, i % 7))
                .collect(),
        };
        let bytes = batch.encode();
        assert_eq!(
            bytes,
            encode(&batch),
            "sizing the buffer does not change the bytes"
        );
        let (head, customers) = read_batch(&bytes).unwrap();
        assert_eq!((head.as_of, &head.products), (batch.as_of, &batch.products));
        assert_eq!(customers.remaining(), 300);
        let read: Vec<Customer> = customers.map(Result::unwrap).collect();
        assert_eq!(read, batch.customers);

        let (_, short) = read_batch(&bytes[..bytes.len() / 2]).unwrap();
        let outcome: Result<Vec<_>, _> = short.collect();
        assert!(outcome.unwrap_err().contains("cannot be read"));
    }
}
