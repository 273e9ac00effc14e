//! The guest side: generated bindings, the `Plugin` trait, helpers, and the
//! dispatch that turns batches into per-customer calls.

use std::cell::{OnceCell, RefCell};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::wire;
pub use crate::wire::{
    Cell, Column, Field, Issue, Kind, Line, Metrics, Patch, Product, Reason, Table,
};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_plugin_bindings",
        default_bindings_module: "crm_sdk::bindings",
    });
}

use bindings::crm::plugin::host;

/// An industry plugin. Every method has a default: implement those your
/// `plugin.toml` declares in `[hooks]`.
pub trait Plugin: Default + 'static {
    /// Checks a customer being written; issues reject the write, patches
    /// change the plugin's own fields.
    fn validate(&self, customer: &Customer, ctx: &Context) -> Result<Verdict, String> {
        let _ = (customer, ctx);
        Ok(Verdict::default())
    }

    /// The values of the plugin's derived fields for a customer.
    fn derive(&self, customer: &Customer, ctx: &Context) -> Result<Vec<Field>, String> {
        let _ = (customer, ctx);
        Err("this plugin derives no fields".into())
    }

    /// Scores a customer with the named model.
    fn score(&self, model: &str, customer: &Customer, ctx: &Context) -> Result<Score, String> {
        let _ = (customer, ctx);
        Err(format!("this plugin has no model {model}"))
    }

    /// Starts the named industry analysis; the CRM feeds it every customer.
    fn analysis(&self, name: &str, params: &Value) -> Result<Box<dyn Analysis>, String> {
        let _ = params;
        Err(format!("this plugin has no analysis {name}"))
    }
}

/// A running industry analysis.
pub trait Analysis {
    fn feed(&mut self, customer: &Customer, ctx: &Context) -> Result<(), String>;
    fn finish(self: Box<Self>) -> Result<Table, String>;
}

/// A customer, as the plugin sees it.
pub struct Customer<'a> {
    wire: &'a wire::Customer<'a>,
    attributes: OnceCell<Map<String, Value>>,
}

impl<'a> Customer<'a> {
    pub fn new(wire: &'a wire::Customer<'a>) -> Customer<'a> {
        Customer {
            wire,
            attributes: OnceCell::new(),
        }
    }

    pub fn id(&self) -> &str {
        &self.wire.id
    }

    /// The core fields: name, gender, region, tier, dates (as days).
    pub fn core(&self) -> &wire::Customer<'a> {
        self.wire
    }

    pub fn metrics(&self) -> &Metrics {
        &self.wire.metrics
    }

    /// The transaction lines the manifest asked for, oldest first.
    pub fn lines(&self) -> &[Line<'a>] {
        &self.wire.lines
    }

    /// All industry fields.
    pub fn attributes(&self) -> &Map<String, Value> {
        self.attributes
            .get_or_init(|| serde_json::from_str(&self.wire.attributes).unwrap_or_default())
    }

    pub fn attr(&self, name: &str) -> Option<&Value> {
        self.attributes().get(name).filter(|v| !v.is_null())
    }

    pub fn attr_str(&self, name: &str) -> Option<&str> {
        self.attr(name).and_then(Value::as_str)
    }

    pub fn attr_f64(&self, name: &str) -> Option<f64> {
        self.attr(name).and_then(Value::as_f64)
    }

    pub fn attr_i64(&self, name: &str) -> Option<i64> {
        self.attr(name).and_then(Value::as_i64)
    }

    pub fn attr_bool(&self, name: &str) -> Option<bool> {
        self.attr(name).and_then(Value::as_bool)
    }
}

/// What a call shares for every customer of its batch.
pub struct Context<'a> {
    /// The day the data is as of (days since 1970-01-01).
    pub as_of: i32,
    products: &'a [Product<'a>],
    product_attributes: Vec<OnceCell<Map<String, Value>>>,
    config: &'a Value,
}

impl<'a> Context<'a> {
    /// A context as the host makes it; plugins' own tests build one too.
    pub fn new(as_of: i32, products: &'a [Product<'a>], config: &'a Value) -> Context<'a> {
        let product_attributes = products.iter().map(|_| OnceCell::new()).collect();
        Context {
            as_of,
            products,
            product_attributes,
            config,
        }
    }

    /// The product a line refers to.
    pub fn product(&self, line: &Line) -> Option<&Product<'a>> {
        self.products.get(line.product as usize)
    }

    /// An industry field of the product a line refers to.
    pub fn product_attr(&self, line: &Line, name: &str) -> Option<&Value> {
        let i = line.product as usize;
        let product = self.products.get(i)?;
        self.product_attributes[i]
            .get_or_init(|| serde_json::from_str(&product.attributes).unwrap_or_default())
            .get(name)
            .filter(|v| !v.is_null())
    }

    /// The plugin's configuration (a JSON object).
    pub fn config(&self) -> &Value {
        self.config
    }
}

/// What `validate` says of one customer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    pub issues: Vec<Issue>,
    pub patches: Vec<Patch>,
}

impl Verdict {
    pub fn issue(mut self, field: &str, message: impl Into<String>) -> Verdict {
        self.issues.push(Issue {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    /// Sets one of the plugin's fields.
    pub fn set(mut self, field: &str, value: impl Serialize) -> Verdict {
        let value = serde_json::to_string(&value).expect("values serialize");
        self.patches.push(Patch {
            field: field.into(),
            value: Some(value),
        });
        self
    }

    /// Removes one of the plugin's fields.
    pub fn remove(mut self, field: &str) -> Verdict {
        self.patches.push(Patch {
            field: field.into(),
            value: None,
        });
        self
    }
}

/// A derived field's value.
pub fn field(name: &str, value: impl Serialize) -> Field {
    Field {
        name: name.into(),
        value: serde_json::to_string(&value).expect("values serialize"),
    }
}

/// A score: a value, a band and its reasons.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub value: f64,
    pub band: String,
    pub reasons: Vec<Reason>,
}

impl Score {
    pub fn new(value: f64, band: impl Into<String>) -> Score {
        Score {
            value,
            band: band.into(),
            reasons: Vec::new(),
        }
    }

    pub fn reason(mut self, feature: &str, weight: f64, detail: impl Into<String>) -> Score {
        self.reasons.push(Reason {
            feature: feature.into(),
            weight,
            detail: detail.into(),
        });
        self
    }
}

/// Writes to the CRM's log for this plugin.
pub fn log(message: &str) {
    host::log(host::Level::Info, message);
}

/// Seconds since the epoch, fixed for the call.
pub fn now() -> i64 {
    host::now()
}

thread_local! {
    static CONFIG: OnceCell<Value> = const { OnceCell::new() };
    static ANALYSIS: RefCell<Option<Box<dyn Analysis>>> = RefCell::new(None);
}

fn with_config<R>(f: impl FnOnce(&Value) -> R) -> R {
    CONFIG
        .with(|c| f(c.get_or_init(|| serde_json::from_str(&host::config()).unwrap_or(Value::Null))))
}

/// Calls `f` for each customer of an encoded batch, decoding one customer
/// at a time; encodes the results as they come.
fn per_customer<T: Serialize>(
    batch: &[u8],
    f: impl Fn(&Customer, &Context) -> Result<T, String>,
) -> Result<Vec<u8>, String> {
    let (head, customers) = wire::read_batch(batch)?;
    with_config(|config| {
        let ctx = Context::new(head.as_of, &head.products, config);
        // The same bytes as encoding a Vec of the results: the length, then
        // each result.
        let mut out = postcard::to_extend(&(customers.remaining() as u64), Vec::new())
            .map_err(|e| e.to_string())?;
        for customer in customers {
            let result = f(&Customer::new(&customer?), &ctx);
            out = postcard::to_extend(&result, out).map_err(|e| e.to_string())?;
        }
        Ok(out)
    })
}

#[doc(hidden)]
pub mod run {
    use super::*;

    pub fn validate<P: Plugin>(plugin: &P, batch: &[u8]) -> Result<Vec<u8>, String> {
        per_customer(batch, |c, ctx| {
            plugin.validate(c, ctx).map(|v| wire::Verdict {
                issues: v.issues,
                patches: v.patches,
            })
        })
    }

    pub fn derive<P: Plugin>(plugin: &P, batch: &[u8]) -> Result<Vec<u8>, String> {
        per_customer(batch, |c, ctx| plugin.derive(c, ctx))
    }

    pub fn score<P: Plugin>(plugin: &P, model: &str, batch: &[u8]) -> Result<Vec<u8>, String> {
        per_customer(batch, |c, ctx| {
            plugin.score(model, c, ctx).map(|s| wire::Score {
                value: s.value,
                band: s.band,
                reasons: s.reasons,
            })
        })
    }

    pub fn analysis_begin<P: Plugin>(plugin: &P, name: &str, params: &str) -> Result<(), String> {
        let params: Value = if params.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(params).map_err(|e| format!("invalid parameters: {e}"))?
        };
        let analysis = plugin.analysis(name, &params)?;
        ANALYSIS.with(|a| *a.borrow_mut() = Some(analysis));
        Ok(())
    }

    pub fn analysis_feed(batch: &[u8]) -> Result<(), String> {
        let (head, customers) = wire::read_batch(batch)?;
        with_config(|config| {
            let ctx = Context::new(head.as_of, &head.products, config);
            ANALYSIS.with(|a| {
                let mut a = a.borrow_mut();
                let analysis = a.as_mut().ok_or("no analysis was begun")?;
                for customer in customers {
                    analysis.feed(&Customer::new(&customer?), &ctx)?;
                }
                Ok(())
            })
        })
    }

    pub fn analysis_finish() -> Result<Vec<u8>, String> {
        let analysis = ANALYSIS
            .with(|a| a.borrow_mut().take())
            .ok_or("no analysis was begun")?;
        analysis.finish().map(|t| wire::encode(&t))
    }
}

/// Exports a type implementing [`Plugin`] as the plugin of this component.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ident) => {
        thread_local! {
            static __CRM_PLUGIN: $plugin = <$plugin as ::core::default::Default>::default();
        }

        impl $crate::bindings::exports::crm::plugin::hooks::Guest for $plugin {
            fn validate(batch: Vec<u8>) -> Result<Vec<u8>, String> {
                __CRM_PLUGIN.with(|p| $crate::run::validate(p, &batch))
            }
            fn derive(batch: Vec<u8>) -> Result<Vec<u8>, String> {
                __CRM_PLUGIN.with(|p| $crate::run::derive(p, &batch))
            }
            fn score(model: String, batch: Vec<u8>) -> Result<Vec<u8>, String> {
                __CRM_PLUGIN.with(|p| $crate::run::score(p, &model, &batch))
            }
            fn analysis_begin(name: String, params: String) -> Result<(), String> {
                __CRM_PLUGIN.with(|p| $crate::run::analysis_begin(p, &name, &params))
            }
            fn analysis_feed(batch: Vec<u8>) -> Result<(), String> {
                $crate::run::analysis_feed(&batch)
            }
            fn analysis_finish() -> Result<Vec<u8>, String> {
                $crate::run::analysis_finish()
            }
        }

        $crate::bindings::export_plugin_bindings!($plugin with_types_in $crate::bindings);
    };
}
