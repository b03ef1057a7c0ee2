//! Traffic counters and the rate estimator of a service, a destination or the whole
//! director, as IPVS keeps them (net/netfilter/ipvs/ip_vs_est.c).
//!
//! The estimator runs every [`ESTIMATION_INTERVAL`] (2 s): each rate is an
//! exponentially weighted moving average with weight 1/4 of the last interval's
//! per-second rate, scaled by 2^10 for connections and packets and by 2^5 for bytes,
//! and rounded when read. Zeroing (`ipvsadm -Z`) takes the current counters as the
//! new zero point and resets the rates, as `ip_vs_zero_stats` does.

use crate::time::Span;

/// How often the kernel's estimator samples the counters.
pub const ESTIMATION_INTERVAL: Span = Span::from_secs(2);

/// Monotonic counters (`struct ip_vs_kstats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

impl Counters {
    fn minus(self, base: Counters) -> Counters {
        Counters {
            conns: self.conns.wrapping_sub(base.conns),
            in_pkts: self.in_pkts.wrapping_sub(base.in_pkts),
            out_pkts: self.out_pkts.wrapping_sub(base.out_pkts),
            in_bytes: self.in_bytes.wrapping_sub(base.in_bytes),
            out_bytes: self.out_bytes.wrapping_sub(base.out_bytes),
        }
    }
}

/// Per-second rates as `ipvsadm --rate` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    pub cps: u64,
    pub in_pps: u64,
    pub out_pps: u64,
    pub in_bps: u64,
    pub out_bps: u64,
}

/// The scaled moving averages (`struct ip_vs_estimator`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Estimator {
    last: Counters,
    cps: u64,
    in_pps: u64,
    out_pps: u64,
    in_bps: u64,
    out_bps: u64,
}

fn ewma(avg: &mut u64, rate: u64) {
    // e->x += ((s64)rate - (s64)e->x) >> 2, with an arithmetic shift.
    let delta = (rate as i64).wrapping_sub(*avg as i64) >> 2;
    *avg = (*avg as i64).wrapping_add(delta) as u64;
}

/// Counters plus their estimator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    counters: Counters,
    zero_point: Counters,
    est: Estimator,
}

impl Stats {
    /// Counters since the last zeroing, as `ipvsadm --stats` shows them.
    pub fn counters(&self) -> Counters {
        self.counters.minus(self.zero_point)
    }

    /// Counters since creation, never zeroed (for exporters that need monotonic
    /// values).
    pub fn lifetime(&self) -> Counters {
        self.counters
    }

    pub fn add_conn(&mut self) {
        self.counters.conns += 1;
    }

    pub fn add_in(&mut self, bytes: u64) {
        self.counters.in_pkts += 1;
        self.counters.in_bytes += bytes;
    }

    pub fn add_out(&mut self, bytes: u64) {
        self.counters.out_pkts += 1;
        self.counters.out_bytes += bytes;
    }

    /// Adds counts measured elsewhere (a data plane's batch of packets).
    pub fn add_bulk(&mut self, c: Counters) {
        self.counters.conns += c.conns;
        self.counters.in_pkts += c.in_pkts;
        self.counters.out_pkts += c.out_pkts;
        self.counters.in_bytes += c.in_bytes;
        self.counters.out_bytes += c.out_bytes;
    }

    /// One estimator step; the owner calls it every [`ESTIMATION_INTERVAL`].
    pub fn estimate(&mut self) {
        let k = self.counters;
        let e = &mut self.est;
        ewma(&mut e.cps, k.conns.wrapping_sub(e.last.conns) << 9);
        ewma(&mut e.in_pps, k.in_pkts.wrapping_sub(e.last.in_pkts) << 9);
        ewma(
            &mut e.out_pps,
            k.out_pkts.wrapping_sub(e.last.out_pkts) << 9,
        );
        ewma(&mut e.in_bps, k.in_bytes.wrapping_sub(e.last.in_bytes) << 4);
        ewma(
            &mut e.out_bps,
            k.out_bytes.wrapping_sub(e.last.out_bytes) << 4,
        );
        e.last = k;
    }

    /// The rates, rounded as `ip_vs_read_estimator` does.
    pub fn rates(&self) -> Rates {
        let e = &self.est;
        Rates {
            cps: (e.cps + 0x1FF) >> 10,
            in_pps: (e.in_pps + 0x1FF) >> 10,
            out_pps: (e.out_pps + 0x1FF) >> 10,
            in_bps: (e.in_bps + 0xF) >> 5,
            out_bps: (e.out_bps + 0xF) >> 5,
        }
    }

    /// `ipvsadm -Z`: the current counters become the zero point, rates restart.
    pub fn zero(&mut self) {
        self.zero_point = self.counters;
        self.est = Estimator {
            last: self.counters,
            ..Estimator::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_converges_to_per_second_value() {
        let mut s = Stats::default();
        // 100 connections and 1000 packets of 100 bytes every 2 s = 50 cps, 500 pps, 50000 Bps.
        for _ in 0..60 {
            for _ in 0..100 {
                s.add_conn();
            }
            for _ in 0..1000 {
                s.add_in(100);
            }
            s.estimate();
        }
        let r = s.rates();
        assert_eq!(r.cps, 50);
        assert_eq!(r.in_pps, 500);
        assert_eq!(r.in_bps, 50_000);
        assert_eq!(r.out_pps, 0);
    }

    #[test]
    fn first_interval_is_a_quarter_of_the_rate() {
        let mut s = Stats::default();
        for _ in 0..800 {
            s.add_conn();
        }
        s.estimate();
        // 400/s, EWMA weight 1/4 -> 100.
        assert_eq!(s.rates().cps, 100);
        // Decay: no new connections -> 75.
        s.estimate();
        assert_eq!(s.rates().cps, 75);
    }

    #[test]
    fn zero_resets_counters_and_rates() {
        let mut s = Stats::default();
        s.add_conn();
        s.add_out(60);
        s.estimate();
        s.zero();
        assert_eq!(s.counters(), Counters::default());
        assert_eq!(s.rates(), Rates::default());
        assert_eq!(s.lifetime().out_bytes, 60);
        s.estimate();
        assert_eq!(s.rates(), Rates::default());
    }
}
