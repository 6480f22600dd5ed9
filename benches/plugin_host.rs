//! Plugin host micro-benchmark: the cost of one middleware hook call on a
//! warm instance, of instantiating a fresh instance, and the memory an idle
//! instance holds. Run with `cargo bench --bench plugin_host` (release);
//! `bench/plugins.sh` runs it together with the proxy-path comparison.
//!
//! Uses `plugins/testing/echo-mw` (allows everything, changes nothing), so
//! the figures are the host's overhead, not a plugin's own work.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::plugins::{HostConfig, PluginConfig, Plugins};
use berth::proxy::{McpRequest, Middleware};
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn main() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let status = std::process::Command::new("bash")
        .arg(root.join("plugins/build.sh"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("bash");
    assert!(status.success(), "plugins/build.sh failed");
    let wasm = root.join("plugins/target/wasm32-wasip2/release/berth_plugin_test_echo_mw.wasm");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let config: PluginConfig = serde_json::from_value(json!({
            "name": "echo", "kind": "middleware", "path": wasm
        }))
        .expect("config");
        let host = HostConfig {
            max_instances: 1024,
            ..HostConfig::default()
        };
        let started = Instant::now();
        let plugins = Arc::new(
            tokio::task::spawn_blocking(move || Plugins::load(host, vec![config], None))
                .await
                .expect("join")
                .expect("host"),
        );
        let compile = started.elapsed();
        let req = McpRequest {
            workload: Arc::from("bench"),
            method: "tools/call".into(),
            params: Some(json!({"name": "echo", "arguments": {"text": "x".repeat(100)}})),
            session: Some("s".into()),
            identity: None,
            headers: vec![("accept".into(), "application/json".into())],
        };
        let result = json!({"content": [{"type": "text", "text": "x".repeat(100)}]});

        // Warm hook calls on one attachment (one pooled instance).
        let mw = plugins.middleware("echo", None).expect("middleware");
        assert!(mw.wants_request("tools/call").await.expect("interests"));
        for _ in 0..2_000 {
            mw.on_request(&req).await.expect("call");
        }
        let n = 20_000;
        let mut req_times = Vec::with_capacity(n);
        let mut resp_times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            mw.on_request(&req).await.expect("call");
            req_times.push(t.elapsed());
            let t = Instant::now();
            mw.on_response(&req, &result).await.expect("call");
            resp_times.push(t.elapsed());
        }
        req_times.sort();
        resp_times.sort();

        // Fresh instances: the first call of a new attachment instantiates.
        let before = rss_kib();
        let k = 200;
        let mut held: Vec<Arc<dyn Middleware>> = Vec::with_capacity(k);
        let mut inst_times = Vec::with_capacity(k);
        for _ in 0..k {
            let m = plugins.middleware("echo", None).expect("middleware");
            let t = Instant::now();
            m.wants_request("tools/call").await.expect("interests");
            inst_times.push(t.elapsed());
            held.push(m);
        }
        let after = rss_kib();
        inst_times.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!("plugin host benchmark (test-echo-mw, release, {n} calls each)");
        println!(
            "compile (no cache)            {:>9.1} ms",
            compile.as_secs_f64() * 1e3
        );
        println!(
            "on-request  p50 / p99         {:>9.2} / {:.2} µs",
            us(percentile(&req_times, 0.5)),
            us(percentile(&req_times, 0.99))
        );
        println!(
            "on-response p50 / p99         {:>9.2} / {:.2} µs",
            us(percentile(&resp_times, 0.5)),
            us(percentile(&resp_times, 0.99))
        );
        println!(
            "instantiate + first call p50  {:>9.1} µs (p99 {:.1})",
            us(percentile(&inst_times, 0.5)),
            us(percentile(&inst_times, 0.99))
        );
        println!(
            "RSS per idle instance         {:>9.1} KiB ({k} instances: {} → {} KiB)",
            (after.saturating_sub(before)) as f64 / k as f64,
            before,
            after
        );
        drop(held);
    });
}
