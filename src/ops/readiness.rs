//! Readiness states: `starting` (listeners bound, waiting for the first worker of each
//! `alwaysRunning` garden pool) → `ready` → `draining` (from the first moment of a
//! SIGTERM drain). `/readyz` answers 200 only in `ready`; systemd gets `READY=1` on the
//! same transition and `STOPPING=1` on the next.
//!
//! Readiness is a latch, not a health check: once ready, a worker crash or a farm outage
//! does not make roost unready (that would take every proxy out of a load balancer at
//! once, for a failure no other proxy could serve around either).

use crate::config::model::{Backend, Config, StartMode};
use crate::pool::{Pool, PoolState};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Ready,
    Draining,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Draining => "draining",
        }
    }
}

/// The process's readiness, shared by the admin probes and the notifier.
pub struct Readiness {
    phase: watch::Sender<Phase>,
}

impl Readiness {
    pub fn new() -> Arc<Readiness> {
        Arc::new(Readiness {
            phase: watch::channel(Phase::Starting).0,
        })
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Ready
    }

    /// `starting` → `ready`; never leaves `draining`.
    pub fn set_ready(&self) {
        self.phase.send_if_modified(|p| {
            let change = *p == Phase::Starting;
            if change {
                *p = Phase::Ready;
            }
            change
        });
    }

    pub fn set_draining(&self) {
        self.phase.send_replace(Phase::Draining);
    }

    /// Wait until the phase is at least `ready` (ready or draining).
    pub async fn wait_ready(&self) -> Phase {
        let mut rx = self.phase.subscribe();
        let p = *rx
            .wait_for(|p| *p != Phase::Starting)
            .await
            .expect("the sender lives in self");
        p
    }

    /// Mark ready once `answered` says so: [`first_workers_answer`] over the front's
    /// current state (the admin server asks; this module does not know the front).
    pub fn spawn_watch(
        self: &Arc<Self>,
        answered: impl Fn() -> bool + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            while me.phase() == Phase::Starting {
                if answered() {
                    me.set_ready();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    }
}

/// Every started `alwaysRunning` garden pool has at least one member (a worker that
/// answered its ping). A pool that went offline (rapid-fail) or was stopped is not
/// waited for: its state is visible in the admin API, and waiting would keep roost
/// unready forever.
pub fn first_workers_answer(config: &Config, pools: &BTreeMap<String, Arc<Pool>>) -> bool {
    config.pools.iter().all(|(name, cfg)| {
        let waits =
            matches!(cfg.backend, Backend::Garden(_)) && cfg.start_mode == StartMode::AlwaysRunning;
        match pools.get(name) {
            Some(pool) if waits && pool.state() == PoolState::Started => !pool.members().is_empty(),
            _ => true,
        }
    })
}
