//! UDP_CHECK (keepalived/check/check_udp.c, keepalived/core/layer4.c
//! `udp_bind_connect`, `udp_socket_state`).
//!
//! Send the payload (or keepalived's 32-byte filler) on a connected UDP socket with
//! IP(V6)_RECVERR set, then wait connect_timeout for a datagram:
//! - an error on receive (ICMP port or host unreachable, reported on the connected
//!   socket) fails;
//! - silence passes unless `require_reply` is set, then it fails;
//! - a reply passes, except when `require_reply` has data: then the reply must be
//!   min_reply_length..=max_reply_length bytes long (it is read into a buffer of
//!   max_reply_length + 1 bytes, so longer ones fail) and its first bytes must match
//!   the data outside the mask, over the shorter of the two lengths.
//!
//! Not copied exactly: keepalived reads its error queue and fails only on ICMP
//! destination unreachable; here any receive error fails (the kernel reports e.g. time
//! exceeded with the same errno as host unreachable, and the error queue needs
//! recvmsg with control messages, which tokio does not offer).

use tokio::time::timeout;

use super::{net, Target, UdpProbe, UdpReply};

/// keepalived's default payload length (layer4.c `UDP_BUFSIZE`).
const FILLER_LEN: usize = 32;

pub(super) async fn check(probe: &UdpProbe, target: &Target) -> Result<(), String> {
    let socket = net::connect_udp(target).await?;
    let payload = probe
        .payload
        .clone()
        .unwrap_or_else(|| net::filler(FILLER_LEN));
    match socket.send(&payload).await {
        Ok(sent) if sent == payload.len() => {}
        Ok(sent) => return Err(format!("sent {sent} of {} bytes", payload.len())),
        Err(e) => return Err(format!("UDP send to {} failed: {e}", target.address)),
    }
    let capacity = usize::try_from(probe.max_reply_length)
        .unwrap_or(usize::MAX)
        .saturating_add(1)
        .min(1 << 16);
    let mut buffer = vec![0u8; capacity];
    let len = match timeout(target.connect_timeout, socket.recv(&mut buffer)).await {
        Err(_) if probe.require_reply.is_some() => {
            return Err("no reply before the timeout".to_owned())
        }
        Err(_) => return Ok(()),
        Ok(Err(e)) => return Err(format!("UDP connection to {} failed: {e}", target.address)),
        Ok(Ok(len)) => len,
    };
    match &probe.require_reply {
        Some(reply) if !reply.data.is_empty() => {
            check_reply(buffer.get(..len).unwrap_or_default(), reply, probe)
        }
        _ => Ok(()),
    }
}

/// check_udp.c `check_udp_reply`.
fn check_reply(received: &[u8], expected: &UdpReply, probe: &UdpProbe) -> Result<(), String> {
    let len = received.len() as u64;
    if len < u64::from(probe.min_reply_length) || len > u64::from(probe.max_reply_length) {
        return Err(format!(
            "reply of {len} bytes, outside {}..={}",
            probe.min_reply_length, probe.max_reply_length
        ));
    }
    let mismatch = received
        .iter()
        .zip(&expected.data)
        .enumerate()
        .any(|(at, (got, want))| (got ^ want) & !expected.mask.get(at).copied().unwrap_or(0) != 0);
    if mismatch {
        return Err("reply data mismatch".to_owned());
    }
    Ok(())
}
