//! PLACEHOLDER (not committed): replaced by the helper's module.
#![allow(missing_docs, dead_code)]
use std::net::IpAddr;
use std::time::Duration;
pub struct Fetcher;
#[derive(Clone, Debug, Default)]
pub enum PrivatePolicy {
    #[default]
    Deny,
    Allow,
    AllowOnly(Vec<IpAddr>),
}
#[derive(Clone, Debug)]
pub struct FetchOptions {
    pub private: PrivatePolicy,
    pub max_bytes: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_redirects: u8,
    pub headers: Vec<(String, String)>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
}
impl Default for FetchOptions {
    fn default() -> Self {
        todo!()
    }
}
pub struct Fetched {
    pub status: u16,
    pub final_url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub content_type: Option<String>,
    pub body: bytes::Bytes,
}
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("x")]
    InvalidUrl(String),
    #[error("x")]
    InsecureScheme(String),
    #[error("x")]
    PrivateAddress { host: String, addr: IpAddr },
    #[error("x")]
    Unreachable(String),
    #[error("x")]
    Timeout(String),
    #[error("x")]
    TooLarge { limit: usize },
    #[error("x")]
    TooManyRedirects,
    #[error("x")]
    Protocol(String),
}
impl FetchError {
    pub fn is_connectivity(&self) -> bool {
        todo!()
    }
}
impl Fetcher {
    pub fn new() -> Result<Self, FetchError> {
        Ok(Fetcher)
    }
    pub async fn get(&self, _u: &str, _o: &FetchOptions) -> Result<Fetched, FetchError> {
        todo!()
    }
}
