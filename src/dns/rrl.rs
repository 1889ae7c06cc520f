//! Response rate limiting (RRL) for UDP, per client prefix, as BIND's `rate-limit` and Knot's
//! `mod-rrl` do it: a UDP source address can be forged, so an unlimited server can be used to
//! flood a victim with answers it never asked for. Each client prefix (`--rrl-ipv4-prefix`,
//! `--rrl-ipv6-prefix`: every address in a /24 or a /56 counts as one client, BIND's defaults)
//! gets `--rrl-responses-per-second` responses per second, with a burst of one second's worth.
//! Beyond that a response is dropped, except every `--rrl-slip`-th one, which is "slipped": sent
//! as a small truncated answer (header, question, OPT, TC=1), so a real client behind a forged
//! flood asks again over TCP, which is never limited (a TCP client cannot forge its address).
//!
//! The table is a fixed array of buckets, allocated once: a client prefix is hashed (with a
//! per-process random key, so nobody can aim a collision at a victim's bucket) to one bucket,
//! and prefixes that collide share it. Each bucket is one `AtomicU64` updated by compare and
//! swap, so the UDP threads and the hickory tasks never lock, and the fast path allocates
//! nothing.
//!
//! A bucket holds a theoretical arrival time (GCRA, the token bucket written as a time): a
//! response is allowed when the bucket's time is at most one second ahead of now, and moves it
//! one interval (1 s / rate) on. A limited response moves nothing, so a client that keeps
//! asking still gets exactly `rate` answers a second, and one that stops is answered in full
//! again at once.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::wire;
use crate::admin::DnsMetrics;

/// Buckets in the table: 64 Ki, 512 KiB. More client prefixes than that share buckets (and so
/// their limits); a node-local server sees far fewer.
pub const BUCKETS: usize = 1 << 16;

const MICROS_PER_SECOND: u64 = 1_000_000;
/// A bucket: the theoretical arrival time in microseconds since the table was made (48 bits,
/// about 8.9 years), then the count of limited responses modulo the slip (16 bits).
const COUNT_BITS: u32 = 16;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const TIME_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;

/// What rate limiting is asked for (`--rrl-*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RrlConfig {
    /// Responses per second per client prefix (at least 1).
    pub responses_per_second: u32,
    /// Every Nth limited response is slipped (sent truncated); 0 drops them all.
    pub slip: u32,
    /// Prefix lengths that make one client.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

/// What happens to one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: sent as it is.
    Send,
    /// Over the limit, and this one is sent truncated (TC=1, no records).
    Slip,
    /// Over the limit: not sent.
    Drop,
}

pub struct Rrl {
    buckets: Box<[AtomicU64]>,
    /// 1 s / rate, and how far ahead of now a bucket may be and still send (1 s - interval:
    /// a burst of `rate` responses).
    interval: u64,
    tolerance: u64,
    slip: u64,
    v4_mask: u32,
    v6_mask: u128,
    hasher: std::collections::hash_map::RandomState,
    epoch: Instant,
    metrics: Arc<DnsMetrics>,
}

impl std::fmt::Debug for Rrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rrl")
            .field("interval_us", &self.interval)
            .field("slip", &self.slip)
            .field("v4_mask", &format_args!("{:#010x}", self.v4_mask))
            .field("v6_mask", &format_args!("{:#034x}", self.v6_mask))
            .finish_non_exhaustive()
    }
}

impl Rrl {
    /// A table of [`BUCKETS`] empty buckets (every client may send a full burst); limited
    /// responses are counted in `metrics`.
    pub fn new(cfg: RrlConfig, metrics: Arc<DnsMetrics>) -> Self {
        let rate = u64::from(cfg.responses_per_second.max(1)).min(MICROS_PER_SECOND);
        let interval = MICROS_PER_SECOND / rate;
        Rrl {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            interval,
            tolerance: MICROS_PER_SECOND - interval,
            slip: u64::from(cfg.slip).min(COUNT_MASK),
            v4_mask: u32::MAX
                .checked_shl(32 - u32::from(cfg.ipv4_prefix.min(32)))
                .unwrap_or(0),
            v6_mask: u128::MAX
                .checked_shl(128 - u32::from(cfg.ipv6_prefix.min(128)))
                .unwrap_or(0),
            hasher: std::collections::hash_map::RandomState::new(),
            epoch: Instant::now(),
            metrics,
        }
    }

    /// Applies the limit to `response`, about to go to `client` over UDP: true to send it (as
    /// it was, or cut down to a slip), false to drop it. Counts slipped and dropped responses.
    pub fn admit(&self, client: IpAddr, response: &mut Vec<u8>) -> bool {
        let now = self.epoch.elapsed().as_micros() as u64;
        match self.decide_at(client, now) {
            Verdict::Send => true,
            Verdict::Slip if wire::truncate_to_slip(response) => {
                self.metrics.rrl_slipped.inc();
                true
            }
            Verdict::Slip | Verdict::Drop => {
                self.metrics.rrl_dropped.inc();
                false
            }
        }
    }

    /// The verdict for one response to `client` at `now` (microseconds since the table was
    /// made; the clock is a parameter so that tests can set it).
    pub fn decide_at(&self, client: IpAddr, now: u64) -> Verdict {
        let now = now & TIME_MASK;
        let bucket = &self.buckets[self.index(client)];
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let mut tat = current >> COUNT_BITS;
            // Never legitimately more than a second ahead (two, allowing for threads that read
            // the clock a little apart): the clock wrapped, after 8.9 years. Start it afresh
            // rather than limit that client for years.
            if tat > now + 2 * MICROS_PER_SECOND {
                tat = 0;
            }
            let tat = tat.max(now);
            let (next, verdict) = if tat - now <= self.tolerance {
                (
                    ((tat + self.interval) & TIME_MASK) << COUNT_BITS,
                    Verdict::Send,
                )
            } else {
                let count = if self.slip == 0 {
                    0
                } else {
                    ((current & COUNT_MASK) + 1) % self.slip
                };
                let verdict = if self.slip > 0 && count == 0 {
                    Verdict::Slip
                } else {
                    Verdict::Drop
                };
                (((tat & TIME_MASK) << COUNT_BITS) | count, verdict)
            };
            match bucket.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return verdict,
                Err(actual) => current = actual,
            }
        }
    }

    /// The bucket of the client's prefix. IPv4-mapped IPv6 addresses (a dual-stack socket) count
    /// as IPv4.
    fn index(&self, client: IpAddr) -> usize {
        let key: (u8, u128) = match client {
            IpAddr::V4(v4) => (4, u128::from(u32::from(v4) & self.v4_mask)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => (4, u128::from(u32::from(v4) & self.v4_mask)),
                None => (6, u128::from(v6) & self.v6_mask),
            },
        };
        self.hasher.hash_one(key) as usize & (BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::Metrics;

    const SECOND: u64 = MICROS_PER_SECOND;

    fn rrl(rate: u32, slip: u32) -> Rrl {
        Rrl::new(
            RrlConfig {
                responses_per_second: rate,
                slip,
                ipv4_prefix: 24,
                ipv6_prefix: 56,
            },
            Metrics::new().dns.clone(),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// `n` responses to `client` at `now`, tallied (sent, slipped, dropped).
    fn burst(r: &Rrl, client: IpAddr, now: u64, n: usize) -> (usize, usize, usize) {
        let mut tally = (0, 0, 0);
        for _ in 0..n {
            match r.decide_at(client, now) {
                Verdict::Send => tally.0 += 1,
                Verdict::Slip => tally.1 += 1,
                Verdict::Drop => tally.2 += 1,
            }
        }
        tally
    }

    #[test]
    fn a_burst_gets_the_rate_then_every_nth_limited_response_slips() {
        let r = rrl(20, 2);
        let client = ip("192.0.2.7");
        assert_eq!(burst(&r, client, 10 * SECOND, 200), (20, 90, 90));
        // With slip 3, the pattern after the burst: drop, drop, slip, drop, drop, slip...
        let r = rrl(5, 3);
        let seq: Vec<Verdict> = (0..11).map(|_| r.decide_at(client, SECOND)).collect();
        use Verdict::*;
        assert_eq!(
            seq,
            [
                Send, Send, Send, Send, Send, Drop, Drop, Slip, Drop, Drop, Slip
            ]
        );
    }

    #[test]
    fn slip_zero_drops_and_slip_one_truncates_everything_limited() {
        let client = ip("192.0.2.7");
        assert_eq!(burst(&rrl(10, 0), client, SECOND, 50), (10, 0, 40));
        assert_eq!(burst(&rrl(10, 1), client, SECOND, 50), (10, 40, 0));
    }

    #[test]
    fn the_bucket_refills_at_the_rate() {
        let r = rrl(20, 2);
        let client = ip("192.0.2.7");
        let t0 = 5 * SECOND;
        assert_eq!(burst(&r, client, t0, 100).0, 20);
        // One interval (50 ms) later: one more response; a second later: a full burst.
        assert_eq!(burst(&r, client, t0 + 50_000, 10).0, 1);
        assert_eq!(burst(&r, client, t0 + 50_000 + SECOND, 100).0, 20);
        // A steady client at exactly the rate is never limited.
        let r = rrl(20, 2);
        let limited = (0..1000u64)
            .filter(|i| r.decide_at(client, t0 + i * 50_000) != Verdict::Send)
            .count();
        assert_eq!(limited, 0);
        // Twice the rate for ten seconds: the burst of 20, then 20 a second.
        let r = rrl(20, 0);
        let sent = (0..400u64)
            .filter(|i| r.decide_at(client, t0 + i * 25_000) == Verdict::Send)
            .count();
        assert!((215..=221).contains(&sent), "{sent}");
    }

    #[test]
    fn addresses_in_one_prefix_share_a_bucket_and_other_prefixes_do_not() {
        let r = rrl(10, 0);
        let now = SECOND;
        assert_eq!(burst(&r, ip("192.0.2.1"), now, 5).0, 5);
        assert_eq!(burst(&r, ip("192.0.2.200"), now, 10).0, 5, "same /24");
        assert_eq!(burst(&r, ip("::ffff:192.0.2.9"), now, 1).0, 0, "mapped");
        assert_eq!(burst(&r, ip("198.51.100.1"), now, 10).0, 10, "other /24");
        assert_eq!(burst(&r, ip("2001:db8:0:1::1"), now, 6).0, 6);
        assert_eq!(burst(&r, ip("2001:db8:0:ff::2"), now, 10).0, 4, "same /56");
        assert_eq!(
            burst(&r, ip("2001:db8:0:100::1"), now, 10).0,
            10,
            "other /56"
        );
        // With /32 every address is a client of its own.
        let r = Rrl::new(
            RrlConfig {
                responses_per_second: 10,
                slip: 0,
                ipv4_prefix: 32,
                ipv6_prefix: 128,
            },
            Metrics::new().dns.clone(),
        );
        assert_eq!(burst(&r, ip("192.0.2.1"), now, 10).0, 10);
        assert_eq!(burst(&r, ip("192.0.2.2"), now, 10).0, 10);
    }

    #[test]
    fn a_bucket_far_in_the_future_starts_afresh() {
        let r = rrl(10, 0);
        let client = ip("192.0.2.7");
        let late = 100 * SECOND;
        assert_eq!(burst(&r, client, late, 20).0, 10);
        // The clock wrapped: 'now' is far behind the bucket's time.
        assert_eq!(burst(&r, client, 3, 20).0, 10);
    }

    #[test]
    fn admit_counts_and_cuts_slips_down() {
        let metrics = Metrics::new();
        let r = Rrl::new(
            RrlConfig {
                responses_per_second: 1,
                slip: 2,
                ipv4_prefix: 24,
                ipv6_prefix: 56,
            },
            metrics.dns.clone(),
        );
        // A header and a question for `a.` (A, IN), and one answer record.
        let response: Vec<u8> = [
            &[0x12, 0x34, 0x84, 0x00, 0, 1, 0, 1, 0, 0, 0, 0][..],
            &[1, b'a', 0, 0, 1, 0, 1],
            &[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 192, 0, 2, 1],
        ]
        .concat();
        let client = ip("192.0.2.7");
        let mut sent = Vec::new();
        for _ in 0..5 {
            let mut out = response.clone();
            if r.admit(client, &mut out) {
                sent.push(out);
            }
        }
        // One in full, then drop, slip, drop, slip.
        assert_eq!(sent.len(), 3, "{sent:?}");
        assert_eq!(sent[0], response);
        for slipped in &sent[1..] {
            assert_eq!(slipped.len(), 12 + 7);
            assert_eq!(slipped[2], 0x86, "TC set");
            assert_eq!(&slipped[4..12], [0, 1, 0, 0, 0, 0, 0, 0]);
        }
        assert_eq!(metrics.dns.rrl_slipped.get(), 2);
        assert_eq!(metrics.dns.rrl_dropped.get(), 2);
    }
}
