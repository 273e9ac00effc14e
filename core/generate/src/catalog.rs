//! The products of an industry, with what the basket generator needs:
//! popularity, planted product pairs and category partners.

use model::{Attributes, Money, Product, Sku};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::Industry;

/// A category: name, number of products, unit price range in currency
/// units, cost/price ratio, relative popularity.
struct CategorySpec {
    name: &'static str,
    count: usize,
    price: (f64, f64),
    cost_ratio: f64,
    popularity: f64,
    /// Banking: product type and the terms its products come in.
    kind: Option<(&'static str, &'static [u32])>,
}

const fn cat(
    name: &'static str,
    count: usize,
    lo: f64,
    hi: f64,
    cost_ratio: f64,
    popularity: f64,
) -> CategorySpec {
    CategorySpec {
        name,
        count,
        price: (lo, hi),
        cost_ratio,
        popularity,
        kind: None,
    }
}

/// A banking category: a product type and the terms its products come in.
const fn bank(spec: CategorySpec, kind: &'static str, terms: &'static [u32]) -> CategorySpec {
    CategorySpec {
        kind: Some((kind, terms)),
        ..spec
    }
}

const RETAIL: &[CategorySpec] = &[
    cat("premium_cigarettes", 20, 120.0, 250.0, 0.84, 1.0),
    cat("mid_cigarettes", 24, 60.0, 110.0, 0.88, 1.6),
    cat("economy_cigarettes", 20, 28.0, 55.0, 0.91, 1.4),
    cat("slim_cigarettes", 16, 70.0, 130.0, 0.86, 0.7),
    cat("menthol_cigarettes", 16, 60.0, 115.0, 0.87, 0.6),
    cat("export_cigarettes", 18, 90.0, 170.0, 0.85, 0.6),
    cat("cigars", 18, 80.0, 400.0, 0.72, 0.3),
    cat("cigarillos", 16, 30.0, 90.0, 0.78, 0.35),
    cat("rolling_tobacco", 16, 40.0, 85.0, 0.82, 0.45),
    cat("pipe_tobacco", 14, 30.0, 75.0, 0.80, 0.2),
    cat("heated_tobacco", 18, 45.0, 75.0, 0.76, 0.5),
    cat("e_cigarettes", 20, 20.0, 55.0, 0.66, 0.45),
];

const BANKING: &[CategorySpec] = &[
    bank(
        cat("current_account", 4, 4.0, 15.0, 0.35, 2.2),
        "deposit",
        &[],
    ),
    bank(
        cat("savings_account", 4, 15.0, 70.0, 0.50, 1.3),
        "deposit",
        &[],
    ),
    bank(
        cat("term_deposit", 5, 40.0, 260.0, 0.62, 0.8),
        "deposit",
        &[3, 6, 12, 24, 36],
    ),
    bank(cat("credit_card", 5, 18.0, 140.0, 0.45, 1.5), "card", &[]),
    bank(cat("debit_card", 3, 2.0, 9.0, 0.30, 1.8), "card", &[]),
    bank(
        cat("personal_loan", 4, 90.0, 550.0, 0.55, 0.5),
        "loan",
        &[12, 24, 36, 60],
    ),
    bank(
        cat("mortgage", 4, 300.0, 1400.0, 0.68, 0.35),
        "loan",
        &[180, 240, 300, 360],
    ),
    bank(
        cat("auto_loan", 3, 120.0, 480.0, 0.58, 0.3),
        "loan",
        &[36, 48, 60, 72],
    ),
    bank(
        cat("life_insurance", 4, 90.0, 380.0, 0.40, 0.35),
        "insurance",
        &[12],
    ),
    bank(
        cat("home_insurance", 3, 45.0, 190.0, 0.42, 0.35),
        "insurance",
        &[12],
    ),
    bank(cat("equity_fund", 5, 45.0, 300.0, 0.50, 0.45), "fund", &[]),
    bank(cat("bond_fund", 4, 30.0, 150.0, 0.52, 0.35), "fund", &[]),
];

/// Category pairs often bought together, with the chance that a basket
/// holding one also gets the other.
const RETAIL_AFFINITY: &[(&str, &str, f64)] = &[
    ("cigars", "cigarillos", 0.35),
    ("rolling_tobacco", "pipe_tobacco", 0.30),
    ("heated_tobacco", "e_cigarettes", 0.30),
    ("premium_cigarettes", "export_cigarettes", 0.15),
    ("slim_cigarettes", "menthol_cigarettes", 0.20),
];
const BANKING_AFFINITY: &[(&str, &str, f64)] = &[
    ("mortgage", "home_insurance", 0.45),
    ("personal_loan", "life_insurance", 0.30),
    ("current_account", "debit_card", 0.30),
    ("equity_fund", "bond_fund", 0.35),
    ("savings_account", "term_deposit", 0.20),
];

const RETAIL_BRANDS: &[&str] = &[
    "Golden Crane",
    "Red Lantern",
    "Jade Peak",
    "Blue Harbour",
    "Silver Pine",
    "Montaña Azul",
    "Northern Star",
    "Lotus",
    "Río Claro",
    "云峰",
    "Old Mill",
    "Black Tower",
    "Amber Leaf",
];
const RETAIL_VARIANTS: &[&str] = &[
    "Classic", "Gold", "Silver", "Original", "Lights", "Smooth", "Reserve", "Ice", "Fresh", "Royal",
];

pub struct Catalog {
    pub products: Vec<Product>,
    pub category_names: Vec<&'static str>,
    /// Category of each product.
    pub category: Vec<usize>,
    /// Products of each category.
    pub by_category: Vec<Vec<usize>>,
    /// Cumulative popularity over all products, and within each category.
    popularity: Vec<f64>,
    category_popularity: Vec<Vec<f64>>,
    /// The planted partner of a product, if any, and the chance it joins.
    pub partner: Vec<Option<usize>>,
    pub partner_chance: f64,
    /// The partner category of a category, with its chance.
    pub category_partner: Vec<Option<(usize, f64)>>,
}

impl Catalog {
    pub fn new(industry: Industry, seed: u64) -> Catalog {
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x5EED_CA7A_1060);
        let (specs, affinity, planted) = match industry {
            Industry::Retail => (RETAIL, RETAIL_AFFINITY, 20),
            Industry::Banking => (BANKING, BANKING_AFFINITY, 6),
        };
        let mut products = Vec::new();
        let mut category = Vec::new();
        let mut by_category = vec![Vec::new(); specs.len()];
        let mut weight = Vec::new();
        for (ci, spec) in specs.iter().enumerate() {
            let mut members = Vec::new();
            for k in 0..spec.count {
                let idx = products.len();
                let u: f64 = rng.random();
                // Prices lean towards the low end of the category's range.
                let price =
                    ((spec.price.0 + (spec.price.1 - spec.price.0) * u * u) * 100.0).round() as i64;
                let ratio = spec.cost_ratio + (rng.random::<f64>() - 0.5) * 0.08;
                let cost = (price as f64 * ratio).round() as i64;
                let (name, brand, attributes) = match spec.kind {
                    None => retail_product(&mut rng, spec.name, price),
                    Some((kind, terms)) => bank_product(spec.name, kind, terms, k),
                };
                products.push(Product {
                    sku: Sku::parse(&format!("P{:04}", idx + 1)).expect("generated skus are valid"),
                    name,
                    category: spec.name.to_owned(),
                    brand,
                    unit_price: Money::from_cents(price),
                    unit_cost: Money::from_cents(cost),
                    attributes: Attributes::parse(&attributes)
                        .expect("generated attributes are valid JSON"),
                });
                category.push(ci);
                by_category[ci].push(idx);
                members.push(idx);
                weight.push(0.0);
            }
            // Zipf-like popularity within the category, in a random order.
            members.shuffle(&mut rng);
            for (rank, idx) in members.into_iter().enumerate() {
                weight[idx] = spec.popularity / ((rank + 1) as f64).powf(0.9);
            }
        }
        let popularity = cumulative(weight.iter().copied());
        let category_popularity = by_category
            .iter()
            .map(|members| cumulative(members.iter().map(|&i| weight[i])))
            .collect();

        // Planted pairs among products of middling popularity.
        let mut order: Vec<usize> = (0..products.len()).collect();
        order.sort_by(|&a, &b| weight[b].total_cmp(&weight[a]).then(a.cmp(&b)));
        let mut middle = order[order.len() / 10..order.len() * 7 / 10].to_vec();
        middle.shuffle(&mut rng);
        let mut partner = vec![None; products.len()];
        for pair in middle.chunks_exact(2).take(planted) {
            partner[pair[0]] = Some(pair[1]);
            partner[pair[1]] = Some(pair[0]);
        }
        let category_names: Vec<&'static str> = specs.iter().map(|s| s.name).collect();
        let mut category_partner = vec![None; specs.len()];
        for &(a, b, chance) in affinity {
            let ia = category_names
                .iter()
                .position(|n| *n == a)
                .expect("affinity names a category");
            let ib = category_names
                .iter()
                .position(|n| *n == b)
                .expect("affinity names a category");
            category_partner[ia] = Some((ib, chance));
            category_partner[ib] = Some((ia, chance));
        }
        Catalog {
            products,
            category_names,
            category,
            by_category,
            popularity,
            category_popularity,
            partner,
            partner_chance: 0.55,
            category_partner,
        }
    }

    pub fn category_index(&self, name: &str) -> usize {
        self.category_names
            .iter()
            .position(|n| *n == name)
            .expect("a known category")
    }

    /// A product drawn by popularity.
    pub fn pick(&self, rng: &mut Pcg64Mcg) -> usize {
        pick(&self.popularity, rng)
    }

    /// A product of category `ci` drawn by popularity.
    pub fn pick_in(&self, ci: usize, rng: &mut Pcg64Mcg) -> usize {
        self.by_category[ci][pick(&self.category_popularity[ci], rng)]
    }
}

fn retail_product(rng: &mut Pcg64Mcg, category: &str, price: i64) -> (String, String, String) {
    let brand = RETAIL_BRANDS[rng.random_range(0..RETAIL_BRANDS.len())];
    let variant = RETAIL_VARIANTS[rng.random_range(0..RETAIL_VARIANTS.len())];
    let soft = matches!(category, "rolling_tobacco" | "pipe_tobacco") || rng.random::<f64>() < 0.35;
    let pack = if soft { "soft" } else { "hard" };
    let size = match category {
        "cigars" => "Box 25",
        "cigarillos" => "Tin 20",
        "rolling_tobacco" => "Pouch 50g",
        "pipe_tobacco" => "Tin 50g",
        "heated_tobacco" => "Sticks 200",
        "e_cigarettes" => "Pods 2x",
        _ => "20s",
    };
    let name = if rng.random::<f64>() < 0.06 {
        format!("{brand} \"{variant}\" Edition {size}")
    } else {
        format!(
            "{brand} {variant} {} {size}",
            if soft { "Soft" } else { "Hard" }
        )
    };
    let band = match price {
        p if p >= 15_000 => "A",
        p if p >= 9_000 => "B",
        p if p >= 6_000 => "C",
        p if p >= 4_000 => "D",
        _ => "E",
    };
    let tar = if category == "e_cigarettes" {
        0
    } else {
        rng.random_range(10..=110)
    };
    let attributes = format!(
        r#"{{"price_band":"{band}","tar_mg":{}.{},"pack":"{pack}"}}"#,
        tar / 10,
        tar % 10
    );
    (name, brand.to_owned(), attributes)
}

fn bank_product(category: &str, kind: &str, terms: &[u32], k: usize) -> (String, String, String) {
    let labels: &[&str] = match category {
        "current_account" => &[
            "Everyday Account",
            "Plus Account",
            "Premier Account",
            "Young Saver Account",
        ],
        "savings_account" => &["Easy Saver", "Bonus Saver", "Kids Saver", "Online Saver"],
        "term_deposit" => &["Fixed Deposit"],
        "credit_card" => &[
            "Classic Card",
            "Gold Card",
            "Platinum Card",
            "Cashback Card",
            "Travel Card",
        ],
        "debit_card" => &["Debit Card", "Contactless Debit", "Youth Debit"],
        "personal_loan" => &["Personal Loan"],
        "mortgage" => &["Home Mortgage"],
        "auto_loan" => &["Car Loan"],
        "life_insurance" => &["Term Life", "Whole Life", "Family Protect", "Life \"Plus\""],
        "home_insurance" => &["Home Cover", "Home & Contents", "Tenant Cover"],
        "equity_fund" => &[
            "Global Equity",
            "Emerging Markets",
            "Tech Growth",
            "Dividend Income",
            "Índice Europa",
        ],
        _ => &[
            "Government Bonds",
            "Corporate Bonds",
            "Short Duration",
            "Green Bonds",
        ],
    };
    let label = labels[k % labels.len()];
    let term = (!terms.is_empty()).then(|| terms[k % terms.len()]);
    let brand = match kind {
        "insurance" if category == "home_insurance" => "HomeShield",
        "insurance" => "SafeLife Insurance",
        "fund" => "Atlas Funds",
        _ if label.contains("Premier") || label.contains("Platinum") => "CoreBank Premier",
        _ => "CoreBank",
    };
    let mut name = format!("{brand} {label}");
    if let Some(term) = term {
        name.push_str(&format!(" {term}M"));
    }
    let term_json = term.map_or_else(|| "null".to_owned(), |t| t.to_string());
    let attributes = format!(r#"{{"product_type":"{kind}","term_months":{term_json}}}"#);
    (name, brand.to_owned(), attributes)
}

pub(crate) fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut total = 0.0;
    weights
        .map(|w| {
            total += w;
            total
        })
        .collect()
}

/// An index drawn in proportion to the weights behind `cumulative`.
pub(crate) fn pick(cumulative: &[f64], rng: &mut Pcg64Mcg) -> usize {
    let x = rng.random::<f64>() * cumulative.last().copied().unwrap_or(0.0);
    cumulative
        .partition_point(|&c| c <= x)
        .min(cumulative.len() - 1)
}
