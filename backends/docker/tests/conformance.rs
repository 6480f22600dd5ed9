//! The runtime conformance suite, the container engines' suite and the
//! Docker-specific rules, run against a real Docker engine (feature
//! `docker-tests`).
//!
//! The tests fail, never skip, when the engine cannot be reached or the test
//! image is missing; build the image with
//! `tests/fixtures/build-test-image.sh docker`. The engine is the one at
//! `DOCKER_HOST`, else `/var/run/docker.sock`.

// Tests take the engine's socket from the environment, as CI sets it.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use berth_backend_docker::{DockerBackend, DockerConfig};
use berth_runtime_api::conformance::containers::{self, ContainerFixture};
use berth_runtime_api::conformance::{self, Fixture, SECRET_MARKER, run_all};
use berth_runtime_api::{
    Backend, RuntimeError, RuntimeState, Transport, WorkloadName, WorkloadSpec,
};

const IMAGE: &str = "localhost/berth-test/echo:latest";
const TIMEOUT: Duration = Duration::from_secs(30);

fn config() -> DockerConfig {
    DockerConfig {
        socket: std::env::var("DOCKER_HOST").ok(),
        ..DockerConfig::default()
    }
}

/// A connected backend whose engine has the test image; panics with what
/// to do otherwise.
async fn backend() -> DockerBackend {
    let config = config();
    let socket = config.socket().to_owned();
    let backend = match DockerBackend::connect(config).await {
        Ok(backend) => backend,
        Err(err) => panic!(
            "the docker engine at `{socket}` is unreachable ({}); start it (`dockerd &`) before running these tests",
            chain(&err)
        ),
    };
    if let Err(err) = backend.engine().inspect_image(IMAGE).await {
        panic!(
            "the test image `{IMAGE}` is missing ({err}); build it with `tests/fixtures/build-test-image.sh docker`"
        );
    }
    backend
}

/// An error and its sources, joined.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A workload name of this test process: runs of the suite on one engine
/// (another checkout, CI) never share a container name.
fn name(s: &str) -> WorkloadName {
    WorkloadName::parse(&format!("{s}-{}", std::process::id())).expect("valid test name")
}

/// A stdio spec of the echo server.
fn echo(name: &WorkloadName) -> WorkloadSpec {
    let mut spec = WorkloadSpec::new(name.clone(), IMAGE);
    spec.labels.insert("berth.test".into(), name.to_string());
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_backend_conforms() {
    let backend = backend().await;
    let fx = Fixture {
        prefix: format!("dkr{}", std::process::id()),
        stdio: (IMAGE.into(), vec![]),
        exits_with_3: (IMAGE.into(), vec!["--exit-code".into(), "3".into()]),
        mcp_echo: Some((IMAGE.into(), vec![])),
        timeout: TIMEOUT,
    };
    run_all(&backend, &fx).await;
}

fn container_fixture(prefix: &str) -> ContainerFixture {
    ContainerFixture {
        prefix: format!("{prefix}{}", std::process::id()),
        image: IMAGE.into(),
        timeout: TIMEOUT,
    }
}

/// The container engines' suite: published ports, logs, refused specs,
/// absent images, re-attach after a restart of berth, containers that
/// outlive the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_backend_conforms_as_a_container_engine() {
    containers::run_all(backend, &container_fixture("dkr")).await;
}

/// The engine's own record of an HTTP workload's container: every port
/// binding, asked for and in place, is on 127.0.0.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_transport_is_published_on_loopback_only() {
    let b = backend().await;
    let name = name("dkr-http-engine");
    let _ = b.remove(&name).await;
    let mut spec = echo(&name);
    spec.transport = Transport::StreamableHttp;
    spec.target_port = Some(8080);
    spec.args = vec!["--http".into(), "0.0.0.0:8080".into()];
    spec.env.insert("MCP_PORT".into(), "8080".into());
    let info = b.deploy(spec).await.expect("deploy");
    let endpoint = info
        .http_endpoint
        .expect("an HTTP workload has an endpoint");
    assert!(endpoint.ip().is_loopback(), "{endpoint}");

    let c = b
        .engine()
        .inspect_container(format!("berth-{name}").as_str(), None)
        .await
        .expect("inspect the container");
    let wanted = c
        .host_config
        .and_then(|h| h.port_bindings)
        .expect("port bindings");
    let actual = c
        .network_settings
        .and_then(|n| n.ports)
        .expect("published ports");
    for (what, map) in [
        ("HostConfig.PortBindings", wanted),
        ("NetworkSettings.Ports", actual),
    ] {
        let bindings: Vec<_> = map.into_values().flatten().flatten().collect();
        assert!(!bindings.is_empty(), "{what} is empty");
        for binding in bindings {
            assert_eq!(
                binding.host_ip.as_deref(),
                Some("127.0.0.1"),
                "{what} publishes beyond loopback: {binding:?}"
            );
        }
    }
    b.remove(&name).await.expect("remove");
}

/// The container runs with no-new-privileges, no capabilities, docker-init,
/// the default limits, no restart policy and berth's labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_locked_down() {
    let b = backend().await;
    let name = name("dkr-locked");
    let _ = b.remove(&name).await;
    b.deploy(echo(&name)).await.expect("deploy");

    let c = b
        .engine()
        .inspect_container(format!("berth-{name}").as_str(), None)
        .await
        .expect("inspect the container");
    let host = c.host_config.expect("host config");
    assert_eq!(
        host.security_opt,
        Some(vec!["no-new-privileges".to_owned()])
    );
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    assert!(host.cap_add.unwrap_or_default().is_empty());
    assert_eq!(host.privileged, Some(false));
    assert_eq!(host.init, Some(true));
    assert_eq!(host.memory, Some(1 << 30));
    assert_eq!(host.nano_cpus, Some(1_000_000_000));
    assert_eq!(
        host.restart_policy
            .and_then(|r| r.name)
            .map(|n| n.to_string()),
        Some("no".to_owned())
    );
    let config = c.config.expect("config");
    assert_eq!(config.open_stdin, Some(true));
    assert_eq!(config.stdin_once, Some(false));
    assert_eq!(config.tty, Some(false));
    let labels = config.labels.expect("labels");
    assert_eq!(
        labels.get("berth.managed").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        labels.get("berth.workload").map(String::as_str),
        Some(name.as_str())
    );

    // The image's own label is not reported as one of the workload's.
    let info = b.inspect(&name).await.expect("inspect");
    assert_eq!(
        info.labels.keys().collect::<Vec<_>>(),
        vec!["berth.test"],
        "{:?}",
        info.labels
    );
    b.remove(&name).await.expect("remove");
}

/// Docker has no secret store outside swarm: a secret is an environment
/// variable of the container (after the spec's `env`, so it wins), and the
/// engine's inspect (`GET /containers/{id}/json`, `docker inspect`) shows
/// it, to whoever may ask the engine (root, the `docker` group), as any
/// environment variable. It is never in the labels or the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_container_env_on_docker() {
    let b = backend().await;
    let name = name("dkr-secret-env");
    let _ = b.remove(&name).await;
    b.deploy(conformance::with_secret_env(echo(&name)))
        .await
        .expect("deploy");
    let c = b
        .engine()
        .inspect_container(format!("berth-{name}").as_str(), None)
        .await
        .expect("inspect the container");
    let config = c.config.expect("config");
    let env = config.env.clone().unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e == "BERTH_CONF_BOTH=berth-conformance-secret-wins-8b2d"),
        "{env:?}"
    );
    assert!(
        !env.iter().any(|e| e.starts_with("BERTH_CONF_BOTH=plain")),
        "{env:?}"
    );
    let elsewhere = format!(
        "{:?} {:?} {:?} {:?}",
        config.labels, config.cmd, config.entrypoint, c.args
    );
    assert!(!elsewhere.contains(SECRET_MARKER), "{elsewhere}");
    b.remove(&name).await.expect("remove");
}

/// An image the engine does not have and cannot pull is an invalid spec on
/// Docker (the container suite checks the message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_image_is_named() {
    let b = backend().await;
    match containers::an_absent_image_is_named(&b, &container_fixture("dkr-kind")).await {
        RuntimeError::InvalidSpec(why) => {
            assert!(why.contains("not present locally"), "{why}");
            assert!(why.contains("could not be pulled"), "{why}");
        }
        other => panic!("deploy of an absent image: {other:?}"),
    }
}

/// An exit berth did not ask for is reported as such, also to a restarted
/// berth, and `wait` on a running container resolves when it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrequested_exit_is_not_a_stop() {
    let b = backend().await;
    let name = name("dkr-crash");
    let _ = b.remove(&name).await;
    b.deploy(echo(&name)).await.expect("deploy");
    let waiter = {
        let name = name.clone();
        let b2 = backend().await;
        tokio::spawn(async move { b2.wait(&name).await })
    };
    // Stopped behind berth's back (as `docker stop` would).
    b.engine()
        .stop_container(format!("berth-{name}").as_str(), None)
        .await
        .expect("docker stop");
    let exit = tokio::time::timeout(TIMEOUT, waiter)
        .await
        .expect("wait ends")
        .expect("join")
        .expect("wait");
    assert!(!exit.stopped_by_request, "{exit:?}");
    match b.inspect(&name).await.expect("inspect").state {
        RuntimeState::Exited(e) => assert!(!e.stopped_by_request, "{e:?}"),
        other => panic!("{other:?}"),
    }
    b.remove(&name).await.expect("remove");
}

/// A socket nobody listens on fails `connect` at once, and one that never
/// answers within a few seconds; the error names the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_fast_naming_the_socket() {
    containers::connect_fails_fast_naming_the_socket("docker", async |socket| {
        DockerBackend::connect(DockerConfig {
            socket: Some(socket),
            ..DockerConfig::default()
        })
        .await
    })
    .await;
}
