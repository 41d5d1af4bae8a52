//! What a run measured: latency series and their percentiles, printed as a
//! table and written as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

/// Latency samples of one measurement.
#[derive(Default)]
pub struct Series(pub Vec<Duration>);

impl Series {
    /// Nearest-rank percentile, in milliseconds.
    pub fn p(&self, percentile: f64) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort();
        let rank = ((percentile / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
        sorted
            .get(rank.min(sorted.len()).saturating_sub(1))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    }

    fn json(&self) -> Value {
        json!({"samples": self.0.len(), "p50_ms": self.p(50.0), "p95_ms": self.p(95.0), "p99_ms": self.p(99.0)})
    }
}

/// Rows of the printed table, and the same in JSON.
#[derive(Default)]
pub struct Report {
    rows: Vec<String>,
    pub json: BTreeMap<String, Value>,
}

impl Report {
    pub fn section(&mut self, title: &str) {
        self.rows.push(format!("\n{title}"));
    }

    /// A latency row; `floor`: the p50 its p50 is compared with.
    pub fn latency(&mut self, key: &str, label: &str, series: &Series, floor: Option<f64>) {
        let ratio = floor.map_or("-".to_owned(), |f| format!("{:.2}", series.p(50.0) / f));
        self.rows.push(format!(
            "  {label:<44} {:>8.1} {:>8.1} {:>8.1} {ratio:>9}",
            series.p(50.0),
            series.p(95.0),
            series.p(99.0)
        ));
        let mut value = series.json();
        value["p50_over_floor"] = json!(floor.map(|f| series.p(50.0) / f));
        self.json.insert(key.to_owned(), value);
    }

    pub fn line(&mut self, key: &str, text: String, value: Value) {
        self.rows.push(format!("  {text}"));
        self.json.insert(key.to_owned(), value);
    }

    pub fn print(&self) {
        println!(
            "{:<46} {:>8} {:>8} {:>8} {:>9}",
            "(ms unless stated)", "p50", "p95", "p99", "p50/floor"
        );
        for row in &self.rows {
            println!("{row}");
        }
    }
}
