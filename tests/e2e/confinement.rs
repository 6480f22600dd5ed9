//! Permission profiles on real engines, through berth's API: the `none`
//! profile has no network, read-only mounts cannot be written and
//! read-write ones can, and an outbound allowlist lets the workload reach
//! allowed hosts through berth's egress proxy and nothing else. The test
//! image's `tcp_connect`, `read_file`, `write_file` and `http_get` tools
//! make the checks from inside the container. Every address used is on this
//! machine: an HTTP workload's container on the engine's default network
//! (not a host address: those stay reachable from an internal network, see
//! ARCHITECTURE.md) and HTTP origins on 127.0.0.1 that berth's egress proxy
//! reaches, under names from berth's static `egress.hosts`.

use std::net::Ipv4Addr;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::containers::{IMAGE, call_tool, cli, url_of};
use crate::serve::{Berth, T, free_port};
use crate::support::eventually;

/// A workload name of this test process: runs of the suite on one engine
/// (another checkout, CI) never share a container name.
fn n(base: &str) -> String {
    format!("{base}-{}", std::process::id())
}

/// The address of `container` on its (one) network.
fn container_ip(engine: &str, container: &str) -> String {
    let format = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}";
    cli(engine, &["inspect", "-f", format, container])
}

/// Containers and networks this test creates.
fn leftovers() -> Vec<String> {
    let mut names: Vec<String> = ["ch", "cf", "cn", "ca"]
        .iter()
        .map(|b| format!("berth-{}", n(b)))
        .collect();
    names.push(format!("berth-egress-{}", n("ca")));
    names
}

/// Removes what an earlier, failed run may have left behind.
fn clean(engine: &str) {
    for name in leftovers() {
        let kind = if name.contains("egress") {
            "network"
        } else {
            "container"
        };
        let _ = std::process::Command::new(engine)
            .args([kind, "rm", "-f", &name])
            .output();
    }
}

/// An HTTP origin on 127.0.0.1 answering every request with `hello from <tag>`.
async fn origin(tag: &'static str) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("hello from {tag}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

/// Calls a tool of workload `name` once it answers at all.
async fn tool(b: &Berth, name: &str, tool: &str, args: Value) -> (bool, String) {
    let url = url_of(b, name).await;
    eventually(T, &format!("{name} to answer {tool}"), || async {
        call_tool(&url, tool, args.clone()).await.ok()
    })
    .await
}

async fn create(b: &Berth, body: Value) {
    let name = body["name"].as_str().expect("name").to_owned();
    let (code, text) = b.post("/workloads", body).await;
    assert_eq!(code, 201, "{text}");
    b.wait_status(&name, "running").await;
}

async fn scenario(engine: &'static str) {
    cli(engine, &["image", "inspect", IMAGE]);
    clean(engine);
    let root = tempfile::tempdir().expect("tempdir");
    let ro = tempfile::tempdir().expect("tempdir");
    let rw = tempfile::tempdir().expect("tempdir");
    std::fs::write(ro.path().join("seed.txt"), "seeded").expect("seed");

    let allowed = origin("allowed").await;
    let other = origin("other").await;

    let config = format!(
        "runtime = \"{engine}\"\n[egress]\nhosts = {{ \"allowed.test\" = [\"127.0.0.1\"], \"denied.test\" = [\"127.0.0.1\"] }}\n"
    );
    let port = free_port();
    let mut b = Berth::start_with(root.path(), port, &config).await;

    // A server on the engine's default network, off this host's addresses.
    create(
        &b,
        json!({"name": n("ch"), "image": IMAGE, "transport": "streamable-http", "target_port": 8080,
            "cmd_arguments": ["--http", "0.0.0.0:8080"]}),
    )
    .await;
    let target = format!(
        "{}:8080",
        container_ip(engine, &format!("berth-{}", n("ch")))
    );

    // Positive control: the default profile reaches it.
    create(&b, json!({"name": n("cf"), "image": IMAGE})).await;
    let (err, text) = tool(&b, &n("cf"), "tcp_connect", json!({"addr": target})).await;
    assert!(!err, "the default profile has a network: {text}");

    // `none`: no network; a read-only and a read-write mount.
    create(
        &b,
        json!({"name": n("cn"), "image": IMAGE, "permission_profile": {
            "name": "none",
            "read": [format!("{}:/ro", ro.path().display())],
            "write": [format!("{}:/rw", rw.path().display())]}}),
    )
    .await;
    let (err, text) = tool(&b, &n("cn"), "tcp_connect", json!({"addr": target})).await;
    assert!(err, "the none profile has no network: {text}");
    let (err, text) = tool(&b, &n("cn"), "read_file", json!({"path": "/ro/seed.txt"})).await;
    assert_eq!((err, text.as_str()), (false, "seeded"));
    let (err, text) = tool(
        &b,
        &n("cn"),
        "write_file",
        json!({"path": "/ro/x.txt", "text": "no"}),
    )
    .await;
    assert!(err && text.contains("Read-only file system"), "{text}");
    assert!(!ro.path().join("x.txt").exists());
    let (err, text) = tool(
        &b,
        &n("cn"),
        "write_file",
        json!({"path": "/rw/out.txt", "text": "from the box"}),
    )
    .await;
    assert!(!err, "{text}");
    assert_eq!(
        std::fs::read_to_string(rw.path().join("out.txt")).expect("written through the mount"),
        "from the box"
    );

    // An allowlist: the allowed origin through the proxy, nothing else.
    create(
        &b,
        json!({"name": n("ca"), "image": IMAGE, "permission_profile": {
            "name": "allowlist",
            "network": {"outbound": {"allow_host": ["allowed.test"], "allow_port": [allowed]}}}}),
    )
    .await;
    let get = |url: String, tunnel: bool| {
        let b = &b;
        async move {
            tool(
                b,
                &n("ca"),
                "http_get",
                json!({"url": url, "tunnel": tunnel}),
            )
            .await
        }
    };
    for tunnel in [false, true] {
        let (err, text) = get(format!("http://allowed.test:{allowed}/x"), tunnel).await;
        assert!(
            !err && text.contains(" 200 ") && text.ends_with("hello from allowed"),
            "tunnel {tunnel}: {text}"
        );
        let (_, text) = get(format!("http://denied.test:{other}/"), tunnel).await;
        assert!(
            text.contains(" 403 "),
            "another host, tunnel {tunnel}: {text}"
        );
        let (_, text) = get(format!("http://allowed.test:{other}/"), tunnel).await;
        assert!(
            text.contains(" 403 "),
            "another port, tunnel {tunnel}: {text}"
        );
    }
    let (err, text) = tool(&b, &n("ca"), "tcp_connect", json!({"addr": target})).await;
    assert!(err, "no route around the proxy: {text}");
    let (_, log) = b
        .req(
            reqwest::Method::GET,
            &format!("/workloads/{}/proxy-logs", n("ca")),
            None,
        )
        .await;
    assert!(
        log.contains(&format!("egress refused: GET http://denied.test:{other}"))
            && log.contains(&format!("egress refused: CONNECT allowed.test:{other}")),
        "{log}"
    );

    // After a kill -9 of berth, the new berth runs the egress proxy again
    // where the workload's environment points.
    b.signal("-KILL");
    let _ = b.child.wait();
    drop(b);
    let b = Berth::start_with(root.path(), port, &config).await;
    b.wait_status(&n("ca"), "running").await;
    let url = format!("http://allowed.test:{allowed}/again");
    let (err, text) = eventually(T, "the egress proxy after the restart", || async {
        let answer = tool(&b, &n("ca"), "http_get", json!({"url": url})).await;
        (!answer.0).then_some(answer)
    })
    .await;
    assert!(!err && text.ends_with("hello from allowed"), "{text}");

    // Delete leaves neither containers nor the isolated network behind.
    for name in [&n("ch"), &n("cf"), &n("cn"), &n("ca")] {
        let (code, _) = b
            .req(reqwest::Method::DELETE, &format!("/workloads/{name}"), None)
            .await;
        assert_eq!(code, 202);
    }
    // Four stops and removals; slow when the engine is busy with other tests.
    eventually(3 * T, "the containers and networks to be gone", || async {
        let containers = cli(
            engine,
            &[
                "ps",
                "-a",
                "--filter",
                "label=berth.managed=true",
                "--format",
                "{{.Names}}",
            ],
        );
        let networks = cli(engine, &["network", "ls", "--format", "{{.Name}}"]);
        let left = containers
            .lines()
            .chain(networks.lines())
            .any(|name| leftovers().iter().any(|l| l == name));
        (!left).then_some(())
    })
    .await;
}

#[cfg(feature = "docker-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_permission_profiles() {
    scenario("docker").await;
}

#[cfg(feature = "podman-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_permission_profiles() {
    scenario("podman").await;
}
