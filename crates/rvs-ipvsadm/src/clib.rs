//! The C library conversions ipvsadm's behaviour rests on, as glibc 2.36 does them in
//! the "C" locale: `strtol`, `strtoul` (base 0), `atoi`, `inet_aton`, `inet_pton`,
//! `inet_ntop`, and the `printf` padding ipvsadm's formats use. This module owns those
//! byte-level rules so the parser and the renderer never approximate them with Rust's
//! own (different) parsers.

/// `isspace` in the "C" locale.
pub(crate) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The byte at `i`, or NUL past the end (C strings end in NUL).
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// Result of a `strtol`-family conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Conv<T> {
    pub value: T,
    /// Index where conversion stopped (0 when nothing was converted).
    pub end: usize,
    /// `errno == ERANGE`.
    pub range: bool,
}

fn digit_value(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 10),
        b'A'..=b'Z' => Some(u32::from(c - b'A') + 10),
        _ => None,
    }
}

/// Magnitude of the digits at `s[i..]` in `base`: (value saturated at `u64::MAX`,
/// overflowed, index after the digits).
fn magnitude(s: &[u8], mut i: usize, base: u32) -> (u64, bool, usize) {
    let mut v: u64 = 0;
    let mut over = false;
    while let Some(d) = digit_value(at(s, i)).filter(|d| *d < base) {
        match v
            .checked_mul(u64::from(base))
            .and_then(|m| m.checked_add(u64::from(d)))
        {
            Some(n) => v = n,
            None => over = true,
        }
        i += 1;
    }
    (if over { u64::MAX } else { v }, over, i)
}

/// Leading white space and sign: (index after them, negative).
fn prefix(s: &[u8]) -> (usize, bool) {
    let mut i = 0;
    while is_space(at(s, i)) {
        i += 1;
    }
    match at(s, i) {
        b'-' => (i + 1, true),
        b'+' => (i + 1, false),
        _ => (i, false),
    }
}

/// `strtol(s, &end, 10)` with a 64-bit `long`.
pub(crate) fn strtol10(s: &[u8]) -> Conv<i64> {
    let (start, neg) = prefix(s);
    let (mag, over, end) = magnitude(s, start, 10);
    if end == start {
        return Conv {
            value: 0,
            end: 0,
            range: false,
        };
    }
    let (value, range) = if neg {
        if over || mag > 1u64 << 63 {
            (i64::MIN, true)
        } else {
            (0i64.wrapping_sub_unsigned(mag), false)
        }
    } else if over || mag > i64::MAX as u64 {
        (i64::MAX, true)
    } else {
        (mag as i64, false)
    };
    Conv { value, end, range }
}

/// `strtoul(s, &end, 0)` with a 64-bit `unsigned long` (base from a `0x` or `0`
/// prefix; a negative number wraps as C's does).
pub(crate) fn strtoul0(s: &[u8]) -> Conv<u64> {
    let (start, neg) = prefix(s);
    let mut i = start;
    let mut base = 10;
    if at(s, i) == b'0' {
        if matches!(at(s, i + 1), b'x' | b'X') && digit_value(at(s, i + 2)).is_some_and(|d| d < 16)
        {
            base = 16;
            i += 2;
        } else {
            base = 8;
        }
    }
    let (mag, over, end) = magnitude(s, i, base);
    if end == start {
        return Conv {
            value: 0,
            end: 0,
            range: false,
        };
    }
    if over {
        return Conv {
            value: u64::MAX,
            end,
            range: true,
        };
    }
    let value = if neg { mag.wrapping_neg() } else { mag };
    Conv {
        value,
        end,
        range: false,
    }
}

/// `atoi(s)`: glibc's `(int) strtol(s, NULL, 10)`.
pub(crate) fn atoi(s: &[u8]) -> i32 {
    strtol10(s).value as i32
}

/// ipvsadm.c `string_to_number`: the whole string is a decimal number in
/// `min..=max` (leading blanks and a sign allowed, as `strtol` allows them).
pub(crate) fn string_to_number(s: &[u8], min: i64, max: i64) -> Option<i64> {
    let c = strtol10(s);
    if c.end != 0 && c.end == s.len() && !c.range && (min..=max).contains(&c.value) {
        Some(c.value)
    } else {
        None
    }
}

/// ipvsadm.c `str_is_digit`: every byte is an ASCII digit (true for "").
pub(crate) fn str_is_digit(s: &[u8]) -> bool {
    s.iter().all(u8::is_ascii_digit)
}

/// glibc `inet_aton`: numbers-and-dots in any of the forms a, a.b, a.b.c, a.b.c.d,
/// each part decimal, octal (`0`) or hex (`0x`); anything after white space is
/// ignored. The address in network byte order.
pub(crate) fn inet_aton(s: &[u8]) -> Option<[u8; 4]> {
    const MAX: [u64; 4] = [0xffff_ffff, 0xff_ffff, 0xffff, 0xff];
    let mut parts: Vec<u8> = Vec::with_capacity(3);
    let mut i = 0;
    let val;
    loop {
        if !at(s, i).is_ascii_digit() {
            return None;
        }
        let c = strtoul0(&s[i..]);
        if c.range || c.value > 0xffff_ffff {
            return None;
        }
        i += c.end;
        if at(s, i) == b'.' {
            if parts.len() > 2 || c.value > 0xff {
                return None;
            }
            parts.push(c.value as u8);
            i += 1;
        } else {
            val = c.value;
            break;
        }
    }
    let c = at(s, i);
    if c != 0 && !(c.is_ascii() && is_space(c)) {
        return None;
    }
    if val > MAX[parts.len()] {
        return None;
    }
    let mut out = (val as u32).to_be_bytes();
    for (o, p) in out.iter_mut().zip(&parts) {
        *o |= *p;
    }
    Some(out)
}

/// glibc `inet_pton(AF_INET, ...)`: exactly four decimal parts, no leading zeros.
pub(crate) fn inet_pton4(s: &[u8]) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut tp = 0;
    let mut saw_digit = false;
    let mut octets = 0;
    for &ch in s {
        if ch.is_ascii_digit() {
            let new = u32::from(out[tp]) * 10 + u32::from(ch - b'0');
            if saw_digit && out[tp] == 0 {
                return None;
            }
            if new > 255 {
                return None;
            }
            out[tp] = new as u8;
            if !saw_digit {
                octets += 1;
                if octets > 4 {
                    return None;
                }
                saw_digit = true;
            }
        } else if ch == b'.' && saw_digit {
            if octets == 4 {
                return None;
            }
            tp += 1;
            out[tp] = 0;
            saw_digit = false;
        } else {
            return None;
        }
    }
    if octets < 4 {
        return None;
    }
    Some(out)
}

/// glibc `inet_pton(AF_INET6, ...)`, including a trailing dotted IPv4 part.
pub(crate) fn inet_pton6(s: &[u8]) -> Option<[u8; 16]> {
    let mut tmp = [0u8; 16];
    let mut tp = 0usize;
    let mut colonp: Option<usize> = None;
    let mut src = 0usize;
    if s.is_empty() {
        return None;
    }
    if s[0] == b':' {
        src = 1;
        if s.len() == 1 || s[1] != b':' {
            return None;
        }
    }
    let mut curtok = src;
    let mut xdigits = 0;
    let mut val: u32 = 0;
    while src < s.len() {
        let ch = s[src];
        src += 1;
        if let Some(d) = digit_value(ch).filter(|d| *d < 16) {
            if xdigits == 4 {
                return None;
            }
            val = (val << 4) | d;
            if val > 0xffff {
                return None;
            }
            xdigits += 1;
            continue;
        }
        if ch == b':' {
            curtok = src;
            if xdigits == 0 {
                if colonp.is_some() {
                    return None;
                }
                colonp = Some(tp);
                continue;
            } else if src == s.len() {
                return None;
            }
            if tp + 2 > 16 {
                return None;
            }
            tmp[tp] = (val >> 8) as u8;
            tmp[tp + 1] = val as u8;
            tp += 2;
            xdigits = 0;
            val = 0;
            continue;
        }
        if ch == b'.' && tp + 4 <= 16 {
            if let Some(v4) = inet_pton4(&s[curtok..]) {
                tmp[tp..tp + 4].copy_from_slice(&v4);
                tp += 4;
                xdigits = 0;
                break;
            }
        }
        return None;
    }
    if xdigits > 0 {
        if tp + 2 > 16 {
            return None;
        }
        tmp[tp] = (val >> 8) as u8;
        tmp[tp + 1] = val as u8;
        tp += 2;
    }
    if let Some(c) = colonp {
        if tp == 16 {
            return None;
        }
        let n = tp - c;
        tmp.copy_within(c..tp, 16 - n);
        for b in &mut tmp[c..16 - n] {
            *b = 0;
        }
        tp = 16;
    }
    if tp != 16 {
        return None;
    }
    Some(tmp)
}

/// glibc `inet_ntop(AF_INET6, ...)`: the longest run (first of equals) of two or more
/// zero groups becomes `::`, and `::a.b.c.d` / `::ffff:a.b.c.d` keep a dotted tail.
pub(crate) fn inet_ntop6(a: &[u8; 16]) -> String {
    let words: Vec<u16> = a
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let (mut best_base, mut best_len) = (None::<usize>, 0usize);
    let (mut cur_base, mut cur_len) = (None::<usize>, 0usize);
    for (i, w) in words.iter().enumerate() {
        if *w == 0 {
            if cur_base.is_none() {
                cur_base = Some(i);
                cur_len = 1;
            } else {
                cur_len += 1;
            }
        } else if cur_base.is_some() {
            if best_base.is_none() || cur_len > best_len {
                best_base = cur_base;
                best_len = cur_len;
            }
            cur_base = None;
        }
    }
    if cur_base.is_some() && (best_base.is_none() || cur_len > best_len) {
        best_base = cur_base;
        best_len = cur_len;
    }
    if best_base.is_some() && best_len < 2 {
        best_base = None;
    }
    let mut out = String::new();
    let mut i = 0;
    while i < 8 {
        if let Some(b) = best_base {
            if i >= b && i < b + best_len {
                if i == b {
                    out.push(':');
                }
                i += 1;
                continue;
            }
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6
            && best_base == Some(0)
            && (best_len == 6 || (best_len == 5 && words[5] == 0xffff))
        {
            out.push_str(&format!("{}.{}.{}.{}", a[12], a[13], a[14], a[15]));
            break;
        }
        out.push_str(&format!("{:x}", words[i]));
        i += 1;
    }
    if let Some(b) = best_base {
        if b + best_len == 8 {
            out.push(':');
        }
    }
    out
}

/// `inet_ntop` of an address (dotted quad, or [`inet_ntop6`]).
pub(crate) fn ntop(addr: &std::net::IpAddr) -> String {
    match addr {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => inet_ntop6(&a.octets()),
    }
}

/// `%-Ns`: `s` left-justified in `width` bytes (never cut).
pub(crate) fn left(s: &str, width: usize) -> String {
    let mut out = String::from(s);
    for _ in s.len()..width {
        out.push(' ');
    }
    out
}

/// `%Ns`: `s` right-justified in `width` bytes (never cut).
pub(crate) fn right(s: &str, width: usize) -> String {
    let mut out = String::new();
    for _ in s.len()..width {
        out.push(' ');
    }
    out.push_str(s);
    out
}

/// A C string cut to at most `n` bytes (as writing a NUL at `n` does).
pub(crate) fn cut(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        String::from_utf8_lossy(&s.as_bytes()[..n]).into_owned()
    }
}

/// Bytes cut at the first NUL, as C sees them.
pub(crate) fn c_str(s: &[u8]) -> &[u8] {
    match s.iter().position(|b| *b == 0) {
        Some(n) => &s[..n],
        None => s,
    }
}

/// Text for C bytes (argv and stdin are bytes to ipvsadm; invalid UTF-8 shows as U+FFFD).
pub(crate) fn text(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtol_accepts_blanks_and_signs_and_saturates() {
        assert_eq!(string_to_number(b" +80", 0, 65535), Some(80));
        assert_eq!(string_to_number(b"-0", 0, 65535), Some(0));
        assert_eq!(string_to_number(b"80 ", 0, 65535), None);
        assert_eq!(string_to_number(b"", 0, 65535), None);
        assert_eq!(string_to_number(b"65536", 0, 65535), None);
        assert_eq!(string_to_number(b"0x10", 0, 65535), None);
        let c = strtol10(b"99999999999999999999");
        assert_eq!((c.value, c.range), (i64::MAX, true));
        let c = strtol10(b"-99999999999999999999");
        assert_eq!((c.value, c.range), (i64::MIN, true));
        assert_eq!(strtol10(b"-9223372036854775808").value, i64::MIN);
        assert!(!strtol10(b"-9223372036854775808").range);
        assert_eq!(atoi(b"4294967297"), 1);
        assert_eq!(atoi(b"64abc"), 64);
        assert_eq!(atoi(b"99999999999999999999"), -1);
    }

    #[test]
    fn inet_aton_forms() {
        assert_eq!(inet_aton(b"1.2.3.4"), Some([1, 2, 3, 4]));
        assert_eq!(inet_aton(b"1.2"), Some([1, 0, 0, 2]));
        assert_eq!(inet_aton(b"1.2.3"), Some([1, 2, 0, 3]));
        assert_eq!(inet_aton(b"64"), Some([0, 0, 0, 64]));
        assert_eq!(inet_aton(b"0x7f.1"), Some([127, 0, 0, 1]));
        assert_eq!(inet_aton(b"010.0.0.1"), Some([8, 0, 0, 1]));
        assert_eq!(inet_aton(b"1.2.3.4 junk"), Some([1, 2, 3, 4]));
        assert_eq!(inet_aton(b"1.2.3.4x"), None);
        assert_eq!(inet_aton(b"08.1.1.1"), None);
        assert_eq!(inet_aton(b"1.2.3.256"), None);
        assert_eq!(inet_aton(b"1.256.3"), None);
        assert_eq!(inet_aton(b"1.2.65535"), Some([1, 2, 255, 255]));
        assert_eq!(inet_aton(b" 1.2.3.4"), None);
        assert_eq!(inet_aton(b"1."), None);
        assert_eq!(inet_aton(b"1.2.3.4.5"), None);
        assert_eq!(inet_aton(b""), None);
        assert_eq!(inet_aton(b"4294967295"), Some([255; 4]));
        assert_eq!(inet_aton(b"4294967296"), None);
    }

    #[test]
    fn inet_pton_forms() {
        assert_eq!(inet_pton4(b"1.2.3.4"), Some([1, 2, 3, 4]));
        assert_eq!(inet_pton4(b"01.2.3.4"), None);
        assert_eq!(inet_pton4(b"1.2.3"), None);
        assert_eq!(inet_pton4(b"0.0.0.0"), Some([0; 4]));
        let v = |s: &str| inet_pton6(s.as_bytes()).map(|a| inet_ntop6(&a));
        assert_eq!(v("::1").as_deref(), Some("::1"));
        assert_eq!(v("::").as_deref(), Some("::"));
        assert_eq!(v("2001:DB8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(v("::ffff:1.2.3.4").as_deref(), Some("::ffff:1.2.3.4"));
        assert_eq!(v("::2:3").as_deref(), Some("::0.2.0.3"));
        assert_eq!(v("1:0:0:2:0:0:0:3").as_deref(), Some("1:0:0:2::3"));
        assert_eq!(v("1:0:0:2:0:0:3:4").as_deref(), Some("1::2:0:0:3:4"));
        assert_eq!(v("1:2:3:4:5:6:7:0").as_deref(), Some("1:2:3:4:5:6:7:0"));
        assert_eq!(v("1:2:3:4:5:6::").as_deref(), Some("1:2:3:4:5:6::"));
        assert_eq!(v(":1"), None);
        assert_eq!(v("1:"), None);
        assert_eq!(v("1::2::3"), None);
        assert_eq!(v("1:2:3:4:5:6:7::8"), None);
        assert_eq!(v("12345::"), None);
        assert_eq!(v("1.2.3.4"), None);
    }
}
