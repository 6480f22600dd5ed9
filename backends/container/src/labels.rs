//! How berth marks and finds its containers: their names and labels.
//!
//! Workload `w` runs in container `berth-w`, labelled
//! `berth.managed=true`, `berth.workload=w` and, when the backend has one,
//! `berth.instance=<berth's instance id>`. The labels are how a backend
//! finds its containers after berth restarted, and how it tells its own
//! from another berth's on the same engine.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::net::Ipv4Addr;

use berth_runtime_api::WorkloadName;

/// Label on every container (and network) berth creates, with value `true`;
/// `list` filters on it.
pub const LABEL_MANAGED: &str = "berth.managed";
/// Label holding the workload name of a container berth created.
pub const LABEL_WORKLOAD: &str = "berth.workload";
/// Label holding the berth instance that owns a container (the `instance`
/// berth sets in each engine's config).
pub const LABEL_INSTANCE: &str = "berth.instance";

/// The prefix of every container and network name berth creates.
pub const NAME_PREFIX: &str = "berth-";

/// Where published ports listen on the host: loopback only.
pub const PUBLISH_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The container name of workload `name`: `berth-<name>`.
pub fn container_name(name: &WorkloadName) -> String {
    format!("{NAME_PREFIX}{name}")
}

/// The isolated network of workload `name` (`NetworkAccess::Isolated`):
/// `berth-egress-<name>`.
pub fn network_name(name: &WorkloadName) -> String {
    format!("{NAME_PREFIX}egress-{name}")
}

/// berth's own labels for a container of workload `name`, owned by
/// `instance` (the instance label only when there is one). A network gets
/// them without an instance.
pub fn own_labels(name: &WorkloadName, instance: Option<&str>) -> Vec<(String, String)> {
    let mut labels = vec![
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_WORKLOAD.to_owned(), name.as_str().to_owned()),
    ];
    if let Some(instance) = instance {
        labels.push((LABEL_INSTANCE.to_owned(), instance.to_owned()));
    }
    labels
}

/// Read access to a container's labels, whichever map the engine's client
/// uses for them.
pub trait Labels {
    /// The value of label `key`.
    fn label(&self, key: &str) -> Option<&str>;
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// Labels an engine may leave out of its answer: none is no label.
impl<L: Labels> Labels for Option<&L> {
    fn label(&self, key: &str) -> Option<&str> {
        self.and_then(|l| l.label(key))
    }
}

/// Whether the container carries berth's management label.
pub fn is_managed(labels: &impl Labels) -> bool {
    labels.label(LABEL_MANAGED) == Some("true")
}

/// Whether the container is owned by `instance`: a container from before
/// instance labels, or a backend without an instance, counts as its own.
pub fn is_owned_by(labels: &impl Labels, instance: Option<&str>) -> bool {
    match (instance, labels.label(LABEL_INSTANCE)) {
        (Some(me), Some(owner)) => me == owner,
        _ => true,
    }
}

/// Whether the container is this berth's: managed, and owned by `instance`.
pub fn is_ours(labels: &impl Labels, instance: Option<&str>) -> bool {
    is_managed(labels) && is_owned_by(labels, instance)
}

/// The workload a container belongs to: its `berth.workload` label, else
/// its name without the `berth-` prefix (engines may report names with a
/// leading `/`).
pub fn workload_of(labels: &impl Labels, container_name: Option<&str>) -> Option<WorkloadName> {
    let by_label = labels
        .label(LABEL_WORKLOAD)
        .and_then(|n| WorkloadName::parse(n).ok());
    by_label.or_else(|| {
        container_name
            .map(|n| n.trim_start_matches('/'))
            .and_then(|n| n.strip_prefix(NAME_PREFIX))
            .and_then(|n| WorkloadName::parse(n).ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> WorkloadName {
        WorkloadName::parse(s).expect("name")
    }

    #[test]
    fn names() {
        assert_eq!(container_name(&name("fetch")), "berth-fetch");
        assert_eq!(network_name(&name("fetch")), "berth-egress-fetch");
    }

    #[test]
    fn ownership() {
        let labels: HashMap<String, String> =
            own_labels(&name("w"), Some("i1")).into_iter().collect();
        assert!(is_ours(&labels, Some("i1")));
        assert!(is_ours(&labels, None));
        assert!(!is_ours(&labels, Some("i2")), "another berth's");
        assert_eq!(labels.label(LABEL_MANAGED), Some("true"));
        assert_eq!(labels.label(LABEL_WORKLOAD), Some("w"));
        assert_eq!(labels.label(LABEL_INSTANCE), Some("i1"));

        let legacy: BTreeMap<String, String> = own_labels(&name("w"), None).into_iter().collect();
        assert_eq!(legacy.len(), 2, "no instance label without an instance");
        assert!(is_ours(&legacy, Some("i1")), "made before instance labels");
        assert!(!is_ours(&None::<&BTreeMap<String, String>>, None));
        assert!(!is_managed(&BTreeMap::from([(
            LABEL_MANAGED.to_owned(),
            "yes".to_owned()
        )])));
    }

    #[test]
    fn workload_names_from_labels_and_container_names() {
        let none = None::<&BTreeMap<String, String>>;
        let labelled = BTreeMap::from([(LABEL_WORKLOAD.to_owned(), "w".to_owned())]);
        assert_eq!(workload_of(&labelled, Some("/other")), Some(name("w")));
        assert_eq!(
            workload_of(&none, Some("/berth-fetch")),
            Some(name("fetch"))
        );
        assert_eq!(workload_of(&none, Some("berth-fetch")), Some(name("fetch")));
        assert_eq!(
            workload_of(&none, Some("/berth-a.b_c")),
            Some(name("a.b_c"))
        );
        assert_eq!(workload_of(&none, Some("/stranger")), None);
        assert_eq!(workload_of(&none, Some("fetch")), None);
        assert_eq!(workload_of(&none, Some("berth-")), None);
        assert_eq!(workload_of(&none, Some("berth-.hidden")), None);
        assert_eq!(workload_of(&none, None), None);
    }
}
