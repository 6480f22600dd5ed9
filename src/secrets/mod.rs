//! Secrets providers: where berth reads (and perhaps writes) secrets by
//! name. A provider is anything implementing [`SecretsProvider`]; plugins
//! are one kind (`src/plugins/secrets.rs`). Values never appear in logs,
//! errors or API answers.

pub mod encrypted;
pub mod environment;
mod service;

pub use service::{
    ProviderKind, Secrets, SecretsConfig, SecretsEnv, check_reference, is_reserved, store_paths,
};

use async_trait::async_trait;

/// What a provider can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// `get` works.
    pub read: bool,
    /// `set` works.
    pub write: bool,
    /// `delete` works.
    pub delete: bool,
    /// `list` works.
    pub list: bool,
}

/// Why a secrets operation failed. Never carries a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// No secret by that name.
    #[error("secret `{0}` not found")]
    NotFound(String),
    /// The provider cannot do this.
    #[error("the secrets provider does not support {0}")]
    Unsupported(&'static str),
    /// The name or value was refused.
    #[error("invalid secret request: {0}")]
    Invalid(String),
    /// The provider's store refused the credentials or the operation.
    #[error("secrets store denied access: {0}")]
    Denied(String),
    /// The provider's store failed or could not be reached.
    #[error("secrets store unavailable: {0}")]
    Unavailable(String),
    /// The provider is broken (a plugin trapped or timed out).
    #[error("secrets provider failed: {0}")]
    Failed(String),
    /// No provider is set up (`[secrets] provider = "none"`).
    #[error(
        "secrets provider not configured. Please set one up with POST /api/v1beta/secrets first"
    )]
    NotSetUp,
    /// A secret by that name exists already.
    #[error("secret already exists")]
    Exists,
}

/// A store of secrets.
#[async_trait]
pub trait SecretsProvider: Send + Sync {
    /// What it can do.
    async fn capabilities(&self) -> Result<Capabilities, SecretsError>;
    /// A secret's value.
    async fn get(&self, name: &str) -> Result<String, SecretsError>;
    /// Creates or replaces a secret.
    async fn set(&self, name: &str, value: &str) -> Result<(), SecretsError>;
    /// Deletes a secret.
    async fn delete(&self, name: &str) -> Result<(), SecretsError>;
    /// The names of all secrets.
    async fn list(&self) -> Result<Vec<String>, SecretsError>;
}
