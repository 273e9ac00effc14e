//! Segment memberships kept current as customers change.
//!
//! `Live` holds the compiled segments, the frame of the fields they read
//! and each segment's members. After a change to the store, `refresh` is
//! given the customer rows whose records changed: it recomputes their
//! values, and re-evaluates only them for segments that read nothing
//! beyond a customer's own records; a segment reading the as-of day is
//! re-evaluated in full when that day moves, and one reading ranks among
//! customers or plugin scores whenever any customer changed.

use std::sync::Arc;

use analysis::Snapshot;
use rhai::Engine;

use crate::catalog::{Catalog, Reach};
use crate::engine::{Limits, engine};
use crate::frame::{Extra, Frame};
use crate::segment::{Compiled, Definition, RunError, compile};

pub struct Live {
    pub catalog: Catalog,
    engine: Engine,
    limits: Limits,
    frame: Arc<Frame>,
    segments: Vec<LiveSegment>,
}

struct LiveSegment {
    name: String,
    def: Definition,
    compiled: Compiled,
    /// Membership by row.
    member: Vec<bool>,
}

/// Who entered and left a segment in one refresh (rows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Movement {
    pub segment: String,
    pub entered: Vec<u32>,
    pub left: Vec<u32>,
}

fn run_error(segment: &str, e: impl std::fmt::Display) -> String {
    format!("segment {segment}: {e}")
}

impl Live {
    /// Compiles `segments` (name, definition) and evaluates them over the snapshot.
    pub fn new(
        snapshot: &Snapshot,
        catalog: Catalog,
        segments: Vec<(String, Definition)>,
        limits: Limits,
        extra: &dyn Extra,
    ) -> Result<Live, String> {
        let engine = engine(&catalog, limits);
        let today = snapshot.default_as_of().map(|d| d.days() as i64);
        let mut compiled = Vec::new();
        for (name, def) in segments {
            let c = compile(&engine, &catalog, &def, today).map_err(|e| run_error(&name, e))?;
            compiled.push((name, def, c));
        }
        let needed: Vec<usize> = compiled
            .iter()
            .flat_map(|(_, _, c)| c.reads.iter().copied())
            .collect();
        let frame = Arc::new(Frame::build(snapshot, &catalog, &needed, extra)?);
        let mut live = Live {
            catalog,
            engine,
            limits,
            frame,
            segments: Vec::new(),
        };
        for (name, def, compiled) in compiled {
            let mut seg = LiveSegment {
                name,
                def,
                compiled,
                member: Vec::new(),
            };
            live.evaluate_all(snapshot, &mut seg)?;
            live.segments.push(seg);
        }
        Ok(live)
    }

    fn evaluate_all(&self, snapshot: &Snapshot, seg: &mut LiveSegment) -> Result<(), String> {
        let rows = seg
            .compiled
            .evaluate(
                &self.engine,
                &self.catalog,
                &self.frame,
                None,
                self.limits,
                &|r| snapshot.customers.id(r).to_owned(),
            )
            .map_err(|e| run_error(&seg.name, e))?;
        seg.member = vec![false; self.frame.rows];
        for r in rows {
            seg.member[r as usize] = true;
        }
        Ok(())
    }

    /// The members of segment `name`, in row order.
    pub fn members(&self, name: &str) -> Option<Vec<u32>> {
        let seg = self.segments.iter().find(|s| s.name == name)?;
        Some(
            seg.member
                .iter()
                .enumerate()
                .filter(|(_, m)| **m)
                .map(|(r, _)| r as u32)
                .collect(),
        )
    }

    /// The segments row `row` is a member of.
    pub fn segments_of(&self, row: u32) -> Vec<&str> {
        self.names_of(row).collect()
    }

    /// Reads whether row `row` is in each segment, for a caller that
    /// touches what it will read before reading it (a value for
    /// `std::hint::black_box`).
    pub fn touch(&self, row: u32) -> u64 {
        self.segments
            .iter()
            .map(|s| s.member.get(row as usize).copied().unwrap_or(false) as u64)
            .sum()
    }

    /// As `segments_of`, one name at a time.
    pub fn names_of(&self, row: u32) -> impl Iterator<Item = &str> {
        self.segments
            .iter()
            .filter(move |s| s.member.get(row as usize).copied().unwrap_or(false))
            .map(|s| s.name.as_str())
    }

    pub fn names(&self) -> Vec<&str> {
        self.segments.iter().map(|s| s.name.as_str()).collect()
    }

    /// Brings memberships up to date after the customers `changed` (rows of
    /// `snapshot`, which already holds the changes) changed; returns who
    /// entered and left each segment.
    pub fn refresh(
        &mut self,
        snapshot: &Snapshot,
        changed: &[u32],
        extra: &dyn Extra,
    ) -> Result<Vec<Movement>, String> {
        let today = snapshot.default_as_of().map(|d| d.days() as i64);
        let day_moved = today != self.frame.as_of;
        let grew = snapshot.customers.len() != self.frame.rows;
        if changed.is_empty() && !day_moved && !grew {
            return Ok(Vec::new());
        }
        // Values: the changed rows; whole columns that depend on the day or
        // on every customer.
        let mut frame = (*self.frame).clone();
        let stale: Vec<usize> = (0..frame.columns.len())
            .filter(|&f| frame.columns[f].is_some())
            .filter(|&f| match self.catalog.fields()[f].reach {
                Reach::Own => false,
                Reach::AsOf => day_moved,
                Reach::Population => true,
            })
            .collect();
        for &f in &stale {
            frame.columns[f] = None;
        }
        let mut rows: Vec<u32> = changed.to_vec();
        rows.extend(self.frame.rows as u32..snapshot.customers.len() as u32);
        rows.sort_unstable();
        rows.dedup();
        frame.refresh(snapshot, &self.catalog, &rows, extra)?;
        frame.add(snapshot, &self.catalog, &stale, extra)?;
        self.frame = Arc::new(frame);
        let mut movements = Vec::new();
        let mut segments = std::mem::take(&mut self.segments);
        for seg in &mut segments {
            let before = std::mem::take(&mut seg.member);
            let full = match seg.compiled.reach {
                Reach::Own => false,
                Reach::AsOf => day_moved,
                Reach::Population => true,
            };
            if day_moved {
                seg.compiled = compile(&self.engine, &self.catalog, &seg.def, today)
                    .map_err(|e| run_error(&seg.name, e))?;
            }
            if full {
                self.evaluate_all(snapshot, seg)?;
            } else {
                seg.member = before.clone();
                seg.member.resize(self.frame.rows, false);
                let now = seg
                    .compiled
                    .evaluate(
                        &self.engine,
                        &self.catalog,
                        &self.frame,
                        Some(&rows),
                        self.limits,
                        &|r| snapshot.customers.id(r).to_owned(),
                    )
                    .map_err(|e: RunError| run_error(&seg.name, e))?;
                for &r in &rows {
                    seg.member[r as usize] = false;
                }
                for r in now {
                    seg.member[r as usize] = true;
                }
            }
            let mut movement = Movement {
                segment: seg.name.clone(),
                entered: Vec::new(),
                left: Vec::new(),
            };
            for (r, &m) in seg.member.iter().enumerate() {
                let was = before.get(r).copied().unwrap_or(false);
                if m && !was {
                    movement.entered.push(r as u32);
                } else if was && !m {
                    movement.left.push(r as u32);
                }
            }
            if !movement.entered.is_empty() || !movement.left.is_empty() {
                movements.push(movement);
            }
        }
        self.segments = segments;
        Ok(movements)
    }
}
