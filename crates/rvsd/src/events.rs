//! The recent operator-visible events (a real server going down or up, a VRRP
//! failover, a reload and its outcome, a weight changed through the API), for
//! the dashboard and `GET /v1/events`; also the packet plane's flood guard
//! engaging and letting go.
//!
//! Invariants: bounded (the oldest event leaves when the log is full); every
//! event gets the next sequence number, so a reader asking for events after
//! the last one it saw never sees one twice and, unless it fell more than the
//! log's length behind, misses none.

use std::collections::VecDeque;

use rvs_api::EventView;
use rvs_core::Time;

/// How many events the log keeps.
pub const EVENT_LOG_LEN: usize = 500;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    ServerUp,
    ServerDown,
    /// A VRRP instance changed state.
    Vrrp,
    Reload,
    ReloadFailed,
    /// The packet plane's flood guard started or stopped dropping new flows.
    FloodGuard,
    /// A real server's configured weight changed (an API drain, restore or
    /// edit, or a health checker's weight).
    Weight,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::ServerUp => "server_up",
            EventKind::ServerDown => "server_down",
            EventKind::Vrrp => "vrrp",
            EventKind::Reload => "reload",
            EventKind::ReloadFailed => "reload_failed",
            EventKind::Weight => "weight",
            EventKind::FloodGuard => "flood_guard",
        }
    }
}

#[derive(Debug, Default)]
pub struct EventLog {
    events: VecDeque<EventView>,
    next_seq: u64,
}

impl EventLog {
    pub fn push(&mut self, kind: EventKind, message: impl Into<String>, now: Time) {
        if self.events.len() == EVENT_LOG_LEN {
            self.events.pop_front();
        }
        self.next_seq += 1;
        self.events.push_back(EventView {
            seq: self.next_seq,
            at_ms: now.as_millis(),
            kind: kind.name().to_string(),
            message: message.into(),
        });
    }

    /// The events with a sequence number above `seq`, oldest first.
    pub fn since(&self, seq: u64) -> Vec<EventView> {
        self.events
            .iter()
            .filter(|e| e.seq > seq)
            .cloned()
            .collect()
    }

    /// The sequence number of the newest event (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_bounded_and_readers_resume_by_sequence() {
        let mut log = EventLog::default();
        for i in 0..(EVENT_LOG_LEN as u64 + 10) {
            log.push(EventKind::Weight, format!("e{i}"), Time::from_millis(i));
        }
        let all = log.since(0);
        assert_eq!(all.len(), EVENT_LOG_LEN);
        assert_eq!(all[0].message, "e10");
        assert_eq!(log.last_seq(), EVENT_LOG_LEN as u64 + 10);
        let tail = log.since(log.last_seq() - 2);
        assert_eq!(
            tail.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
            [
                format!("e{}", EVENT_LOG_LEN + 8),
                format!("e{}", EVENT_LOG_LEN + 9)
            ]
        );
        assert!(log.since(log.last_seq()).is_empty());
    }
}
