//! The hash primitives that the kernel's hashing schedulers (sh, dh, mh) are built
//! on, reproduced bit for bit for an x86_64 kernel so that rvs, the XDP data plane
//! and Debian's 6.1 kernel put every key in the same bucket:
//!
//! - [`hash_32`]: the multiplicative hash of include/linux/hash.h (multiply by
//!   `GOLDEN_RATIO_32`, keep the top `bits` bits). x86 has no arch override.
//! - [`hsiphash`]: the kernel's "half" SipHash of lib/siphash.c. On 64-bit builds
//!   (`BITS_PER_LONG == 64`) the kernel does not use HalfSipHash: `hsiphash_key_t` is
//!   two `unsigned long`s (two u64) and the function is SipHash-1-3 (one
//!   compression round, three finalisation rounds) whose 64-bit result is truncated
//!   to `u32`. That is what is implemented here; a 32-bit kernel would give other
//!   values.
//! - [`fold_addr`]: how IPVS turns an address into 32 bits (`addr_fold`): an IPv4
//!   address as is, an IPv6 address as the XOR of its four 32-bit words, read in
//!   host order (`ntohl`).
//! - [`fls`] and [`gcd`] as in include/linux/bitops.h and lib/math/gcd.c.

use std::net::IpAddr;

/// include/linux/hash.h `GOLDEN_RATIO_32`.
pub const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// `hash_32(val, bits)`: `val * GOLDEN_RATIO_32` (mod 2^32), top `bits` bits.
/// `bits` must be 1..=32 in the kernel; here 0 gives 0 and larger values act as 32.
pub fn hash_32(val: u32, bits: u32) -> u32 {
    let h = val.wrapping_mul(GOLDEN_RATIO_32);
    match bits {
        0 => 0,
        1..=31 => h >> (32 - bits),
        _ => h,
    }
}

/// The 32-bit value IPVS hashes for an address (`ntohl(addr_fold)`).
pub fn fold_addr(addr: IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let x = u128::from(a);
            // Truncating casts keep each 32-bit word.
            (x as u32) ^ ((x >> 32) as u32) ^ ((x >> 64) as u32) ^ ((x >> 96) as u32)
        }
    }
}

/// The port the sh and mh schedulers add to the key when `sh-port`/`mh-port` is
/// set: the source port for TCP, UDP and SCTP, 0 for any other protocol.
pub fn l4_source_port(proto: u8, sport: u16) -> u16 {
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const SCTP: u8 = 132;
    match proto {
        TCP | UDP | SCTP => sport,
        _ => 0,
    }
}

/// "Find last set": 1-based index of the highest set bit, 0 for 0.
pub fn fls(x: u32) -> u32 {
    32 - x.leading_zeros()
}

/// Greatest common divisor; `gcd(0, b) == b`.
pub fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// An `hsiphash_key_t` of a 64-bit kernel: two `unsigned long`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HsiphashKey(pub [u64; 2]);

const SIP_INIT: [u64; 4] = [
    0x736f_6d65_7073_6575,
    0x646f_7261_6e64_6f6d,
    0x6c79_6765_6e65_7261,
    0x7465_6462_7974_6573,
];

fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-c-d over `data` with a 128-bit key given as two little-endian words.
fn siphash_cd(key: [u64; 2], data: &[u8], c: usize, d: usize) -> u64 {
    let mut v = [
        SIP_INIT[0] ^ key[0],
        SIP_INIT[1] ^ key[1],
        SIP_INIT[2] ^ key[0],
        SIP_INIT[3] ^ key[1],
    ];
    let le_word = |bytes: &[u8]| {
        bytes
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    };
    let words = data.chunks_exact(8);
    let tail = words.remainder();
    for w in words {
        let m = le_word(w);
        v[3] ^= m;
        for _ in 0..c {
            sip_round(&mut v);
        }
        v[0] ^= m;
    }
    // The last word carries the length's low byte in its top byte.
    let b = ((data.len() as u64) << 56) | le_word(tail);
    v[3] ^= b;
    for _ in 0..c {
        sip_round(&mut v);
    }
    v[0] ^= b;
    v[2] ^= 0xff;
    for _ in 0..d {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// `hsiphash(data, len, key)` of a 64-bit kernel: SipHash-1-3 truncated to 32 bits.
pub fn hsiphash(data: &[u8], key: &HsiphashKey) -> u32 {
    // Truncation is the kernel's: it returns the u64 result as u32.
    siphash_cd(key.0, data, 1, 3) as u32
}

/// `hsiphash(&v, sizeof(v), key)` for a `u32` in an x86_64 (little-endian) kernel's
/// memory, as ip_vs_mh.c hashes its keys.
pub fn hsiphash_u32(v: u32, key: &HsiphashKey) -> u32 {
    hsiphash(&v.to_le_bytes(), key)
}

/// Test helpers for the hashing schedulers: destination lists with chosen
/// addresses, weights and `last_weight`s (the shared fixture numbers addresses by
/// position, which would change every address when a server is added at the head).
#[cfg(test)]
pub(super) mod testfx {
    use crate::dest::{Dest, DestId};
    use crate::model::{DestConfig, Forward};
    use crate::sched::testutil::Fixture;
    use crate::service::ServiceId;
    use slab::Slab;
    use std::net::{IpAddr, Ipv4Addr};

    /// One destination: its address 10.0.<id / 256>.<id % 256>:80, weight,
    /// last_weight and overload flag.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Spec {
        pub id: u16,
        pub weight: u32,
        pub last_weight: u32,
        pub overloaded: bool,
    }

    impl Spec {
        pub fn new(id: u16, weight: u32) -> Self {
            Spec {
                id,
                weight,
                last_weight: weight,
                overloaded: false,
            }
        }
    }

    pub fn addr(id: u16) -> IpAddr {
        let [hi, lo] = id.to_be_bytes();
        IpAddr::V4(Ipv4Addr::new(10, 0, hi, lo))
    }

    /// A list in the kernel's order (`specs[0]` is the head).
    pub fn build(specs: &[Spec]) -> Fixture {
        let mut slab = Slab::new();
        let mut order = Vec::new();
        for s in specs {
            let entry = slab.vacant_entry();
            let id = DestId(entry.key() as u32);
            let mut cfg = DestConfig::new(addr(s.id), 80);
            cfg.weight = s.weight;
            cfg.forward = Forward::Route;
            let mut d = Dest::new(id, cfg, ServiceId(0));
            d.last_weight = s.last_weight;
            d.overloaded = s.overloaded;
            entry.insert(d);
            order.push(id);
        }
        Fixture { slab, order }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    // From the kernel's lib/siphash_kunit.c (lib/test_siphash.c in older trees),
    // which takes them from the SipHash reference: key bytes 00..0f, input bytes
    // 00, 01, .., i-1 for vector i.
    const TEST_KEY: [u64; 2] = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];

    const SIPHASH24_VECTORS: [u64; 8] = [
        0x726fdb47dd0e0e31,
        0x74f839c593dc67fd,
        0x0d6c8009d9a94f5a,
        0x85676696d7fb7e2d,
        0xcf2794e0277187b7,
        0x18765564cd99a68d,
        0xcbc9466e58fee3ce,
        0xab0200f58b01d137,
    ];

    /// The `BITS_PER_LONG == 64` hsiphash vectors.
    const HSIPHASH64_VECTORS: [u32; 64] = [
        0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67, 0xc59f22a7,
        0x9bb11140, 0x8d299a8e, 0x6c063de4, 0x92ff097f, 0xf94dc352, 0x57b4d9a2, 0x1229ffa7,
        0xc0f95d34, 0x2a519956, 0x7d908b66, 0x63dbd80c, 0xb473e63e, 0x8d297d1c, 0xa6cce040,
        0x2b45f844, 0xa320872e, 0xdae6c123, 0x67349c8c, 0x705b0979, 0xca9913a5, 0x4ade3b35,
        0xef6cd00d, 0x4ab1e1f4, 0x43c5e663, 0x8c21d1bc, 0x16a7b60d, 0x7a8ff9bf, 0x1f2a753e,
        0xbf186b91, 0xada26206, 0xa3c33057, 0xae3a36a1, 0x7b108392, 0x99e41531, 0x3f1ad944,
        0xc8138825, 0xc28949a6, 0xfaf8876b, 0x9f042196, 0x68b1d623, 0x8b5114fd, 0xdf074c46,
        0x12cc86b3, 0x0a52098f, 0x9d292f9a, 0xa2f41f12, 0x43a71ed0, 0x73f0bce6, 0x70a7e980,
        0x243c6d75, 0xfdb71513, 0xa67d8a08, 0xb7e8f148, 0xf7a644ee, 0x0f1837f2, 0x4b6694e0,
        0xb7bbb3a8,
    ];

    fn input(len: usize) -> Vec<u8> {
        (0..len as u8).collect()
    }

    #[test]
    fn siphash_2_4_reference_vectors() {
        // Checks the round function and padding shared with hsiphash.
        for (i, &want) in SIPHASH24_VECTORS.iter().enumerate() {
            assert_eq!(siphash_cd(TEST_KEY, &input(i), 2, 4), want, "length {i}");
        }
    }

    #[test]
    fn hsiphash_64bit_kernel_vectors() {
        let key = HsiphashKey(TEST_KEY);
        for (i, &want) in HSIPHASH64_VECTORS.iter().enumerate() {
            assert_eq!(hsiphash(&input(i), &key), want, "length {i}");
        }
    }

    #[test]
    fn hsiphash_u32_is_the_kernels_1u32() {
        // siphash_kunit.c: hsiphash_1u32(0x03020100) equals the 4-byte vector.
        let key = HsiphashKey(TEST_KEY);
        assert_eq!(hsiphash_u32(0x0302_0100, &key), HSIPHASH64_VECTORS[4]);
    }

    #[test]
    fn hash_32_by_hand() {
        // 0x61C88647 * k mod 2^32, top bits, worked by hand:
        // k=1: 0x61C88647 -> 0x61 = 97; k=2: 0xC3910C8E -> 0xC3 = 195;
        // k=3: 0x1_255992D5 -> 0x25 = 37; k=5: 0x1_E8E99F63 -> 0xE8 = 232.
        assert_eq!(hash_32(1, 8), 97);
        assert_eq!(hash_32(2, 8), 195);
        assert_eq!(hash_32(3, 8), 37);
        assert_eq!(hash_32(5, 8), 232);
        assert_eq!(hash_32(1, 4), 6);
        assert_eq!(hash_32(0, 20), 0);
        assert_eq!(hash_32(1, 32), GOLDEN_RATIO_32);
        // -GOLDEN_RATIO_32 mod 2^32 is the familiar 0x9E3779B9.
        assert_eq!(hash_32(u32::MAX, 32), 0x9E37_79B9);
    }

    #[test]
    fn address_fold() {
        assert_eq!(
            fold_addr(IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1))),
            0xC0A8_0001
        );
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        assert_eq!(fold_addr(IpAddr::V6(v6)), 0x2001_0db8 ^ 0x0000_0001);
        let v6: Ipv6Addr = "1:2:3:4:5:6:7:8".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        assert_eq!(
            fold_addr(IpAddr::V6(v6)),
            0x0001_0002 ^ 0x0003_0004 ^ 0x0005_0006 ^ 0x0007_0008
        );
    }

    #[test]
    fn fls_and_gcd() {
        assert_eq!(fls(0), 0);
        assert_eq!(fls(1), 1);
        assert_eq!(fls(63), 6);
        assert_eq!(fls(64), 7);
        assert_eq!(fls(65_535), 16);
        assert_eq!(fls(u32::MAX), 32);
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(gcd(0, 7), 7);
        assert_eq!(gcd(7, 0), 7);
        assert_eq!(gcd(17, 5), 1);
    }

    #[test]
    fn port_only_for_tcp_udp_sctp() {
        assert_eq!(l4_source_port(6, 1234), 1234);
        assert_eq!(l4_source_port(17, 1234), 1234);
        assert_eq!(l4_source_port(132, 1234), 1234);
        assert_eq!(l4_source_port(1, 1234), 0);
        assert_eq!(l4_source_port(50, 1234), 0);
    }
}
