//! The five record types and the rules that hold between their fields.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    AcquisitionChannel, Attributes, CampaignChannel, CampaignId, CustomerId, Date, Department,
    Gender, InteractionId, InteractionKind, Money, SalesChannel, Sku, Timestamp, Topic, TxnId,
};

/// Longest free text accepted in a text field (names, cities, ...), in bytes.
pub const MAX_TEXT_LEN: usize = 1024;

/// A customer: a person or an outlet the business sells to.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    /// Stable external key.
    pub customer_id: CustomerId,
    /// Display name (any Unicode text).
    pub name: String,
    pub gender: Gender,
    pub birth_date: Option<Date>,
    /// Sales region.
    pub region: String,
    pub city: String,
    /// How the customer was acquired.
    pub channel: AcquisitionChannel,
    /// First day of the relationship.
    pub joined_at: Date,
    /// Service tier: bronze, silver, gold, platinum or a tier of the business's own.
    pub tier: String,
    /// Industry fields.
    #[serde(default)]
    pub attributes: Attributes,
}

/// A product or service that is sold.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub sku: Sku,
    pub name: String,
    pub category: String,
    pub brand: String,
    /// List price.
    pub unit_price: Money,
    pub unit_cost: Money,
    /// Industry fields.
    #[serde(default)]
    pub attributes: Attributes,
}

/// One order line: a quantity of one product sold to one customer.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    pub txn_id: TxnId,
    pub customer_id: CustomerId,
    /// When the order was placed (UTC).
    pub ts: Timestamp,
    pub sku: Sku,
    /// Units sold, at least 1.
    #[schemars(range(min = 1))]
    pub quantity: u32,
    /// Revenue of the line, after discount.
    pub amount: Money,
    /// Cost of goods of the line.
    pub cost: Money,
    pub channel: SalesChannel,
    /// Region where it was sold.
    pub region: String,
}

/// A contact between the business and a customer: an opinion (complaint or
/// praise), a consultation, a routine contact, a survey answer, or a
/// campaign's promotion sent and the customer's response.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    pub interaction_id: InteractionId,
    pub customer_id: CustomerId,
    /// When it happened (UTC).
    pub ts: Timestamp,
    pub kind: InteractionKind,
    pub department: Department,
    /// Product it is about, if any.
    pub sku: Option<Sku>,
    /// Sales representative, if any.
    pub rep: Option<String>,
    pub region: String,
    /// For opinions and consultations: what it is about.
    pub topic: Option<Topic>,
    /// For opinions and consultations: when it was resolved; none while open.
    pub resolved_ts: Option<Timestamp>,
    /// For surveys: the rating, 1 (worst) to 5 (best).
    #[schemars(range(min = 1, max = 5))]
    pub rating: Option<u8>,
    /// For promotions sent and responses: the campaign.
    pub campaign_id: Option<CampaignId>,
}

/// A marketing campaign.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    pub campaign_id: CampaignId,
    pub name: String,
    pub channel: CampaignChannel,
    /// First day (inclusive); promotions are sent on this day.
    pub start_date: Date,
    /// Last day (inclusive).
    pub end_date: Date,
    pub cost: Money,
}

/// One broken rule of a record: the field and the reason.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Problem {
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

struct Rules(Vec<Problem>);

impl Rules {
    fn new() -> Rules {
        Rules(Vec::new())
    }

    fn fail(&mut self, field: &'static str, reason: impl Into<String>) {
        self.0.push(Problem {
            field,
            reason: reason.into(),
        });
    }

    fn text(&mut self, field: &'static str, value: &str) {
        if value.is_empty() {
            self.fail(field, "is empty");
        } else if value.len() > MAX_TEXT_LEN {
            self.fail(field, format!("is longer than {MAX_TEXT_LEN} bytes"));
        }
    }

    fn not_negative(&mut self, field: &'static str, value: Money) {
        if value.is_negative() {
            self.fail(field, format!("is negative ({value})"));
        }
    }

    fn absent<T>(&mut self, field: &'static str, value: &Option<T>, kind: InteractionKind) {
        if value.is_some() {
            self.fail(field, format!("must be empty for kind {kind}"));
        }
    }
}

impl Customer {
    /// The rules between fields that types alone cannot express.
    pub fn problems(&self) -> Vec<Problem> {
        let mut rules = Rules::new();
        rules.text("name", &self.name);
        rules.text("region", &self.region);
        rules.text("city", &self.city);
        rules.text("tier", &self.tier);
        rules.0
    }
}

impl Product {
    pub fn problems(&self) -> Vec<Problem> {
        let mut rules = Rules::new();
        rules.text("name", &self.name);
        rules.text("category", &self.category);
        rules.text("brand", &self.brand);
        rules.not_negative("unit_price", self.unit_price);
        rules.not_negative("unit_cost", self.unit_cost);
        rules.0
    }
}

impl Transaction {
    pub fn problems(&self) -> Vec<Problem> {
        let mut rules = Rules::new();
        if self.quantity == 0 {
            rules.fail("quantity", "must be at least 1");
        }
        rules.not_negative("amount", self.amount);
        rules.not_negative("cost", self.cost);
        rules.text("region", &self.region);
        rules.0
    }
}

impl Interaction {
    pub fn problems(&self) -> Vec<Problem> {
        let mut rules = Rules::new();
        let kind = self.kind;
        rules.text("region", &self.region);
        if let Some(rep) = &self.rep {
            rules.text("rep", rep);
        }
        if kind.is_case() {
            if self.topic.is_none() {
                rules.fail("topic", format!("is required for kind {kind}"));
            }
            if let Some(resolved) = self.resolved_ts
                && resolved <= self.ts
            {
                rules.fail(
                    "resolved_ts",
                    format!("{resolved} is not after ts {}", self.ts),
                );
            }
        } else {
            rules.absent("topic", &self.topic, kind);
            rules.absent("resolved_ts", &self.resolved_ts, kind);
        }
        if kind == InteractionKind::Survey {
            match self.rating {
                None => rules.fail("rating", "is required for kind survey"),
                Some(r) if !(1..=5).contains(&r) => {
                    rules.fail("rating", format!("{r} is outside 1..5"))
                }
                Some(_) => {}
            }
        } else {
            rules.absent("rating", &self.rating, kind);
        }
        if kind.is_promotion() {
            if self.campaign_id.is_none() {
                rules.fail("campaign_id", format!("is required for kind {kind}"));
            }
        } else {
            rules.absent("campaign_id", &self.campaign_id, kind);
        }
        rules.0
    }
}

impl Campaign {
    pub fn problems(&self) -> Vec<Problem> {
        let mut rules = Rules::new();
        rules.text("name", &self.name);
        if self.end_date < self.start_date {
            rules.fail(
                "end_date",
                format!("{} is before start_date {}", self.end_date, self.start_date),
            );
        }
        rules.not_negative("cost", self.cost);
        rules.0
    }
}

/// The five kinds of record, in the order an import applies them: a kind
/// only refers to kinds before it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum EntityKind {
    Customer,
    Product,
    Campaign,
    Transaction,
    Interaction,
}

impl EntityKind {
    pub const ALL: [EntityKind; 5] = [
        EntityKind::Customer,
        EntityKind::Product,
        EntityKind::Campaign,
        EntityKind::Transaction,
        EntityKind::Interaction,
    ];

    /// Plural name, as in file names and the API: `customers`.
    pub fn plural(self) -> &'static str {
        match self {
            EntityKind::Customer => "customers",
            EntityKind::Product => "products",
            EntityKind::Campaign => "campaigns",
            EntityKind::Transaction => "transactions",
            EntityKind::Interaction => "interactions",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            EntityKind::Customer => "customer",
            EntityKind::Product => "product",
            EntityKind::Campaign => "campaign",
            EntityKind::Transaction => "transaction",
            EntityKind::Interaction => "interaction",
        }
    }

    /// The name of the CSV file of this kind in an import or export directory.
    pub fn file_name(self) -> &'static str {
        match self {
            EntityKind::Customer => "customers.csv",
            EntityKind::Product => "products.csv",
            EntityKind::Campaign => "campaigns.csv",
            EntityKind::Transaction => "transactions.csv",
            EntityKind::Interaction => "interactions.csv",
        }
    }

    pub fn parse(text: &str) -> Option<EntityKind> {
        EntityKind::ALL
            .into_iter()
            .find(|k| k.singular() == text || k.plural() == text)
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.singular())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interaction(kind: InteractionKind) -> Interaction {
        Interaction {
            interaction_id: InteractionId::parse("I1").unwrap(),
            customer_id: CustomerId::parse("C1").unwrap(),
            ts: Timestamp::parse("2025-01-01T10:00:00Z").unwrap(),
            kind,
            department: Department::Service,
            sku: None,
            rep: None,
            region: "North".into(),
            topic: None,
            resolved_ts: None,
            rating: None,
            campaign_id: None,
        }
    }

    fn reasons(problems: Vec<Problem>) -> Vec<String> {
        problems.iter().map(Problem::to_string).collect()
    }

    #[test]
    fn interaction_fields_follow_the_kind() {
        assert_eq!(
            reasons(interaction(InteractionKind::Opinion).problems()),
            ["topic: is required for kind opinion"]
        );
        let mut survey = interaction(InteractionKind::Survey);
        survey.rating = Some(6);
        survey.topic = Some(Topic::Price);
        assert_eq!(
            reasons(survey.problems()),
            [
                "topic: must be empty for kind survey",
                "rating: 6 is outside 1..5"
            ]
        );
        let mut case = interaction(InteractionKind::Consultation);
        case.topic = Some(Topic::Billing);
        case.resolved_ts = Some(case.ts);
        assert_eq!(
            reasons(case.problems()),
            ["resolved_ts: 2025-01-01T10:00:00Z is not after ts 2025-01-01T10:00:00Z"]
        );
        assert_eq!(
            reasons(interaction(InteractionKind::PromotionSent).problems()),
            ["campaign_id: is required for kind promotion_sent"]
        );
        assert!(interaction(InteractionKind::Contact).problems().is_empty());
    }

    #[test]
    fn json_refuses_unknown_fields() {
        let json = r#"{"campaign_id":"CMP1","name":"x","channel":"sms","start_date":"2025-01-01",
                       "end_date":"2025-01-02","cost":1,"budget":3}"#;
        let err = serde_json::from_str::<Campaign>(json)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("unknown field `budget`"), "{err}");
    }
}

/// A record of any of the five kinds.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
#[serde(untagged)]
pub enum Record {
    Customer(Customer),
    Product(Product),
    Campaign(Campaign),
    Transaction(Transaction),
    Interaction(Interaction),
}

impl Record {
    pub fn kind(&self) -> EntityKind {
        match self {
            Record::Customer(_) => EntityKind::Customer,
            Record::Product(_) => EntityKind::Product,
            Record::Campaign(_) => EntityKind::Campaign,
            Record::Transaction(_) => EntityKind::Transaction,
            Record::Interaction(_) => EntityKind::Interaction,
        }
    }

    /// The record's own id.
    pub fn id(&self) -> &str {
        match self {
            Record::Customer(r) => r.customer_id.as_str(),
            Record::Product(r) => r.sku.as_str(),
            Record::Campaign(r) => r.campaign_id.as_str(),
            Record::Transaction(r) => r.txn_id.as_str(),
            Record::Interaction(r) => r.interaction_id.as_str(),
        }
    }

    pub fn problems(&self) -> Vec<Problem> {
        match self {
            Record::Customer(r) => r.problems(),
            Record::Product(r) => r.problems(),
            Record::Campaign(r) => r.problems(),
            Record::Transaction(r) => r.problems(),
            Record::Interaction(r) => r.problems(),
        }
    }
}
