//! A plugin that asks for nothing but each customer's id. Its `noop` model
//! reads the id and returns a constant score; its `undeclared` model reads
//! the metrics, which its manifest does not ask for (they arrive empty).

use crm_sdk::{Context, Customer, Plugin, Score};

#[derive(Default)]
struct Minimal;

impl Plugin for Minimal {
    fn score(&self, model: &str, customer: &Customer, _ctx: &Context) -> Result<Score, String> {
        match model {
            "noop" => Ok(Score::new(
                std::hint::black_box(customer.id()).len() as f64 * 0.0,
                "",
            )),
            "undeclared" => Ok(Score::new(customer.metrics().baskets as f64, "")),
            other => Err(format!("unknown model {other}")),
        }
    }
}

crm_sdk::export_plugin!(Minimal);
