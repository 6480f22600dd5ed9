//! Helpers shared by the integration and e2e test binaries.

#![allow(dead_code, unreachable_pub)]

pub use wait::eventually;

pub mod issuer;
pub mod mcp;
pub mod openbao;
pub mod plugins;
pub mod wait;
