//! Synthetic CRM data sets for demos, tests and benchmarks.
//!
//! `generate` writes the five CSV files of the import format for one
//! industry. The same configuration (industry, customers, seed) gives the
//! same bytes with the same build: every customer draws from its own random
//! stream, derived from the seed and its number.
//!
//! What the data holds, so that every analysis finds something real:
//! long-tailed customer value (log-normal purchase intensity and spend),
//! each customer's own purchase cadence (gamma-distributed gaps) with
//! monthly and weekday seasonality and a growth trend, about a fifth of the
//! buyers churning months before the end and a few customers never buying,
//! favourite products bought again, planted product pairs and category pairs
//! bought together, monthly campaigns with targeting rules and extra
//! purchases by responders, opinions and consultations whose resolution
//! depends on the department, surveys whose ratings follow how a customer
//! was served, and a few customers contacted by several departments in one
//! week. Names hold commas, quotes, apostrophes, Spanish and Chinese text.
//!
//! Transactions lie in 2023-01-01 .. 2025-12-31; customers join from 2014.

mod catalog;
mod names;
mod people;

use std::io::Write;
use std::path::Path;

use model::{Campaign, CampaignChannel, CampaignId, Date, EntityKind, Money, Record};

pub use catalog::Catalog;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Industry {
    /// Tobacco retail outlets supplied by a wholesaler.
    Retail,
    /// Persons with accounts, cards, loans, insurance and funds.
    Banking,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub industry: Industry,
    pub customers: u32,
    pub seed: u64,
}

/// Rows written per file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub customers: u64,
    pub products: u64,
    pub campaigns: u64,
    pub transactions: u64,
    pub interactions: u64,
}

/// First and last day of the transaction window.
pub fn window() -> (Date, Date) {
    (
        Date::parse("2023-01-01").expect("a valid date"),
        Date::parse("2025-12-31").expect("a valid date"),
    )
}

/// Writes customers.csv, products.csv, campaigns.csv, transactions.csv and
/// interactions.csv into `out` (created when missing).
pub fn generate(config: &Config, out: &Path) -> std::io::Result<Summary> {
    if config.customers == 0 || config.customers > 9_999_999 {
        return Err(std::io::Error::other(
            "the number of customers must be between 1 and 9,999,999",
        ));
    }
    std::fs::create_dir_all(out)?;
    let world = people::World::new(config);
    let (catalog, campaigns) = (&world.catalog, &world.campaigns);
    let mut summary = Summary::default();

    let mut files = Files::create(out)?;
    for product in &catalog.products {
        files.write(EntityKind::Product, &Record::Product(product.clone()))?;
        summary.products += 1;
    }
    let mut sent = vec![0u64; campaigns.len()];
    let mut ids = people::Ids::default();
    let mut buf = people::Buffers::default();
    for number in 1..=config.customers {
        people::customer(config, number, &world, &mut ids, &mut sent, &mut buf);
        files.write(
            EntityKind::Customer,
            &Record::Customer(buf.customer.take().expect("a customer")),
        )?;
        summary.customers += 1;
        for record in buf.transactions.drain(..) {
            files.write(EntityKind::Transaction, &record)?;
            summary.transactions += 1;
        }
        for record in buf.interactions.drain(..) {
            files.write(EntityKind::Interaction, &record)?;
            summary.interactions += 1;
        }
    }
    // Campaign costs depend on how many customers each one reached.
    for (plan, sent) in campaigns.iter().zip(sent) {
        let cost = plan.fixed_cost + plan.cost_per_contact * sent as i64;
        let campaign = Campaign {
            campaign_id: CampaignId::parse(&plan.id).expect("generated ids are valid"),
            name: plan.name.clone(),
            channel: plan.channel,
            start_date: plan.start,
            end_date: plan.end,
            cost: Money::from_cents(cost),
        };
        files.write(EntityKind::Campaign, &Record::Campaign(campaign))?;
        summary.campaigns += 1;
    }
    files.finish()?;
    Ok(summary)
}

/// The five output files, each written to a partial file and renamed when done.
struct Files {
    out: std::path::PathBuf,
    writers: Vec<(EntityKind, std::io::BufWriter<std::fs::File>)>,
    line: Vec<u8>,
}

impl Files {
    fn create(out: &Path) -> std::io::Result<Files> {
        let mut writers = Vec::new();
        for kind in EntityKind::ALL {
            let file = std::fs::File::create(out.join(format!(".{}.partial", kind.file_name())))?;
            let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
            let mut header = Vec::new();
            transfer::format::write_header(kind, &mut header);
            writer.write_all(&header)?;
            writers.push((kind, writer));
        }
        Ok(Files {
            out: out.to_path_buf(),
            writers,
            line: Vec::with_capacity(256),
        })
    }

    fn write(&mut self, kind: EntityKind, record: &Record) -> std::io::Result<()> {
        self.line.clear();
        transfer::format::write_record(record, &mut self.line);
        let (_, writer) = self
            .writers
            .iter_mut()
            .find(|(k, _)| *k == kind)
            .expect("every kind has a file");
        writer.write_all(&self.line)
    }

    fn finish(self) -> std::io::Result<()> {
        for (kind, writer) in self.writers {
            writer
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()?;
            std::fs::rename(
                self.out.join(format!(".{}.partial", kind.file_name())),
                self.out.join(kind.file_name()),
            )?;
        }
        Ok(())
    }
}

/// The channel a campaign's department belongs to.
fn campaign_department(channel: CampaignChannel) -> model::Department {
    match channel {
        CampaignChannel::Visit => model::Department::Sales,
        _ => model::Department::Marketing,
    }
}

#[cfg(test)]
mod tests;
