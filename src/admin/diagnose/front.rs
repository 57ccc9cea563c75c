//! The front's own finding: connection pressure (the overload manager reclaiming or
//! refusing connections), reported as pool `front`.

use super::{Finding, Severity};
use crate::front::overload::Snapshot as FrontConns;
use crate::front::overload::{ConnState, Refusal};

/// What the overload manager did between two snapshots.
#[derive(Clone, Copy)]
struct Acted {
    /// Reclaimed before they sent a request head (in the TLS handshake or awaiting one).
    silent: u64,
    /// Idle keep-alive connections reclaimed.
    idle: u64,
    /// Refused at `maxConnections` (every open connection busy).
    full: u64,
    /// Refused by `maxConnectionsPerClient`.
    per_client: u64,
}

impl Acted {
    fn between(before: &FrontConns, now: &FrontConns) -> Acted {
        let delta = |a: u64, b: u64| b.saturating_sub(a);
        let reclaimed =
            |s: ConnState| delta(before.reclaimed[s as usize], now.reclaimed[s as usize]);
        let refused = |r: Refusal| delta(before.refused[r as usize], now.refused[r as usize]);
        Acted {
            silent: reclaimed(ConnState::Handshake) + reclaimed(ConnState::AwaitingHead),
            idle: reclaimed(ConnState::Idle),
            full: refused(Refusal::MaxConnections),
            per_client: refused(Refusal::PerClient),
        }
    }

    fn nothing(&self) -> bool {
        self.silent + self.idle + self.full + self.per_client == 0
    }
}

/// The front's overload manager acted (it reclaimed or refused connections) or the open
/// connections stand past its high-water mark. Front-wide: the finding's `pool` is
/// `front`.
pub(super) fn connection_pressure(
    before: &FrontConns,
    now: &FrontConns,
    secs: f64,
) -> Option<Finding> {
    let acted = Acted::between(before, now);
    let pressured = now.max > 0 && now.open >= now.high_water;
    if acted.nothing() && !pressured {
        return None;
    }
    let Acted {
        silent,
        idle,
        full,
        per_client,
    } = acted;
    let st = |s: ConnState| now.by_state[s as usize];
    let evidence = vec![
        format!(
            "open connections {} of maxConnections {} (high water {})",
            now.open, now.max, now.high_water
        ),
        format!(
            "now: {} in TLS handshake, {} awaiting a request head, {} active, {} idle",
            st(ConnState::Handshake),
            st(ConnState::AwaitingHead),
            st(ConnState::Active),
            st(ConnState::Idle)
        ),
        format!(
            "last {secs:.0} s: {silent} reclaimed without a request head, {idle} idle reclaimed, \
             {full} refused at maxConnections, {per_client} refused by maxConnectionsPerClient"
        ),
    ];
    let (severity, title, advice) = verdict(&acted, now);
    Some(Finding {
        severity,
        pool: "front".into(),
        rule: "connection_pressure",
        title,
        evidence,
        advice: advice.into(),
        symptoms: Vec::new(),
    })
}

/// How bad it is, what it is, and what to do: refusals of busy connections are
/// critical; otherwise whichever kind of reclaimed connection dominates names the cause.
fn verdict(acted: &Acted, now: &FrontConns) -> (Severity, String, &'static str) {
    let Acted {
        silent,
        idle,
        full,
        per_client,
    } = *acted;
    if full > 0 {
        (
            Severity::Critical,
            format!("{full} connections refused: every open connection had a request in flight"),
            "the front is full of busy connections: raise limits.maxConnections, or add \
             capacity so requests finish sooner",
        )
    } else if silent >= idle && silent + per_client > 0 {
        (
            Severity::Warning,
            format!("connection pressure: {silent} connections that sent no request were closed"),
            "clients open connections and send nothing (a slow or silent client flood): set \
             limits.maxConnectionsPerClient, lower limits.overload.headerWaitTimeout; if the \
             clients are real, raise limits.maxConnections",
        )
    } else {
        (
            Severity::Warning,
            format!(
                "connection pressure: {} of {} connections open, {idle} idle keep-alive \
                 connections closed early",
                now.open, now.max
            ),
            // (also the case of pressure with nothing reclaimed yet)
            "many clients hold idle keep-alive connections: raise limits.maxConnections or \
             lower limits.overload.idleTimeout",
        )
    }
}
