//! TLS client settings shared by every outbound HTTPS connection berth
//! makes (remote workloads, plugins' wasi:http): rustls with the ring
//! provider and the system's trusted roots (`SSL_CERT_FILE` is honoured),
//! loaded once.

use std::sync::{Arc, OnceLock};

/// The client configuration with the system's trusted roots.
pub(crate) fn client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                tracing::warn!(error = %err, "Cannot load a trusted root certificate.");
            }
            let mut roots = rustls::RootCertStore::empty();
            let (_added, ignored) = roots.add_parsable_certificates(found.certs);
            if ignored > 0 {
                tracing::warn!(ignored, "Some trusted root certificates were not usable.");
            }
            Arc::new(with_roots(roots))
        })
        .clone()
}

/// A client configuration trusting only `roots`.
pub(crate) fn with_roots(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
