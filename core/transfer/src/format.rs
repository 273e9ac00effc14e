//! The CSV files of an import or export directory: their columns, how a row
//! becomes a record, and how a record is written back, byte for byte.
//!
//! The format is the reference data set's: UTF-8, a header row, commas,
//! RFC 4180 quoting, `\n` line ends; an empty field is a null; a field is
//! quoted only when it holds a comma, a double quote or a line break, except
//! `attributes`, which is always quoted.

use model::{
    AcquisitionChannel, Attributes, Campaign, CampaignChannel, CampaignId, Customer, CustomerId,
    Date, Department, EntityKind, Gender, Interaction, InteractionId, InteractionKind,
    InvalidValue, Money, Product, Record, SalesChannel, Sku, Timestamp, Topic, Transaction, TxnId,
};

/// One column of a file.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    /// A required column must be in the header and non-empty in every row.
    pub required: bool,
}

const fn req(name: &'static str) -> Column {
    Column {
        name,
        required: true,
    }
}

const fn opt(name: &'static str) -> Column {
    Column {
        name,
        required: false,
    }
}

const CUSTOMER: &[Column] = &[
    req("customer_id"),
    req("name"),
    req("gender"),
    opt("birth_date"),
    req("region"),
    req("city"),
    req("channel"),
    req("joined_at"),
    req("tier"),
    opt("attributes"),
];
const PRODUCT: &[Column] = &[
    req("sku"),
    req("name"),
    req("category"),
    req("brand"),
    req("unit_price"),
    req("unit_cost"),
    opt("attributes"),
];
const TRANSACTION: &[Column] = &[
    req("txn_id"),
    req("customer_id"),
    req("ts"),
    req("sku"),
    req("quantity"),
    req("amount"),
    req("cost"),
    req("channel"),
    req("region"),
];
const INTERACTION: &[Column] = &[
    req("interaction_id"),
    req("customer_id"),
    req("ts"),
    req("kind"),
    req("department"),
    opt("sku"),
    opt("rep"),
    req("region"),
    opt("topic"),
    opt("resolved_ts"),
    opt("rating"),
    opt("campaign_id"),
];
const CAMPAIGN: &[Column] = &[
    req("campaign_id"),
    req("name"),
    req("channel"),
    req("start_date"),
    req("end_date"),
    req("cost"),
];

/// The columns of a kind's file, in the order an export writes them.
pub fn columns(kind: EntityKind) -> &'static [Column] {
    match kind {
        EntityKind::Customer => CUSTOMER,
        EntityKind::Product => PRODUCT,
        EntityKind::Campaign => CAMPAIGN,
        EntityKind::Transaction => TRANSACTION,
        EntityKind::Interaction => INTERACTION,
    }
}

/// A problem with one field (or, with an empty column, the whole row).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FieldError {
    pub column: &'static str,
    pub reason: String,
}

/// Where each of a kind's columns is in a file, from its header.
#[derive(Clone, Debug)]
pub struct Layout {
    pub kind: EntityKind,
    /// For each column of `columns(kind)`, its position in the file's rows.
    positions: Vec<Option<usize>>,
    /// Number of fields of a row.
    pub width: usize,
}

impl Layout {
    /// Reads a header row; errors name each unknown, duplicate or missing column.
    pub fn from_header(kind: EntityKind, header: &[&str]) -> Result<Layout, Vec<String>> {
        let columns = columns(kind);
        let mut positions = vec![None; columns.len()];
        let mut problems = Vec::new();
        for (pos, name) in header.iter().enumerate() {
            match columns.iter().position(|c| c.name == *name) {
                Some(i) if positions[i].is_some() => {
                    problems.push(format!("column '{name}' appears twice"))
                }
                Some(i) => positions[i] = Some(pos),
                None => problems.push(format!(
                    "unknown column '{}' (the columns are {})",
                    name.escape_debug(),
                    columns
                        .iter()
                        .map(|c| c.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        for (column, pos) in columns.iter().zip(&positions) {
            if column.required && pos.is_none() {
                problems.push(format!("missing column '{}'", column.name));
            }
        }
        if problems.is_empty() {
            Ok(Layout {
                kind,
                positions,
                width: header.len(),
            })
        } else {
            Err(problems)
        }
    }

    /// Parses one row (its fields, in file order) into a record.
    pub fn parse(&self, fields: &[&str]) -> Result<Record, Vec<FieldError>> {
        let mut row = Row {
            layout: self,
            fields,
            errors: Vec::new(),
        };
        let record = match self.kind {
            EntityKind::Customer => row.customer().map(Record::Customer),
            EntityKind::Product => row.product().map(Record::Product),
            EntityKind::Campaign => row.campaign().map(Record::Campaign),
            EntityKind::Transaction => row.transaction().map(Record::Transaction),
            EntityKind::Interaction => row.interaction().map(Record::Interaction),
        };
        let mut errors = row.errors;
        match record {
            Some(record) if errors.is_empty() => {
                let problems = record.problems();
                if problems.is_empty() {
                    return Ok(record);
                }
                errors.extend(problems.into_iter().map(|p| FieldError {
                    column: p.field,
                    reason: p.reason,
                }));
                Err(errors)
            }
            _ => Err(errors),
        }
    }
}

/// The fields of one row being parsed, with the errors found so far.
struct Row<'a> {
    layout: &'a Layout,
    fields: &'a [&'a str],
    errors: Vec<FieldError>,
}

impl Row<'_> {
    /// The text of column `i`, `None` when the column is absent or the field empty.
    fn text(&self, i: usize) -> Option<&str> {
        self.layout.positions[i]
            .and_then(|pos| self.fields.get(pos))
            .copied()
            .filter(|f| !f.is_empty())
    }

    /// A required field.
    fn req<T>(
        &mut self,
        i: usize,
        parse: impl FnOnce(&str) -> Result<T, InvalidValue>,
    ) -> Option<T> {
        let column = columns(self.layout.kind)[i].name;
        match self.text(i) {
            None => {
                self.errors.push(FieldError {
                    column,
                    reason: "is empty".into(),
                });
                None
            }
            Some(text) => match parse(text) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.errors.push(FieldError {
                        column,
                        reason: e.0,
                    });
                    None
                }
            },
        }
    }

    /// An optional field: `Some(None)` when empty.
    fn opt<T>(
        &mut self,
        i: usize,
        parse: impl FnOnce(&str) -> Result<T, InvalidValue>,
    ) -> Option<Option<T>> {
        match self.text(i) {
            None => Some(None),
            Some(_) => self.req(i, parse).map(Some),
        }
    }

    fn string(&mut self, i: usize) -> Option<String> {
        self.req(i, |s| Ok(s.to_owned()))
    }

    fn customer(&mut self) -> Option<Customer> {
        let customer_id = self.req(0, CustomerId::parse);
        let name = self.string(1);
        let gender = self.req(2, Gender::parse);
        let birth_date = self.opt(3, Date::parse);
        let region = self.string(4);
        let city = self.string(5);
        let channel = self.req(6, AcquisitionChannel::parse);
        let joined_at = self.req(7, Date::parse);
        let tier = self.string(8);
        let attributes = self.opt(9, Attributes::parse);
        Some(Customer {
            customer_id: customer_id?,
            name: name?,
            gender: gender?,
            birth_date: birth_date?,
            region: region?,
            city: city?,
            channel: channel?,
            joined_at: joined_at?,
            tier: tier?,
            attributes: attributes?.unwrap_or_default(),
        })
    }

    fn product(&mut self) -> Option<Product> {
        let sku = self.req(0, Sku::parse);
        let name = self.string(1);
        let category = self.string(2);
        let brand = self.string(3);
        let unit_price = self.req(4, Money::parse);
        let unit_cost = self.req(5, Money::parse);
        let attributes = self.opt(6, Attributes::parse);
        Some(Product {
            sku: sku?,
            name: name?,
            category: category?,
            brand: brand?,
            unit_price: unit_price?,
            unit_cost: unit_cost?,
            attributes: attributes?.unwrap_or_default(),
        })
    }

    fn transaction(&mut self) -> Option<Transaction> {
        let txn_id = self.req(0, TxnId::parse);
        let customer_id = self.req(1, CustomerId::parse);
        let ts = self.req(2, Timestamp::parse);
        let sku = self.req(3, Sku::parse);
        let quantity = self.req(4, parse_quantity);
        let amount = self.req(5, Money::parse);
        let cost = self.req(6, Money::parse);
        let channel = self.req(7, SalesChannel::parse);
        let region = self.string(8);
        Some(Transaction {
            txn_id: txn_id?,
            customer_id: customer_id?,
            ts: ts?,
            sku: sku?,
            quantity: quantity?,
            amount: amount?,
            cost: cost?,
            channel: channel?,
            region: region?,
        })
    }

    fn interaction(&mut self) -> Option<Interaction> {
        let interaction_id = self.req(0, InteractionId::parse);
        let customer_id = self.req(1, CustomerId::parse);
        let ts = self.req(2, Timestamp::parse);
        let kind = self.req(3, InteractionKind::parse);
        let department = self.req(4, Department::parse);
        let sku = self.opt(5, Sku::parse);
        let rep = self.opt(6, |s| Ok(s.to_owned()));
        let region = self.string(7);
        let topic = self.opt(8, Topic::parse);
        let resolved_ts = self.opt(9, Timestamp::parse);
        let rating = self.opt(10, parse_rating);
        let campaign_id = self.opt(11, CampaignId::parse);
        Some(Interaction {
            interaction_id: interaction_id?,
            customer_id: customer_id?,
            ts: ts?,
            kind: kind?,
            department: department?,
            sku: sku?,
            rep: rep?,
            region: region?,
            topic: topic?,
            resolved_ts: resolved_ts?,
            rating: rating?,
            campaign_id: campaign_id?,
        })
    }

    fn campaign(&mut self) -> Option<Campaign> {
        let campaign_id = self.req(0, CampaignId::parse);
        let name = self.string(1);
        let channel = self.req(2, CampaignChannel::parse);
        let start_date = self.req(3, Date::parse);
        let end_date = self.req(4, Date::parse);
        let cost = self.req(5, Money::parse);
        Some(Campaign {
            campaign_id: campaign_id?,
            name: name?,
            channel: channel?,
            start_date: start_date?,
            end_date: end_date?,
            cost: cost?,
        })
    }
}

fn parse_quantity(text: &str) -> Result<u32, InvalidValue> {
    match text.parse::<i64>() {
        Ok(q) if q >= 1 && q <= u32::MAX as i64 => Ok(q as u32),
        Ok(q) if q < 1 => Err(InvalidValue::new(format!("must be at least 1, got {q}"))),
        _ => Err(InvalidValue::new(format!(
            "'{text}' is not a whole number of units"
        ))),
    }
}

fn parse_rating(text: &str) -> Result<u8, InvalidValue> {
    match text.parse::<u8>() {
        Ok(r) => Ok(r),
        Err(_) => Err(InvalidValue::new(format!(
            "'{text}' is not a rating from 1 to 5"
        ))),
    }
}

/// The ids a record refers to: `(column, kind, id)`.
pub fn references(record: &Record) -> Vec<(&'static str, EntityKind, &str)> {
    match record {
        Record::Transaction(t) => vec![
            ("customer_id", EntityKind::Customer, t.customer_id.as_str()),
            ("sku", EntityKind::Product, t.sku.as_str()),
        ],
        Record::Interaction(i) => {
            let mut refs = vec![("customer_id", EntityKind::Customer, i.customer_id.as_str())];
            if let Some(sku) = &i.sku {
                refs.push(("sku", EntityKind::Product, sku.as_str()));
            }
            if let Some(campaign) = &i.campaign_id {
                refs.push(("campaign_id", EntityKind::Campaign, campaign.as_str()));
            }
            refs
        }
        _ => Vec::new(),
    }
}

/// The header line of a kind's file.
pub fn write_header(kind: EntityKind, out: &mut Vec<u8>) {
    let names: Vec<&str> = columns(kind).iter().map(|c| c.name).collect();
    out.extend_from_slice(names.join(",").as_bytes());
    out.push(b'\n');
}

/// Appends one record as a line of its kind's file.
pub fn write_record(record: &Record, out: &mut Vec<u8>) {
    let mut line = Line { out, first: true };
    match record {
        Record::Customer(c) => {
            line.text(c.customer_id.as_str());
            line.text(&c.name);
            line.text(c.gender.as_str());
            line.opt(c.birth_date);
            line.text(&c.region);
            line.text(&c.city);
            line.text(c.channel.as_str());
            line.display(c.joined_at);
            line.text(&c.tier);
            line.quoted(c.attributes.as_str());
        }
        Record::Product(p) => {
            line.text(p.sku.as_str());
            line.text(&p.name);
            line.text(&p.category);
            line.text(&p.brand);
            line.display(p.unit_price);
            line.display(p.unit_cost);
            line.quoted(p.attributes.as_str());
        }
        Record::Campaign(c) => {
            line.text(c.campaign_id.as_str());
            line.text(&c.name);
            line.text(c.channel.as_str());
            line.display(c.start_date);
            line.display(c.end_date);
            line.display(c.cost);
        }
        Record::Transaction(t) => {
            line.text(t.txn_id.as_str());
            line.text(t.customer_id.as_str());
            line.display(t.ts);
            line.text(t.sku.as_str());
            line.display(t.quantity);
            line.display(t.amount);
            line.display(t.cost);
            line.text(t.channel.as_str());
            line.text(&t.region);
        }
        Record::Interaction(i) => {
            line.text(i.interaction_id.as_str());
            line.text(i.customer_id.as_str());
            line.display(i.ts);
            line.text(i.kind.as_str());
            line.text(i.department.as_str());
            line.opt(i.sku.as_ref().map(|s| s.as_str()));
            line.opt(i.rep.as_deref());
            line.text(&i.region);
            line.opt(i.topic.map(|t| t.as_str()));
            line.opt(i.resolved_ts);
            line.opt(i.rating);
            line.opt(i.campaign_id.as_ref().map(|c| c.as_str()));
        }
    }
    line.out.push(b'\n');
}

struct Line<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Line<'_> {
    fn separate(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    fn text(&mut self, value: &str) {
        self.separate();
        if value
            .bytes()
            .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
        {
            self.quote(value);
        } else {
            self.out.extend_from_slice(value.as_bytes());
        }
    }

    fn quoted(&mut self, value: &str) {
        self.separate();
        self.quote(value);
    }

    fn quote(&mut self, value: &str) {
        self.out.push(b'"');
        for part in value.split_inclusive('"') {
            self.out.extend_from_slice(part.as_bytes());
            if part.ends_with('"') {
                self.out.push(b'"');
            }
        }
        self.out.push(b'"');
    }

    fn display(&mut self, value: impl std::fmt::Display) {
        self.separate();
        use std::io::Write;
        write!(self.out, "{value}").expect("writing to a Vec cannot fail");
    }

    fn opt(&mut self, value: Option<impl std::fmt::Display>) {
        match value {
            Some(v) => {
                // Optional text may need quoting like any text.
                let text = v.to_string();
                self.text(&text);
            }
            None => self.separate(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(kind: EntityKind) -> Layout {
        let header: Vec<&str> = columns(kind).iter().map(|c| c.name).collect();
        Layout::from_header(kind, &header).unwrap()
    }

    #[test]
    fn a_reference_row_round_trips_byte_for_byte() {
        let line = "C0000007,\"Taylor, Zoë\",F,1980-02-29,South,Córdoba,referral,2019-05-01,gold,\
                    \"{\"\"license_no\"\":\"\"12\"\",\"\"monthly_quota\"\":60}\"\n";
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_bytes());
        let record = reader.records().next().unwrap().unwrap();
        let fields: Vec<&str> = record.iter().collect();
        let parsed = layout(EntityKind::Customer).parse(&fields).unwrap();
        let mut out = Vec::new();
        write_record(&parsed, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), line);
    }

    #[test]
    fn every_bad_field_of_a_row_is_reported() {
        let fields = [
            "T1",
            "C1",
            "2025-02-30T10:00:00Z",
            "P1",
            "-2",
            "1.234",
            "",
            "shop",
            "North",
        ];
        let errors = layout(EntityKind::Transaction).parse(&fields).unwrap_err();
        let shown: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.column, e.reason))
            .collect();
        assert_eq!(
            shown,
            [
                "ts: invalid timestamp '2025-02-30T10:00:00Z': February 2025 has 28 days",
                "quantity: must be at least 1, got -2",
                "amount: invalid amount '1.234': more than two decimals",
                "cost: is empty",
                "channel: unknown sales channel 'shop' (expected store, online, phone or field)",
            ]
        );
    }

    #[test]
    fn headers_name_unknown_and_missing_columns() {
        let problems = Layout::from_header(
            EntityKind::Campaign,
            &["campaign_id", "nme", "channel", "channel"],
        )
        .unwrap_err();
        assert_eq!(
            problems[0],
            "unknown column 'nme' (the columns are campaign_id, name, channel, start_date, end_date, cost)"
        );
        assert_eq!(problems[1], "column 'channel' appears twice");
        assert_eq!(problems[2], "missing column 'name'");
        assert_eq!(problems.len(), 6);
    }
}
