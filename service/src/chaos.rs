//! Chaos on purpose: `nephele-server all --chaos kill-gateway@3s,kill-host@6s`
//! kills parts of the embedded service mid-session, as crashes would, so
//! people and tests can watch a session survive. Times count from the
//! first picture a host sends; the gateway killed is the one relaying a
//! session, the host the one serving the most.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::embedded::Embedded;

/// Something the chaos plan does to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChaosAction {
    /// Kill the gateway a session goes through.
    KillGateway,
    /// Kill the host a session runs on.
    KillHost,
}

/// A plan of components to kill (as a crash would: no goodbyes) at those
/// times after the first picture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chaos(pub Vec<(Duration, ChaosAction)>);

impl std::str::FromStr for Chaos {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut plan = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (what, at) = item
                .split_once('@')
                .ok_or_else(|| format!("`{item}` should be ACTION@TIME, as in kill-gateway@3s"))?;
            let action = match what {
                "kill-gateway" => ChaosAction::KillGateway,
                "kill-host" => ChaosAction::KillHost,
                other => {
                    return Err(format!(
                        "unknown chaos action `{other}`: use kill-gateway or kill-host"
                    ));
                }
            };
            let secs = at
                .strip_suffix("ms")
                .and_then(|v| v.parse::<f64>().ok().map(|v| v / 1000.0))
                .or_else(|| at.strip_suffix('s').and_then(|v| v.parse::<f64>().ok()))
                .filter(|s| s.is_finite() && (0.0..=86_400.0).contains(s))
                .ok_or_else(|| format!("`{at}` in `{item}` is not a time such as 3s or 500ms"))?;
            plan.push((Duration::from_secs_f64(secs), action));
        }
        plan.sort_by_key(|(t, _)| *t);
        Ok(Self(plan))
    }
}

impl Chaos {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Carries the plan out against `svc`, timed from the first picture a
    /// host sends, until `done` is set.
    pub fn run(&self, svc: &Embedded, done: &AtomicBool) {
        let wait = |until: &dyn Fn() -> bool| {
            while !done.load(Ordering::Relaxed) && !until() {
                std::thread::sleep(Duration::from_millis(5));
            }
            !done.load(Ordering::Relaxed)
        };
        let pictures = || {
            svc.hosts()
                .iter()
                .map(|h| h.stats().frames_sent.load(Ordering::Relaxed))
                .sum::<u64>()
        };
        if !wait(&|| pictures() > 0) {
            return;
        }
        let start = Instant::now();
        for &(at, action) in &self.0 {
            if !wait(&|| start.elapsed() >= at) {
                return;
            }
            match action {
                ChaosAction::KillGateway => match svc.busy_gateway() {
                    Some(id) => {
                        svc.kill_gateway(&id);
                        tracing::warn!(gateway = %id, "chaos: gateway killed");
                    }
                    None => tracing::warn!("chaos: no gateway relays a session"),
                },
                ChaosAction::KillHost => match svc.kill_host() {
                    Some(addr) => tracing::warn!(host = %addr, "chaos: host killed"),
                    None => tracing::warn!("chaos: no host left to kill"),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_in_time_order_and_bad_ones_say_why() {
        let plan: Chaos = "kill-host@6s, kill-gateway@500ms".parse().unwrap();
        assert_eq!(
            plan.0,
            vec![
                (Duration::from_millis(500), ChaosAction::KillGateway),
                (Duration::from_secs(6), ChaosAction::KillHost)
            ]
        );
        assert!("".parse::<Chaos>().unwrap().is_empty());
        let e = "kill-everything@1s".parse::<Chaos>().unwrap_err();
        assert!(e.contains("kill-gateway or kill-host"), "{e}");
        let e = "kill-host@soon".parse::<Chaos>().unwrap_err();
        assert!(e.contains("3s or 500ms"), "{e}");
    }
}
