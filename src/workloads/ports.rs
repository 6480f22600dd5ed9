//! Port choice: requested ports are checked, automatic ones drawn from a
//! range; neither ever collides with a port another workload holds.

use std::collections::BTreeSet;
use std::net::{IpAddr, TcpListener};

use rand::Rng;

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
