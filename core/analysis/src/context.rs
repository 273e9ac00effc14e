//! What one run of analyses works on: the customers in scope, the as-of
//! date, and the per-customer facts that several analyses share, each
//! computed once, on both cores.

use std::sync::OnceLock;

use model::Date;
use rayon::prelude::*;

use crate::snapshot::{Activity, InteractionSlice, NO_DAY, Snapshot, TxnSlice, activity};

/// Which customers and which date a run of analyses is about.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Analyse the data as it was on this day: lines on or after it and
    /// customers who joined on or after it are left out. By default, the
    /// day after the last transaction (nothing is left out).
    pub as_of: Option<Date>,
    /// Only these customers (rows of the snapshot) and their lines; all
    /// customers when `None`.
    pub customers: Option<Vec<u32>>,
}

/// R, F and M scores of the `buyers` (rows), given every row's activity and
/// rank in id order: buyers are ranked from worst to best (recency
/// descending, frequency ascending, monetary ascending), ties by customer
/// id; score = 1 + 5 * (rank - 1) / n. Rows not among the buyers get 0.
pub fn rfm_scores(
    activity: &[Activity],
    rank: &[u32],
    buyers: &[u32],
    as_of: Option<Date>,
) -> Vec<Scores> {
    let as_of = as_of.map_or(0, Date::days);
    let n = buyers.len();
    let mut res = vec![Scores::default(); activity.len()];
    let score = |position: usize| (1 + 5 * position / n) as u8;
    let mut order = buyers.to_vec();
    order.par_sort_unstable_by_key(|&ci| {
        let recency = (as_of - activity[ci as usize].last_day) as i64;
        (std::cmp::Reverse(recency), rank[ci as usize])
    });
    for (p, &ci) in order.iter().enumerate() {
        res[ci as usize].r = score(p);
    }
    order.par_sort_unstable_by_key(|&ci| (activity[ci as usize].baskets, rank[ci as usize]));
    for (p, &ci) in order.iter().enumerate() {
        res[ci as usize].f = score(p);
    }
    order.par_sort_unstable_by_key(|&ci| (activity[ci as usize].revenue, rank[ci as usize]));
    for (p, &ci) in order.iter().enumerate() {
        res[ci as usize].m = score(p);
    }
    res
}

/// R, F and M scores (1..5, 5 best) of a buyer; 0 for non-buyers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scores {
    pub r: u8,
    pub f: u8,
    pub m: u8,
}

pub struct Context<'s> {
    pub s: &'s Snapshot,
    /// Customers in scope, in row order.
    pub members: Vec<u32>,
    /// The as-of day; `None` when there is no transaction and none was given.
    pub as_of: Option<Date>,
    /// Lines before this timestamp count.
    cutoff: i64,
    activity: OnceLock<Vec<Activity>>,
    scores: OnceLock<Vec<Scores>>,
}

impl<'s> Context<'s> {
    pub fn new(s: &'s Snapshot, scope: &Scope) -> Context<'s> {
        let n = s.customers.len();
        let (as_of, cutoff) = match scope.as_of {
            Some(day) => (Some(day), day.start().seconds()),
            None => (s.default_as_of(), i64::MAX),
        };
        let mut members: Vec<u32> = match &scope.customers {
            Some(rows) => {
                let mut rows: Vec<u32> = rows
                    .iter()
                    .copied()
                    .filter(|&ci| (ci as usize) < n)
                    .collect();
                rows.sort_unstable();
                rows.dedup();
                rows
            }
            None => (0..n as u32).collect(),
        };
        if let Some(day) = scope.as_of {
            members.retain(|&ci| s.customers.joined[ci as usize] < day.days());
        }
        Context {
            s,
            members,
            as_of,
            cutoff,
            activity: OnceLock::new(),
            scores: OnceLock::new(),
        }
    }

    /// Customer `ci`'s transaction lines that count, in time order.
    pub fn txns(&self, ci: u32) -> TxnSlice<'s> {
        let lines = self.s.txns.of(ci);
        if self.cutoff == i64::MAX {
            lines
        } else {
            lines.before(self.cutoff)
        }
    }

    /// Customer `ci`'s interactions that count, in time order.
    pub fn interactions(&self, ci: u32) -> InteractionSlice<'s> {
        let lines = self.s.interactions.of(ci);
        if self.cutoff == i64::MAX {
            lines
        } else {
            lines.before(self.cutoff)
        }
    }

    /// Whether a case resolved at `resolved` counts as resolved.
    pub fn resolved(&self, resolved: i64) -> bool {
        resolved != crate::snapshot::NO_TS && resolved < self.cutoff
    }

    /// Runs `f` over the members on both cores and collects in member order.
    pub fn per_member<T: Send>(&self, f: impl Fn(u32) -> T + Sync) -> Vec<T> {
        self.members.par_iter().map(|&ci| f(ci)).collect()
    }

    /// Each customer's activity, by row (read only for the members).
    pub fn activity(&self) -> &[Activity] {
        if self.cutoff == i64::MAX {
            // Over all lines: the snapshot keeps it current.
            return &self.s.activity;
        }
        self.activity.get_or_init(|| {
            let mut res = vec![Activity::default(); self.s.customers.len()];
            let computed = self.per_member(|ci| activity(self.txns(ci)));
            for (&ci, a) in self.members.iter().zip(computed) {
                res[ci as usize] = a;
            }
            res
        })
    }

    /// Buyers among the members: customers with at least one line.
    pub fn buyers(&self) -> Vec<u32> {
        let activity = self.activity();
        self.members
            .iter()
            .copied()
            .filter(|&ci| activity[ci as usize].lines > 0)
            .collect()
    }

    /// Days from a buyer's last basket to the as-of day.
    pub fn recency(&self, a: &Activity) -> i64 {
        let as_of = self.as_of.map_or(0, Date::days);
        (as_of - a.last_day) as i64
    }

    /// R, F and M scores of every buyer, by row: buyers are ranked from worst
    /// to best (recency descending, frequency ascending, monetary ascending),
    /// ties by customer id; score = 1 + 5 * (rank - 1) / n.
    pub fn scores(&self) -> &[Scores] {
        self.scores.get_or_init(|| {
            let buyers = self.buyers();
            rfm_scores(
                self.activity(),
                self.s.customers.rank(),
                &buyers,
                self.as_of,
            )
        })
    }

    /// Age in completed years at the as-of day, if the birth date is known.
    pub fn age(&self, ci: u32) -> Option<i32> {
        let birth = self.s.customers.birth[ci as usize];
        let as_of = self.as_of?;
        (birth != NO_DAY).then(|| age(Date::from_days(birth), as_of))
    }
}

/// Completed years from `birth` to `at`.
pub fn age(birth: Date, at: Date) -> i32 {
    let (by, bm, bd) = birth.ymd();
    let (ay, am, ad) = at.ymd();
    ay - by - i32::from((am, ad) < (bm, bd))
}

/// Calendar months around a run's as-of day: maps a day to its month index
/// with a few comparisons instead of a calendar conversion.
pub(crate) struct Months {
    /// Month index of the first month covered.
    first: i32,
    /// First day of each covered month, and of the month after the last.
    starts: Vec<i32>,
}

impl Months {
    /// Months `first..=last` (month indexes, `year * 12 + month - 1`).
    pub(crate) fn new(first: i32, last: i32) -> Months {
        let starts = (first..=last + 1)
            .map(|m| {
                Date::from_ymd(m.div_euclid(12), m.rem_euclid(12) as u32 + 1, 1)
                    .map_or(i32::MAX, Date::days)
            })
            .collect();
        Months { first, starts }
    }

    /// The month index of `day`, if it is in a covered month.
    pub(crate) fn of(&self, day: i32) -> Option<i32> {
        if day < self.starts[0] || day >= self.starts[self.starts.len() - 1] {
            return None;
        }
        Some(self.first + self.starts.partition_point(|&s| s <= day) as i32 - 1)
    }
}
