//! Isolated networks (`NetworkAccess::Isolated`): the internal bridge
//! network `berth-egress-<name>`, which has no route out, made for one
//! workload and removed with it.

use std::collections::HashMap;
use std::net::IpAddr;

use berth_container::labels::{network_name, own_labels};
use berth_runtime_api::{RuntimeError, WorkloadName};
use bollard::models::{NetworkCreateRequest, NetworkInspect};
use tracing::info;

use crate::DockerBackend;
use crate::error::{self, Class, classify};

impl DockerBackend {
    /// The isolated network of `name`, created if it does not exist.
    pub(crate) async fn ensure_network(
        &self,
        name: &WorkloadName,
    ) -> Result<NetworkInspect, RuntimeError> {
        let net = network_name(name);
        match self.docker.inspect_network(&net, None).await {
            Ok(found) => return Ok(found),
            Err(err) if classify(&err) == Class::NotFound => {}
            Err(err) => {
                return Err(error::map(
                    self.config.socket(),
                    err,
                    name,
                    format!("inspecting network `{net}`"),
                ));
            }
        }
        let labels: HashMap<String, String> = own_labels(name, None).into_iter().collect();
        let request = NetworkCreateRequest {
            name: net.clone(),
            driver: Some("bridge".to_owned()),
            internal: Some(true),
            labels: Some(labels),
            ..NetworkCreateRequest::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => info!(workload = %name, network = %net, "Isolated network created."),
            // Created meanwhile.
            Err(err) if classify(&err) == Class::Conflict => {}
            Err(err) => {
                return Err(error::map(
                    self.config.socket(),
                    err,
                    name,
                    format!("creating network `{net}`"),
                ));
            }
        }
        self.docker
            .inspect_network(&net, None)
            .await
            .map_err(|err| {
                error::map(
                    self.config.socket(),
                    err,
                    name,
                    format!("inspecting network `{net}`"),
                )
            })
    }

    /// Removes the isolated network of `name`, if there is one.
    pub(crate) async fn remove_network(&self, name: &WorkloadName) -> Result<(), RuntimeError> {
        let net = network_name(name);
        match self.docker.remove_network(&net).await {
            Ok(()) => {
                info!(workload = %name, network = %net, "Isolated network removed.");
                Ok(())
            }
            Err(err) if classify(&err) == Class::NotFound => Ok(()),
            Err(err) => Err(error::map(
                self.config.socket(),
                err,
                name,
                format!("removing network `{net}`"),
            )),
        }
    }
}

/// The host's address on a network (IPv4 first).
pub(crate) fn gateway(net: NetworkInspect) -> Option<IpAddr> {
    net.ipam
        .and_then(|ipam| ipam.config)
        .into_iter()
        .flatten()
        .filter_map(|c| c.gateway?.parse::<IpAddr>().ok())
        .min_by_key(IpAddr::is_ipv6)
}
