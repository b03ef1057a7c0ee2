//! The deterministic byte stream that `bulk` backends send, and the checksum that
//! `bulk` clients compute over what they receive to prove that a proxy delivered
//! every byte, in order, unchanged.
//!
//! The stream is a fixed block of [`PERIOD`] pseudo-random bytes (xorshift64* from a
//! fixed seed) repeated: byte `i` of every stream is `block()[i % PERIOD]`. Every
//! connection of every `bulk` backend sends the same stream, so a client can check
//! it without knowing which backend answered. Sending costs no generation work: the
//! backend writes slices of the block.

use std::sync::OnceLock;

/// Length of the repeated block. Not a power of two, so that the repetition does not
/// line up with read or write buffer sizes.
pub const PERIOD: usize = (1 << 20) + 8 * 61;

const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// The block the stream repeats, generated once per process.
pub fn block() -> &'static [u8] {
    static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut state = SEED;
        let mut out = Vec::with_capacity(PERIOD);
        while out.len() < PERIOD {
            // xorshift64* (Vigna): full period over non-zero states.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        out
    })
}

/// Calls `f` with consecutive slices of the first `len` bytes of the stream, each at
/// most `max_chunk` bytes long (and never crossing the end of the block).
pub fn for_each_chunk(len: u64, max_chunk: usize, mut f: impl FnMut(&[u8])) {
    let block = block();
    let max_chunk = max_chunk.max(1);
    let mut offset = 0usize;
    let mut remaining = len;
    while remaining > 0 {
        let room = (PERIOD - offset).min(max_chunk);
        let n = usize::try_from(remaining).map_or(room, |r| r.min(room));
        f(&block[offset..offset + n]);
        offset = (offset + n) % PERIOD;
        remaining -= n as u64;
    }
}

/// The checksum of the first `len` bytes of the stream, i.e. what a client must
/// compute over a complete, unaltered `len`-byte transfer.
pub fn stream_checksum(len: u64) -> u64 {
    let mut sum = Checksum::new();
    for_each_chunk(len, PERIOD, |chunk| sum.update(chunk));
    sum.finish()
}

const LANES: usize = 4;
const BLOCK_BYTES: usize = LANES * 8;
const MUL: u64 = 0x9FB2_1C65_1E98_DF25;

/// A fast, position-sensitive checksum over a byte stream fed in pieces of any size.
///
/// Four independent lanes each absorb every fourth little-endian 64-bit word with
/// `lane = rotl((lane ^ word) * MUL, 29)`, a bijection of the lane for a fixed word
/// and of the word for a fixed lane; the lanes and the length are folded the same
/// way at the end. Hence changing any single 8-byte word of the input (in particular
/// any single byte) always changes the result, not just with high probability.
/// The result does not depend on how the stream was split into `update` calls.
#[derive(Clone, Debug)]
pub struct Checksum {
    lanes: [u64; LANES],
    pending: [u8; BLOCK_BYTES],
    pending_len: usize,
    total: u64,
}

impl Default for Checksum {
    fn default() -> Self {
        Self::new()
    }
}

impl Checksum {
    pub fn new() -> Self {
        Self {
            lanes: [
                0x243F_6A88_85A3_08D3,
                0x1319_8A2E_0370_7344,
                0xA409_3822_299F_31D0,
                0x082E_FA98_EC4E_6C89,
            ],
            pending: [0; BLOCK_BYTES],
            pending_len: 0,
            total: 0,
        }
    }

    /// Bytes absorbed so far.
    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.pending_len > 0 {
            let take = (BLOCK_BYTES - self.pending_len).min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            self.pending_len += take;
            data = &data[take..];
            if self.pending_len < BLOCK_BYTES {
                return;
            }
            let full = self.pending;
            self.absorb(&full);
            self.pending_len = 0;
        }
        let mut blocks = data.chunks_exact(BLOCK_BYTES);
        for b in &mut blocks {
            self.absorb(b);
        }
        let rest = blocks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    fn absorb(&mut self, block: &[u8]) {
        for (lane, word) in self.lanes.iter_mut().zip(block.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            *lane = mix(*lane, u64::from_le_bytes(w));
        }
    }

    pub fn finish(mut self) -> u64 {
        if self.pending_len > 0 {
            self.pending[self.pending_len..].fill(0);
            let last = self.pending;
            self.absorb(&last);
        }
        let mut h = self.total;
        for lane in self.lanes {
            h = mix(h, lane);
        }
        h ^ (h >> 31)
    }
}

#[inline]
fn mix(state: u64, word: u64) -> u64 {
    (state ^ word).wrapping_mul(MUL).rotate_left(29)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn stream(len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        for_each_chunk(len as u64, 4096, |c| v.extend_from_slice(c));
        v
    }

    fn sum(data: &[u8]) -> u64 {
        let mut c = Checksum::new();
        c.update(data);
        c.finish()
    }

    #[test]
    fn stream_wraps_around_the_block() {
        let s = stream(PERIOD + 100);
        assert_eq!(&s[..PERIOD], block());
        assert_eq!(&s[PERIOD..], &block()[..100]);
    }

    #[test]
    fn block_is_not_trivially_periodic() {
        let b = block();
        // xorshift64* output: no 64 KiB shift of the block reproduces it.
        assert_ne!(&b[..1 << 16], &b[1 << 16..2 << 16]);
        let zeros = b.iter().filter(|&&x| x == 0).count();
        assert!(zeros < PERIOD / 128, "{zeros} zero bytes");
    }

    #[test]
    fn split_points_do_not_change_the_checksum() {
        let data = stream(10_007);
        let whole = sum(&data);
        for step in [1usize, 3, 7, 8, 31, 32, 33, 1000, 4096] {
            let mut c = Checksum::new();
            for piece in data.chunks(step) {
                c.update(piece);
            }
            assert_eq!(c.len(), data.len() as u64);
            assert_eq!(c.finish(), whole, "split every {step} bytes");
        }
        assert_eq!(stream_checksum(10_007), whole);
    }

    #[test]
    fn every_single_corrupted_byte_is_detected() {
        let data = stream(2_000);
        let good = sum(&data);
        for i in 0..data.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut bad = data.clone();
                bad[i] ^= flip;
                assert_ne!(sum(&bad), good, "byte {i} ^ {flip:#x} undetected");
            }
        }
    }

    #[test]
    fn truncation_extension_and_reordering_are_detected() {
        let data = stream(5_000);
        let good = sum(&data);
        assert_ne!(sum(&data[..4_999]), good);
        let mut longer = data.clone();
        longer.push(0);
        assert_ne!(sum(&longer), good);
        let mut swapped = data.clone();
        swapped.swap(100, 2_100);
        assert_ne!(sum(&swapped), good);
        // Two 32-byte blocks exchanged: every lane sees the same words, other order.
        let mut blocks = data.clone();
        let (a, b) = blocks.split_at_mut(64);
        a[..32].swap_with_slice(&mut b[..32]);
        assert_ne!(sum(&blocks), good);
    }
}
