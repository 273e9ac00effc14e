//! Customers, products, campaigns, transaction lines and interactions:
//! create, read, replace, delete and list, one set of handlers for all five.
//!
//! Customers, products and campaigns carry a revision, given as ETag and
//! required as If-Match to replace them (412 when it moved on). Lists are
//! read from the analysis snapshot, which holds every record's fields in
//! memory: filters, search and sort are a pass over its columns, and a page
//! is fetched from the store by id. Lines are listed per customer through
//! the store's index.

use std::cmp::Ordering;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::NoContent;
use model::{Campaign, Customer, EntityKind, Interaction, Product, Record, Transaction};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::problem::{
    Body, Created, Path, Problem, Query, Replacement, Tagged, if_match, required_if_match,
};
use super::{AppState, Caller, READERS, require};
use app::tokens::Role;

/// A kind of record the API serves.
pub(crate) trait Entity:
    Serialize + DeserializeOwned + JsonSchema + Clone + Send + Sync + 'static
{
    const KIND: EntityKind;
    /// Who may create, change and delete it (admins always may).
    const WRITERS: &'static [Role];
    fn id(&self) -> &str;
    fn into_record(self) -> Record;
    fn from_record(record: Record) -> Option<Self>;
    /// Whether it has a revision (customers, products, campaigns).
    fn revised() -> bool {
        !matches!(
            Self::KIND,
            EntityKind::Transaction | EntityKind::Interaction
        )
    }
}

macro_rules! entity {
    ($t:ident, $kind:ident, $id:ident, $writers:expr) => {
        impl Entity for $t {
            const KIND: EntityKind = EntityKind::$kind;
            const WRITERS: &'static [Role] = $writers;
            fn id(&self) -> &str {
                self.$id.as_str()
            }
            fn into_record(self) -> Record {
                Record::$kind(self)
            }
            fn from_record(record: Record) -> Option<Self> {
                match record {
                    Record::$kind(r) => Some(r),
                    _ => None,
                }
            }
        }
    };
}

entity!(
    Customer,
    Customer,
    customer_id,
    &[Role::Agent, Role::Integrator]
);
entity!(Product, Product, sku, &[Role::Integrator]);
entity!(Campaign, Campaign, campaign_id, &[Role::Integrator]);
entity!(Transaction, Transaction, txn_id, &[Role::Integrator]);
entity!(
    Interaction,
    Interaction,
    interaction_id,
    &[Role::Agent, Role::Integrator]
);

/// A record with its revision (absent for lines).
#[derive(Serialize, JsonSchema)]
pub(crate) struct Revised<T> {
    /// Grows by one with every change; send it back as If-Match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    #[serde(flatten)]
    pub record: T,
}

/// The id in a record's URL.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct IdPath {
    /// The record's id.
    pub id: String,
}

/// What a write answers.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Written {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
}

fn location<T: Entity>(id: &str) -> String {
    format!(
        "/api/v1/{}/{}",
        T::KIND.plural(),
        super::percent_encode_segment(id)
    )
}

fn missing<T: Entity>(id: &str) -> Problem {
    Problem::not_found(format!("no {} '{id}'", T::KIND.singular()))
}

/// `GET /api/v1/{kind}/{id}`.
pub(crate) async fn get_one<T: Entity>(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(IdPath { id }): Path<IdPath>,
) -> Result<Tagged<Revised<T>>, Problem> {
    require(&caller, READERS, &format!("read {}", T::KIND.plural()))?;
    let (revision, record) = if T::revised() {
        match state.store.get_revised(T::KIND, &id)? {
            Some((rev, record)) => (Some(rev), record),
            None => return Err(missing::<T>(&id)),
        }
    } else {
        match state.store.get(T::KIND, &id)? {
            Some(record) => (None, record),
            None => return Err(missing::<T>(&id)),
        }
    };
    let record = T::from_record(record).ok_or_else(|| missing::<T>(&id))?;
    Ok(Tagged(revision.unwrap_or(0), Revised { revision, record }))
}

/// `POST /api/v1/{kind}`: creates a record (409 when the id is taken).
pub(crate) async fn create<T: Entity>(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Body(record): Body<T>,
) -> Result<Created<Written>, Problem> {
    require(&caller, T::WRITERS, &format!("create {}", T::KIND.plural()))?;
    let id = record.id().to_owned();
    let revision = state
        .write(caller.actor(), record.into_record(), store::Expect::New)
        .await
        .map_err(|e| match e {
            app::WriteError::Store(store::StoreError::Conflict(_)) => Problem::new(
                StatusCode::CONFLICT,
                "Exists already",
                format!("{} '{id}' exists already", T::KIND.singular()),
            )
            .at(id_field::<T>()),
            other => other.into(),
        })?;
    Ok(Created {
        location: location::<T>(&id),
        revision,
        body: Written { id, revision },
    })
}

fn id_field<T: Entity>() -> &'static str {
    match T::KIND {
        EntityKind::Customer => "customer_id",
        EntityKind::Product => "sku",
        EntityKind::Campaign => "campaign_id",
        EntityKind::Transaction => "txn_id",
        EntityKind::Interaction => "interaction_id",
    }
}

/// `PUT /api/v1/{kind}/{id}`: replaces a record. Customers, products and
/// campaigns need the ETag read as If-Match (428 without, 412 when stale);
/// lines are replaced (or created) as given.
pub(crate) async fn replace<T: Entity>(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(IdPath { id }): Path<IdPath>,
    headers: HeaderMap,
    Replacement { revision, record }: Replacement<T>,
) -> Result<Tagged<Written>, Problem> {
    require(&caller, T::WRITERS, &format!("change {}", T::KIND.plural()))?;
    let expect = if T::revised() {
        // The revision of the record as read: If-Match, or the body's own
        // (what GET returned), which must agree when both are given.
        let revision = match (if_match(&headers)?, revision) {
            (Some(a), Some(b)) if a != b => {
                return Err(Problem::bad_request(
                    "Invalid body",
                    format!("the body's revision is {b}, If-Match says {a}"),
                )
                .at("revision"));
            }
            (Some(rev), _) | (None, Some(rev)) => rev,
            (None, None) => required_if_match(&headers, T::KIND.singular())?,
        };
        store::Expect::Revision(revision)
    } else {
        store::Expect::Any
    };
    if record.id() != id {
        return Err(Problem::bad_request(
            "Invalid body",
            format!(
                "the body is {} {}, the URL {id}",
                T::KIND.singular(),
                record.id()
            ),
        )
        .at(id_field::<T>()));
    }
    let revision = state
        .write(caller.actor(), record.into_record(), expect)
        .await?;
    Ok(Tagged(
        revision.unwrap_or(0),
        Written {
            id: id.clone(),
            revision,
        },
    ))
}

/// `DELETE /api/v1/{kind}/{id}`: deletes a record; If-Match is checked
/// when given. A customer with lines, or a product or campaign that lines
/// name, is not deleted (409).
pub(crate) async fn delete<T: Entity>(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(IdPath { id }): Path<IdPath>,
    headers: HeaderMap,
) -> Result<NoContent, Problem> {
    require(&caller, T::WRITERS, &format!("delete {}", T::KIND.plural()))?;
    let expect = match if_match(&headers)? {
        Some(rev) if T::revised() => store::Expect::Revision(rev),
        _ => store::Expect::Any,
    };
    if state
        .crm
        .delete(caller.actor(), T::KIND, &id, expect)
        .await?
    {
        Ok(NoContent)
    } else {
        Err(missing::<T>(&id))
    }
}

/// One page of a list.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    /// Give as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// How many records match the filters, over all pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// Most items in a page.
pub(crate) const MAX_LIMIT: usize = 500;

fn page_size(limit: Option<u32>) -> Result<usize, Problem> {
    super::problem::page_limit(limit, 50, MAX_LIMIT)
}

/// Filters and order of a customer list.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CustomerQuery {
    /// Search: the start of an id, or part of a name, with case and accents
    /// ignored ("jose" finds "José"; Chinese names by any of their characters).
    pub q: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
    pub tier: Option<String>,
    /// Acquisition channel.
    pub channel: Option<String>,
    pub gender: Option<String>,
    /// Joined on or after this day (YYYY-MM-DD).
    #[schemars(extend("format" = "date"))]
    pub joined_from: Option<String>,
    /// Joined on or before this day (YYYY-MM-DD).
    #[schemars(extend("format" = "date"))]
    pub joined_to: Option<String>,
    /// Only the members of this saved segment (as its memberships were
    /// last refreshed, within about a second of a change).
    pub segment: Option<String>,
    /// customer_id, name or joined_at; a leading - sorts descending.
    #[schemars(regex(pattern = r"^-?(customer_id|name|joined_at)$"))]
    pub sort: Option<String>,
    /// The `next` of the previous page.
    pub after: Option<String>,
    /// Items per page, 1 to 500 (50 by default).
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
}

/// The customers of a list to export: its search, filters and order.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CustomerExportQuery {
    /// As for the list: the start of an id, or part of a name.
    pub q: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
    pub tier: Option<String>,
    pub channel: Option<String>,
    pub gender: Option<String>,
    #[schemars(extend("format" = "date"))]
    pub joined_from: Option<String>,
    #[schemars(extend("format" = "date"))]
    pub joined_to: Option<String>,
    /// Only the members of this saved segment.
    pub segment: Option<String>,
    /// customer_id, name or joined_at; a leading - sorts descending.
    #[schemars(regex(pattern = r"^-?(customer_id|name|joined_at)$"))]
    pub sort: Option<String>,
}

impl From<CustomerExportQuery> for CustomerQuery {
    fn from(q: CustomerExportQuery) -> CustomerQuery {
        CustomerQuery {
            q: q.q,
            region: q.region,
            city: q.city,
            tier: q.tier,
            channel: q.channel,
            gender: q.gender,
            joined_from: q.joined_from,
            joined_to: q.joined_to,
            segment: q.segment,
            sort: q.sort,
            after: None,
            limit: None,
        }
    }
}

/// Filters and order of a product list.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProductQuery {
    /// The start of a sku, or part of a name (case and accents ignored).
    pub q: Option<String>,
    pub category: Option<String>,
    pub brand: Option<String>,
    /// sku, name or unit_price; a leading - sorts descending.
    #[schemars(regex(pattern = r"^-?(sku|name|unit_price)$"))]
    pub sort: Option<String>,
    pub after: Option<String>,
    /// Items per page, 1 to 500 (50 by default).
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
}

/// Filters of a campaign list (in id order).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CampaignQuery {
    pub channel: Option<String>,
    pub after: Option<String>,
    /// Items per page, 1 to 500 (50 by default).
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
}

/// Filters of a list of lines: one customer's (through the index), or
/// every customer's in customer order.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineQuery {
    pub customer_id: Option<String>,
    pub after: Option<String>,
    /// Items per page, 1 to 500 (50 by default).
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
}

/// The sort of a list: a key and a direction.
fn parse_sort(sort: Option<&str>, keys: &[&'static str]) -> Result<(&'static str, bool), Problem> {
    let text = sort.unwrap_or(keys[0]);
    let (desc, name) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    keys.iter()
        .find(|k| **k == name)
        .map(|k| (*k, desc))
        .ok_or_else(|| {
            Problem::bad_request(
                "Invalid sort",
                format!("cannot sort by {name:?}; sort by {}", keys.join(", ")),
            )
            .at("sort")
        })
}

/// Rows of `matched` after the row `after` in the order `cmp`, the first
/// `limit` of them, and whether more follow.
fn top_after(
    mut matched: Vec<u32>,
    after: Option<u32>,
    limit: usize,
    cmp: &(dyn Fn(u32, u32) -> Ordering + Sync),
) -> (Vec<u32>, bool) {
    if let Some(a) = after {
        matched.retain(|&r| cmp(r, a) == Ordering::Greater);
    }
    let more = matched.len() > limit;
    if more {
        matched.select_nth_unstable_by(limit, |&a, &b| cmp(a, b));
        matched.truncate(limit);
    }
    matched.sort_unstable_by(|&a, &b| cmp(a, b));
    (matched, more)
}

fn day(text: Option<&str>, field: &str) -> Result<Option<i32>, Problem> {
    text.map(|t| {
        model::Date::parse(t)
            .map(|d| d.days())
            .map_err(|e| Problem::bad_request("Invalid date", e.to_string()).at(field))
    })
    .transpose()
}

/// The rows of the customers `query` selects, in its order: after the
/// row `page.0` and the first `page.1` of them, or all when `page` is
/// `None`; whether more follow, and how many match in all.
fn customer_rows(
    state: &AppState,
    data: &app::Current,
    query: &CustomerQuery,
    page: Option<(Option<&str>, usize)>,
) -> Result<(Vec<u32>, bool, u64), Problem> {
    // A segment's members: the live memberships the server keeps, or,
    // while they are built, the segment evaluated now.
    let in_segment: Option<Vec<bool>> = match &query.segment {
        None => None,
        Some(name) => {
            let rows = match state.memberships.members(name) {
                Some(rows) => rows,
                None => super::segments::members(&data.base, name)?,
            };
            let mut member = vec![false; data.base.snapshot.customers.len()];
            for r in rows {
                if let Some(m) = member.get_mut(r as usize) {
                    *m = true;
                }
            }
            Some(member)
        }
    };
    let (sort, desc) = parse_sort(query.sort.as_deref(), &["customer_id", "name", "joined_at"])?;
    let from = day(query.joined_from.as_deref(), "joined_from")?;
    let to = day(query.joined_to.as_deref(), "joined_to")?;
    let s = &data.base.snapshot;
    let c = &s.customers;
    let dicts = &s.dicts;
    let code = |dict: &analysis::snapshot::Dict, v: &Option<String>| -> Option<Option<u32>> {
        v.as_ref().map(|v| dict.find(v))
    };
    let region = code(&dicts.region, &query.region);
    let city = code(&dicts.city, &query.city);
    let tier = code(&dicts.tier, &query.tier);
    let channel = query
        .channel
        .as_deref()
        .map(|v| model::AcquisitionChannel::parse(v).ok().map(|c| c.index()));
    let gender = query
        .gender
        .as_deref()
        .map(|v| model::Gender::parse(v).ok().map(|g| g.index()));
    let needle = query
        .q
        .as_deref()
        .map(app::search::fold)
        .filter(|q| !q.is_empty());
    let filtered = in_segment.is_some()
        || region.is_some()
        || city.is_some()
        || tier.is_some()
        || channel.is_some()
        || gender.is_some()
        || from.is_some()
        || to.is_some()
        || needle.is_some();
    let wanted = |r: u32| {
        let i = r as usize;
        let is = |want: Option<Option<u32>>, have: u32| want.is_none_or(|w| w == Some(have));
        let is8 = |want: Option<Option<u8>>, have: u8| want.is_none_or(|w| w == Some(have));
        in_segment.as_ref().is_none_or(|m| m[i])
            && is(region, c.region[i])
            && is(city, c.city[i])
            && is(tier, c.tier[i])
            && is8(channel, c.channel[i])
            && is8(gender, c.gender[i])
            && from.is_none_or(|f| c.joined[i] >= f)
            && to.is_none_or(|t| c.joined[i] <= t)
            && needle
                .as_deref()
                .is_none_or(|q| data.search.matches(c.id(r), i, q))
    };
    // In id order a page is read straight from the id index: only the
    // rows up to the page's end are looked at (and, with filters, every
    // row once more for the total).
    if sort == "customer_id"
        && let Some((after, limit)) = page
    {
        let total = if filtered {
            (0..c.len() as u32).filter(|&r| wanted(r)).count()
        } else {
            c.len()
        } as u64;
        let mut rows: Vec<u32> = c
            .in_id_order_after(after, desc)
            .filter(|&r| wanted(r))
            .take(limit + 1)
            .collect();
        let more = rows.len() > limit;
        rows.truncate(limit);
        return Ok((rows, more, total));
    }
    let matched: Vec<u32> = (0..c.len() as u32).filter(|&r| wanted(r)).collect();
    let total = matched.len() as u64;
    let cmp = |a: u32, b: u32| -> Ordering {
        let (x, y) = (a as usize, b as usize);
        let key = match sort {
            "name" => data.search.folded(x).cmp(data.search.folded(y)),
            "joined_at" => c.joined[x].cmp(&c.joined[y]),
            _ => Ordering::Equal,
        };
        let key = if desc { key.reverse() } else { key };
        let by_id = c.id(a).cmp(c.id(b));
        key.then(if desc && sort == "customer_id" {
            by_id.reverse()
        } else {
            by_id
        })
    };
    Ok(match page {
        Some((after, limit)) => {
            let after = after.and_then(|id| c.find(id));
            let (rows, more) = top_after(matched, after, limit, &cmp);
            (rows, more, total)
        }
        None => {
            let mut rows = matched;
            rows.sort_unstable_by(|&a, &b| cmp(a, b));
            (rows, false, total)
        }
    })
}

/// `GET /api/v1/customers`.
pub(crate) async fn list_customers(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<CustomerQuery>,
) -> Result<axum::Json<Page<Revised<Customer>>>, Problem> {
    require(&caller, READERS, "read customers")?;
    let limit = page_size(query.limit)?;
    let state2 = Arc::clone(&state);
    let (ids, more, total) = tokio::task::spawn_blocking(move || {
        let data = state2.read();
        let (rows, more, total) = customer_rows(
            &state2,
            &data,
            &query,
            Some((query.after.as_deref(), limit)),
        )?;
        let c = &data.base.snapshot.customers;
        let ids: Vec<String> = rows.iter().map(|&r| c.id(r).to_owned()).collect();
        Ok::<_, Problem>((ids, more, total))
    })
    .await
    .map_err(Problem::internal)??;
    fetch_page(&state, ids, more, Some(total))
}

/// `GET /api/v1/customers.csv`: the customers a list selects (every page),
/// in its order, as CSV in the import format, streamed.
pub(crate) async fn export_customers(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<CustomerExportQuery>,
) -> Result<super::problem::Csv, Problem> {
    require(&caller, READERS, "export customers")?;
    let query = CustomerQuery::from(query);
    let state2 = Arc::clone(&state);
    let ids = tokio::task::spawn_blocking(move || {
        let data = state2.read();
        let (rows, _, _) = customer_rows(&state2, &data, &query, None)?;
        let c = &data.base.snapshot.customers;
        Ok::<_, Problem>(rows.iter().map(|&r| c.id(r).to_owned()).collect::<Vec<_>>())
    })
    .await
    .map_err(Problem::internal)??;
    let body = super::export::csv_body(EntityKind::Customer, Arc::clone(&state.store), |store| {
        Box::new(
            ids.into_iter()
                .map(move |id| store.get(EntityKind::Customer, &id)),
        )
    });
    Ok(super::problem::Csv {
        file: "customers.csv".into(),
        body,
    })
}

/// `GET /api/v1/products`.
pub(crate) async fn list_products(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<ProductQuery>,
) -> Result<axum::Json<Page<Revised<Product>>>, Problem> {
    require(&caller, READERS, "read products")?;
    let limit = page_size(query.limit)?;
    let (sort, desc) = parse_sort(query.sort.as_deref(), &["sku", "name", "unit_price"])?;
    let (ids, more, total) = {
        let data = state.read();
        let s = &data.base.snapshot;
        let p = &s.products;
        let category = query.category.as_ref().map(|v| s.dicts.category.find(v));
        let brand = query.brand.as_ref().map(|v| s.dicts.brand.find(v));
        let needle = query
            .q
            .as_deref()
            .map(app::search::fold)
            .filter(|q| !q.is_empty());
        let matched: Vec<u32> = (0..p.len() as u32)
            .filter(|&r| {
                let i = r as usize;
                category.is_none_or(|c| c == Some(p.category[i]))
                    && brand.is_none_or(|b| b == Some(p.brand[i]))
                    && needle.as_deref().is_none_or(|q| {
                        app::search::fold(&p.skus[i]).starts_with(q)
                            || app::search::fold(&p.names[i]).contains(q)
                    })
            })
            .collect();
        let total = matched.len() as u64;
        let cmp = |a: u32, b: u32| -> Ordering {
            let (x, y) = (a as usize, b as usize);
            let key = match sort {
                "name" => p.names[x].cmp(&p.names[y]),
                "unit_price" => p.price[x].cmp(&p.price[y]),
                _ => Ordering::Equal,
            };
            let key = if desc { key.reverse() } else { key };
            let by_id = p.skus[x].cmp(&p.skus[y]);
            key.then(if desc && sort == "sku" {
                by_id.reverse()
            } else {
                by_id
            })
        };
        let after = query.after.as_deref().and_then(|id| p.find(id));
        let (rows, more) = top_after(matched, after, limit, &cmp);
        let ids: Vec<String> = rows.iter().map(|&r| p.skus[r as usize].clone()).collect();
        (ids, more, total)
    };
    fetch_page(&state, ids, more, Some(total))
}

/// `GET /api/v1/campaigns`.
pub(crate) async fn list_campaigns(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<CampaignQuery>,
) -> Result<axum::Json<Page<Revised<Campaign>>>, Problem> {
    require(&caller, READERS, "read campaigns")?;
    let limit = page_size(query.limit)?;
    let channel = query
        .channel
        .as_deref()
        .map(|c| model::CampaignChannel::parse(c).ok());
    let (ids, more, total) = {
        let data = state.read();
        let mut rows: Vec<&analysis::snapshot::CampaignRow> = data
            .base
            .snapshot
            .campaigns
            .iter()
            .filter(|c| channel.is_none_or(|want| want == Some(c.channel)))
            .collect();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        let total = rows.len() as u64;
        let start = query
            .after
            .as_deref()
            .map_or(0, |a| rows.partition_point(|c| c.id.as_str() <= a));
        let page: Vec<String> = rows[start..]
            .iter()
            .take(limit)
            .map(|c| c.id.clone())
            .collect();
        (page, rows.len() > start + limit, total)
    };
    fetch_page(&state, ids, more, Some(total))
}

/// The records of `ids` from the store, as a page.
fn fetch_page<T: Entity>(
    state: &AppState,
    ids: Vec<String>,
    more: bool,
    total: Option<u64>,
) -> Result<axum::Json<Page<Revised<T>>>, Problem> {
    let mut items = Vec::with_capacity(ids.len());
    for id in &ids {
        // A record deleted since the snapshot saw it is left out.
        if let Some((rev, record)) = state.store.get_revised(T::KIND, id)?
            && let Some(record) = T::from_record(record)
        {
            items.push(Revised {
                revision: Some(rev),
                record,
            });
        }
    }
    let next = if more { ids.last().cloned() } else { None };
    Ok(axum::Json(Page { items, next, total }))
}

/// `GET /api/v1/transactions` and `/api/v1/interactions`.
pub(crate) async fn list_lines<T: Entity>(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<LineQuery>,
) -> Result<axum::Json<Page<Revised<T>>>, Problem> {
    require(&caller, READERS, &format!("read {}", T::KIND.plural()))?;
    let limit = page_size(query.limit)?;
    // The cursor: how many lines were given, then where they started.
    let (skip, from) = match query.after.as_deref() {
        None => (0, query.customer_id.clone()),
        Some(cursor) => {
            let bad = || {
                Problem::bad_request("Invalid cursor", "after is not a cursor this API gave")
                    .at("after")
            };
            let (skip, from) = cursor.split_once(':').ok_or_else(bad)?;
            (
                skip.parse::<usize>().map_err(|_| bad())?,
                Some(from.to_owned()),
            )
        }
    };
    let mut lines = state
        .store
        .lines_page(T::KIND, from.as_deref(), skip, limit + 1)?;
    if let Some(only) = &query.customer_id {
        lines.retain(|r| line_customer(r) == only.as_str());
    }
    let more = lines.len() > limit;
    lines.truncate(limit);
    // The next page starts within the customer of the last line, after the
    // lines of that customer given so far.
    let next = match lines.last() {
        Some(last) if more => {
            let customer = line_customer(last).to_owned();
            let given = lines
                .iter()
                .filter(|r| line_customer(r) == customer)
                .count();
            let before = if from.as_deref() == Some(customer.as_str()) {
                skip
            } else {
                0
            };
            Some(format!("{}:{customer}", before + given))
        }
        _ => None,
    };
    let items = lines
        .into_iter()
        .filter_map(T::from_record)
        .map(|record| Revised {
            revision: None,
            record,
        })
        .collect();
    Ok(axum::Json(Page {
        items,
        next,
        total: None,
    }))
}

fn line_customer(record: &Record) -> &str {
    match record {
        Record::Transaction(t) => t.customer_id.as_str(),
        Record::Interaction(i) => i.customer_id.as_str(),
        Record::Customer(c) => c.customer_id.as_str(),
        _ => "",
    }
}
