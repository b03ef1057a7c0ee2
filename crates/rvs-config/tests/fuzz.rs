#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `parse_str` must never panic, whatever the text.

use std::path::Path;

use proptest::prelude::*;

const WORDS: &[&str] = &[
    "{",
    "}",
    "\"",
    "#",
    "!",
    "\\",
    "$X=1",
    "$X",
    "${X}",
    "@a",
    "@^a",
    "include",
    "virtual_server",
    "real_server",
    "group",
    "fwmark",
    "virtual_server_group",
    "TCP_CHECK",
    "HTTP_GET",
    "url",
    "path",
    "lb_kind",
    "TUN",
    "type",
    "gue",
    "port",
    "lb_algo",
    "sh",
    "sh-port",
    "weight",
    "-1",
    "0",
    "99999999999999999999",
    "1.5",
    "10.0.0.1",
    "10.0.0.1-9",
    "::1",
    "vrrp_instance",
    "virtual_ipaddress",
    "global_defs",
    "lvs_timeouts",
    "tcp",
    "persistence_timeout",
    "DNS_CHECK",
    "UDP_CHECK",
    "payload",
    "0g",
    "~SEQ",
    "\n",
    "\n",
    "\t",
    " ",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn token_soup_never_panics(words in proptest::collection::vec(proptest::sample::select(WORDS), 0..80)) {
        let text = words.join(" ");
        let loaded = rvs_config::parse_str(&text, Path::new("/nonexistent/fuzz.conf"));
        for d in &loaded.diagnostics {
            prop_assert!(!d.message.is_empty());
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = rvs_config::parse_str(&text, Path::new("/nonexistent/fuzz.conf"));
    }
}
