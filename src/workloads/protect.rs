//! A workload's protections as settings: who may call its proxy (`oidc`),
//! what they may do (`authz_config`), what is shown (`tools`,
//! `tools_override`), what is recorded (`audit_config`, `tool_pinning`) —
//! and how they become the proxy's [`Protection`].
//!
//! Invariants:
//! - an authorization policy is given inline or as the *name* of a file in
//!   berth's policy directory (`<config dir>/policies/`), never as a path:
//!   an API caller cannot make berth read an arbitrary file;
//! - everything is checked when a workload is created or edited (a bad
//!   policy is a 400 with Cedar's message) and again whenever the proxy
//!   starts (a policy file may have changed since): a proxy whose
//!   protections cannot be built does not start — it never runs
//!   unprotected. A proxy keeps its protections while it runs (a restart
//!   of the server keeps the proxy and its sessions); an edit, or a
//!   restart of berth, builds them anew.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::auth::audit::{AuditConfig, AuditLog};
use crate::auth::cedar::{Authorizer, AuthzConfig};
use crate::auth::oidc::{OidcSettings, Validator};
use crate::proxy::{Auditor, Authn, Override, PinMode, Pins, Policy, Protection, ToolView};
use crate::registry::fetch::Fetcher;

/// Largest policy file read.
const MAX_POLICY_FILE: u64 = 1024 * 1024;

/// Where a workload's authorization policy comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthzSource {
    /// Given in the request.
    Inline(AuthzConfig),
    /// A file of berth's policy directory, by name.
    File(String),
}

/// A workload's protections, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProtectionSpec {
    /// Token validation of callers; `None`: anyone who reaches the port.
    pub oidc: Option<OidcSettings>,
    /// The Cedar policy.
    pub authz: Option<AuthzSource>,
    /// Audit settings; `None` audits only when berth audits every workload.
    pub audit: Option<AuditConfig>,
    /// Visible tools (shown names); `None` shows all.
    pub tools: Option<Vec<String>>,
    /// Overrides by the server's tool name.
    pub tools_override: BTreeMap<String, Override>,
    /// Tool-definition pinning.
    pub pinning: PinMode,
}

impl ProtectionSpec {
    /// Checks what can be checked without berth's directories.
    pub fn check(&self) -> Result<(), String> {
        if let Some(oidc) = &self.oidc {
            oidc.validate().map_err(|e| format!("invalid oidc: {e}"))?;
        }
        if let Some(audit) = &self.audit {
            audit
                .validate()
                .map_err(|e| format!("invalid audit_config: {e}"))?;
        }
        if let Some(AuthzSource::File(name)) = &self.authz {
            check_policy_name(name)?;
        }
        ToolView::new(self.tools.as_deref(), &self.tools_override)
            .map_err(|e| format!("invalid tools: {e}"))?;
        Ok(())
    }
}

/// The protections a create request asks for (its `oidc`,
/// `authz_config`, `audit_config`, `tools`, `tools_override` and
/// `tool_pinning`), checked.
pub fn spec_of_request(req: &super::types::CreateRequest) -> Result<ProtectionSpec, String> {
    super::model::protection_of(
        token_config(req.oidc.as_ref()).as_ref(),
        req.authz_config.as_ref(),
        "",
        req.audit_config.as_ref(),
        req.tools.clone(),
        &req.tools_override.clone().unwrap_or_default(),
        &req.tool_pinning,
    )
}

/// The stored form of a request's `oidc` options (none when empty).
pub(super) fn token_config(
    oidc: Option<&super::types::OidcOptions>,
) -> Option<super::types::TokenValidatorConfig> {
    oidc.filter(|o| !o.is_empty())
        .map(|o| super::types::TokenValidatorConfig {
            issuer: o.issuer.clone(),
            audience: o.audience.clone(),
            jwks_url: o.jwks_url.clone(),
            client_id: o.client_id.clone(),
            client_secret: o.client_secret.clone(),
            introspection_url: o.introspection_url.clone(),
            scopes: o.scopes.clone(),
        })
}

/// A policy file's name: a plain file name of berth's policy directory.
pub fn check_policy_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "authz_config `{}` is not the name of a file in berth's policy directory \
             (letters, digits, `.`, `_`, `-`; no path): give the policy inline as an object, \
             or put the file into the policy directory",
            crate::logging::escape_controls(name)
        ))
    }
}

/// What the workloads' proxies need to be protected: berth's directories
/// and shared services. Cheap to clone.
#[derive(Clone, Default)]
pub struct Guarding {
    /// The policy directory (`<config dir>/policies/`).
    pub policies_dir: Option<PathBuf>,
    /// Where audit lines go.
    pub audit: Option<Arc<AuditLog>>,
    /// Audit every workload, with default settings unless its own.
    pub audit_all: bool,
    /// The HTTP client for issuers' keys.
    pub fetcher: Option<Fetcher>,
    /// Where the tool pins live (`<state>/pins/`).
    pub pins_dir: Option<PathBuf>,
    /// The management API's audience (`[api.oidc]`): no proxy may take
    /// tokens for it.
    pub api_audience: Option<String>,
    /// The pins of each workload, loaded once.
    pins: Arc<Mutex<HashMap<String, Arc<Pins>>>>,
}

impl std::fmt::Debug for Guarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarding")
            .field("policies_dir", &self.policies_dir)
            .field("audit", &self.audit.is_some())
            .field("audit_all", &self.audit_all)
            .field("pins_dir", &self.pins_dir)
            .finish_non_exhaustive()
    }
}

impl Guarding {
    /// Refuses a proxy that would take tokens meant for the management
    /// API: such a token could then drive both.
    pub fn check_audience(&self, spec: &ProtectionSpec) -> Result<(), String> {
        if let (Some(api), Some(oidc)) = (&self.api_audience, &spec.oidc)
            && !api.is_empty()
            && oidc.audience.trim() == api.trim()
        {
            return Err(format!(
                "oidc.audience `{}` is the management API's audience: a proxy's tokens must be \
                 issued for the proxy, never for the API",
                crate::logging::escape_controls(&oidc.audience)
            ));
        }
        Ok(())
    }

    /// Reads and compiles the policy of workload `workload`.
    pub fn authorizer(&self, src: &AuthzSource, workload: &str) -> Result<Authorizer, String> {
        let config = match src {
            AuthzSource::Inline(c) => c.clone(),
            AuthzSource::File(name) => self.read_policy(name)?,
        };
        Authorizer::new(&config, workload).map_err(|e| format!("invalid authz_config: {e}"))
    }

    /// Reads policy file `name` of the policy directory: a regular file
    /// (no symbolic link), JSON or YAML, at most 1 MiB.
    fn read_policy(&self, name: &str) -> Result<AuthzConfig, String> {
        check_policy_name(name)?;
        let Some(dir) = &self.policies_dir else {
            return Err(
                "authz_config names a policy file, but berth has no configuration directory".into(),
            );
        };
        let path = dir.join(name);
        let shown = path.display().to_string();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| format!("cannot read policy file {shown}: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read policy file {shown}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("policy file {shown} is not a regular file"));
        }
        let mut text = String::new();
        file.take(MAX_POLICY_FILE + 1)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read policy file {shown}: {e}"))?;
        if text.len() as u64 > MAX_POLICY_FILE {
            return Err(format!("policy file {shown} is larger than 1 MiB"));
        }
        let value: Value = if name.ends_with(".yaml") || name.ends_with(".yml") {
            serde_norway::from_str(&text)
                .map_err(|e| format!("policy file {shown} is not valid YAML: {e}"))?
        } else {
            serde_json::from_str(&text)
                .map_err(|e| format!("policy file {shown} is not valid JSON: {e}"))?
        };
        serde_json::from_value(value).map_err(|e| format!("policy file {shown}: {e}"))
    }

    /// The pins of workload `name`, loaded once (none when pinning is off).
    pub fn pins(&self, name: &str, mode: PinMode) -> Option<Arc<Pins>> {
        let dir = self.pins_dir.as_ref()?;
        let mut map = self.pins.lock().expect("pins table lock");
        let pins = map
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Pins::load(dir.join(format!("{name}.json")), mode)))
            .clone();
        pins.set_mode(mode);
        (mode != PinMode::Off).then_some(pins)
    }

    /// The pins of workload `name` if any were recorded or loaded.
    pub fn known_pins(&self, name: &str) -> Option<Arc<Pins>> {
        if let Some(p) = self.pins.lock().expect("pins table lock").get(name) {
            return Some(p.clone());
        }
        let path = self.pins_dir.as_ref()?.join(format!("{name}.json"));
        path.exists().then(|| {
            self.pins
                .lock()
                .expect("pins table lock")
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(Pins::load(path, PinMode::Record)))
                .clone()
        })
    }

    /// Forgets workload `name`'s pins (it was deleted).
    pub fn forget_pins(&self, name: &str) {
        self.pins.lock().expect("pins table lock").remove(name);
        if let Some(dir) = &self.pins_dir {
            let _ = std::fs::remove_file(dir.join(format!("{name}.json")));
        }
    }

    /// The proxy protections of workload `name`.
    pub fn protection(&self, name: &str, spec: &ProtectionSpec) -> Result<Protection, String> {
        let authn = match &spec.oidc {
            None => None,
            Some(settings) => {
                let fetcher = match &self.fetcher {
                    Some(f) => f.clone(),
                    None => {
                        Fetcher::new().map_err(|e| format!("cannot set up an HTTP client: {e}"))?
                    }
                };
                let validator = Validator::new(settings.clone(), fetcher)
                    .map_err(|e| format!("invalid oidc: {e}"))?;
                Some(Arc::new(Authn::new(validator)))
            }
        };
        let authz = spec
            .authz
            .as_ref()
            .map(|src| self.authorizer(src, name).map(Arc::new))
            .transpose()?;
        let tools = ToolView::new(spec.tools.as_deref(), &spec.tools_override)
            .map_err(|e| format!("invalid tools: {e}"))?;
        let audit = match (&self.audit, &spec.audit) {
            (Some(_), Some(config)) if !config.enabled => None,
            (Some(log), Some(config)) => Some(Auditor {
                config: Arc::new(config.clone()),
                log: log.clone(),
            }),
            (Some(log), None) if self.audit_all => Some(Auditor {
                config: Arc::new(AuditConfig::default()),
                log: log.clone(),
            }),
            _ => None,
        };
        let pins = self.pins(name, spec.pinning);
        let drift_log = pins.as_ref().and(self.audit.clone());
        let policy = Policy::new(name, authz, tools, pins, audit, drift_log).map(Arc::new);
        Ok(Protection { authn, policy })
    }
}
