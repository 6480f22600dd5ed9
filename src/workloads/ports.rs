//! Port choice: requested ports are checked, automatic ones drawn from a
//! range; neither ever collides with a port another workload holds.

use std::collections::BTreeSet;
use std::net::{IpAddr, TcpListener};

use rand::Rng;
use std::collections::BTreeMap;

use berth_runtime_api::WorkloadName;

use super::model::{Upstream, Workload};
use super::types::CreateRequest;
use super::{Entry, WorkloadError};

/// Whether `port` can be bound on `host` right now.
pub fn bindable(host: IpAddr, port: u16) -> bool {
    port != 0 && TcpListener::bind((host, port)).is_ok()
}

/// Picks a free port in `start..end` that is not in `taken` and binds on
/// `host`: a few random tries, then a scan.
pub fn pick(host: IpAddr, start: u16, end: u16, taken: &BTreeSet<u16>) -> Option<u16> {
    let ok = |p: u16| !taken.contains(&p) && bindable(host, p);
    let mut rng = rand::rng();
    for _ in 0..16 {
        let p = rng.random_range(start..end);
        if ok(p) {
            return Some(p);
        }
    }
    (start..end).find(|&p| ok(p))
}

impl super::Workloads {
    /// Chooses the proxy port (and the target port of HTTP transports);
    /// called under the table lock so that no two workloads get one port.
    pub(super) fn assign_ports(
        &self,
        table: &BTreeMap<WorkloadName, Entry>,
        mut config: Workload,
        req: &CreateRequest,
        current: Option<(u16, Option<u16>)>,
    ) -> Result<Workload, WorkloadError> {
        let mut taken: BTreeSet<u16> = BTreeSet::new();
        for (n, e) in table {
            if *n != config.name {
                taken.insert(e.config.port);
                taken.extend(e.config.target_port());
            }
        }
        let host = config.host;
        let (start, end) = self.inner.settings.port_range;
        let choose = |requested: u16, current: Option<u16>, taken: &BTreeSet<u16>| match (
            requested, current,
        ) {
            (0, Some(cur)) => Ok(cur),
            (p, Some(cur)) if p == cur => Ok(cur),
            (0, None) => pick(host, start, end, taken).ok_or(WorkloadError::NoFreePort(start, end)),
            (p, _) if taken.contains(&p) || !bindable(host, p) => {
                Err(WorkloadError::PortUnavailable(p))
            }
            (p, _) => Ok(p),
        };
        config.port = choose(req.proxy_port, current.map(|c| c.0), &taken)?;
        taken.insert(config.port);
        let proxy_port = config.port;
        if let Upstream::Local { port, .. } = &mut config.upstream {
            let target = choose(req.target_port, current.and_then(|c| c.1), &taken)?;
            if target == proxy_port {
                return Err(WorkloadError::Invalid(
                    "target_port must differ from proxy_port".into(),
                ));
            }
            *port = target;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn picks_free_ports_outside_taken() {
        let taken: BTreeSet<u16> = (41000..41009).collect();
        let p = pick(LOOPBACK, 41000, 41010, &taken).expect("one is free");
        assert_eq!(p, 41009);
    }

    #[test]
    fn busy_ports_are_not_bindable() {
        let l = TcpListener::bind((LOOPBACK, 0)).expect("bind");
        let port = l.local_addr().expect("addr").port();
        assert!(!bindable(LOOPBACK, port));
        assert_eq!(pick(LOOPBACK, port, port + 1, &BTreeSet::new()), None);
        drop(l);
        assert!(bindable(LOOPBACK, port));
    }
}
