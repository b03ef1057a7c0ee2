//! SMTP_CHECK (keepalived/check/check_smtp.c).
//!
//! Connect within connect_timeout, then: read a line, which must be a 220 reply; send
//! `HELO <helo_name>\r\n`; read a line, which must be a 250 reply; send `QUIT\r\n`;
//! read one more line, whatever it says. Any timeout (each read and write has
//! connect_timeout), read or write error, or early close fails.
//!
//! Lines are read as keepalived reads them: into a 512-byte buffer (cleared when it
//! fills), up to the first `\n`; bytes after it are dropped (SMTP has the server wait
//! for each command). A reply's code is the line's first three characters, read as a
//! number, and must be followed by a space or end the line — so a multi-line banner
//! (`220-…`) or a bare `220\r\n` fails, as in keepalived.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{net, SmtpProbe, Target};

/// keepalived's line buffer (include/check_smtp.h `SMTP_BUFF_MAX`).
const BUFFER_SIZE: usize = 512;

pub(super) async fn check(probe: &SmtpProbe, target: &Target) -> Result<(), String> {
    let mut stream = net::connect_tcp(target, target.connect_timeout).await?;
    let mut session = Session {
        stream: &mut stream,
        target,
    };
    let banner = session.read_line().await?;
    if reply_code(&banner) != Some(220) {
        return Err(format!("bad greeting banner: {}", printable(&banner)));
    }
    session
        .write(format!("HELO {}\r\n", probe.helo_name).as_bytes())
        .await?;
    let helo = session.read_line().await?;
    if reply_code(&helo) != Some(250) {
        return Err(format!("bad HELO response: {}", printable(&helo)));
    }
    session.write(b"QUIT\r\n").await?;
    session.read_line().await?;
    Ok(())
}

struct Session<'a> {
    stream: &'a mut TcpStream,
    target: &'a Target,
}

impl Session<'_> {
    /// One line, without its `\n` (a `\r` before it stays, as in keepalived).
    async fn read_line(&mut self) -> Result<Vec<u8>, String> {
        let mut buffer = Vec::with_capacity(BUFFER_SIZE);
        let mut chunk = [0u8; BUFFER_SIZE];
        loop {
            if buffer.len() >= BUFFER_SIZE - 1 {
                buffer.clear();
            }
            let room = BUFFER_SIZE - 1 - buffer.len();
            let read = match timeout(
                self.target.connect_timeout,
                self.stream.read(&mut chunk[..room]),
            )
            .await
            {
                Ok(Ok(0)) => return Err("connection closed by the server".to_owned()),
                Ok(Ok(read)) => read,
                Ok(Err(e)) => return Err(format!("read failure: {e}")),
                Err(_) => return Err("read timeout".to_owned()),
            };
            buffer.extend_from_slice(chunk.get(..read).unwrap_or_default());
            // keepalived looks for the newline in a C string: not past a NUL byte.
            let text = buffer.split(|&b| b == 0).next().unwrap_or_default();
            if let Some(newline) = text.iter().position(|&b| b == b'\n') {
                buffer.truncate(newline);
                return Ok(buffer);
            }
        }
    }

    async fn write(&mut self, line: &[u8]) -> Result<(), String> {
        match timeout(self.target.connect_timeout, self.stream.write_all(line)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write failure: {e}")),
            Err(_) => Err("write timeout".to_owned()),
        }
    }
}

/// The reply code as check_smtp.c `smtp_get_status` reads it: three digits that are
/// followed by a space or the end of the line.
fn reply_code(line: &[u8]) -> Option<u16> {
    match line {
        [a, b, c, rest @ ..]
            if [a, b, c].iter().all(|d| d.is_ascii_digit())
                && matches!(rest.first(), None | Some(b' ')) =>
        {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

fn printable(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .trim_end()
        .chars()
        .take(80)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::reply_code;

    #[test]
    fn reply_codes_read_like_keepalived() {
        assert_eq!(reply_code(b"220 mail.example.org ESMTP\r"), Some(220));
        assert_eq!(reply_code(b"250"), Some(250));
        assert_eq!(reply_code(b"220-first line\r"), None);
        assert_eq!(reply_code(b"220\r"), None);
        assert_eq!(reply_code(b"22 x"), None);
    }
}
