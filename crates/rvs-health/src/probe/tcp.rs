//! TCP_CHECK (keepalived/check/check_tcp.c): the check passes when a TCP connection
//! to the target is established within connect_timeout; it is closed at once, nothing
//! is sent.
//!
//! Not copied: keepalived reschedules without counting a failure when the socket
//! cannot be created or bound; here that is a failure with its reason, since a probe
//! has only pass or fail to report.

use super::{net, Target};

pub(super) async fn check(target: &Target) -> Result<(), String> {
    net::connect_tcp(target, target.connect_timeout)
        .await
        .map(drop)
}
