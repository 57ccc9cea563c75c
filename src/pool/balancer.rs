//! Picking a member with a free slot: the pool's load-balancing algorithms.
//!
//! Called with the pool's member view, with or without the pool lock (the fast path
//! takes none): it only reads the members' atomics (round robin also adds to their
//! running weights), so a pick may race another; the caller's CAS on the slot decides.
//! Returns the index of the member that gets the request, or `None` when no usable
//! member has a free slot (the request then waits in the queue). Backup members count
//! only when no primary is usable.

use super::member::Member;
use super::PickKey;
use crate::config::model::LoadBalancing;
use rand::Rng;
use std::cell::Cell;
use std::sync::Arc;

pub(super) fn pick(algo: &LoadBalancing, members: &[Arc<Member>], key: &PickKey) -> Option<usize> {
    let use_backups = !members.iter().any(|m| m.usable() && !m.is_backup());
    // A retry avoids the member it failed on, as long as another usable one exists (even
    // if that one is busy right now: waiting for it beats failing on the same one again).
    let avoid = key.avoid.as_deref().filter(|a| {
        members
            .iter()
            .any(|m| m.label != *a && m.usable() && m.is_backup() == use_backups)
    });
    let eligible =
        |m: &Member| m.usable() && m.is_backup() == use_backups && avoid != Some(m.label.as_str());
    // An ordered request goes to its key's member or waits for it: never elsewhere
    // because that member is busy (the key's requests would then run on two members).
    if let Some(h) = key.order {
        return rendezvous(members, eligible, h).filter(|&i| members[i].has_free_slot());
    }
    let candidate = |m: &Member| eligible(m) && m.has_free_slot();

    // Affinity: the member the client was sent to before, while it can take the request.
    if let Some(label) = key.affinity.as_deref() {
        if let Some(i) = members
            .iter()
            .position(|m| m.label == label && candidate(m))
        {
            return Some(i);
        }
    }
    by_algorithm(algo, members, candidate, key.hash)
}

/// The balancing algorithm's choice among the candidates.
fn by_algorithm(
    algo: &LoadBalancing,
    members: &[Arc<Member>],
    candidate: impl Fn(&Member) -> bool,
    hash: Option<u64>,
) -> Option<usize> {
    match algo {
        LoadBalancing::RoundRobin => smooth_weighted(members, candidate),
        LoadBalancing::LeastRequests => least_by(members, candidate, |m| {
            m.active() as u64 * 1_000_000 / m.weight() as u64
        }),
        LoadBalancing::LeastResponseTime => least_by(members, candidate, |m| {
            // Latency times queue depth: a fast member with many requests can lose to a
            // slower idle one. Members without a sample yet count as fastest.
            m.latency_ewma_us().saturating_mul(m.active() as u64 + 1) / m.weight() as u64
        }),
        LoadBalancing::PowerOfTwoChoices => power_of_two(members, candidate),
        LoadBalancing::Random => weighted_random(members, candidate),
        LoadBalancing::Hash(_) => match hash {
            // Rendezvous (highest random weight) hashing: consistent, so adding a member
            // moves only the keys that now score highest on it.
            Some(h) => rendezvous(members, candidate, h),
            None => smooth_weighted(members, candidate),
        },
    }
}

/// Two random candidates, the less loaded (by weight) wins.
fn power_of_two(members: &[Arc<Member>], candidate: impl Fn(&Member) -> bool) -> Option<usize> {
    let c: Vec<usize> = (0..members.len())
        .filter(|&i| candidate(&members[i]))
        .collect();
    match c.len() {
        0 => None,
        1 => Some(c[0]),
        n => {
            let mut rng = rand::thread_rng();
            let a = c[rng.gen_range(0..n)];
            let mut b = c[rng.gen_range(0..n - 1)];
            if b == a {
                b = c[n - 1];
            }
            let load =
                |i: usize| members[i].active() as u64 * 1_000_000 / members[i].weight() as u64;
            Some(if load(b) < load(a) { b } else { a })
        }
    }
}

/// A candidate drawn with probability proportional to its weight.
fn weighted_random(members: &[Arc<Member>], candidate: impl Fn(&Member) -> bool) -> Option<usize> {
    let total: u64 = members
        .iter()
        .filter(|m| candidate(m))
        .map(|m| m.weight() as u64)
        .sum();
    if total == 0 {
        return None;
    }
    let mut ticket = rand::thread_rng().gen_range(0..total);
    for (i, m) in members.iter().enumerate() {
        if candidate(m) {
            let w = m.weight() as u64;
            if ticket < w {
                return Some(i);
            }
            ticket -= w;
        }
    }
    None
}

/// nginx's smooth weighted round robin: every candidate gains its weight, the highest
/// wins and pays back the total. Spreads a 5:1:1 split as a,a,b,a,c,a,a, not a,a,a,a,a,b,c.
fn smooth_weighted(members: &[Arc<Member>], candidate: impl Fn(&Member) -> bool) -> Option<usize> {
    // One member gains its weight and pays it back: nothing changes, so nothing is
    // written (two atomic adds on a line every front thread writes, per request).
    if let [only] = members {
        return candidate(only).then_some(0);
    }
    let mut total = 0i64;
    let mut best: Option<usize> = None;
    let mut best_w = i64::MIN;
    for (i, m) in members.iter().enumerate() {
        if !candidate(m) {
            continue;
        }
        let w = m.weight() as i64;
        let cw = m.add_current_weight(w);
        total += w;
        if cw > best_w {
            best_w = cw;
            best = Some(i);
        }
    }
    if let Some(i) = best {
        members[i].add_current_weight(-total);
    }
    best
}

thread_local! {
    /// Where `least_by` starts its scan: per thread, so rotating it writes no shared line.
    static ROTATION: Cell<usize> = const { Cell::new(0) };
}

/// The candidate with the lowest `cost`, ties broken by rotating the starting point so
/// equal members share the load.
fn least_by(
    members: &[Arc<Member>],
    candidate: impl Fn(&Member) -> bool,
    cost: impl Fn(&Member) -> u64,
) -> Option<usize> {
    let n = members.len();
    if n == 0 {
        return None;
    }
    let rr = ROTATION.with(|r| {
        let v = r.get().wrapping_add(1);
        r.set(v);
        v
    });
    let start = rr % n;
    let mut best: Option<(usize, u64)> = None;
    for k in 0..n {
        let i = (start + k) % n;
        let m = &members[i];
        if !candidate(m) {
            continue;
        }
        let c = cost(m);
        if best.is_none_or(|(_, bc)| c < bc) {
            best = Some((i, c));
        }
    }
    best.map(|(i, _)| i)
}

fn rendezvous(
    members: &[Arc<Member>],
    candidate: impl Fn(&Member) -> bool,
    key: u64,
) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, m) in members.iter().enumerate() {
        if !candidate(m) {
            continue;
        }
        let h = mix64(key ^ hash_key(m.label.as_bytes()));
        // Weighted rendezvous: score = -w / ln(u), u uniform in (0, 1).
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        let u = u.clamp(f64::MIN_POSITIVE, 1.0 - f64::EPSILON);
        let score = -(m.weight() as f64) / u.ln();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

/// Hash a request key (header value, cookie, client address) for [`PickKey::hash`].
/// Stable across builds and restarts (FNV-1a, then a strong finalizer), so several roost
/// instances — or one after an upgrade — send a key to the same server.
pub fn hash_key(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// splitmix64's finalizer: every input bit affects every output bit.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_key_is_stable_across_builds() {
        // Fixed values: a change here remaps every hashed client in a running farm.
        assert_eq!(hash_key(b""), mix64(0xcbf2_9ce4_8422_2325));
        assert_eq!(hash_key(b"user1"), hash_key(b"user1"));
        assert_ne!(hash_key(b"user1"), hash_key(b"user2"));
        // FNV-1a("a") = 0xaf63dc4c8601ec8c, finalized.
        assert_eq!(hash_key(b"a"), 0x02c0_bdbf_4814_20f8);
    }
}
