//! Each analysis on small hand-made data, with answers worked out by hand.

mod naive;
mod props;

use model::{
    AcquisitionChannel, Attributes, Campaign, CampaignChannel, CampaignId, Customer, CustomerId,
    Date, Department, Gender, Interaction, InteractionId, InteractionKind, Money, Product,
    SalesChannel, Sku, Timestamp, Topic, Transaction, TxnId,
};

use crate::snapshot::Builder;
use crate::{Context, Scope, Snapshot};

/// Records of a small data set.
#[derive(Clone, Debug, Default)]
pub(crate) struct Data {
    pub(crate) customers: Vec<Customer>,
    pub(crate) products: Vec<Product>,
    pub(crate) campaigns: Vec<Campaign>,
    pub(crate) txns: Vec<Transaction>,
    pub(crate) interactions: Vec<Interaction>,
}

pub(crate) fn customer(
    id: &str,
    gender: &str,
    birth: Option<&str>,
    region: &str,
    joined: &str,
    tier: &str,
) -> Customer {
    Customer {
        customer_id: CustomerId::parse(id).unwrap(),
        name: format!("Name {id}"),
        gender: Gender::parse(gender).unwrap(),
        birth_date: birth.map(|b| Date::parse(b).unwrap()),
        region: region.into(),
        city: "City".into(),
        channel: AcquisitionChannel::Store,
        joined_at: Date::parse(joined).unwrap(),
        tier: tier.into(),
        attributes: Attributes::empty(),
    }
}

pub(crate) fn product(sku: &str, category: &str) -> Product {
    Product {
        sku: Sku::parse(sku).unwrap(),
        name: format!("Product {sku}"),
        category: category.into(),
        brand: "Brand".into(),
        unit_price: Money::from_cents(1000),
        unit_cost: Money::from_cents(600),
        attributes: Attributes::empty(),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn txn(
    id: &str,
    customer: &str,
    ts: &str,
    sku: &str,
    quantity: u32,
    amount: i64,
    cost: i64,
    channel: &str,
    region: &str,
) -> Transaction {
    Transaction {
        txn_id: TxnId::parse(id).unwrap(),
        customer_id: CustomerId::parse(customer).unwrap(),
        ts: Timestamp::parse(ts).unwrap(),
        sku: Sku::parse(sku).unwrap(),
        quantity,
        amount: Money::from_cents(amount),
        cost: Money::from_cents(cost),
        channel: SalesChannel::parse(channel).unwrap(),
        region: region.into(),
    }
}

pub(crate) fn interaction(
    id: &str,
    customer: &str,
    ts: &str,
    kind: &str,
    department: &str,
) -> Interaction {
    Interaction {
        interaction_id: InteractionId::parse(id).unwrap(),
        customer_id: CustomerId::parse(customer).unwrap(),
        ts: Timestamp::parse(ts).unwrap(),
        kind: InteractionKind::parse(kind).unwrap(),
        department: Department::parse(department).unwrap(),
        sku: None,
        rep: None,
        region: "North".into(),
        topic: None,
        resolved_ts: None,
        rating: None,
        campaign_id: None,
    }
}

pub(crate) fn case(
    id: &str,
    customer: &str,
    ts: &str,
    kind: &str,
    topic: &str,
    department: &str,
    resolved: Option<&str>,
) -> Interaction {
    Interaction {
        topic: Some(Topic::parse(topic).unwrap()),
        resolved_ts: resolved.map(|r| Timestamp::parse(r).unwrap()),
        ..interaction(id, customer, ts, kind, department)
    }
}

pub(crate) fn survey(id: &str, customer: &str, ts: &str, rating: u8) -> Interaction {
    Interaction {
        rating: Some(rating),
        ..interaction(id, customer, ts, "survey", "service")
    }
}

pub(crate) fn promotion(
    id: &str,
    customer: &str,
    ts: &str,
    kind: &str,
    campaign: &str,
) -> Interaction {
    Interaction {
        campaign_id: Some(CampaignId::parse(campaign).unwrap()),
        ..interaction(id, customer, ts, kind, "marketing")
    }
}

pub(crate) fn campaign(id: &str, channel: &str, start: &str, end: &str, cost: i64) -> Campaign {
    Campaign {
        campaign_id: CampaignId::parse(id).unwrap(),
        name: format!("Campaign {id}"),
        channel: CampaignChannel::parse(channel).unwrap(),
        start_date: Date::parse(start).unwrap(),
        end_date: Date::parse(end).unwrap(),
        cost: Money::from_cents(cost),
    }
}

impl Data {
    /// The snapshot, built as from a store scan: records in store order.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut customers = self.customers.clone();
        customers.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
        let mut txns = self.txns.clone();
        txns.sort_by(|a, b| {
            (&a.customer_id, a.ts, &a.txn_id).cmp(&(&b.customer_id, b.ts, &b.txn_id))
        });
        let mut interactions = self.interactions.clone();
        interactions.sort_by(|a, b| {
            (&a.customer_id, a.ts, &a.interaction_id).cmp(&(
                &b.customer_id,
                b.ts,
                &b.interaction_id,
            ))
        });
        let mut builder = Builder::new();
        customers.iter().for_each(|c| builder.customer(c));
        self.products.iter().for_each(|p| builder.product(p));
        self.campaigns.iter().for_each(|c| builder.campaign(c));
        let mut lines = builder.lines();
        for t in &txns {
            lines
                .txns
                .add(&lines.snapshot.customers, &lines.snapshot.products, t);
        }
        for i in &interactions {
            lines.interactions.add(
                &lines.snapshot.customers,
                &lines.snapshot.products,
                &lines.snapshot.campaigns,
                i,
            );
        }
        lines.finish()
    }
}

/// The little shop of the hand-worked tests. As of 2026-01-01 (the day
/// after the last transaction):
/// - C1: F, born on a leap day, gold, 3 lines in 2 baskets, 35.00 revenue;
/// - C2: M, 65, bronze, a single basket, 30.00;
/// - C3: no birth date, silver, never buys;
/// - C4: F, tier "vip" (not a known tier), one basket of 2 lines, 15.00.
fn shop() -> Data {
    Data {
        customers: vec![
            customer("C1", "F", Some("2000-02-29"), "North", "2024-01-15", "gold"),
            customer(
                "C2",
                "M",
                Some("1960-06-30"),
                "South",
                "2025-11-03",
                "bronze",
            ),
            customer("C3", "U", None, "North", "2023-05-20", "silver"),
            customer("C4", "F", Some("1990-01-01"), "West", "2025-12-01", "vip"),
        ],
        products: vec![
            product("P1", "cigars"),
            product("P2", "cigars"),
            product("P3", "pipes"),
        ],
        campaigns: vec![
            campaign("K1", "sms", "2025-12-01", "2025-12-16", 1000),
            campaign("K2", "email", "2025-06-01", "2025-06-05", 0),
        ],
        txns: vec![
            txn(
                "T1",
                "C1",
                "2025-11-01T09:00:00Z",
                "P2",
                1,
                500,
                400,
                "online",
                "North",
            ),
            txn(
                "T2",
                "C1",
                "2025-12-30T10:00:00Z",
                "P1",
                1,
                1000,
                600,
                "store",
                "North",
            ),
            txn(
                "T3",
                "C1",
                "2025-12-30T11:00:00Z",
                "P3",
                2,
                2000,
                1500,
                "store",
                "North",
            ),
            txn(
                "T4",
                "C2",
                "2025-12-31T15:00:00Z",
                "P1",
                3,
                3000,
                1800,
                "phone",
                "South",
            ),
            txn(
                "T5",
                "C4",
                "2025-12-02T12:00:00Z",
                "P1",
                1,
                500,
                500,
                "store",
                "West",
            ),
            txn(
                "T6",
                "C4",
                "2025-12-02T13:00:00Z",
                "P3",
                1,
                1000,
                800,
                "store",
                "West",
            ),
        ],
        interactions: vec![
            promotion("I01", "C1", "2025-12-01T09:00:00Z", "promotion_sent", "K1"),
            promotion(
                "I02",
                "C1",
                "2025-12-03T10:00:00Z",
                "promotion_response",
                "K1",
            ),
            promotion("I03", "C2", "2025-12-01T09:00:00Z", "promotion_sent", "K1"),
            promotion("I04", "C3", "2025-06-01T09:00:00Z", "promotion_sent", "K2"),
            case(
                "I05",
                "C1",
                "2025-10-01T10:00:00Z",
                "opinion",
                "price",
                "sales",
                Some("2025-10-01T13:00:00Z"),
            ),
            case(
                "I06",
                "C2",
                "2025-11-05T10:00:00Z",
                "opinion",
                "price",
                "sales",
                Some("2025-11-05T11:30:00Z"),
            ),
            case(
                "I07",
                "C3",
                "2025-11-06T10:00:00Z",
                "opinion",
                "price",
                "sales",
                None,
            ),
            case(
                "I08",
                "C4",
                "2025-12-05T10:00:00Z",
                "consultation",
                "billing",
                "finance",
                Some("2025-12-05T10:30:00Z"),
            ),
            case(
                "I09",
                "C1",
                "2025-11-20T10:00:00Z",
                "opinion",
                "quality",
                "service",
                None,
            ),
            // C2 hears from sales, finance and compliance in ISO week 2025-W49,
            // besides the promotion (marketing) of 2025-12-01.
            interaction("I10", "C2", "2025-12-01T11:00:00Z", "contact", "sales"),
            interaction("I11", "C2", "2025-12-02T11:00:00Z", "contact", "finance"),
            interaction("I12", "C2", "2025-12-07T11:00:00Z", "contact", "compliance"),
            interaction("I13", "C1", "2025-12-02T11:00:00Z", "contact", "service"),
            // C4's three departments straddle two ISO weeks (Sunday, Monday).
            interaction("I14", "C4", "2025-12-07T11:00:00Z", "contact", "sales"),
            interaction("I15", "C4", "2025-12-08T11:00:00Z", "contact", "finance"),
            interaction("I16", "C4", "2025-12-08T12:00:00Z", "contact", "compliance"),
            survey("I17", "C1", "2025-10-02T10:00:00Z", 5),
            survey("I18", "C1", "2025-11-02T10:00:00Z", 4),
            survey("I19", "C2", "2025-11-06T10:00:00Z", 2),
            survey("I20", "C3", "2025-11-07T10:00:00Z", 4),
        ],
    }
}

/// The analysis `name` on `data` as CSV.
fn csv(data: &Data, name: &str, scope: &Scope) -> String {
    let snapshot = data.snapshot();
    let ctx = Context::new(&snapshot, scope);
    crate::run(name, &ctx).unwrap().to_csv()
}

fn check(name: &str, expected: &str) {
    check_on(&shop(), name, &Scope::default(), expected);
}

fn check_on(data: &Data, name: &str, scope: &Scope, expected: &str) {
    let expected: String = expected
        .lines()
        .map(|l| format!("{}\n", l.trim()))
        .collect();
    assert_eq!(csv(data, name, scope), expected.trim_start(), "{name}");
}

#[test]
fn dataset_summary() {
    check(
        "dataset_summary",
        "customers,products,transactions,interactions,campaigns,first_ts,last_ts,as_of,revenue,cost,quantity
         4,3,6,20,2,2025-11-01T09:00:00Z,2025-12-31T15:00:00Z,2026-01-01,80.00,56.00,9",
    );
}

#[test]
fn profiling_overview_with_a_leap_day_birthday() {
    // C1, born 2000-02-29, is 25 on 2026-01-01; C2 turns 65 in June 2025.
    check(
        "profiling_overview",
        "dimension,bucket,customers,share
         total,all,4,1
         gender,F,2,0.5
         gender,M,1,0.25
         gender,U,1,0.25
         age,<25,0,0
         age,25-34,1,0.25
         age,35-44,1,0.25
         age,45-54,0,0
         age,55-64,0,0
         age,65+,1,0.25
         age,unknown,1,0.25
         region,North,2,0.5
         region,South,1,0.25
         region,West,1,0.25
         tier,bronze,1,0.25
         tier,silver,1,0.25
         tier,gold,1,0.25
         tier,vip,1,0.25",
    );
    let leap = Date::parse("2000-02-29").unwrap();
    assert_eq!(crate::age(leap, Date::parse("2026-02-28").unwrap()), 25);
    assert_eq!(crate::age(leap, Date::parse("2026-03-01").unwrap()), 26);
    assert_eq!(crate::age(leap, Date::parse("2028-02-29").unwrap()), 28);
}

#[test]
fn visits_distribution_counts_the_customer_who_never_buys() {
    check(
        "visits_distribution",
        "bucket,customers,share
         0,1,0.25
         1,2,0.5
         2-3,1,0.25
         4-7,0,0
         8-15,0,0
         16+,0,0",
    );
}

#[test]
fn rfm_scores_and_segments() {
    // Recency: C4 30 days, C1 2, C2 1 -> r = 1, 2, 4 (score 1 + 5 (rank - 1) / 3).
    // Frequency: C2 1, C4 1 (tie, by id), C1 2 -> f = 1, 2, 4.
    // Monetary: C4 15, C2 30, C1 35 -> m = 1, 2, 4.
    // C1 (2, 4) loyal; C2 (4, 1) new; C4 (1, 2) hibernating.
    check(
        "rfm",
        "segment,customers,share,avg_monetary
         champions,0,0,
         loyal,1,0.3333,35
         new,1,0.3333,30
         at_risk,0,0,
         hibernating,1,0.3333,15
         potential,0,0,",
    );
    check(
        "rfm_top",
        "customer_id,recency_days,frequency,monetary,r,f,m
         C1,2,2,35.00,2,4,4
         C2,1,1,30.00,4,1,2
         C4,30,1,15.00,1,2,1",
    );
}

#[test]
fn pareto_takes_the_top_fifth_rounded_up() {
    check(
        "pareto",
        "n,k,top_revenue,total_revenue,top_share
         3,1,35.00,80.00,0.4375",
    );
}

#[test]
fn profitability_lists_known_tiers_first() {
    check(
        "profitability",
        "tier,buyers,revenue,cost,margin,margin_rate
         all,3,80.00,56.00,24.00,0.3
         bronze,1,30.00,18.00,12.00,0.4
         gold,1,35.00,25.00,10.00,0.2857
         vip,1,15.00,13.00,2.00,0.1333",
    );
    check(
        "profitability_top",
        "customer_id,name,tier,revenue,cost,margin
         C2,Name C2,bronze,30.00,18.00,12.00
         C1,Name C1,gold,35.00,25.00,10.00
         C4,Name C4,vip,15.00,13.00,2.00",
    );
}

#[test]
fn performance_by_category_channel_and_region() {
    check(
        "performance",
        "category,channel,region,revenue,quantity,lines
         cigars,online,North,5.00,1,1
         cigars,phone,South,30.00,3,1
         cigars,store,North,10.00,1,1
         cigars,store,West,5.00,1,1
         pipes,store,North,20.00,2,1
         pipes,store,West,10.00,1,1",
    );
}

#[test]
fn persistency_of_a_single_repeater() {
    // C1: 59 days between 2025-11-01 and 2025-12-30; silent 2 days: no risk.
    check(
        "persistency",
        "buyers,repeaters,repeat_rate,mean_interval_days,churn_risk
         3,1,0.3333,59,0",
    );
}

#[test]
fn prospecting_fits_the_last_twelve_months() {
    // Joined in the window: C1 2024-01, C2 2025-11, C4 2025-12. The fit over
    // 2025-01..2025-12 (x = 1..12, y = 1 at x = 11 and 12): slope 10/143,
    // intercept 1/6 - 6.5 * 10/143 = -0.2879.
    let out = csv(&shop(), "prospecting", &Scope::default());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1 + 27);
    assert_eq!(lines[1], "2024-01,actual,1");
    assert_eq!(lines[2], "2024-02,actual,0");
    assert_eq!(lines[23], "2025-11,actual,1");
    assert_eq!(lines[24], "2025-12,actual,1");
    assert_eq!(
        &lines[25..],
        [
            "2026-01,forecast,0.62",
            "2026-02,forecast,0.69",
            "2026-03,forecast,0.76"
        ]
    );
    check(
        "prospecting_trend",
        "slope,intercept,months_fitted
         0.07,-0.29,12",
    );
}

#[test]
fn product_distribution_of_the_last_twelve_months() {
    check(
        "product_distribution",
        "category,region,month,quantity,lines
         cigars,North,2025-11,1,1
         cigars,North,2025-12,1,1
         cigars,South,2025-12,3,1
         cigars,West,2025-12,1,1
         pipes,North,2025-12,2,1
         pipes,West,2025-12,1,1",
    );
}

#[test]
fn promotion_with_a_campaign_nobody_answered() {
    // K1: sent to C1 and C2; C1 answered and bought 30.00 on 12-30, the last
    // day of [start, end + 14 days] = [12-01, 12-30].
    // K2: sent to C3, no answer, no cost: no return on investment.
    check(
        "promotion",
        "campaign_id,channel,sent,responded,response_rate,revenue,cost,roi
         K1,sms,2,1,0.5,30.00,10.00,2
         K2,email,1,0,0,0.00,0.00,",
    );
}

#[test]
fn opinions_with_medians_of_resolution_hours() {
    check(
        "opinions",
        "kind,topic,department,cases,resolved,resolution_rate,median_hours
         consultation,billing,finance,1,1,1,0.5
         opinion,price,sales,3,2,0.6667,2.25
         opinion,quality,service,1,0,0,",
    );
}

#[test]
fn contact_pressure_counts_departments_per_iso_week() {
    // C2: sales, finance, compliance and the promotion's marketing in 2025-W49.
    // C4's departments fall in two weeks; C1 has two departments.
    check(
        "contact_pressure",
        "customers,customer_weeks,max_departments
         1,1,4",
    );
}

#[test]
fn satisfaction_top_bottom_and_all() {
    // Average ratings: C1 4.5, C2 2, C3 4; k = 1.
    check(
        "satisfaction",
        "group,customers,mean_rating,share_female,mean_age,top_region,mean_revenue
         top,1,4.5,1,25,North,35
         bottom,1,2,0,65,South,30
         all,3,3.5,0.3333,45,North,21.67",
    );
}

/// Ten one-basket customers: D1-D6 buy {P1, P3}, D7-D8 {P1}, D9-D10 {P2, P3}.
fn baskets() -> Data {
    let mut data = Data {
        products: vec![
            product("P1", "cigars"),
            product("P2", "cigars"),
            product("P3", "pipes"),
        ],
        ..Data::default()
    };
    for i in 1..=10 {
        let id = format!("D{i:02}");
        data.customers
            .push(customer(&id, "U", None, "North", "2020-01-01", "gold"));
        let skus: &[&str] = match i {
            1..=6 => &["P1", "P3"],
            7 | 8 => &["P1"],
            _ => &["P2", "P3"],
        };
        for (k, sku) in skus.iter().enumerate() {
            data.txns.push(txn(
                &format!("T{i}{k}"),
                &id,
                "2025-06-01T10:00:00Z",
                sku,
                1,
                100,
                50,
                "store",
                "North",
            ));
        }
    }
    data
}

#[test]
fn product_affinity_needs_the_minimum_count() {
    // N = 10 baskets, min_count 5: only (P1, P3) with 6 baskets qualifies;
    // lift = 6 * 10 / (8 * 8).
    check_on(
        &baskets(),
        "product_affinity",
        &Scope::default(),
        "sku_a,sku_b,n_ab,n_a,n_b,support,confidence_ab,confidence_ba,lift
         P1,P3,6,8,8,0.6,0.75,0.75,0.9375",
    );
    // The shop has 4 baskets: no pair reaches 5.
    check(
        "product_affinity",
        "sku_a,sku_b,n_ab,n_a,n_b,support,confidence_ab,confidence_ba,lift",
    );
}

#[test]
fn cross_sell_partners_and_candidates() {
    // Category baskets: {cigars, pipes} 8 times, {cigars} twice. Lift 1.
    // Pipes' candidates are D07 and D08, who bought cigars but never pipes.
    check_on(
        &baskets(),
        "cross_sell",
        &Scope::default(),
        "category,partner,lift,co_baskets,candidates
         cigars,pipes,1,8,0
         pipes,cigars,1,8,2",
    );
}

/// Five buyers alike in everything: ties broken by customer id everywhere.
#[test]
fn ties_are_broken_by_customer_id() {
    let mut data = Data {
        products: vec![product("P1", "cigars")],
        ..Data::default()
    };
    for i in 1..=5 {
        let id = format!("E{i}");
        data.customers
            .push(customer(&id, "F", None, "North", "2020-01-01", "gold"));
        data.txns.push(txn(
            &format!("T{i}"),
            &id,
            "2025-06-01T10:00:00Z",
            "P1",
            1,
            100,
            50,
            "store",
            "North",
        ));
        data.interactions
            .push(survey(&format!("S{i}"), &id, "2025-06-02T10:00:00Z", 3));
    }
    // Scores are the rank by id: E1 (1, 1) .. E5 (5, 5).
    check_on(
        &data,
        "rfm",
        &Scope::default(),
        "segment,customers,share,avg_monetary
         champions,2,0.4,1
         loyal,0,0,
         new,0,0,
         at_risk,0,0,
         hibernating,2,0.4,1
         potential,1,0.2,1",
    );
    check_on(
        &data,
        "pareto",
        &Scope::default(),
        "n,k,top_revenue,total_revenue,top_share\n5,1,1.00,5.00,0.2",
    );
    let out = csv(&data, "rfm_top", &Scope::default());
    let ids: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(ids, ["E1", "E2", "E3", "E4", "E5"]);
    check_on(
        &data,
        "satisfaction",
        &Scope::default(),
        "group,customers,mean_rating,share_female,mean_age,top_region,mean_revenue
         top,1,3,1,,North,1
         bottom,1,3,1,,North,1
         all,5,3,1,,North,1",
    );
}

#[test]
fn a_store_without_lines_gives_empty_and_null_results() {
    let data = Data {
        customers: shop().customers,
        products: shop().products,
        ..Data::default()
    };
    check_on(
        &data,
        "dataset_summary",
        &Scope::default(),
        "customers,products,transactions,interactions,campaigns,first_ts,last_ts,as_of,revenue,cost,quantity
         4,3,0,0,0,,,,,,",
    );
    check_on(
        &data,
        "pareto",
        &Scope::default(),
        "n,k,top_revenue,total_revenue,top_share",
    );
    check_on(
        &data,
        "profitability",
        &Scope::default(),
        "tier,buyers,revenue,cost,margin,margin_rate\nall,0,,,,",
    );
    check_on(
        &data,
        "satisfaction",
        &Scope::default(),
        "group,customers,mean_rating,share_female,mean_age,top_region,mean_revenue",
    );
    check_on(
        &data,
        "contact_pressure",
        &Scope::default(),
        "customers,customer_weeks,max_departments\n0,0,",
    );
    check_on(
        &data,
        "persistency",
        &Scope::default(),
        "buyers,repeaters,repeat_rate,mean_interval_days,churn_risk\n0,0,,,0",
    );
    check_on(
        &data,
        "prospecting",
        &Scope::default(),
        "month,kind,new_customers",
    );
    for name in crate::NAMES {
        let _ = csv(&data, name, &Scope::default());
        let _ = csv(&Data::default(), name, &Scope::default());
    }
}

#[test]
fn a_segment_keeps_only_its_customers_and_their_lines() {
    let data = shop();
    let snapshot = data.snapshot();
    let rows = vec![
        snapshot.customers.find("C1").unwrap(),
        snapshot.customers.find("C4").unwrap(),
    ];
    let scope = Scope {
        customers: Some(rows),
        ..Scope::default()
    };
    check_on(
        &data,
        "profitability",
        &scope,
        "tier,buyers,revenue,cost,margin,margin_rate
         all,2,50.00,38.00,12.00,0.24
         gold,1,35.00,25.00,10.00,0.2857
         vip,1,15.00,13.00,2.00,0.1333",
    );
}

#[test]
fn as_of_leaves_out_later_lines_and_customers() {
    // On 2025-12-01: C4 (joined that day) is not a customer yet, C2 has not
    // bought yet, C1 has one line; the opinion of C1 of 2025-11-20 is open.
    let scope = Scope {
        as_of: Some(Date::parse("2025-12-01").unwrap()),
        ..Scope::default()
    };
    check_on(
        &shop(),
        "dataset_summary",
        &scope,
        "customers,products,transactions,interactions,campaigns,first_ts,last_ts,as_of,revenue,cost,quantity
         3,3,1,9,2,2025-11-01T09:00:00Z,2025-11-01T09:00:00Z,2025-12-01,5.00,4.00,1",
    );
}

#[test]
fn customer_metrics_follow_the_analyses() {
    let snapshot = shop().snapshot();
    let ctx = Context::new(&snapshot, &Scope::default());
    let m = crate::customer_metrics(&ctx, snapshot.customers.find("C1").unwrap());
    assert_eq!(
        (m.revenue.cents(), m.cost.cents(), m.margin.cents()),
        (3500, 2500, 1000)
    );
    assert_eq!((m.lines, m.baskets, m.recency_days), (3, 2, Some(2)));
    assert_eq!(m.first_purchase, Some(Date::parse("2025-11-01").unwrap()));
    assert_eq!(m.avg_interbasket_days, Some(59.0));
    assert_eq!(
        (m.r, m.f, m.m, m.rfm_segment),
        (Some(2), Some(4), Some(4), Some("loyal"))
    );
    assert_eq!(
        (m.avg_rating, m.surveys, m.open_opinions, m.churn_risk),
        (Some(4.5), 2, 1, false)
    );
    let never = crate::customer_metrics(&ctx, snapshot.customers.find("C3").unwrap());
    assert_eq!(
        (
            never.baskets,
            never.recency_days,
            never.r,
            never.rfm_segment
        ),
        (0, None, None, None)
    );
}

#[test]
fn a_checkpoint_reads_back_the_same_snapshot_and_refuses_damage() {
    let mut snapshot = shop().snapshot();
    snapshot.positions = [1, 2, 3, 4, 5];
    snapshot.compact();
    let mut bytes = Vec::new();
    crate::persist::write(&snapshot, &mut bytes).unwrap();
    let back = crate::persist::read(&mut bytes.as_slice(), bytes.len() as u64).unwrap();
    assert_eq!(back.positions, [1, 2, 3, 4, 5]);
    for name in crate::NAMES {
        let a = crate::run(name, &Context::new(&snapshot, &Scope::default())).unwrap();
        let b = crate::run(name, &Context::new(&back, &Scope::default())).unwrap();
        assert_eq!(a, b, "{name}");
    }
    let mut damaged = bytes.clone();
    damaged[bytes.len() / 2] ^= 0x40;
    let err = crate::persist::read(&mut damaged.as_slice(), damaged.len() as u64)
        .err()
        .unwrap();
    assert!(err.to_string().contains("not usable"), "{err}");
    let truncated = &bytes[..bytes.len() - 100];
    assert!(crate::persist::read(&mut &truncated[..], truncated.len() as u64).is_err());
}

#[test]
fn customers_added_one_by_one_are_found_and_ranked_as_if_built_together() {
    // Ids added out of order, enough to merge the recent ones several times.
    let ids: Vec<String> = (0..10_000u32)
        .map(|i| format!("K{:05}", (i * 7_919) % 10_000))
        .collect();
    let mut built = Builder::new();
    let mut sorted = ids.clone();
    sorted.sort();
    for id in &sorted[..100] {
        built.customer(&customer(id, "F", None, "North", "2024-01-01", "gold"));
    }
    let mut snapshot = built.lines().finish();
    for id in &ids {
        snapshot.upsert_customer(&customer(id, "F", None, "North", "2024-01-01", "gold"));
    }
    let c = &snapshot.customers;
    assert_eq!(c.len(), 10_000);
    let order = c.in_id_order();
    let in_order: Vec<&str> = order.iter().map(|&r| c.id(r)).collect();
    let want: Vec<&str> = sorted.iter().map(String::as_str).collect();
    assert_eq!(in_order, want);
    // Read lazily from any point, both ways, with recent rows not merged yet.
    assert!(!c.recent.is_empty());
    for after in [
        None,
        Some("A"),
        Some("K00000"),
        Some("K04242"),
        Some("K04242x"),
        Some("K99999"),
    ] {
        let asc: Vec<u32> = c.in_id_order_after(after, false).collect();
        let want_asc: Vec<u32> = order
            .iter()
            .copied()
            .filter(|&r| after.is_none_or(|a| c.id(r) > a))
            .collect();
        assert_eq!(asc, want_asc, "after {after:?}");
        let desc: Vec<u32> = c.in_id_order_after(after, true).collect();
        let want_desc: Vec<u32> = order
            .iter()
            .rev()
            .copied()
            .filter(|&r| after.is_none_or(|a| c.id(r) < a))
            .collect();
        assert_eq!(desc, want_desc, "after {after:?}");
    }
    for (p, &row) in order.iter().enumerate() {
        assert_eq!(c.rank()[row as usize], p as u32);
        assert_eq!(c.find(c.id(row)), Some(row));
    }
    assert_eq!(c.find("K99999"), None);
    // A checkpoint keeps the order.
    snapshot.compact();
    let mut bytes = Vec::new();
    crate::persist::write(&snapshot, &mut bytes).unwrap();
    let back = crate::persist::read(&mut bytes.as_slice(), bytes.len() as u64).unwrap();
    assert_eq!(back.customers.rank(), snapshot.customers.rank());
    assert_eq!(
        back.customers.find("K04242"),
        snapshot.customers.find("K04242")
    );
}

#[test]
fn ids_sharing_long_prefixes_are_found() {
    // Ids that share a long prefix (a stamp), shorter ids and prefixes of
    // others must all be found, before and after they are merged.
    let mut ids: Vec<String> = (0..3_000u32)
        .map(|i| format!("W17638000-{}-{}", i % 7, i))
        .collect();
    ids.extend(["C1", "C10", "C2", "W", "W1763800", "W17638000", "Z"].map(String::from));
    let mut sorted = ids.clone();
    sorted.sort();
    let mut built = Builder::new();
    for id in &sorted[..1_000] {
        built.customer(&customer(id, "F", None, "North", "2024-01-01", "gold"));
    }
    let mut snapshot = built.lines().finish();
    for id in &sorted[1_000..] {
        snapshot.upsert_customer(&customer(id, "F", None, "North", "2024-01-01", "gold"));
    }
    for round in 0..2 {
        for id in &ids {
            let row = snapshot.customers.find(id);
            assert_eq!(
                row.map(|r| snapshot.customers.id(r)),
                Some(id.as_str()),
                "round {round}"
            );
        }
        for missing in [
            "",
            "C",
            "C3",
            "W17638000-1",
            "W17638000-9-9",
            "W176380",
            "ZZ",
        ] {
            assert_eq!(snapshot.customers.find(missing), None, "{missing}");
        }
        // Everything merged into the id order.
        snapshot.compact();
    }
}

#[test]
fn line_ids_come_back_exactly_as_given() {
    let mut ids = crate::snapshot::LineIds::default();
    let mut given: Vec<String> = [
        "T0001197303",
        "T1",
        "T01",
        "0000000000000",
        "9999999999999",
        "12345678901234",
        "X9999999999999999",
        "odd-line",
        "survey/7",
        "é7",
        "T-000042",
        "T-42",
    ]
    .map(String::from)
    .to_vec();
    // More prefixes than codes can name: the rest are kept whole.
    given.extend((0..17_000).map(|i| format!("p{i}x{}", i % 100)));
    let codes: Vec<u64> = given.iter().map(|id| ids.code(id)).collect();
    for (id, &code) in given.iter().zip(&codes) {
        assert_eq!(&ids.get(code), id);
    }
}
