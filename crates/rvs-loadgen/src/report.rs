//! Result output: latency percentiles from recorded samples and the one-line JSON
//! objects every client subcommand prints on stdout (flat keys, so a shell script
//! can pick a field with `sed`).

use std::fmt::Write as _;

/// Latency summary in microseconds, from exact samples (nearest-rank percentiles).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Latency {
    /// Summarises samples given in nanoseconds; sorts them in place.
    pub fn from_ns(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            // Nearest rank: the smallest sample with at least q of all samples <= it.
            let rank = (q * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1] as f64 / 1_000.0
        };
        let total: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Self {
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            max_us: samples[samples.len() - 1] as f64 / 1_000.0,
            mean_us: total as f64 / samples.len() as f64 / 1_000.0,
        }
    }
}

/// Builds one JSON object on one line.
#[derive(Debug, Default)]
pub struct JsonLine {
    out: String,
}

impl JsonLine {
    pub fn new() -> Self {
        Self { out: "{".into() }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        push_str(&mut self.out, key);
        self.out.push(':');
    }

    pub fn str(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        push_str(&mut self.out, value);
        self
    }

    pub fn int(mut self, key: &str, value: u64) -> Self {
        self.key(key);
        let _ = write!(self.out, "{value}");
        self
    }

    /// A number with `decimals` digits after the point (`null` if not finite).
    pub fn num(mut self, key: &str, value: f64, decimals: usize) -> Self {
        self.key(key);
        if value.is_finite() {
            let _ = write!(self.out, "{value:.decimals$}");
        } else {
            self.out.push_str("null");
        }
        self
    }

    /// A nested object of counts.
    pub fn counts<'a>(
        mut self,
        key: &str,
        counts: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Self {
        self.key(key);
        let mut inner = JsonLine::new();
        for (k, v) in counts {
            inner = inner.int(k, v);
        }
        self.out.push_str(&inner.finish());
        self
    }

    pub fn latency(self, l: &Latency) -> Self {
        self.num("p50_us", l.p50_us, 1)
            .num("p90_us", l.p90_us, 1)
            .num("p99_us", l.p99_us, 1)
            .num("max_us", l.max_us, 1)
            .num("mean_us", l.mean_us, 1)
    }

    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s: Vec<u64> = (1..=100).rev().map(|x| x * 1_000).collect();
        let l = Latency::from_ns(&mut s);
        assert_eq!(l.p50_us, 50.0);
        assert_eq!(l.p90_us, 90.0);
        assert_eq!(l.p99_us, 99.0);
        assert_eq!(l.max_us, 100.0);
        assert_eq!(l.mean_us, 50.5);
        assert_eq!(Latency::from_ns(&mut []), Latency::default());
    }

    #[test]
    fn json_line_escapes_and_nests() {
        let line = JsonLine::new()
            .str("a\"b", "x\\y\n")
            .int("n", 3)
            .num("f", 1.75, 2)
            .num("nan", f64::NAN, 1)
            .counts("c", [("k", 1), ("l", 2)])
            .finish();
        assert_eq!(
            line,
            r#"{"a\"b":"x\\y\u000a","n":3,"f":1.75,"nan":null,"c":{"k":1,"l":2}}"#
        );
    }
}
