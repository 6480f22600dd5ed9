//! Allowlist matching and the proxy itself, on loopback.

use std::net::Ipv4Addr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn policy(hosts: &[&str], ports: &[u16]) -> EgressPolicy {
    let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    EgressPolicy::new(&hosts, ports).expect("valid policy")
}

#[test]
fn matching() {
    let check = |p: &EgressPolicy, host: &str, port: u16, expect: bool| {
        assert_eq!(p.allows(host, port), expect, "{p:?} {host}:{port}");
    };
    let hosts = policy(
        &[
            "api.example.com",
            ".github.com",
            "*.Test.org",
            "10.0.0.7",
            "[::1]",
        ],
        &[],
    );
    check(&hosts, "api.example.com", 443, true);
    check(&hosts, "API.Example.COM.", 80, true);
    check(&hosts, "example.com", 443, false);
    check(&hosts, "x.api.example.com", 443, false);
    check(&hosts, "github.com", 22, true);
    check(&hosts, "raw.github.com", 443, true);
    check(&hosts, "evilgithub.com", 443, false);
    check(&hosts, "a.b.test.org", 443, true);
    check(&hosts, "test.org", 443, true);
    check(&hosts, "10.0.0.7", 1, true);
    check(&hosts, "10.0.0.8", 1, false);
    check(&hosts, "[::1]", 8080, true);

    let ports = policy(&[], &[443, 8443]);
    check(&ports, "anything.example", 443, true);
    check(&ports, "anything.example", 80, false);

    let both = policy(&[".example.com"], &[443]);
    check(&both, "a.example.com", 443, true);
    check(&both, "a.example.com", 80, false);
    check(&both, "a.example.org", 443, false);
}

#[test]
fn invalid_policies() {
    let err = |hosts: &[&str], ports: &[u16]| {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        EgressPolicy::new(&hosts, ports).unwrap_err()
    };
    assert!(err(&[], &[]).contains("needs"));
    assert!(err(&["a b"], &[]).contains("invalid host"));
    assert!(err(&["."], &[]).contains("invalid host"));
    assert!(err(&["a..b"], &[]).contains("invalid host"));
    assert!(err(&[".10.0.0.1"], &[]).contains("invalid host"));
    assert!(err(&["x"], &[0]).contains("port"));
}

#[test]
fn environment() {
    let env = proxy_env(SocketAddr::from(([10, 89, 0, 1], 3128)));
    assert_eq!(env["HTTP_PROXY"], "http://10.89.0.1:3128");
    assert_eq!(env["https_proxy"], "http://10.89.0.1:3128");
    assert_eq!(env["NO_PROXY"], "");
}

/// A one-shot HTTP origin on loopback answering `hello from <tag>`.
async fn origin(tag: &'static str) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
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

/// Sends `head` to the proxy and returns everything it answers.
async fn exchange(proxy: SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(proxy)
        .await
        .expect("connect to the proxy");
    s.write_all(head.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn proxy_allows_and_refuses() {
    let allowed = origin("allowed").await;
    let other = origin("other").await;
    let config = EgressConfig {
        port: 0,
        hosts: BTreeMap::from([
            (
                "allowed.test".to_owned(),
                vec![IpAddr::from(Ipv4Addr::LOCALHOST)],
            ),
            (
                "denied.test".to_owned(),
                vec![IpAddr::from(Ipv4Addr::LOCALHOST)],
            ),
        ]),
        ..EgressConfig::default()
    };
    let egress = Egress::new(config);
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let log: LogSink = Arc::new(move |name: &str, line: &str| {
        sink.lock().unwrap().push(format!("{name}: {line}"));
    });
    let proxy = egress
        .start(
            "w",
            Ipv4Addr::LOCALHOST.into(),
            policy(&["allowed.test"], &[allowed]),
            log.clone(),
        )
        .expect("proxy");

    let ok = exchange(
        proxy,
        &format!("GET http://allowed.test:{allowed}/x HTTP/1.1\r\nHost: allowed.test:{allowed}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.ends_with("hello from allowed"),
        "{ok}"
    );

    let denied = exchange(
        proxy,
        &format!("GET http://denied.test:{other}/ HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    let wrong_port = exchange(
        proxy,
        &format!("CONNECT allowed.test:{other} HTTP/1.1\r\nHost: allowed.test:{other}\r\n\r\n"),
    )
    .await;
    assert!(wrong_port.starts_with("HTTP/1.1 403"), "{wrong_port}");

    // A CONNECT tunnel to the allowed origin carries a plain request.
    let mut s = TcpStream::connect(proxy).await.expect("connect");
    s.write_all(
        format!("CONNECT allowed.test:{allowed} HTTP/1.1\r\nHost: allowed.test:{allowed}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("write");
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(String::from_utf8_lossy(&out).ends_with("hello from allowed"));

    // Origin-form requests are not proxy requests.
    let direct = exchange(
        proxy,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(direct.starts_with("HTTP/1.1 400"), "{direct}");

    let logged = lines.lock().unwrap().clone();
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert!(
        logged[0].contains(&format!("egress refused: GET http://denied.test:{other}")),
        "{logged:?}"
    );
    assert!(
        logged[1].contains(&format!("CONNECT allowed.test:{other}")),
        "{logged:?}"
    );

    // A new policy takes effect on the same listener.
    let again = egress
        .start(
            "w",
            Ipv4Addr::LOCALHOST.into(),
            policy(&["denied.test"], &[]),
            log,
        )
        .expect("proxy");
    assert_eq!(again, proxy);
    let now_ok = exchange(
        proxy,
        &format!("GET http://denied.test:{other}/ HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(now_ok.ends_with("hello from other"), "{now_ok}");

    egress.stop("w");
    eventually_refused(proxy).await;
}

async fn eventually_refused(addr: SocketAddr) {
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the proxy at {addr} still accepts after stop");
}
