//! The front's own finding: connection pressure (the overload manager reclaiming or
//! refusing connections), reported as pool `front`.

use super::{Finding, Severity};
use crate::front::overload::Snapshot as FrontConns;

/// The front's overload manager acted (it reclaimed or refused connections) or the open
/// connections stand past its high-water mark. Front-wide: the finding's `pool` is
/// `front`.
pub(super) fn connection_pressure(
    before: &FrontConns,
    now: &FrontConns,
    secs: f64,
) -> Option<Finding> {
    use crate::front::overload::{ConnState, Refusal};
    let delta = |a: u64, b: u64| b.saturating_sub(a);
    let reclaimed: Vec<u64> = (0..4)
        .map(|i| delta(before.reclaimed[i], now.reclaimed[i]))
        .collect();
    let silent =
        reclaimed[ConnState::Handshake as usize] + reclaimed[ConnState::AwaitingHead as usize];
    let idle = reclaimed[ConnState::Idle as usize];
    let full = delta(
        before.refused[Refusal::MaxConnections as usize],
        now.refused[Refusal::MaxConnections as usize],
    );
    let per_client = delta(
        before.refused[Refusal::PerClient as usize],
        now.refused[Refusal::PerClient as usize],
    );
    let pressured = now.max > 0 && now.open >= now.high_water;
    if silent + idle + full + per_client == 0 && !pressured {
        return None;
    }
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
    let (severity, title, advice) = if full > 0 {
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
    };
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
