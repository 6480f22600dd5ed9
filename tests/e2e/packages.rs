//! `npx://` and `uvx://` workloads on real container engines, through
//! berth's API: berth builds the package's image through the engine's build
//! API, runs it, reuses it for a second workload of the same package, and
//! reports a missing base image as the workload's `error`.
//!
//! No registry is reachable here, so the base image is
//! `localhost/berth-test/fake-toolchain:latest` (built by
//! `tests/fixtures/build-test-image.sh <engine>`): mcp-echo playing `npm`,
//! `npx`, `pip` and `uv`. Its `npm install` records the package in the
//! image's project directory and its `npx` refuses a package that was not
//! recorded there, then serves MCP whatever the package's name; its
//! `uv tool install` installs itself as the package's executable. So the
//! generated Dockerfile's steps really run (a build that skipped them
//! would not start), while the server is always mcp-echo. Features
//! `docker-tests` / `podman-tests`; they fail, never skip, when the engine
//! or the base image is missing.

use std::time::Duration;

use serde_json::{Value, json};

use crate::containers::{call_tool, cli, url_of};
use crate::serve::{Berth, T, free_port};
use crate::support::eventually;

/// A workload name of this test process: runs of the suite on one engine
/// (another checkout, CI) never share a container name.
fn n(base: &str) -> String {
    format!("{base}-{}", std::process::id())
}

const BASE: &str = "localhost/berth-test/fake-toolchain:latest";
const NPX_PKG: &str = "npx://@berth-e2e/echo-pkg@1.0.0";
const NPX_IMAGE: &str = "localhost/berth-npx/berth-e2e/echo-pkg:1.0.0";
const UVX_PKG: &str = "uvx://berth-e2e-echo==2.0";
const UVX_IMAGE: &str = "localhost/berth-uvx/berth-e2e-echo:2.0";
const ABSENT_BASE: &str = "localhost/berth-test/absent-node:latest";
fn workloads() -> [String; 5] {
    [n("pk1"), n("pk2"), n("pu1"), n("pk3"), n("pr1")]
}
/// A build on this 2-core machine takes seconds; allow for a busy one.
const BUILD: Duration = Duration::from_secs(180);

fn config(engine: &str, node_base: &str) -> String {
    format!(
        "runtime = \"{engine}\"\n[{engine}]\nnode_base_image = \"{node_base}\"\npython_base_image = \"{BASE}\"\n"
    )
}

/// The engine's id of `image`, if it has one.
fn image_id(engine: &str, image: &str) -> Option<String> {
    let out = std::process::Command::new(engine)
        .args(["image", "inspect", "-f", "{{.Id}}", image])
        .output()
        .expect("engine CLI");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn label(engine: &str, image: &str, key: &str) -> String {
    cli(
        engine,
        &[
            "image",
            "inspect",
            "-f",
            &format!("{{{{ index .Config.Labels \"{key}\" }}}}"),
            image,
        ],
    )
}

/// The workload's entry in the list: `status` and `status_context`.
async fn entry_of(b: &Berth, name: &str) -> Value {
    let (code, body) = b
        .req(reqwest::Method::GET, "/workloads?all=true", None)
        .await;
    assert_eq!(code, 200, "{body}");
    let list: Value = serde_json::from_str(&body).expect("json");
    list["workloads"]
        .as_array()
        .expect("array")
        .iter()
        .find(|w| w["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not listed: {list}"))
}

/// Waits until `name` leaves `starting`; its list entry, with berth's log
/// of it when it did not run.
async fn settled(b: &Berth, name: &str) -> Value {
    let entry = eventually(BUILD, &format!("{name} to leave `starting`"), || async {
        let e = entry_of(b, name).await;
        (e["status"] != "starting").then_some(e)
    })
    .await;
    if entry["status"] != "running" {
        eprintln!("berth's log of {name}:\n{}", berth_log(b, name).await);
    }
    entry
}

async fn berth_log(b: &Berth, name: &str) -> String {
    let (code, body) = b
        .req(
            reqwest::Method::GET,
            &format!("/workloads/{name}/proxy-logs"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    body
}

async fn echo(url: &str, text: &str) -> String {
    match call_tool(url, "echo", json!({"message": text})).await {
        Ok((false, text)) => text,
        other => panic!("echo through {url}: {other:?}"),
    }
}

fn cleanup(engine: &str) {
    for name in workloads() {
        let _ = std::process::Command::new(engine)
            .args(["rm", "-f", &format!("berth-{name}")])
            .output();
    }
    for image in [NPX_IMAGE, UVX_IMAGE] {
        let _ = std::process::Command::new(engine)
            .args(["image", "rm", "-f", image])
            .output();
    }
}

async fn scenario(engine: &'static str) {
    assert!(
        image_id(engine, BASE).is_some(),
        "the base image `{BASE}` is missing in {engine}; build it with `tests/fixtures/build-test-image.sh {engine}`"
    );
    assert!(
        image_id(engine, ABSENT_BASE).is_none(),
        "`{ABSENT_BASE}` must not exist"
    );
    cleanup(engine);
    let root = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    // A registry whose entry is an npm package only: on a container engine
    // it runs as the package's image, built locally.
    let registry = root.path().join("packages.json");
    std::fs::write(
        &registry,
        json!({"version": "1.0.0", "meta": {"last_updated": "2026-12-01T00:00:00Z"},
            "data": {"servers": [{"name": "io.github.berth-e2e/echo-pkg", "description": "mcp-echo as an npm package",
                "version": "1.0.0", "packages": [{"registryType": "npm", "identifier": "@berth-e2e/echo-pkg",
                    "version": "1.0.0", "transport": {"type": "stdio"}}]}]}})
        .to_string(),
    )
    .expect("registry file");
    let toml = format!(
        "{}[[registries]]\nname = \"pk\"\nlocal_path = \"{}\"\n",
        config(engine, BASE),
        registry.display()
    );
    let b = Berth::start_with(root.path(), port, &toml).await;

    // Invalid specs are refused before anything is stored.
    for (image, why) in [
        ("npx://pkg@^1.0", "invalid version"),
        ("npx://--registry=http://evil", "invalid npm package"),
        ("uvx://pkg;id", "invalid Python package"),
        ("uvx://", "names no package"),
    ] {
        let (code, body) = b
            .post("/workloads", json!({"name": n("bad"), "image": image}))
            .await;
        assert_eq!(code, 400, "{image}: {body}");
        assert!(body.contains(why), "{image}: {body}");
    }

    // First workload of the package: the image is built, then runs.
    let (code, body) = b
        .post("/workloads", json!({"name": n("pk1"), "image": NPX_PKG}))
        .await;
    assert_eq!(code, 201, "{body}");
    let s = settled(&b, &n("pk1")).await;
    assert_eq!(s["status"], "running", "{s}");
    let url = url_of(&b, &n("pk1")).await;
    assert_eq!(echo(&url, "from npx").await, "echo: from npx");
    let log = berth_log(&b, &n("pk1")).await;
    assert!(
        log.contains(&format!(
            "building image {NPX_IMAGE} for {NPX_PKG} on {BASE}"
        )),
        "{log}"
    );
    assert!(
        log.contains("fake npm: installed @berth-e2e/echo-pkg@1.0.0"),
        "the build's output is in the workload's log: {log}"
    );
    assert!(log.contains(&format!("built image {NPX_IMAGE}")), "{log}");
    assert_eq!(label(engine, NPX_IMAGE, "berth.package"), NPX_PKG);
    let hash = label(engine, NPX_IMAGE, "berth.package.hash");
    assert!(
        hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{hash}"
    );
    assert_eq!(label(engine, NPX_IMAGE, "berth.package.base"), BASE);
    let built = image_id(engine, NPX_IMAGE).expect("the package image exists");
    let user = cli(
        engine,
        &["image", "inspect", "-f", "{{.Config.User}}", NPX_IMAGE],
    );
    assert_eq!(user, "65534:65534", "packages run as nobody");

    // The same package by its registry name: the entry has no OCI image,
    // so the engine runs the package image (here already built).
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": n("pr1"), "registry": "pk", "server": "echo-pkg"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let s = settled(&b, &n("pr1")).await;
    assert_eq!(s["status"], "running", "{s}");
    let url = url_of(&b, &n("pr1")).await;
    assert_eq!(echo(&url, "by name").await, "echo: by name");
    let (_, got) = b
        .req(
            reqwest::Method::GET,
            &format!("/workloads/{}", n("pr1")),
            None,
        )
        .await;
    let got: Value = serde_json::from_str(&got).expect("json");
    assert_eq!(got["image"], NPX_PKG, "{got}");
    assert_eq!(got["runtime"], engine, "{got}");
    assert_eq!(got["server"], "io.github.berth-e2e/echo-pkg");
    // The run configuration keeps the package, not the built image.
    let (_, export) = b
        .req(
            reqwest::Method::GET,
            &format!("/workloads/{}/export", n("pk1")),
            None,
        )
        .await;
    assert!(export.contains(NPX_PKG), "{export}");

    // A second workload of the same package reuses the image.
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": n("pk2"), "image": NPX_PKG, "cmd_arguments": []}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let s = settled(&b, &n("pk2")).await;
    assert_eq!(s["status"], "running", "{s}");
    assert_eq!(
        echo(&url_of(&b, &n("pk2")).await, "cached").await,
        "echo: cached"
    );
    let log = berth_log(&b, &n("pk2")).await;
    assert!(
        log.contains(&format!("using cached image {NPX_IMAGE} for {NPX_PKG}")),
        "{log}"
    );
    assert!(!log.contains("building image"), "no second build: {log}");
    assert_eq!(image_id(engine, NPX_IMAGE).as_ref(), Some(&built));

    // uvx: the tool `uv tool install` put into the image is the entrypoint.
    let (code, body) = b
        .post("/workloads", json!({"name": n("pu1"), "image": UVX_PKG}))
        .await;
    assert_eq!(code, 201, "{body}");
    let s = settled(&b, &n("pu1")).await;
    assert_eq!(s["status"], "running", "{s}");
    assert_eq!(
        echo(&url_of(&b, &n("pu1")).await, "from uvx").await,
        "echo: from uvx"
    );
    let log = berth_log(&b, &n("pu1")).await;
    assert!(
        log.contains("fake uv: installed berth-e2e-echo==2.0"),
        "{log}"
    );
    assert_eq!(label(engine, UVX_IMAGE, "berth.package"), UVX_PKG);

    // Delete them; the images stay for the next workloads of the packages.
    delete_all(&b, &[&n("pk1"), &n("pk2"), &n("pu1"), &n("pr1")]).await;
    assert_eq!(image_id(engine, NPX_IMAGE).as_ref(), Some(&built));

    // A base image the engine does not have and cannot pull: the workload
    // ends in `error`, saying so.
    drop(b);
    let b = Berth::start_with(root.path(), port, &config(engine, ABSENT_BASE)).await;
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": n("pk3"), "image": "npx://@berth-e2e/other-pkg"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let s = settled(&b, &n("pk3")).await;
    assert_eq!(s["status"], "error", "{s}");
    let context = s["status_context"].as_str().unwrap_or_default();
    assert!(
        context.contains(&format!(
            "base image {ABSENT_BASE} for npx:// is not available locally and cannot be pulled"
        )),
        "{s}"
    );
    delete_all(&b, &[&n("pk3")]).await;
    drop(b);
    cleanup(engine);
}

async fn delete_all(b: &Berth, names: &[&str]) {
    for name in names {
        let (code, body) = b
            .req(reqwest::Method::DELETE, &format!("/workloads/{name}"), None)
            .await;
        assert_eq!(code, 202, "{name}: {body}");
    }
    eventually(T, "the workloads to be gone", || async {
        let (_, list) = b
            .req(reqwest::Method::GET, "/workloads?all=true", None)
            .await;
        let list: Value = serde_json::from_str(&list).expect("json");
        list["workloads"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    })
    .await;
}

#[cfg(feature = "docker-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_package_images_through_the_api() {
    scenario("docker").await;
}

#[cfg(feature = "podman-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_package_images_through_the_api() {
    scenario("podman").await;
}
