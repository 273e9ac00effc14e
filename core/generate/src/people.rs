//! One customer at a time: who they are, when and what they buy, which
//! campaigns reach them, and how they are served.

use model::{
    AcquisitionChannel, Attributes, CampaignChannel, CampaignId, Customer, CustomerId, Date,
    Department, Gender, Interaction, InteractionId, InteractionKind, Money, Record, SalesChannel,
    Timestamp, Topic, Transaction, TxnId,
};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Exp1, Gamma, StandardNormal};
use rand_pcg::Pcg64Mcg;

use crate::catalog::{Catalog, cumulative, pick};
use crate::{Config, Industry, campaign_department, names, window};

const REGIONS: &[(&str, &[&str], f64, f64)] = &[
    // name, cities (first is the largest), weight, service level (shifts ratings)
    (
        "Central",
        &["Midtown", "Riverbend", "Old Town", "San José"],
        1.6,
        0.15,
    ),
    ("East", &["Harbour City", "Eastgate", "Seaview"], 1.4, 0.10),
    (
        "North",
        &["Northfield", "Pinecrest", "Frost Hill"],
        1.0,
        0.0,
    ),
    (
        "Northeast",
        &["Ashford", "Lakeside", "Maple Ridge"],
        0.8,
        -0.05,
    ),
    (
        "South",
        &["Southport", "Córdoba", "Palm Bay", "Sunvale"],
        1.3,
        0.05,
    ),
    (
        "Southwest",
        &["Mesa Verde", "Redrock", "Dry Creek"],
        0.6,
        -0.10,
    ),
    ("West", &["Westbury", "Cliffside", "Goldfield"], 0.7, -0.45),
    (
        "Northwest",
        &["Cedar Falls", "Stonebridge", "Kingsport"],
        0.6,
        0.0,
    ),
];
const TIERS: [&str; 4] = ["bronze", "silver", "gold", "platinum"];
const TIER_DISCOUNT_BP: [i64; 4] = [0, 150, 300, 500];
/// Resolution of opinions per department: share resolved, median hours.
const RESOLUTION: [(Department, f64, f64); 6] = [
    (Department::Sales, 0.86, 30.0),
    (Department::Service, 0.82, 20.0),
    (Department::Marketing, 0.90, 24.0),
    (Department::Logistics, 0.74, 52.0),
    (Department::Finance, 0.70, 70.0),
    (Department::Compliance, 0.60, 130.0),
];

/// How an industry's customers behave.
struct Behaviour {
    acquisition: [f64; 5],
    genders: [f64; 3],
    birth_unknown: f64,
    ages: (i32, i32),
    never_buy: f64,
    churn: f64,
    baskets_per_year: f64,
    lines_per_basket: &'static [f64],
    base_quantity: f64,
    opinion_topics: [f64; 7],
    consultation_topics: [f64; 7],
    /// Segments (store types or employment) and their weights.
    segments: [&'static str; 4],
    /// Preferred categories of each segment.
    preferences: [&'static [&'static str]; 4],
}

const RETAIL: Behaviour = Behaviour {
    acquisition: [0.34, 0.16, 0.16, 0.10, 0.24],
    genders: [0.55, 0.35, 0.10],
    birth_unknown: 0.10,
    ages: (20, 76),
    never_buy: 0.04,
    churn: 0.22,
    baskets_per_year: 2.2,
    lines_per_basket: &[0.42, 0.28, 0.15, 0.08, 0.045, 0.025],
    base_quantity: 3.0,
    // price, quality, delivery, availability, service, billing, product_info
    opinion_topics: [0.2, 0.15, 0.2, 0.2, 0.1, 0.1, 0.05],
    consultation_topics: [0.25, 0.0, 0.05, 0.25, 0.0, 0.1, 0.35],
    segments: ["convenience", "supermarket", "kiosk", "tobacconist"],
    preferences: [
        &[
            "mid_cigarettes",
            "economy_cigarettes",
            "menthol_cigarettes",
            "e_cigarettes",
        ],
        &[
            "premium_cigarettes",
            "mid_cigarettes",
            "export_cigarettes",
            "slim_cigarettes",
        ],
        &[
            "economy_cigarettes",
            "mid_cigarettes",
            "heated_tobacco",
            "e_cigarettes",
        ],
        &[
            "cigars",
            "cigarillos",
            "pipe_tobacco",
            "rolling_tobacco",
            "premium_cigarettes",
        ],
    ],
};

const BANKING: Behaviour = Behaviour {
    acquisition: [0.30, 0.40, 0.10, 0.12, 0.08],
    genders: [0.48, 0.49, 0.03],
    birth_unknown: 0.02,
    ages: (18, 86),
    never_buy: 0.05,
    churn: 0.18,
    baskets_per_year: 2.3,
    lines_per_basket: &[0.5, 0.28, 0.13, 0.06, 0.03],
    base_quantity: 1.0,
    opinion_topics: [0.25, 0.05, 0.05, 0.05, 0.3, 0.25, 0.05],
    consultation_topics: [0.2, 0.0, 0.0, 0.05, 0.15, 0.2, 0.4],
    segments: ["salaried", "self_employed", "retired", "student"],
    preferences: [
        &[
            "current_account",
            "credit_card",
            "savings_account",
            "personal_loan",
            "auto_loan",
        ],
        &[
            "current_account",
            "credit_card",
            "term_deposit",
            "equity_fund",
            "personal_loan",
        ],
        &[
            "savings_account",
            "term_deposit",
            "bond_fund",
            "life_insurance",
        ],
        &["current_account", "debit_card", "savings_account"],
    ],
};

fn behaviour(industry: Industry) -> &'static Behaviour {
    match industry {
        Industry::Retail => &RETAIL,
        Industry::Banking => &BANKING,
    }
}

/// Who a campaign targets.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rule {
    All,
    /// Bought within the last days before the start.
    Active(i32),
    /// Bought before, but not within the last days.
    Lapsed(i32),
    /// Joined within the last days.
    New(i32),
    /// Tier at least this (0 = bronze).
    Tier(usize),
    /// Of this segment (store type or employment).
    Segment(usize),
    /// Has a mortgage.
    Mortgage,
}

pub(crate) struct CampaignPlan {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) channel: CampaignChannel,
    pub(crate) start: Date,
    pub(crate) end: Date,
    rule: Rule,
    category: &'static str,
    /// Chance that an eligible customer is contacted.
    reach: f64,
    /// Chance that a contacted customer responds.
    response: f64,
    pub(crate) fixed_cost: i64,
    pub(crate) cost_per_contact: i64,
}

type CampaignRow = (
    u32,
    u32,
    i32,
    CampaignChannel,
    &'static str,
    Rule,
    &'static str,
    f64,
    f64,
);

const RETAIL_CAMPAIGNS: &[CampaignRow] = {
    use CampaignChannel::*;
    &[
        (
            1,
            5,
            21,
            Sms,
            "Spring Festival stock-up",
            Rule::Active(180),
            "premium_cigarettes",
            0.10,
            0.09,
        ),
        (
            2,
            20,
            14,
            Visit,
            "Key outlet visits Q1",
            Rule::Tier(2),
            "export_cigarettes",
            0.30,
            0.30,
        ),
        (
            3,
            10,
            21,
            App,
            "Heated tobacco starter kit",
            Rule::Active(120),
            "heated_tobacco",
            0.06,
            0.08,
        ),
        (
            4,
            8,
            14,
            Email,
            "Spring price list",
            Rule::All,
            "mid_cigarettes",
            0.07,
            0.04,
        ),
        (
            5,
            12,
            21,
            Phone,
            "Win-back: lapsed outlets",
            Rule::Lapsed(150),
            "economy_cigarettes",
            0.25,
            0.12,
        ),
        (
            6,
            1,
            28,
            Sms,
            "Summer kiosk push",
            Rule::Segment(2),
            "menthol_cigarettes",
            0.12,
            0.07,
        ),
        (
            7,
            6,
            21,
            Email,
            "Cigar lounge selection",
            Rule::Segment(3),
            "cigars",
            0.25,
            0.06,
        ),
        (
            8,
            18,
            14,
            App,
            "Back-to-school compliance reminder",
            Rule::New(365),
            "slim_cigarettes",
            0.10,
            0.05,
        ),
        (
            9,
            1,
            21,
            Visit,
            "Mid-Autumn gift boxes",
            Rule::Tier(1),
            "premium_cigarettes",
            0.12,
            0.28,
        ),
        (
            10,
            10,
            21,
            Sms,
            "Roll-your-own autumn offer",
            Rule::Active(180),
            "rolling_tobacco",
            0.06,
            0.07,
        ),
        (
            11,
            5,
            21,
            Email,
            "E-cigarette range update",
            Rule::All,
            "e_cigarettes",
            0.07,
            0.04,
        ),
        (
            12,
            1,
            21,
            Phone,
            "Year-end volume bonus",
            Rule::Tier(2),
            "mid_cigarettes",
            0.35,
            0.15,
        ),
    ]
};

const BANKING_CAMPAIGNS: &[CampaignRow] = {
    use CampaignChannel::*;
    &[
        (
            1,
            8,
            21,
            Email,
            "New year savings boost",
            Rule::All,
            "savings_account",
            0.08,
            0.04,
        ),
        (
            2,
            12,
            28,
            App,
            "Credit card cashback",
            Rule::Active(180),
            "credit_card",
            0.08,
            0.07,
        ),
        (
            3,
            5,
            21,
            Phone,
            "Mortgage rate review",
            Rule::Mortgage,
            "home_insurance",
            0.2,
            0.10,
        ),
        (
            4,
            15,
            21,
            Sms,
            "Term deposit special 12M",
            Rule::Active(240),
            "term_deposit",
            0.08,
            0.06,
        ),
        (
            5,
            10,
            21,
            Visit,
            "Premier client review",
            Rule::Tier(3),
            "equity_fund",
            0.4,
            0.3,
        ),
        (
            6,
            3,
            28,
            Email,
            "Travel insurance and cards",
            Rule::All,
            "credit_card",
            0.07,
            0.04,
        ),
        (
            7,
            8,
            21,
            Phone,
            "Win-back: dormant clients",
            Rule::Lapsed(180),
            "current_account",
            0.2,
            0.1,
        ),
        (
            8,
            20,
            21,
            App,
            "Student account",
            Rule::Segment(3),
            "debit_card",
            0.3,
            0.09,
        ),
        (
            9,
            9,
            21,
            Sms,
            "Personal loan offer",
            Rule::Active(180),
            "personal_loan",
            0.06,
            0.05,
        ),
        (
            10,
            6,
            28,
            Email,
            "Fund savings plan",
            Rule::Tier(1),
            "bond_fund",
            0.1,
            0.05,
        ),
        (
            11,
            3,
            21,
            Visit,
            "Retirement planning",
            Rule::Segment(2),
            "life_insurance",
            0.15,
            0.2,
        ),
        (
            12,
            1,
            21,
            App,
            "Year-end deposit rate",
            Rule::Active(365),
            "term_deposit",
            0.06,
            0.06,
        ),
    ]
};

/// Fixed cost per 10,000 customers of the data set and cost per contact, in cents.
fn channel_cost(channel: CampaignChannel) -> (i64, i64) {
    match channel {
        CampaignChannel::Sms => (800_000, 12),
        CampaignChannel::Email => (500_000, 3),
        CampaignChannel::App => (1_500_000, 5),
        CampaignChannel::Phone => (600_000, 450),
        CampaignChannel::Visit => (200_000, 6_000),
    }
}

/// Twelve campaigns a year over the window, numbered in start order.
pub(crate) fn campaigns(industry: Industry, customers: u32) -> Vec<CampaignPlan> {
    let (rows, cost_factor) = match industry {
        Industry::Retail => (RETAIL_CAMPAIGNS, 1.0),
        Industry::Banking => (BANKING_CAMPAIGNS, 0.4),
    };
    let (_, last) = window();
    let scale = customers as f64 / 10_000.0;
    let mut plans = Vec::new();
    for year in 2023..=2025 {
        for &(month, day, days, channel, name, rule, category, reach, response) in rows {
            let start =
                Date::from_ymd(year, month, day).expect("campaign calendars hold real days");
            let (fixed, per_contact) = channel_cost(channel);
            plans.push(CampaignPlan {
                id: String::new(),
                name: format!("{name} {year}"),
                channel,
                start,
                end: start.add_days(days - 1).min(last),
                rule,
                category,
                reach,
                response: response * (1.0 + 0.15 * (year - 2024) as f64),
                fixed_cost: (fixed as f64 * scale * cost_factor).round() as i64,
                cost_per_contact: (per_contact as f64 * cost_factor).round() as i64,
            });
        }
    }
    plans.sort_by(|a, b| (a.start, &a.name).cmp(&(b.start, &b.name)));
    for (i, plan) in plans.iter_mut().enumerate() {
        plan.id = format!("CMP{:03}", i + 1);
    }
    plans
}

/// Next ids of lines, sequential in file order.
#[derive(Default)]
pub(crate) struct Ids {
    txn: u64,
    interaction: u64,
}

/// The records of the customer being generated.
#[derive(Default)]
pub(crate) struct Buffers {
    pub(crate) customer: Option<Customer>,
    pub(crate) transactions: Vec<Record>,
    pub(crate) interactions: Vec<Record>,
}

/// A line or event before ids are given: (day, second of day, ...).
struct Line {
    day: Date,
    second: u32,
    product: usize,
    quantity: u32,
    channel: SalesChannel,
}

struct Event {
    day: Date,
    second: u32,
    kind: InteractionKind,
    department: Department,
    product: Option<usize>,
    rep: Option<String>,
    topic: Option<Topic>,
    resolved: Option<Timestamp>,
    rating: Option<u8>,
    campaign: Option<usize>,
}

impl Event {
    fn new(day: Date, second: u32, kind: InteractionKind, department: Department) -> Event {
        Event {
            day,
            second,
            kind,
            department,
            product: None,
            rep: None,
            topic: None,
            resolved: None,
            rating: None,
            campaign: None,
        }
    }
}

fn normal(rng: &mut Pcg64Mcg) -> f64 {
    StandardNormal.sample(rng)
}

fn exponential(rng: &mut Pcg64Mcg) -> f64 {
    Exp1.sample(rng)
}

fn chance(rng: &mut Pcg64Mcg, p: f64) -> bool {
    rng.random::<f64>() < p
}

/// Purchase weight of each day from 2022 (campaign targeting sees a year of
/// history before the window): month and weekday seasonality and growth.
struct Calendar {
    first: Date,
    /// Cumulative weight; the mean daily weight is 1.
    cum: Vec<f64>,
}

impl Calendar {
    fn new(industry: Industry) -> Calendar {
        let months: [f64; 12] = match industry {
            Industry::Retail => [
                1.35, 1.15, 0.85, 0.9, 0.95, 0.9, 0.85, 0.9, 1.1, 1.0, 0.95, 1.2,
            ],
            Industry::Banking => [
                1.2, 0.95, 1.1, 1.0, 0.95, 1.0, 0.9, 0.85, 1.05, 1.05, 1.0, 0.95,
            ],
        };
        let weekdays = [1.15, 1.1, 1.05, 1.05, 1.2, 0.85, 0.6];
        let first = Date::from_ymd(2022, 1, 1).expect("a real day");
        let (start, last) = window();
        let weights: Vec<f64> = (first.days()..=last.days())
            .map(|d| {
                let day = Date::from_days(d);
                let years = (d - start.days()) as f64 / 365.25;
                months[day.ymd().1 as usize - 1]
                    * weekdays[day.weekday() as usize - 1]
                    * (1.0 + 0.06 * years)
            })
            .collect();
        let mean = weights.iter().sum::<f64>() / weights.len() as f64;
        let mut cum = Vec::with_capacity(weights.len() + 1);
        cum.push(0.0);
        for w in weights {
            cum.push(cum.last().expect("not empty") + w / mean);
        }
        Calendar { first, cum }
    }

    /// Operational time at the start of a day.
    fn time(&self, day: Date) -> f64 {
        let i = (day.days() - self.first.days()).clamp(0, self.cum.len() as i32 - 1) as usize;
        self.cum[i]
    }

    /// The day at operational time `u`.
    fn day(&self, u: f64) -> Date {
        let i = self.cum.partition_point(|&c| c <= u).saturating_sub(1);
        self.first.add_days(i as i32)
    }
}

/// What every customer of a data set shares.
pub(crate) struct World {
    pub(crate) catalog: Catalog,
    pub(crate) campaigns: Vec<CampaignPlan>,
    calendar: Calendar,
}

impl World {
    pub(crate) fn new(config: &Config) -> World {
        World {
            catalog: Catalog::new(config.industry, config.seed),
            campaigns: campaigns(config.industry, config.customers),
            calendar: Calendar::new(config.industry),
        }
    }
}

/// Generates customer `number` into `buf`, counting campaign contacts in `sent`.
pub(crate) fn customer(
    config: &Config,
    number: u32,
    world: &World,
    ids: &mut Ids,
    sent: &mut [u64],
    buf: &mut Buffers,
) {
    Person::new(config, number, &world.catalog, &world.calendar).live(
        &world.campaigns,
        ids,
        sent,
        buf,
    );
}

struct Person<'a> {
    rng: Pcg64Mcg,
    industry: Industry,
    how: &'static Behaviour,
    catalog: &'a Catalog,
    calendar: &'a Calendar,
    id: CustomerId,
    region: usize,
    joined: Date,
    tier: usize,
    segment: usize,
    has_mortgage: bool,
    intensity: f64,
    spend: f64,
    never_buys: bool,
    favourites: Vec<usize>,
    usual_channel: SalesChannel,
    rep: String,
}

impl<'a> Person<'a> {
    fn new(
        config: &Config,
        number: u32,
        catalog: &'a Catalog,
        calendar: &'a Calendar,
    ) -> Person<'a> {
        // Each customer's own stream: the same customer whatever came before.
        let mut rng = Pcg64Mcg::seed_from_u64(
            config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ (number as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
        );
        let how = behaviour(config.industry);
        let region = pick(&cumulative(REGIONS.iter().map(|r| r.2)), &mut rng);
        let z_intensity = normal(&mut rng);
        let z_spend = normal(&mut rng);
        let intensity = (1.05 * z_intensity - 1.05 * 1.05 / 2.0).exp();
        let spend = (0.65 * z_spend - 0.65 * 0.65 / 2.0).exp();
        let never_buys = chance(&mut rng, how.never_buy);
        let mut score = 1.05 * z_intensity + 0.65 * z_spend + 0.35 * normal(&mut rng);
        if never_buys {
            score -= 1.0;
        }
        let sd = (1.05f64 * 1.05 + 0.65 * 0.65 + 0.35 * 0.35).sqrt();
        let tier = [0.0, 0.8416 * sd, 1.6449 * sd]
            .iter()
            .filter(|&&cut| score >= cut)
            .count();
        let n_reps = (config.customers / (250 * REGIONS.len() as u32)).max(2);
        let rep = format!(
            "R{:04}",
            region as u32 * n_reps + rng.random_range(0..n_reps) + 1
        );
        let joined = join_day(&mut rng);
        Person {
            rng,
            industry: config.industry,
            how,
            catalog,
            calendar,
            id: CustomerId::parse(&format!("C{number:07}")).expect("generated ids are valid"),
            region,
            joined,
            tier,
            segment: 0,
            has_mortgage: false,
            intensity,
            spend,
            never_buys,
            favourites: Vec::new(),
            usual_channel: SalesChannel::Store,
            rep,
        }
    }

    fn live(
        mut self,
        campaigns: &[CampaignPlan],
        ids: &mut Ids,
        sent: &mut [u64],
        buf: &mut Buffers,
    ) {
        let customer = self.profile();
        self.choose_favourites();
        let days = self.purchase_days();
        let (start, _) = window();
        let mut lines = Vec::new();
        for &day in days.iter().filter(|&&d| d >= start) {
            self.basket(day, None, &mut lines);
        }
        let mut events = Vec::new();
        self.campaigns(campaigns, &days, sent, &mut lines, &mut events);
        self.cases(&days, &mut events);
        self.contacts(&mut events);

        lines.sort_by_key(|l| (l.day, l.second));
        for line in lines {
            ids.txn += 1;
            buf.transactions
                .push(Record::Transaction(self.transaction(ids.txn, line)));
        }
        events.sort_by_key(|e| (e.day, e.second));
        for event in events {
            ids.interaction += 1;
            buf.interactions.push(Record::Interaction(self.interaction(
                ids.interaction,
                event,
                campaigns,
            )));
        }
        buf.customer = Some(customer);
    }

    fn profile(&mut self) -> Customer {
        let how = self.how;
        let rng = &mut self.rng;
        let (region, cities, _, _) = REGIONS[self.region];
        let city =
            cities[(rng.random::<f64>() * rng.random::<f64>() * cities.len() as f64) as usize];
        let gender = ["M", "F", "U"][pick(&cumulative(how.genders.iter().copied()), rng)];
        let acquisition =
            AcquisitionChannel::ALL[pick(&cumulative(how.acquisition.iter().copied()), rng)];
        self.usual_channel = match acquisition {
            AcquisitionChannel::Online => SalesChannel::Online,
            AcquisitionChannel::Phone => SalesChannel::Phone,
            AcquisitionChannel::Field => SalesChannel::Field,
            _ => SalesChannel::Store,
        };
        let (lo, hi) = how.ages;
        let (_, last) = window();
        let age = match self.industry {
            Industry::Retail => {
                lo + ((hi - lo) as f64
                    * (0.15 + 0.85 * rng.random::<f64>())
                    * (0.4 + 0.6 * rng.random::<f64>())) as i32
            }
            Industry::Banking => {
                let (u, v) = (rng.random::<f64>(), rng.random::<f64>());
                lo + ((hi - lo) as f64 * (0.7 * u.min(v) + 0.3 * rng.random::<f64>())) as i32
            }
        };
        let mut birth = last.add_days(-(age * 365) - rng.random_range(0..365));
        // Customers are adults when they join.
        if birth > self.joined.add_days(-18 * 365) {
            birth = self
                .joined
                .add_days(-18 * 365 - rng.random_range(0..8 * 365));
        }
        let birth_date = (!chance(rng, how.birth_unknown)).then_some(birth);
        let age = (last.days() - birth.days()) / 365;

        let (name, attributes) = match self.industry {
            Industry::Retail => {
                self.segment = pick(&cumulative([0.45, 0.15, 0.25, 0.15].into_iter()), rng);
                match self.segment {
                    1 => self.spend *= 1.8,
                    2 => self.spend *= 0.7,
                    _ => {}
                }
                let district = ["residential", "commercial", "school", "transport"]
                    [pick(&cumulative([0.4, 0.3, 0.1, 0.2].into_iter()), rng)];
                let quota = ((how.base_quantity
                    * self.spend
                    * self.intensity
                    * 22.0
                    * (0.8 + 0.4 * rng.random::<f64>()))
                .round() as i64
                    / 5
                    * 5)
                .max(10);
                let license = format!(
                    "{:02}{:010}",
                    11 + self.region * 7,
                    rng.random_range(0..10_000_000_000u64)
                );
                let attributes = format!(
                    r#"{{"license_no":"{license}","store_type":"{}","business_district":"{district}","monthly_quota":{quota}}}"#,
                    how.segments[self.segment]
                );
                (names::outlet(rng), attributes)
            }
            Industry::Banking => {
                self.segment = if age < 27 && chance(rng, 0.55) {
                    3
                } else if age >= 62 && chance(rng, 0.75) {
                    2
                } else if chance(rng, 0.8) {
                    0
                } else {
                    1
                };
                let factor = [1.0, 1.3, 0.7, 0.35][self.segment];
                let income = (4_500_000.0 * (0.65 * normal(rng) - 0.21).exp() * factor) as i64;
                let score = (680.0 + 70.0 * normal(rng) + 25.0 * self.spend.ln())
                    .clamp(300.0, 850.0) as i64;
                self.has_mortgage =
                    (self.segment <= 1 && (28..=60).contains(&age) && chance(rng, 0.42))
                        || chance(rng, 0.03);
                let risk = if score >= 720 {
                    "low"
                } else if score >= 620 {
                    "medium"
                } else {
                    "high"
                };
                let attributes = format!(
                    r#"{{"credit_score":{score},"annual_income":{},"employment":"{}","has_mortgage":{},"risk_level":"{risk}"}}"#,
                    Money::from_cents(income),
                    how.segments[self.segment],
                    self.has_mortgage
                );
                (names::person(rng, gender), attributes)
            }
        };
        Customer {
            customer_id: self.id.clone(),
            name,
            gender: Gender::parse(gender).expect("a known gender"),
            birth_date,
            region: region.to_owned(),
            city: city.to_owned(),
            channel: acquisition,
            joined_at: self.joined,
            tier: TIERS[self.tier].to_owned(),
            attributes: Attributes::parse(&attributes)
                .expect("generated attributes are valid JSON"),
        }
    }

    fn choose_favourites(&mut self) {
        let n = 2 + self.rng.random_range(0..5);
        let preferences = self.how.preferences[self.segment];
        if self.has_mortgage {
            let mortgage = self.catalog.category_index("mortgage");
            self.favourites
                .push(self.catalog.pick_in(mortgage, &mut self.rng));
        }
        for _ in 0..30 {
            if self.favourites.len() >= n {
                break;
            }
            let product = if chance(&mut self.rng, 0.55) {
                let category = self
                    .catalog
                    .category_index(preferences[self.rng.random_range(0..preferences.len())]);
                self.catalog.pick_in(category, &mut self.rng)
            } else {
                self.catalog.pick(&mut self.rng)
            };
            if !self.favourites.contains(&product) {
                self.favourites.push(product);
            }
        }
    }

    /// Every day this customer buys, from 2022 (history) to their last day.
    fn purchase_days(&mut self) -> Vec<Date> {
        let (start, last) = window();
        let first = self.joined.max(start);
        if self.never_buys || first > last {
            return Vec::new();
        }
        let mut end = last;
        if chance(&mut self.rng, self.how.churn) && last.days() - first.days() > 240 {
            // Churners stop at least about four months before the end.
            let span = (last.days() - 120 - first.days() - 60).max(1);
            end = first.add_days(60 + self.rng.random_range(0..span));
        }
        let mean_gap = 365.25 / (self.how.baskets_per_year * self.intensity);
        let simulated_from = self.joined.max(self.calendar.first);
        let mut u = self.calendar.time(simulated_from);
        let u_end = self.calendar.time(end.add_days(1));
        u += if self.joined >= self.calendar.first {
            exponential(&mut self.rng) * mean_gap.min(20.0) * 0.5
        } else {
            self.rng.random::<f64>() * mean_gap
        };
        let gaps = Gamma::new(3.0, 1.0 / 3.0).expect("valid gamma parameters");
        let mut days: Vec<Date> = Vec::new();
        while u < u_end {
            let day = self.calendar.day(u);
            if days.last() != Some(&day) {
                days.push(day);
            }
            u += gaps.sample(&mut self.rng) * mean_gap;
        }
        days
    }

    fn second_of_day(&mut self) -> u32 {
        let hours: &[f64] = match self.industry {
            Industry::Retail => &[
                0., 0., 0., 0., 0., 0., 0.2, 0.6, 1.2, 1.6, 1.5, 1.2, 0.8, 0.8, 1.1, 1.4, 1.3, 1.0,
                0.6, 0.4, 0.3, 0.1, 0., 0.,
            ],
            Industry::Banking => &[
                0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.8, 1.2, 1.5, 1.5, 1.4, 1.3, 1.3, 1.4, 1.4,
                1.3, 1.2, 1.1, 1.0, 0.9, 0.7, 0.5, 0.3,
            ],
        };
        let hour = pick(&cumulative(hours.iter().copied()), &mut self.rng) as u32;
        hour * 3600 + self.rng.random_range(0..3600)
    }

    /// One basket on `day`; `promoted` adds a line of that category.
    fn basket(&mut self, day: Date, promoted: Option<usize>, lines: &mut Vec<Line>) {
        let n_lines = 1 + pick(
            &cumulative(self.how.lines_per_basket.iter().copied()),
            &mut self.rng,
        );
        let mut products: Vec<usize> = Vec::with_capacity(n_lines + 2);
        if let Some(category) = promoted {
            products.push(self.catalog.pick_in(category, &mut self.rng));
        }
        while products.len() < n_lines.max(promoted.map_or(0, |_| 1)) {
            let product = if chance(&mut self.rng, 0.7) {
                self.favourites[self.rng.random_range(0..self.favourites.len())]
            } else {
                self.catalog.pick(&mut self.rng)
            };
            if !products.contains(&product) {
                products.push(product);
            } else if products.len() >= self.favourites.len() {
                break;
            }
        }
        // Planted pairs and category partners join the basket.
        let mut extra = Vec::new();
        for &product in &products {
            if let Some(partner) = self.catalog.partner[product]
                && chance(&mut self.rng, self.catalog.partner_chance)
            {
                extra.push(partner);
            }
            if let Some((category, p)) =
                self.catalog.category_partner[self.catalog.category[product]]
                && chance(&mut self.rng, p)
            {
                extra.push(self.catalog.pick_in(category, &mut self.rng));
            }
        }
        for product in extra {
            if !products.contains(&product) {
                products.push(product);
            }
        }
        let second = self.second_of_day();
        // Sometimes a second order on the same day.
        let split = if products.len() > 2 && chance(&mut self.rng, 0.1) {
            products.len() / 2
        } else {
            products.len()
        };
        let later = (second + 1800 + self.rng.random_range(0..7200)).min(86_399);
        let channel = if chance(&mut self.rng, 0.85) {
            self.usual_channel
        } else {
            SalesChannel::ALL[self.rng.random_range(0..4)]
        };
        for (i, product) in products.into_iter().enumerate() {
            let quantity = match self.industry {
                Industry::Retail => {
                    let noise = (0.35 * normal(&mut self.rng) - 0.06).exp();
                    (self.how.base_quantity * self.spend * noise)
                        .round()
                        .max(1.0) as u32
                }
                Industry::Banking => 1 + (self.rng.random::<f64>() * self.spend.min(2.5)) as u32,
            };
            lines.push(Line {
                day,
                second: if i < split { second } else { later },
                product,
                quantity,
                channel,
            });
        }
    }

    fn campaigns(
        &mut self,
        campaigns: &[CampaignPlan],
        days: &[Date],
        sent: &mut [u64],
        lines: &mut Vec<Line>,
        events: &mut Vec<Event>,
    ) {
        let (_, last) = window();
        for (i, plan) in campaigns.iter().enumerate() {
            if self.joined > plan.start {
                continue;
            }
            let bought_within = |n: i32| {
                days.iter()
                    .any(|d| *d < plan.start && d.days() >= plan.start.days() - n)
            };
            let eligible = match plan.rule {
                Rule::All => true,
                Rule::Active(n) => bought_within(n),
                Rule::Lapsed(n) => days.iter().any(|d| *d < plan.start) && !bought_within(n),
                Rule::New(n) => plan.start.days() - self.joined.days() <= n,
                Rule::Tier(t) => self.tier >= t,
                Rule::Segment(s) => self.segment == s,
                Rule::Mortgage => self.has_mortgage,
            };
            if !eligible || !chance(&mut self.rng, plan.reach) {
                continue;
            }
            sent[i] += 1;
            let department = campaign_department(plan.channel);
            let rep = (plan.channel == CampaignChannel::Visit).then(|| self.rep.clone());
            let mut event = Event::new(
                plan.start,
                9 * 3600 + self.rng.random_range(0..3 * 3600),
                InteractionKind::PromotionSent,
                department,
            );
            event.campaign = Some(i);
            event.rep = rep.clone();
            events.push(event);
            let p = plan.response * (1.0 + 0.25 * self.intensity.ln()).clamp(0.3, 2.0);
            if !chance(&mut self.rng, p) {
                continue;
            }
            let day = plan.start.add_days(self.rng.random_range(0..10)).min(last);
            let mut response = Event::new(
                day,
                9 * 3600 + self.rng.random_range(0..9 * 3600),
                InteractionKind::PromotionResponse,
                department,
            );
            response.campaign = Some(i);
            response.rep = rep;
            events.push(response);
            // Responders buy the promoted category soon after.
            if !self.favourites.is_empty() && chance(&mut self.rng, 0.8) {
                let buy = day.add_days(self.rng.random_range(0..14)).min(last);
                let category = self.catalog.category_index(plan.category);
                self.basket(buy, Some(category), lines);
            }
        }
    }

    /// Opinions and consultations, how they were resolved, and surveys.
    fn cases(&mut self, days: &[Date], events: &mut Vec<Event>) {
        let (start, last) = window();
        let from = self.joined.max(start);
        if from > last {
            return;
        }
        let years = (last.days() - from.days() + 1) as f64 / 365.25;
        let rate = (0.12 + 0.1 * self.intensity.min(4.0)) + 0.25;
        let n_cases = poisson(&mut self.rng, rate * years);
        let service = REGIONS[self.region].3 + 0.15 * (self.tier as f64 - 1.0);
        let mut experience = 0.0;
        for _ in 0..n_cases {
            let day = from.add_days(self.rng.random_range(0..=(last.days() - from.days())));
            let second = 7 * 3600 + self.rng.random_range(0..13 * 3600);
            let opinion = chance(&mut self.rng, 0.45);
            let weights = if opinion {
                self.how.opinion_topics
            } else {
                self.how.consultation_topics
            };
            let topic = Topic::ALL[pick(&cumulative(weights.into_iter()), &mut self.rng)];
            let home = home_department(topic);
            let department = if chance(&mut self.rng, 0.85) {
                home
            } else {
                Department::ALL[self.rng.random_range(0..6)]
            };
            let (share, median_hours) = if opinion {
                let (_, share, hours) = RESOLUTION
                    .iter()
                    .find(|r| r.0 == department)
                    .expect("every department");
                (*share, *hours)
            } else {
                (0.93, 3.0)
            };
            let mut event = Event::new(
                day,
                second,
                if opinion {
                    InteractionKind::Opinion
                } else {
                    InteractionKind::Consultation
                },
                department,
            );
            event.topic = Some(topic);
            if matches!(
                topic,
                Topic::Quality | Topic::Price | Topic::Availability | Topic::ProductInfo
            ) && !self.favourites.is_empty()
                && chance(&mut self.rng, 0.6)
            {
                event.product =
                    Some(self.favourites[self.rng.random_range(0..self.favourites.len())]);
            }
            if department == Department::Sales && chance(&mut self.rng, 0.7) {
                event.rep = Some(self.rep.clone());
            }
            let mut hours = None;
            if chance(&mut self.rng, share) {
                let h = median_hours * normal(&mut self.rng).exp();
                let resolved = Timestamp::from_seconds(
                    day.start().seconds() + second as i64 + (h * 3600.0) as i64 + 60,
                );
                if resolved.date() <= last {
                    event.resolved = Some(resolved);
                    hours = Some(h);
                }
            }
            let effect = match hours {
                None if opinion => -1.5,
                None => -0.6,
                Some(h) if h <= 24.0 => 0.4,
                Some(h) if h <= 72.0 => -0.1,
                Some(_) => -0.7,
            };
            if opinion {
                experience += effect;
            }
            events.push(event);
            if chance(&mut self.rng, 0.4) {
                let after =
                    hours.map_or(7, |h| (h / 24.0) as i32) + 1 + self.rng.random_range(0..3);
                let survey_day = day.add_days(after);
                if survey_day <= last {
                    let rating =
                        rating(3.7 + service + effect + (self.rng.random::<f64>() - 0.5) * 1.4);
                    let mut survey = Event::new(
                        survey_day,
                        9 * 3600 + self.rng.random_range(0..10 * 3600),
                        InteractionKind::Survey,
                        Department::Service,
                    );
                    survey.rating = Some(rating);
                    events.push(survey);
                }
            }
        }
        if chance(&mut self.rng, 0.2) {
            let day = from.add_days(self.rng.random_range(0..=(last.days() - from.days())));
            let loyal = if days.len() >= 4 { 0.25 } else { 0.0 };
            let rating = rating(
                3.6 + service + 0.5 * experience + loyal + (self.rng.random::<f64>() - 0.5) * 1.4,
            );
            let department = if chance(&mut self.rng, 0.4) {
                Department::Marketing
            } else {
                Department::Service
            };
            let mut survey = Event::new(
                day,
                9 * 3600 + self.rng.random_range(0..10 * 3600),
                InteractionKind::Survey,
                department,
            );
            survey.rating = Some(rating);
            events.push(survey);
        }
    }

    /// Routine contacts by the account's departments, and now and then a
    /// week in which several departments call the same customer.
    fn contacts(&mut self, events: &mut Vec<Event>) {
        let (start, last) = window();
        let from = self.joined.max(start);
        if from > last {
            return;
        }
        let per_day = (0.14 + 0.12 * self.intensity.min(4.0)) / 365.25;
        let mut t = from.days() as f64 + exponential(&mut self.rng) / per_day;
        while t <= last.days() as f64 {
            let v: f64 = self.rng.random();
            let department = match v {
                v if v < 0.55 => Department::Sales,
                v if v < 0.7 => Department::Service,
                v if v < 0.8 => Department::Marketing,
                v if v < 0.9 => Department::Logistics,
                v if v < 0.97 => Department::Finance,
                _ => Department::Compliance,
            };
            let mut event = Event::new(
                Date::from_days(t as i32),
                8 * 3600 + self.rng.random_range(0..10 * 3600),
                InteractionKind::Contact,
                department,
            );
            if department == Department::Sales {
                event.rep = Some(self.rep.clone());
            }
            events.push(event);
            t += exponential(&mut self.rng) / per_day;
        }
        if chance(&mut self.rng, 0.012) && last.days() - from.days() > 20 {
            let mut monday =
                from.add_days(self.rng.random_range(0..(last.days() - 6 - from.days())));
            monday = monday.add_days(1 - monday.weekday() as i32);
            if monday < from {
                monday = monday.add_days(7);
            }
            let mut departments = [
                Department::Sales,
                Department::Finance,
                Department::Compliance,
                Department::Logistics,
                Department::Service,
            ];
            departments.shuffle(&mut self.rng);
            let n = 3 + self.rng.random_range(0..2);
            for &department in &departments[..n] {
                let day = monday.add_days(self.rng.random_range(0..7)).min(last);
                let mut event = Event::new(
                    day,
                    8 * 3600 + self.rng.random_range(0..10 * 3600),
                    InteractionKind::Contact,
                    department,
                );
                if department == Department::Sales {
                    event.rep = Some(self.rep.clone());
                }
                events.push(event);
            }
        }
    }

    fn transaction(&self, number: u64, line: Line) -> Transaction {
        let product = &self.catalog.products[line.product];
        let price = product.unit_price.cents() * line.quantity as i64;
        let amount = price - price * TIER_DISCOUNT_BP[self.tier] / 10_000;
        Transaction {
            txn_id: TxnId::parse(&format!("T{number:010}")).expect("generated ids are valid"),
            customer_id: self.id.clone(),
            ts: Timestamp::from_seconds(line.day.start().seconds() + line.second as i64),
            sku: product.sku.clone(),
            quantity: line.quantity,
            amount: Money::from_cents(amount),
            cost: Money::from_cents(product.unit_cost.cents() * line.quantity as i64),
            channel: line.channel,
            region: REGIONS[self.region].0.to_owned(),
        }
    }

    fn interaction(&self, number: u64, event: Event, campaigns: &[CampaignPlan]) -> Interaction {
        Interaction {
            interaction_id: InteractionId::parse(&format!("I{number:010}"))
                .expect("generated ids are valid"),
            customer_id: self.id.clone(),
            ts: Timestamp::from_seconds(event.day.start().seconds() + event.second as i64),
            kind: event.kind,
            department: event.department,
            sku: event.product.map(|p| self.catalog.products[p].sku.clone()),
            rep: event.rep,
            region: REGIONS[self.region].0.to_owned(),
            topic: event.topic,
            resolved_ts: event.resolved,
            rating: event.rating,
            campaign_id: event
                .campaign
                .map(|c| CampaignId::parse(&campaigns[c].id).expect("generated ids are valid")),
        }
    }
}

fn home_department(topic: Topic) -> Department {
    match topic {
        Topic::Price | Topic::ProductInfo => Department::Sales,
        Topic::Quality | Topic::Service => Department::Service,
        Topic::Delivery | Topic::Availability => Department::Logistics,
        Topic::Billing => Department::Finance,
    }
}

fn rating(x: f64) -> u8 {
    x.round().clamp(1.0, 5.0) as u8
}

/// A Poisson-distributed count with the given mean.
fn poisson(rng: &mut Pcg64Mcg, mean: f64) -> u32 {
    let mut n = 0;
    let mut t = exponential(rng);
    while t < mean {
        n += 1;
        t += exponential(rng);
    }
    n
}

/// When a customer joined: about 40% before the window (2014..2022, a slowly
/// growing intake), the rest inside it, with an intake that grows month by
/// month and bumps in March and September.
fn join_day(rng: &mut Pcg64Mcg) -> Date {
    let (start, last) = window();
    let earliest = Date::from_ymd(2014, 1, 1).expect("a real day");
    if chance(rng, 0.4) {
        let span = (start.days() - earliest.days()) as f64;
        // Density growing from 0.6 to 1.4 across the span.
        let u: f64 = rng.random();
        let x = (-0.6 + (0.36 + 1.6 * u).sqrt()) / 0.8;
        return earliest.add_days((x * span) as i32);
    }
    const SEASON: [f64; 12] = [
        1.0, 1.05, 1.2, 1.05, 1.0, 0.95, 0.9, 0.8, 1.2, 1.05, 1.0, 0.8,
    ];
    let months: Vec<f64> = (0..36)
        .map(|m| (0.45 + 0.031 * m as f64) * SEASON[m % 12])
        .collect();
    let m = pick(&cumulative(months.into_iter()), rng);
    let first = Date::from_ymd(2023 + (m / 12) as i32, (m % 12) as u32 + 1, 1).expect("a real day");
    let days = model::calendar::days_in_month(first.year(), first.ymd().1) as i32;
    first.add_days(rng.random_range(0..days)).min(last)
}
