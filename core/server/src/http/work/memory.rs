//! The customer 360 read from the analysis snapshot alone: the record, its
//! revision and the timeline's lines (with their ids) are all in its
//! columns, so a view costs no store read. The document is the one the
//! store path gives (`CustomerView`), field for field; a test compares the
//! two on every customer of a data set.

use analysis::snapshot::{NO_DAY, NO_TS, NONE, Snapshot};
use model::{
    AcquisitionChannel, Date, Department, Gender, InteractionKind, Money, SalesChannel, Timestamp,
    Topic,
};
use serde::Serialize;
use serde_json::value::RawValue;

/// `model::Customer` with its revision, as `Revised<Customer>` writes it.
#[derive(Serialize)]
struct CustomerRow<'a> {
    revision: u64,
    customer_id: &'a str,
    name: &'a str,
    gender: Gender,
    birth_date: Option<Date>,
    region: &'a str,
    city: &'a str,
    channel: AcquisitionChannel,
    joined_at: Date,
    tier: &'a str,
    attributes: &'a RawValue,
}

/// The 360 of snapshot row `row` as JSON, with the newest `limit` entries
/// of its timeline; `None` if a column holds a code the model does not
/// know (the caller then reads the store).
pub(super) fn view_json(
    s: &Snapshot,
    row: u32,
    limit: usize,
    metrics: analysis::Metrics,
    scores: &[u8],
    segments: Option<Vec<String>>,
) -> Option<Vec<u8>> {
    let c = &s.customers;
    let i = row as usize;
    let customer_id = c.ids.get(i);
    let customer = CustomerRow {
        revision: c.revision[i],
        customer_id,
        name: c.names.get(i),
        gender: Gender::from_index(c.gender[i])?,
        birth_date: (c.birth[i] != NO_DAY).then(|| Date::from_days(c.birth[i])),
        region: s.dicts.region.get(c.region[i]),
        city: s.dicts.city.get(c.city[i]),
        channel: AcquisitionChannel::from_index(c.channel[i])?,
        joined_at: Date::from_days(c.joined[i]),
        tier: s.dicts.tier.get(c.tier[i]),
        attributes: serde_json::from_str(c.attributes.get(i)).ok()?,
    };
    let txns = s.txns.of(row);
    let contacts = s.interactions.of(row);
    // Newest first; lines of the same time in the order the store gives
    // them, transactions before interactions (as the store path sorts).
    let mut order: Vec<(std::cmp::Reverse<i64>, u8, u32)> = txns
        .ts
        .iter()
        .enumerate()
        .map(|(k, &ts)| (std::cmp::Reverse(ts), 0, k as u32))
        .chain(
            contacts
                .ts
                .iter()
                .enumerate()
                .map(|(k, &ts)| (std::cmp::Reverse(ts), 1, k as u32)),
        )
        .collect();
    let total = order.len();
    let shown = limit.min(total);
    if shown < total && shown > 0 {
        order.select_nth_unstable(shown - 1);
    }
    order.truncate(shown);
    order.sort_unstable();
    let product = |code: u32| (code != NONE).then(|| s.products.skus[code as usize].as_str());

    let mut out = Json(Vec::with_capacity(1024 + 256 * shown));
    out.raw("{\"customer\":");
    out.value(&customer)?;
    out.raw(",\"metrics\":");
    out.value(&metrics)?;
    out.raw(",\"scores\":");
    out.0.extend_from_slice(scores);
    out.raw(",\"segments\":");
    out.value(&segments)?;
    out.raw(",\"timeline\":[");
    let mut id = String::with_capacity(32);
    for (n, (_, kind, k)) in order.into_iter().enumerate() {
        let k = k as usize;
        if n > 0 {
            out.raw(",");
        }
        // The fields both kinds begin with: type, id, customer, time.
        id.clear();
        let (head, ts) = if kind == 0 {
            s.dicts.txn_ids.write(txns.id[k], &mut id);
            ("{\"type\":\"transaction\",\"txn_id\":", txns.ts[k])
        } else {
            s.dicts.interaction_ids.write(contacts.id[k], &mut id);
            (
                "{\"type\":\"interaction\",\"interaction_id\":",
                contacts.ts[k],
            )
        };
        out.raw(head);
        out.value(id.as_str())?;
        out.raw(",\"customer_id\":");
        out.value(customer_id)?;
        out.raw(",\"ts\":");
        out.value(&Timestamp::from_seconds(ts))?;
        if kind == 0 {
            out.raw(",\"sku\":");
            out.value(product(txns.product[k])?)?;
            out.raw(",\"quantity\":");
            out.value(&txns.quantity[k])?;
            out.raw(",\"amount\":");
            out.value(&Money::from_cents(txns.amount[k]))?;
            out.raw(",\"cost\":");
            out.value(&Money::from_cents(txns.cost[k]))?;
            out.raw(",\"channel\":");
            out.word(SalesChannel::from_index(txns.channel[k])?.as_str());
            out.raw(",\"region\":");
            out.value(s.dicts.sale_region.get(txns.region[k]))?;
        } else {
            out.raw(",\"kind\":");
            out.word(InteractionKind::from_index(contacts.kind[k])?.as_str());
            out.raw(",\"department\":");
            out.word(Department::from_index(contacts.department[k])?.as_str());
            out.raw(",\"sku\":");
            out.value(&product(contacts.product[k]))?;
            out.raw(",\"rep\":");
            out.value(&(contacts.rep[k] != NONE).then(|| s.dicts.rep.get(contacts.rep[k])))?;
            out.raw(",\"region\":");
            out.value(s.dicts.contact_region.get(contacts.region[k]))?;
            out.raw(",\"topic\":");
            match contacts.topic[k] {
                u8::MAX => out.raw("null"),
                t => out.word(Topic::from_index(t)?.as_str()),
            }
            out.raw(",\"resolved_ts\":");
            out.value(
                &(contacts.resolved[k] != NO_TS)
                    .then(|| Timestamp::from_seconds(contacts.resolved[k])),
            )?;
            out.raw(",\"rating\":");
            out.value(&(contacts.rating[k] != 0).then_some(contacts.rating[k]))?;
            out.raw(",\"campaign_id\":");
            match contacts.campaign[k] {
                NONE => out.raw("null"),
                code => out.value(s.campaigns.get(code as usize)?.id.as_str())?,
            }
        }
        out.raw("}");
    }
    out.raw("],\"timeline_more\":");
    out.value(&((total - shown) as u64))?;
    out.raw("}");
    Some(out.0)
}

/// JSON written piece by piece: the document's fixed parts (braces, keys)
/// as they are, values through serde_json. A timeline entry has ten to
/// thirteen keys; written through a derived `Serialize`, each key is
/// escaped anew on every entry.
struct Json(Vec<u8>);

impl Json {
    /// JSON text as it is (keys, punctuation, `null`).
    fn raw(&mut self, text: &str) {
        self.0.extend_from_slice(text.as_bytes());
    }

    /// A string that needs no escaping (a closed vocabulary's word).
    fn word(&mut self, text: &str) {
        debug_assert!(!text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20));
        self.0.push(b'"');
        self.0.extend_from_slice(text.as_bytes());
        self.0.push(b'"');
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Option<()> {
        serde_json::to_writer(&mut self.0, value).ok()
    }
}
