//! Activity as columns: every string interned to a `u32` code, times turned into local hours
//! and days once, targets in a frame of their own.

use std::collections::HashMap;

use jiff::tz::TimeZone;
use polars::prelude::*;
use warden_core::activity::{ActivityEvent, ActorKind};
use warden_core::baseline::local_time;

/// Strings interned to `u32` codes, so frames group and join on integers.
#[derive(Debug, Default)]
pub(crate) struct Names {
    names: Vec<String>,
    codes: HashMap<String, u32>,
}

impl Names {
    /// The code of `s`, new or known.
    pub(crate) fn code(&mut self, s: &str) -> u32 {
        if let Some(&c) = self.codes.get(s) {
            return c;
        }
        let c = u32::try_from(self.names.len()).expect("fewer than 4 billion names");
        self.names.push(s.to_string());
        self.codes.insert(s.to_string(), c);
        c
    }

    /// The code of `s`, if it has one.
    pub(crate) fn known(&self, s: &str) -> Option<u32> {
        self.codes.get(s).copied()
    }

    /// The string behind a code.
    pub(crate) fn name(&self, code: u32) -> &str {
        &self.names[code as usize]
    }
}

/// Events as columns, built one event at a time.
#[derive(Debug)]
pub struct Activity {
    tz: TimeZone,
    names: Names,
    human: Vec<bool>,
    actor: Vec<u32>,
    team: Vec<u32>,
    service: Vec<u32>,
    class: Vec<u32>,
    env: Vec<u32>,
    at: Vec<i64>,
    hour: Vec<i64>,
    day: Vec<i64>,
    how: Vec<u32>,
    change: Vec<Option<f64>>,
    target_row: Vec<u32>,
    target: Vec<u32>,
}

impl Activity {
    /// No events yet; hours of the week are counted in `tz`.
    pub fn new(tz: TimeZone) -> Activity {
        Activity {
            tz,
            names: Names::default(),
            human: Vec::new(),
            actor: Vec::new(),
            team: Vec::new(),
            service: Vec::new(),
            class: Vec::new(),
            env: Vec::new(),
            at: Vec::new(),
            hour: Vec::new(),
            day: Vec::new(),
            how: Vec::new(),
            change: Vec::new(),
            target_row: Vec::new(),
            target: Vec::new(),
        }
    }

    fn code(&mut self, s: &str) -> u32 {
        self.names.code(s)
    }

    /// Adds one event.
    pub fn push(&mut self, e: &ActivityEvent) {
        let row = u32::try_from(self.at.len()).expect("fewer than 4 billion events");
        let local = local_time(e.at, &self.tz);
        self.human.push(e.actor_kind == ActorKind::Human);
        let codes =
            [&e.actor_id, &e.team, &e.service, &e.class, &e.environment].map(|s| self.code(s));
        self.actor.push(codes[0]);
        self.team.push(codes[1]);
        self.service.push(codes[2]);
        self.class.push(codes[3]);
        self.env.push(codes[4]);
        self.at.push(e.at);
        self.hour.push(local.hour);
        self.day.push(local.day);
        self.how.push(u32::from(local.hour_of_week));
        self.change.push(e.change_size.map(f64::from));
        for t in &e.targets {
            let c = self.code(t);
            self.target_row.push(row);
            self.target.push(c);
        }
    }

    /// Events added.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether none were added.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// The time zone hours of the week are counted in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The string behind a code.
    pub(crate) fn name(&self, code: u32) -> &str {
        self.names.name(code)
    }

    /// One row per event.
    pub(crate) fn events(&self) -> PolarsResult<DataFrame> {
        let rows: Vec<u32> = (0..self.at.len() as u32).collect();
        DataFrame::new(
            self.at.len(),
            vec![
                Column::new("row".into(), rows),
                Column::new("human".into(), &self.human),
                Column::new("actor".into(), &self.actor),
                Column::new("team".into(), &self.team),
                Column::new("service".into(), &self.service),
                Column::new("class".into(), &self.class),
                Column::new("env".into(), &self.env),
                Column::new("at".into(), &self.at),
                Column::new("hour".into(), &self.hour),
                Column::new("day".into(), &self.day),
                Column::new("how".into(), &self.how),
                Column::new("change".into(), &self.change),
            ],
        )
    }

    /// One row per (event, target).
    pub(crate) fn targets(&self) -> PolarsResult<DataFrame> {
        DataFrame::new(
            self.target.len(),
            vec![
                Column::new("row".into(), &self.target_row),
                Column::new("target".into(), &self.target),
            ],
        )
    }
}
