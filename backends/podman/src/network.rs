//! Isolated networks (`NetworkAccess::Isolated`): the internal network
//! `berth-egress-<name>`, which has no route out, made for one workload
//! and removed with it. Podman configures the host's address on it only
//! while a container runs on it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use berth_container::labels::{network_name, own_labels};
use berth_runtime_api::{RuntimeError, WorkloadName};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::error::ApiFailure;

use crate::PodmanBackend;

impl PodmanBackend {
    /// The isolated network of `name`, created if it does not exist.
    pub(crate) async fn ensure_network(
        &self,
        name: &WorkloadName,
    ) -> Result<Network, RuntimeError> {
        let path = format!("/libpod/networks/{}/json", network_name(name));
        match self.libpod.get::<Network>(&path).await {
            Ok(net) => return Ok(net),
            Err(err) if err.status() == Some(404) => {}
            Err(err) => return Err(self.fail(name, "inspecting the isolated network of", err)),
        }
        match self
            .libpod
            .post::<_, Network>("/libpod/networks/create", &NetworkBody::new(name))
            .await
        {
            Ok(net) => {
                info!(workload = %name, network = %network_name(name), "Isolated network created.");
                Ok(net)
            }
            // Created meanwhile.
            Err(err) if err.status() == Some(409) => self
                .libpod
                .get::<Network>(&path)
                .await
                .map_err(|err| self.fail(name, "inspecting the isolated network of", err)),
            Err(err) => Err(self.fail(name, "creating the isolated network of", err)),
        }
    }

    /// Removes the isolated network of `name`, if there is one.
    pub(crate) async fn remove_network(&self, name: &WorkloadName) -> Result<(), RuntimeError> {
        let net = network_name(name);
        match self.libpod.delete(&format!("/libpod/networks/{net}")).await {
            Ok(()) => {
                info!(workload = %name, network = %net, "Isolated network removed.");
                Ok(())
            }
            Err(err) if err.status() == Some(404) => Ok(()),
            Err(err) => Err(self.fail(name, "removing the isolated network of", err)),
        }
    }
}

/// The body of `POST /libpod/networks/create` for an isolated network:
/// internal (no route out). Podman's DNS server stays on: without it,
/// Podman gives an internal network no host address (gateway), and that
/// address is where berth's egress proxy listens.
#[derive(Debug, Serialize)]
pub(crate) struct NetworkBody {
    name: String,
    driver: &'static str,
    internal: bool,
    dns_enabled: bool,
    labels: BTreeMap<String, String>,
}

impl NetworkBody {
    pub(crate) fn new(name: &WorkloadName) -> Self {
        Self {
            name: network_name(name),
            driver: "bridge",
            internal: true,
            dns_enabled: true,
            labels: own_labels(name, None).into_iter().collect(),
        }
    }
}

/// What berth reads of a libpod network.
#[derive(Debug, Deserialize)]
pub(crate) struct Network {
    #[serde(default)]
    subnets: Vec<Subnet>,
}

#[derive(Debug, Deserialize)]
struct Subnet {
    #[serde(default)]
    gateway: Option<String>,
}

impl Network {
    /// The host's address on the network (IPv4 first).
    pub(crate) fn gateway(&self) -> Option<IpAddr> {
        self.subnets
            .iter()
            .filter_map(|s| s.gateway.as_deref()?.parse::<IpAddr>().ok())
            .min_by_key(IpAddr::is_ipv6)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn isolated_network_body_and_gateway() {
        let body =
            serde_json::to_value(NetworkBody::new(&WorkloadName::parse("w").unwrap())).unwrap();
        assert_eq!(
            body,
            json!({"name": "berth-egress-w", "driver": "bridge", "internal": true, "dns_enabled": true,
                "labels": {"berth.managed": "true", "berth.workload": "w"}})
        );
        let net: Network = serde_json::from_value(json!({"name": "berth-egress-w",
            "subnets": [{"subnet": "fd00::/64", "gateway": "fd00::1"}, {"subnet": "10.89.3.0/24", "gateway": "10.89.3.1"}]}))
        .unwrap();
        assert_eq!(net.gateway(), Some("10.89.3.1".parse().unwrap()));
    }
}
