//! The changes the API asks for: create, edit, stop, restart, delete, bulk
//! operations and group deletion. Each is checked and recorded here, then
//! run in the background (see `lifecycle`).

use std::collections::BTreeSet;
use std::sync::Arc;

use berth_runtime_api::WorkloadName;
use tracing::info;

use super::types::{
    BulkOperationRequest, CreateRequest, CreateWorkloadResponse, Desired, StatusRecord,
    WorkloadStatus, redact_url, same_origin,
};
use super::*;
use crate::groups::{DEFAULT_GROUP, GroupError};
use crate::state::Kind;

impl Workloads {
    /// Validates and stores a new workload, then starts it in the background.
    pub async fn create(
        &self,
        req: CreateRequest,
    ) -> Result<CreateWorkloadResponse, WorkloadError> {
        if req.image.is_empty() && req.url.is_empty() && req.registry.is_empty() {
            return Err(WorkloadError::Invalid(
                "either 'image', 'url', or 'registry'+'server' fields are required".into(),
            ));
        }
        let name = WorkloadName::parse(&req.name)?;
        if RESERVED_NAMES.contains(&name.as_str()) {
            return Err(WorkloadError::Invalid(format!(
                "workload name `{name}` is reserved: /api/v1beta/workloads/{name} is a route of its own"
            )));
        }
        let draft = self.draft(&name, &req)?;
        let config = {
            let mut table = self.table();
            if table.contains_key(&name) {
                return Err(WorkloadError::AlreadyExists(name.to_string()));
            }
            let config = self.assign_ports(&table, draft, &req, None)?;
            if !config.is_remote() {
                self.backend_for(&config)?.check(&spec_for(&config)?)?;
            }
            let status = StatusRecord::new_starting(now());
            self.inner
                .store
                .write(Kind::RunConfig, name.as_str(), &RunConfig::from(&config))?;
            self.inner
                .store
                .write(Kind::Status, name.as_str(), &status)?;
            table.insert(
                name.clone(),
                Entry {
                    config: config.clone(),
                    status,
                    op: Arc::default(),
                    generation: 0,
                    streak: 0,
                    since: None,
                    broken: None,
                },
            );
            config
        };
        self.changed();
        self.wlog(&name, &format!("created (image {})", config.image));
        info!(workload = %name, image = %config.image, port = config.port, "Workload created.");
        self.spawn_op(name.clone(), Op::Start);
        Ok(CreateWorkloadResponse {
            name: name.to_string(),
            port: config.port,
        })
    }

    /// Replaces a workload's configuration (full replacement: omitted fields
    /// take their defaults; a zero `proxy_port` keeps the current port).
    /// The new configuration is validated and stored first; the workload
    /// is then restarted with it in the background, and if it does not
    /// start, the previous configuration is restored and started again.
    pub async fn edit(
        &self,
        name: &str,
        req: CreateRequest,
    ) -> Result<CreateWorkloadResponse, WorkloadError> {
        let (name, old, config) = self.stage_edit(name, req)?;
        self.wlog(&name, "configuration replaced; restarting with it");
        self.spawn_op(name.clone(), Op::Edit { old: Box::new(old) });
        Ok(CreateWorkloadResponse {
            name: name.to_string(),
            port: config.port,
        })
    }

    /// The first half of an edit: validates `req` as workload `name`'s new
    /// configuration and stores it (file and table). Returns the name, the
    /// previous configuration and the new one; the caller restarts the
    /// workload with it (`apply_edit`), in the background or, for an
    /// upgrade, under the workload's lock.
    pub(super) fn stage_edit(
        &self,
        name: &str,
        mut req: CreateRequest,
    ) -> Result<(WorkloadName, Workload, Workload), WorkloadError> {
        let name = WorkloadName::parse(name)?;
        req.name = name.to_string();
        if req.image.is_empty() && req.url.is_empty() {
            return Err(WorkloadError::Invalid(
                "either 'image' or 'url' is required".into(),
            ));
        }
        let stored = self.config(name.as_str())?;
        // The URL as answered by a GET (credentials redacted) stands for
        // the stored one.
        if !req.url.is_empty() && req.url == redact_url(stored.remote_url()) {
            req.url = stored.remote_url().to_owned();
        }
        if let Some(forward) = &mut req.header_forward {
            let same_server = same_origin(&req.url, stored.remote_url());
            forward
                .restore_from(stored.headers(), same_server)
                .map_err(WorkloadError::Invalid)?;
        }
        // An edit built from a GET (which never shows the introspection
        // client secret) keeps the stored secret while the issuer and the
        // introspection endpoint stay the same.
        if let (Some(new), Some(old)) = (&mut req.oidc, &stored.protection.oidc)
            && new.client_secret.is_empty()
            && new.issuer == old.issuer
            && new.introspection_url == old.introspection_url
        {
            new.client_secret.clone_from(&old.client_secret);
        }
        let draft = self.draft(&name, &req)?;
        let (old, config) = {
            let mut table = self.table();
            let entry = table
                .get(&name)
                .ok_or_else(|| WorkloadError::NotFound(name.to_string()))?;
            let old = entry.config.clone();
            // A workload whose stored configuration was unusable has no
            // ports of its own yet.
            let current = entry
                .broken
                .is_none()
                .then_some((old.port, old.target_port()));
            let was_broken = entry.broken.is_some();
            let config = self.assign_ports(&table, draft, &req, current)?;
            if !config.is_remote() {
                self.backend_for(&config)?.check(&spec_for(&config)?)?;
            }
            self.inner
                .store
                .write(Kind::RunConfig, name.as_str(), &RunConfig::from(&config))?;
            let entry = table.get_mut(&name).expect("checked above");
            entry.config = config.clone();
            if was_broken {
                // Repaired: it runs with the new configuration.
                entry.broken = None;
                entry.status.desired = Desired::Running;
            }
            (old, config)
        };
        self.changed();
        Ok((name, old, config))
    }

    /// Stops a workload in the background.
    pub fn stop(&self, name: &str) -> Result<(), WorkloadError> {
        self.schedule(name, Op::Stop)
    }

    /// Restarts a workload in the background (stops it first if it runs).
    pub fn restart(&self, name: &str) -> Result<(), WorkloadError> {
        self.schedule(name, Op::Restart)
    }

    /// Deletes a workload in the background.
    pub fn delete(&self, name: &str) -> Result<(), WorkloadError> {
        self.schedule(name, Op::Delete)
    }

    pub(super) fn schedule(&self, name: &str, op: Op) -> Result<(), WorkloadError> {
        let name = WorkloadName::parse(name)?;
        if !self.table().contains_key(&name) {
            return Err(WorkloadError::NotFound(name.to_string()));
        }
        self.persist_intent(&name, &op);
        self.spawn_op(name, op);
        Ok(())
    }

    /// Writes what an accepted stop, restart or delete will do before the
    /// API answers, so that a berth killed right after the answer finishes
    /// it on its next start (recovery reads `removing` and the desired
    /// state).
    pub(super) fn persist_intent(&self, name: &WorkloadName, op: &Op) {
        match op {
            Op::Delete => self.set_status(name, WorkloadStatus::Removing, String::new(), None),
            Op::Stop => self.set_desired(name, Desired::Stopped),
            Op::Restart => self.set_desired(name, Desired::Running),
            _ => {}
        }
    }

    /// Applies `op` to the workloads named in `req` (all of them checked
    /// first: nothing starts if one is invalid or unknown).
    pub fn bulk(&self, op: BulkOp, req: BulkOperationRequest) -> Result<(), WorkloadError> {
        let names = self.bulk_targets(req)?;
        let to_op = |op: BulkOp| match op {
            BulkOp::Stop => Op::Stop,
            BulkOp::Restart => Op::Restart,
            BulkOp::Delete => Op::Delete,
        };
        // Every target's intent is on disk before any starts and before
        // the API answers.
        for name in &names {
            self.persist_intent(name, &to_op(op));
        }
        for name in names {
            self.spawn_op(name, to_op(op));
        }
        Ok(())
    }

    pub(super) fn bulk_targets(
        &self,
        req: BulkOperationRequest,
    ) -> Result<Vec<WorkloadName>, WorkloadError> {
        match (req.names.is_empty(), req.group.is_empty()) {
            (false, false) => Err(WorkloadError::Invalid(
                "cannot specify both names and group".into(),
            )),
            (true, true) => Err(WorkloadError::Invalid(
                "must specify either names or group".into(),
            )),
            (true, false) => {
                self.inner.groups.get(&req.group)?;
                Ok(self
                    .table()
                    .iter()
                    .filter(|(_, e)| e.config.group == req.group)
                    .map(|(n, _)| n.clone())
                    .collect())
            }
            (false, true) => {
                let mut names = BTreeSet::new();
                for n in &req.names {
                    let name =
                        WorkloadName::parse(n).map_err(|source| WorkloadError::InvalidNameIn {
                            name: n.clone(),
                            source,
                        })?;
                    names.insert(name);
                }
                let table = self.table();
                let missing: Vec<_> = names
                    .iter()
                    .filter(|n| !table.contains_key(*n))
                    .map(WorkloadName::to_string)
                    .collect();
                if !missing.is_empty() {
                    return Err(WorkloadError::NotFound(missing.join(", ")));
                }
                Ok(names.into_iter().collect())
            }
        }
    }

    /// Deletes group `name`: its workloads are deleted with
    /// `with_workloads` (waiting for that), else moved to `default`.
    pub async fn delete_group(
        &self,
        name: &str,
        with_workloads: bool,
    ) -> Result<(), WorkloadError> {
        crate::groups::validate_name(name)?;
        if name == DEFAULT_GROUP {
            return Err(GroupError::DeleteDefault.into());
        }
        self.inner.groups.get(name)?;
        let members: Vec<WorkloadName> = self
            .table()
            .iter()
            .filter(|(_, e)| e.config.group == name)
            .map(|(n, _)| n.clone())
            .collect();
        if with_workloads {
            let deletes = members.into_iter().map(|n| self.run_op(n, Op::Delete));
            futures::future::join_all(deletes).await;
            let left: Vec<_> = self
                .table()
                .iter()
                .filter(|(_, e)| e.config.group == name)
                .map(|(n, _)| n.to_string())
                .collect();
            if !left.is_empty() {
                return Err(WorkloadError::Invalid(format!(
                    "could not delete workloads {} of group {name}; see their status",
                    left.join(", ")
                )));
            }
        } else {
            let mut table = self.table();
            for n in members {
                if let Some(e) = table.get_mut(&n) {
                    let mut config = e.config.clone();
                    config.group = DEFAULT_GROUP.to_owned();
                    config
                        .labels
                        .insert(LABEL_GROUP.into(), DEFAULT_GROUP.into());
                    self.inner.store.write(
                        Kind::RunConfig,
                        n.as_str(),
                        &RunConfig::from(&config),
                    )?;
                    e.config = config;
                }
            }
            drop(table);
            self.changed();
        }
        self.inner.groups.remove(name)?;
        Ok(())
    }
}
