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

use super::ScoreView;

/// The 360 document, borrowed from the snapshot.
#[derive(Serialize)]
struct View<'a> {
    customer: CustomerRow<'a>,
    metrics: analysis::Metrics,
    scores: Vec<ScoreView>,
    segments: Option<Vec<String>>,
    timeline: Vec<Item<'a>>,
    timeline_more: u64,
}

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

/// `TimelineItem`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Item<'a> {
    Transaction(Txn<'a>),
    Interaction(Contact<'a>),
}

/// `model::Transaction`.
#[derive(Serialize)]
struct Txn<'a> {
    txn_id: String,
    customer_id: &'a str,
    ts: Timestamp,
    sku: &'a str,
    quantity: u32,
    amount: Money,
    cost: Money,
    channel: SalesChannel,
    region: &'a str,
}

/// `model::Interaction`.
#[derive(Serialize)]
struct Contact<'a> {
    interaction_id: String,
    customer_id: &'a str,
    ts: Timestamp,
    kind: InteractionKind,
    department: Department,
    sku: Option<&'a str>,
    rep: Option<&'a str>,
    region: &'a str,
    topic: Option<Topic>,
    resolved_ts: Option<Timestamp>,
    rating: Option<u8>,
    campaign_id: Option<&'a str>,
}

/// The 360 of snapshot row `row` as JSON, with the newest `limit` entries
/// of its timeline; `None` if a column holds a code the model does not
/// know (the caller then reads the store).
pub(super) fn view_json(
    s: &Snapshot,
    row: u32,
    limit: usize,
    metrics: analysis::Metrics,
    scores: Vec<ScoreView>,
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
    let mut timeline = Vec::with_capacity(shown);
    for (_, kind, k) in order {
        let k = k as usize;
        timeline.push(if kind == 0 {
            Item::Transaction(Txn {
                txn_id: s.dicts.txn_ids.get(txns.id[k]),
                customer_id,
                ts: Timestamp::from_seconds(txns.ts[k]),
                sku: product(txns.product[k])?,
                quantity: txns.quantity[k],
                amount: Money::from_cents(txns.amount[k]),
                cost: Money::from_cents(txns.cost[k]),
                channel: SalesChannel::from_index(txns.channel[k])?,
                region: s.dicts.sale_region.get(txns.region[k]),
            })
        } else {
            Item::Interaction(Contact {
                interaction_id: s.dicts.interaction_ids.get(contacts.id[k]),
                customer_id,
                ts: Timestamp::from_seconds(contacts.ts[k]),
                kind: InteractionKind::from_index(contacts.kind[k])?,
                department: Department::from_index(contacts.department[k])?,
                sku: product(contacts.product[k]),
                rep: (contacts.rep[k] != NONE).then(|| s.dicts.rep.get(contacts.rep[k])),
                region: s.dicts.contact_region.get(contacts.region[k]),
                topic: match contacts.topic[k] {
                    u8::MAX => None,
                    t => Some(Topic::from_index(t)?),
                },
                resolved_ts: (contacts.resolved[k] != NO_TS)
                    .then(|| Timestamp::from_seconds(contacts.resolved[k])),
                rating: (contacts.rating[k] != 0).then_some(contacts.rating[k]),
                campaign_id: match contacts.campaign[k] {
                    NONE => None,
                    code => Some(s.campaigns.get(code as usize)?.id.as_str()),
                },
            })
        });
    }
    let view = View {
        customer,
        metrics,
        scores,
        segments,
        timeline,
        timeline_more: (total - shown) as u64,
    };
    let mut json = Vec::with_capacity(1024 + 256 * view.timeline.len());
    serde_json::to_writer(&mut json, &view).ok()?;
    Some(json)
}
