//! berth's OpenAPI document (generated from the handlers' annotations) and
//! its HTML rendering for `/api/doc`.

use std::fmt::Write;

use utoipa::OpenApi;
use utoipa::openapi::path::Operation;

use super::{clients, groups, plugins, registry, secrets, system, workloads};

/// The OpenAPI 3.1 document of every route berth serves.
#[derive(OpenApi)]
#[openapi(
    info(title = "berth API", description = "Runs MCP servers and manages them through a ToolHive-compatible REST API."),
    paths(
        system::health, system::version, system::list_runtimes, system::openapi_json, system::doc,
        system::metrics,
        workloads::list_workloads, workloads::create_workload, workloads::get_workload,
        workloads::edit_workload, workloads::stop_workload, workloads::restart_workload,
        workloads::delete_workload, workloads::workload_status, workloads::workload_logs,
        workloads::workload_proxy_logs, workloads::export_workload,
        workloads::bulk_stop, workloads::bulk_restart, workloads::bulk_delete,
        workloads::upgrade_check_all, workloads::upgrade_check, workloads::upgrade_workload,
        workloads::approve_tools, workloads::workload_stats,
        groups::list_groups, groups::create_group, groups::get_group, groups::delete_group,
        plugins::list_plugins, plugins::get_plugin, plugins::reload_plugin,
        registry::list_registries, registry::add_registry, registry::get_registry,
        registry::update_registry, registry::remove_registry, registry::refresh_registry,
        registry::list_servers, registry::get_server, registry::login, registry::logout,
        registry::v01_list, registry::v01_get, registry::v01_skills, registry::v01_skill,
        registry::v01_plugins, registry::v01_plugin,
        registry::official_list, registry::official_get,
        secrets::setup, secrets::provider, secrets::list_keys, secrets::create_key,
        secrets::update_key, secrets::delete_key,
        clients::list_clients, clients::register_client, clients::register_clients,
        clients::unregister_clients, clients::unregister_client,
        clients::unregister_client_group, clients::discover_clients,
    ),
    tags(
        (name = "system", description = "Health and API description"),
        (name = "version", description = "Version"),
        (name = "workloads", description = "MCP server workloads"),
        (name = "logs", description = "Workload logs"),
        (name = "groups", description = "Groups of workloads"),
        (name = "registry", description = "Registries of MCP servers"),
        (name = "secrets", description = "Secrets providers and their keys (values are never returned)"),
        (name = "clients", description = "MCP clients whose configuration files list berth's servers"),
        (name = "discovery", description = "MCP clients found on this machine"),
        (name = "plugins", description = "berth extension: WebAssembly plugins"),
        (name = "runtimes", description = "berth extension: the runtimes workloads run on"),
    )
)]
pub struct ApiDoc;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn operation(out: &mut String, method: &str, path: &str, op: &Operation) {
    let _ = write!(
        out,
        "<section><h3><code class=m>{}</code> <code>{}</code></h3>",
        method.to_uppercase(),
        escape(path)
    );
    if let Some(summary) = &op.summary {
        let _ = write!(out, "<p>{}</p>", escape(summary));
    }
    if let Some(params) = &op.parameters {
        out.push_str("<ul>");
        for p in params {
            let _ = write!(
                out,
                "<li><code>{}</code> ({}) {}</li>",
                escape(&p.name),
                match p.parameter_in {
                    utoipa::openapi::path::ParameterIn::Path => "path",
                    utoipa::openapi::path::ParameterIn::Query => "query",
                    utoipa::openapi::path::ParameterIn::Header => "header",
                    utoipa::openapi::path::ParameterIn::Cookie => "cookie",
                },
                escape(p.description.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</ul>");
    }
    out.push_str("<table><tr><th>status</th><th>meaning</th></tr>");
    for (code, resp) in &op.responses.responses {
        let desc = match resp {
            utoipa::openapi::RefOr::T(r) => r.description.clone(),
            utoipa::openapi::RefOr::Ref(r) => r.ref_location.clone(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(code),
            escape(&desc)
        );
    }
    out.push_str("</table></section>");
}

/// Renders the document as one self-contained HTML page.
pub(super) fn render_html(doc: &utoipa::openapi::OpenApi) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=utf-8><title>berth API</title><style>\
         body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}\
         section{border-top:1px solid #ddd;padding:.5rem 0}code.m{background:#eef;padding:0 .3rem}\
         table{border-collapse:collapse}td,th{padding:0 .8rem 0 0;text-align:left}\
         </style></head><body>",
    );
    let _ = write!(
        out,
        "<h1>{} {}</h1><p>{}</p><p>Machine-readable: <a href=\"/api/openapi.json\">/api/openapi.json</a> (OpenAPI 3.1).</p>",
        escape(&doc.info.title),
        escape(&doc.info.version),
        escape(doc.info.description.as_deref().unwrap_or(""))
    );
    for (path, item) in &doc.paths.paths {
        let methods = [
            ("get", &item.get),
            ("post", &item.post),
            ("put", &item.put),
            ("delete", &item.delete),
            ("patch", &item.patch),
        ];
        for (method, op) in methods {
            if let Some(op) = op {
                operation(&mut out, method, path, op);
            }
        }
    }
    out.push_str("</body></html>");
    out
}
