//! Client configuration: berth writes its running servers into the
//! configuration files of the MCP clients registered with their group, and
//! keeps them in step with the workloads.

mod file;
mod format;
mod table;

#[cfg(test)]
mod golden;
