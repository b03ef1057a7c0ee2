//! One checker's timing and up/down state, as keepalived 2.2.7 runs it.
//!
//! The machine owns: the time the next probe is due, the retry counter (`retry_it` in
//! keepalived), whether the checker is up, whether it has produced a verdict yet
//! (`has_run`), the last outcome and the dynamic weight it reported.
//! Invariants: a probe in flight (between [`CheckerMachine::start_probe`] and
//! [`CheckerMachine::handle_outcome`]) has no due time; every outcome schedules exactly
//! one next probe. The probe's own timeout (connect_timeout) is enforced by the I/O side.

use rvs_core::time::{Span, Time};

use crate::Outcome;

/// Delay added to every checker's first probe: keepalived registers each checker
/// thread `BOOTSTRAP_DELAY` (one second, lib/scheduler.h) plus the warmup draw after
/// start (keepalived/check/check_api.c, register_checkers_thread).
pub const BOOTSTRAP_DELAY: Span = Span::from_secs(1);

/// How a checker type retries; keepalived's checkers differ in what a failure does
/// while the checker is already down, and in what the next delay is measured from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryStyle {
    /// TCP_CHECK (keepalived/check/check_tcp.c, tcp_epilog): every failure counts, up
    /// or down. After `retry` failures spaced by delay_before_retry the next failure is
    /// final (down, next probe after delay_loop) and the counter restarts, so a down
    /// checker keeps cycling through its retries.
    Connect,
    /// DNS_CHECK and SMTP_CHECK (check_dns.c dns_final, check_smtp.c smtp_final):
    /// retries happen only while the checker is up (or has not run); a down checker
    /// that fails again is probed after delay_loop.
    UpOnly,
    /// MISC_CHECK (check_misc.c misc_check_child_thread): like [`RetryStyle::UpOnly`],
    /// but the next delay counts from when the probe *started* (`last_ran`), not when
    /// it ended; a final failure also drops the checker's dynamic weight.
    Script,
    /// UDP_CHECK and PING_CHECK (check_udp.c udp_epilog, check_ping.c icmp_epilog): the
    /// final-failure branch is taken only while up (or not run), so a down checker is
    /// probed again after delay_before_retry, for as long as it keeps failing.
    Datagram,
    /// HTTP_GET and SSL_GET (check_http.c epilog, timeout_epilog): one probe fetches one
    /// URL ([`CheckerMachine::current_url`]); a passing URL moves to the next one after
    /// delay_loop; a failing URL is retried `retry` times after delay_before_retry, then
    /// the checker goes down and that URL is probed every max(delay_before_retry,
    /// delay_loop). Recovery needs the failed URL to pass and then a full pass over all
    /// URLs. `fast_recovery` starts the next probe at once while the checker has not
    /// run yet, or is down with no failed URL pending. A probe side that fetches all
    /// URLs in one go should use `url_count: 1`.
    Http {
        url_count: usize,
        fast_recovery: bool,
    },
}

/// A checker's timing settings, already resolved against the real and virtual server
/// defaults by the configuration (keepalived/check/check_data.c, validate_check_config:
/// warmup defaults to the checker's delay_loop; delay_before_retry to 1 s, 3 s for
/// HTTP_GET/SSL_GET, delay_loop for DNS_CHECK; retry to 1, 0 for MISC_CHECK).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckTiming {
    /// The probe's own timeout. Not used here: the I/O side enforces it.
    pub connect_timeout: Span,
    /// How many failures are retried before the checker is marked down.
    pub retry: u32,
    /// Delay from a retried failure to the next probe.
    pub delay_before_retry: Span,
    /// Delay from a verdict (pass, or final failure) to the next probe.
    pub delay_loop: Span,
    /// Upper bound of the random part of the first probe's delay.
    pub warmup: Span,
    /// How this checker type retries.
    pub style: RetryStyle,
}

/// What one outcome did to the checker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckerChange {
    /// The checker went from down to up.
    Up,
    /// The checker went from up to down.
    Down,
    /// The checker's first verdict agreed with its initial state and it is an alpha
    /// checker, or the verdict is a failure: keepalived then runs the real server's
    /// notify script for its current state without changing anything
    /// (keepalived/check/ipwrapper.c, update_svr_checker_state, `!has_run` branch).
    FirstVerdictNotify,
}

/// One checker's timing and state machine.
#[derive(Clone, Debug)]
pub struct CheckerMachine {
    timing: CheckTiming,
    alpha: bool,
    is_up: bool,
    has_run: bool,
    retry_it: u32,
    next_due: Option<Time>,
    probe_started: Option<Time>,
    last_outcome: Option<Outcome>,
    dynamic_weight: Option<u32>,
    url_it: Option<usize>,
    failed_url: Option<usize>,
}

/// `span * random / u64::MAX`, the warmup draw of check_api.c
/// (`warmup * random() / RAND_MAX`): uniform over `[0, span]`, both ends included.
fn scaled_draw(span: Span, random: u64) -> Span {
    let millis = u128::from(span.as_millis()) * u128::from(random) / u128::from(u64::MAX);
    Span::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

impl CheckerMachine {
    /// A checker registered at daemon start (`now`): the first probe is due at
    /// `now + BOOTSTRAP_DELAY + warmup * random / u64::MAX` (check_api.c,
    /// register_checkers_thread). An `alpha` checker starts down; every checker starts
    /// with its retries used up, so one failure is enough for the first verdict
    /// (check_data.c, validate_check_config: `retry_it = retry`).
    pub fn new(timing: CheckTiming, alpha: bool, now: Time, random: u64) -> Self {
        let mut machine = Self::registered(timing, alpha, now, random);
        machine.retry_it = timing.retry;
        machine
    }

    /// A checker (re)registered by a reload: same first-probe delay as [`Self::new`],
    /// but keepalived does not pre-spend the retries on reload (check_data.c sets
    /// `retry_it` only when not reloading); the pool carries state over from the
    /// previous checker (ipwrapper.c, migrate_checkers).
    pub(crate) fn registered(timing: CheckTiming, alpha: bool, now: Time, random: u64) -> Self {
        let first = now + BOOTSTRAP_DELAY + scaled_draw(timing.warmup, random);
        CheckerMachine {
            timing,
            alpha,
            is_up: !alpha,
            has_run: false,
            retry_it: 0,
            next_due: Some(first),
            probe_started: None,
            last_outcome: None,
            dynamic_weight: None,
            url_it: Some(0),
            failed_url: None,
        }
    }

    /// The settings this machine runs with.
    pub fn timing(&self) -> &CheckTiming {
        &self.timing
    }

    /// When the next probe should start; `None` while a probe is in flight.
    pub fn poll_due(&self) -> Option<Time> {
        self.next_due
    }

    /// Record that the probe due now has started. The machine is then not due until
    /// its outcome arrives. MISC_CHECK measures its next delay from this time.
    pub fn start_probe(&mut self, now: Time) {
        self.probe_started = Some(now);
        self.next_due = None;
    }

    /// For HTTP_GET/SSL_GET: the index of the URL the next probe must fetch
    /// (check_http.c, `url_it`). Always 0 for other checker types.
    pub fn current_url(&self) -> usize {
        self.url_it.or(self.failed_url).unwrap_or(0)
    }

    /// Whether the checker is up.
    pub fn is_up(&self) -> bool {
        self.is_up
    }

    /// Whether the checker has produced a verdict since it was registered.
    pub fn has_run(&self) -> bool {
        self.has_run
    }

    /// Whether this is an alpha checker (started down).
    pub fn is_alpha(&self) -> bool {
        self.alpha
    }

    /// The weight the last passing probe reported (MISC_CHECK misc_dynamic), dropped
    /// when the checker finally fails (check_misc.c).
    pub fn dynamic_weight(&self) -> Option<u32> {
        self.dynamic_weight
    }

    /// The last outcome handled.
    pub fn last_outcome(&self) -> Option<&Outcome> {
        self.last_outcome.as_ref()
    }

    /// The retry counter (keepalived's `retry_it`).
    pub fn retries_used(&self) -> u32 {
        self.retry_it
    }

    pub(crate) fn set_up(&mut self, up: bool) {
        self.is_up = up;
    }

    pub(crate) fn set_has_run(&mut self, has_run: bool) {
        self.has_run = has_run;
    }

    pub(crate) fn set_retries_used(&mut self, retry_it: u32) {
        self.retry_it = retry_it;
    }

    pub(crate) fn set_dynamic_weight(&mut self, weight: Option<u32>) {
        self.dynamic_weight = weight;
    }

    /// Take one probe's outcome, finished at `now`; schedule the next probe and say
    /// whether the checker changed state. See [`RetryStyle`] for the per-type rules.
    pub fn handle_outcome(&mut self, outcome: &Outcome, now: Time) -> Option<CheckerChange> {
        let started = self.probe_started.take().unwrap_or(now);
        self.last_outcome = Some(outcome.clone());
        let passed = matches!(outcome, Outcome::Pass { .. });
        if let Outcome::Pass { weight } = outcome {
            self.dynamic_weight = *weight;
        }
        let t = self.timing;
        let (change, next) = match t.style {
            RetryStyle::Connect | RetryStyle::Datagram => {
                let may_finalise = t.style == RetryStyle::Connect || self.is_up || !self.has_run;
                if passed || (may_finalise && self.retry_it >= t.retry) {
                    self.retry_it = 0;
                    let change = self.verdict(passed);
                    (change, now + t.delay_loop)
                } else {
                    self.retry_it = self.retry_it.saturating_add(1);
                    self.has_run = true;
                    (None, now + t.delay_before_retry)
                }
            }
            RetryStyle::UpOnly => {
                if passed {
                    self.retry_it = 0;
                    (self.verdict(true), now + t.delay_loop)
                } else if self.is_up || !self.has_run {
                    if self.retry_it < t.retry {
                        self.retry_it += 1;
                        self.has_run = true;
                        (None, now + t.delay_before_retry)
                    } else {
                        self.retry_it = 0;
                        (self.verdict(false), now + t.delay_loop)
                    }
                } else {
                    self.retry_it = 0;
                    (None, now + t.delay_loop)
                }
            }
            RetryStyle::Script => {
                let change = if passed {
                    self.retry_it = 0;
                    self.verdict(true)
                } else if self.is_up || !self.has_run {
                    if self.retry_it < t.retry {
                        self.retry_it += 1;
                        None
                    } else {
                        self.retry_it = 0;
                        self.dynamic_weight = None;
                        self.verdict(false)
                    }
                } else {
                    None
                };
                self.has_run = true;
                let delay = if self.retry_it > 0 {
                    t.delay_before_retry
                } else {
                    t.delay_loop
                };
                (change, (started + delay).max(now))
            }
            RetryStyle::Http {
                url_count,
                fast_recovery,
            } => self.http_epilog(passed, now, url_count, fast_recovery),
        };
        self.next_due = Some(next);
        change
    }

    /// A verdict (pass, or final failure) for the Connect/Datagram/UpOnly/Script
    /// styles: the state flips, or the first verdict is reported.
    fn verdict(&mut self, passed: bool) -> Option<CheckerChange> {
        let change = if passed && (!self.is_up || !self.has_run) {
            self.apply_state(true)
        } else if !passed && (self.is_up || !self.has_run) {
            self.apply_state(false)
        } else {
            None
        };
        self.has_run = true;
        change
    }

    /// keepalived/check/ipwrapper.c, update_svr_checker_state.
    fn apply_state(&mut self, up: bool) -> Option<CheckerChange> {
        if self.is_up == up {
            let notify = !self.has_run && (self.alpha || !up);
            self.has_run = true;
            return notify.then_some(CheckerChange::FirstVerdictNotify);
        }
        self.has_run = true;
        self.is_up = up;
        Some(if up {
            CheckerChange::Up
        } else {
            CheckerChange::Down
        })
    }

    /// keepalived/check/check_http.c: a pass is REGISTER_CHECKER_NEW; a failure is
    /// REGISTER_CHECKER_RETRY while up or not run yet (timeout_epilog marks the checker
    /// as run first), REGISTER_CHECKER_FAILED while down.
    fn http_epilog(
        &mut self,
        passed: bool,
        now: Time,
        url_count: usize,
        fast_recovery: bool,
    ) -> (Option<CheckerChange>, Time) {
        let t = self.timing;
        let mut change = None;
        let retrying = !passed && (self.is_up || !self.has_run);
        if retrying {
            self.has_run = true;
        }
        if passed {
            self.url_it = match self.url_it {
                Some(i) if i + 1 < url_count.max(1) => Some(i + 1),
                _ => None,
            };
            self.retry_it = 0;
        } else if retrying {
            self.retry_it = self.retry_it.saturating_add(1);
        }
        if passed && self.url_it.is_none() && self.failed_url.is_none() {
            if !self.is_up || !self.has_run {
                change = self.apply_state(true);
                self.has_run = true;
            }
            self.url_it = Some(0);
            self.retry_it = 0;
        } else if retrying && self.retry_it > t.retry {
            if self.is_up || !self.has_run {
                change = self.apply_state(false);
            }
            self.failed_url = self.url_it;
        } else if passed && self.failed_url.is_some() {
            self.failed_url = None;
            self.url_it = Some(0);
            self.retry_it = 0;
        }
        let delay = if passed {
            if !self.has_run {
                self.retry_it = t.retry;
            }
            t.delay_loop
        } else if self.failed_url.is_some() {
            t.delay_before_retry.max(t.delay_loop)
        } else {
            t.delay_before_retry
        };
        let at_once =
            fast_recovery && (!self.has_run || (!self.is_up && self.failed_url.is_none()));
        (change, if at_once { now } else { now + delay })
    }
}
