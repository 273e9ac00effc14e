//! The customer 360 read from the analysis snapshot alone: the record, its
//! revision and the timeline's lines (with their ids) are all in its
//! columns, so a view costs no store read. The document is the one the
//! store path gives (`CustomerView`), field for field; a test compares the
//! two on every customer of a data set.

use analysis::Metrics;
use analysis::snapshot::{NO_DAY, NO_TS, NONE, Snapshot};
use model::{
    AcquisitionChannel, Date, Department, Gender, InteractionKind, Money, SalesChannel, Timestamp,
    Topic,
};

use app::json::Json;

/// The 360 of snapshot row `row` as JSON, with the newest `limit` entries
/// of its timeline (`scores` and `segments` write their parts); `None` if
/// a column holds a code the model does not know, or `scores` could not
/// write them (the caller then reads the store).
pub(super) fn view_json(
    s: &Snapshot,
    row: u32,
    limit: usize,
    metrics: Metrics,
    scores: impl FnOnce(&mut Json) -> bool,
    segments: impl FnOnce(&mut Json),
) -> Option<Vec<u8>> {
    let c = &s.customers;
    let i = row as usize;
    let customer_id = c.ids.get(i);
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

    let mut out = Json::with_capacity(1024 + 256 * shown);
    // `Revised<Customer>`: the revision, then the record's fields.
    out.raw("{\"customer\":{\"revision\":");
    out.u64(c.revision[i]);
    out.raw(",\"customer_id\":");
    // The id as written, for every entry of the timeline.
    let id_json = out.0.len();
    out.text(customer_id);
    let id_json = id_json..out.0.len();
    out.raw(",\"name\":");
    out.text(c.names.get(i));
    out.raw(",\"gender\":");
    out.word(Gender::from_index(c.gender[i])?.as_str());
    out.raw(",\"birth_date\":");
    out.opt(
        (c.birth[i] != NO_DAY).then(|| Date::from_days(c.birth[i])),
        Json::date,
    );
    out.raw(",\"region\":");
    out.text(s.dicts.region.get(c.region[i]));
    out.raw(",\"city\":");
    out.text(s.dicts.city.get(c.city[i]));
    out.raw(",\"channel\":");
    out.word(AcquisitionChannel::from_index(c.channel[i])?.as_str());
    out.raw(",\"joined_at\":");
    out.date(Date::from_days(c.joined[i]));
    out.raw(",\"tier\":");
    out.text(s.dicts.tier.get(c.tier[i]));
    out.raw(",\"attributes\":");
    // Checked JSON, kept as given; serde_json's raw value drops the white
    // space around it.
    out.raw(c.attributes.get(i).trim_matches([' ', '\t', '\n', '\r']));
    out.raw("},\"metrics\":");
    write_metrics(&mut out, &metrics);
    out.raw(",\"scores\":");
    if !scores(&mut out) {
        return None;
    }
    out.raw(",\"segments\":");
    segments(&mut out);
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
        out.text(&id);
        out.raw(",\"customer_id\":");
        out.0.extend_from_within(id_json.clone());
        out.raw(",\"ts\":");
        out.timestamp(Timestamp::from_seconds(ts));
        if kind == 0 {
            out.raw(",\"sku\":");
            out.text(product(txns.product[k])?);
            out.raw(",\"quantity\":");
            out.i64(txns.quantity[k].into());
            out.raw(",\"amount\":");
            out.money(Money::from_cents(txns.amount[k]));
            out.raw(",\"cost\":");
            out.money(Money::from_cents(txns.cost[k]));
            out.raw(",\"channel\":");
            out.word(SalesChannel::from_index(txns.channel[k])?.as_str());
            out.raw(",\"region\":");
            out.text(s.dicts.sale_region.get(txns.region[k]));
        } else {
            out.raw(",\"kind\":");
            out.word(InteractionKind::from_index(contacts.kind[k])?.as_str());
            out.raw(",\"department\":");
            out.word(Department::from_index(contacts.department[k])?.as_str());
            out.raw(",\"sku\":");
            out.opt_text(product(contacts.product[k]));
            out.raw(",\"rep\":");
            out.opt_text((contacts.rep[k] != NONE).then(|| s.dicts.rep.get(contacts.rep[k])));
            out.raw(",\"region\":");
            out.text(s.dicts.contact_region.get(contacts.region[k]));
            out.raw(",\"topic\":");
            match contacts.topic[k] {
                u8::MAX => out.raw("null"),
                t => out.word(Topic::from_index(t)?.as_str()),
            }
            out.raw(",\"resolved_ts\":");
            out.opt(
                (contacts.resolved[k] != NO_TS)
                    .then(|| Timestamp::from_seconds(contacts.resolved[k])),
                Json::timestamp,
            );
            out.raw(",\"rating\":");
            out.opt(
                (contacts.rating[k] != 0).then_some(contacts.rating[k].into()),
                Json::u64,
            );
            out.raw(",\"campaign_id\":");
            match contacts.campaign[k] {
                NONE => out.raw("null"),
                code => out.text(s.campaigns.get(code as usize)?.id.as_str()),
            }
        }
        out.raw("}");
    }
    out.raw("],\"timeline_more\":");
    out.u64((total - shown) as u64);
    out.raw("}");
    Some(out.0)
}

/// `analysis::Metrics` as its derived `Serialize` writes it.
pub(super) fn write_metrics(out: &mut Json, m: &Metrics) {
    out.raw("{\"revenue\":");
    out.money(m.revenue);
    out.raw(",\"cost\":");
    out.money(m.cost);
    out.raw(",\"margin\":");
    out.money(m.margin);
    out.raw(",\"lines\":");
    out.u64(m.lines.into());
    out.raw(",\"baskets\":");
    out.u64(m.baskets.into());
    out.raw(",\"first_purchase\":");
    out.opt(m.first_purchase, Json::date);
    out.raw(",\"last_purchase\":");
    out.opt(m.last_purchase, Json::date);
    out.raw(",\"recency_days\":");
    out.opt(m.recency_days, Json::i64);
    out.raw(",\"avg_interbasket_days\":");
    out.opt(m.avg_interbasket_days, Json::f64);
    out.raw(",\"r\":");
    out.opt(m.r.map(u64::from), Json::u64);
    out.raw(",\"f\":");
    out.opt(m.f.map(u64::from), Json::u64);
    out.raw(",\"m\":");
    out.opt(m.m.map(u64::from), Json::u64);
    out.raw(",\"rfm_segment\":");
    out.opt_text(m.rfm_segment);
    out.raw(",\"churn_risk\":");
    out.bool(m.churn_risk);
    out.raw(",\"avg_rating\":");
    out.opt(m.avg_rating, Json::f64);
    out.raw(",\"surveys\":");
    out.u64(m.surveys.into());
    out.raw(",\"open_opinions\":");
    out.u64(m.open_opinions.into());
    out.raw(",\"as_of\":");
    out.opt(m.as_of, Json::date);
    out.raw("}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field named (a new one fails to compile here until the writer
    /// writes it too).
    fn metrics(n: i64) -> Metrics {
        Metrics {
            revenue: Money::from_cents(529_711 * n),
            cost: Money::from_cents(-480_921 * n),
            margin: Money::from_cents(48_790 + n),
            lines: 13 * n as u32,
            baskets: 4,
            first_purchase: (n > 0).then(|| Date::from_days(19_440)),
            last_purchase: (n > 1).then(|| Date::from_days(19_906 + n as i32)),
            recency_days: (n != 1).then_some(548 - n),
            avg_interbasket_days: (n > 0).then_some(155.333_333_333_333_34 * n as f64),
            r: (n > 0).then_some(1),
            f: (n > 1).then_some(4),
            m: (n != 2).then_some(5),
            rfm_segment: (n > 0).then_some("loyal"),
            churn_risk: n % 2 == 0,
            avg_rating: (n == 3).then_some(f64::NAN).or((n > 3).then_some(4.25)),
            surveys: n as u32,
            open_opinions: 2,
            as_of: (n != 4).then(|| Date::from_days(20_454)),
        }
    }

    #[test]
    fn metrics_are_written_as_serde_writes_them() {
        for n in 0..6 {
            let m = metrics(n);
            let mut out = Json::with_capacity(0);
            write_metrics(&mut out, &m);
            assert_eq!(
                String::from_utf8(out.0).unwrap(),
                serde_json::to_string(&m).unwrap(),
                "{m:?}"
            );
        }
    }
}
