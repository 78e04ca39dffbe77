//! The output: one JSON line per figure on stdout (`figure`, `value`, `unit`, extra keys), the
//! machine line, and the harness checks that failed (the smoke run fails on any).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::Cli;

/// The JSON lines, and the checks that failed (the smoke run fails on any).
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub(crate) failures: std::sync::Mutex<Vec<String>>,
}

impl Output {
    /// Prints one figure: `{"figure", "value", "unit", ...extra}`.
    #[allow(clippy::unused_self)]
    pub(crate) fn figure(&self, figure: &str, value: f64, unit: &str, extra: &Value) {
        let mut line = json!({ "figure": figure, "value": round(value), "unit": unit });
        if let (Some(l), Some(e)) = (line.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                l.insert(k.clone(), v.clone());
            }
        }
        println!("{line}");
    }

    /// Prints a figure with a target: `met` is whether `value` is within it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn target(
        &self,
        figure: &str,
        value: f64,
        unit: &str,
        target: &str,
        met: bool,
        extra: &Value,
    ) {
        let mut e = extra.clone();
        if let Some(o) = e.as_object_mut() {
            o.insert("target".into(), json!(target));
            o.insert("met".into(), json!(met));
        }
        self.figure(figure, value, unit, &e);
    }

    /// Records a broken expectation of the harness itself.
    pub(crate) fn check(&self, ok: bool, what: impl Into<String>) {
        if !ok {
            let what = what.into();
            eprintln!("bench: CHECK FAILED: {what}");
            self.failures
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(what);
        }
    }

    pub(crate) fn failures(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    #[allow(clippy::unused_self)]
    pub(crate) fn machine(&self, cli: &Cli) {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default();
        let nproc = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
        let mem_kb = meminfo_total_kb();
        println!(
            "{}",
            json!({
                "figure": "machine",
                "nproc": nproc,
                "cpu": cpu,
                "mem_total_mb": mem_kb / 1024,
                "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                "backend": backend_name(cli),
                "smoke": cli.smoke,
                "secs": cli.secs,
                "pairs": cli.pairs,
                "in_flight": cli.conns * cli.streams,
            })
        );
    }
}

fn meminfo_total_kb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn round(v: f64) -> f64 {
    if v.abs() >= 100.0 {
        (v * 10.0).round() / 10.0
    } else {
        (v * 1000.0).round() / 1000.0
    }
}

pub(crate) fn backend_name(cli: &Cli) -> &'static str {
    if cli.pg.is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

pub(crate) fn extra(base: &Value, more: &Value) -> Value {
    let mut v = base.clone();
    if let (Some(o), Some(m)) = (v.as_object_mut(), more.as_object()) {
        for (k, x) in m {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}
