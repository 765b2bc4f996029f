//! The files in `deploy/` are checked, not just parsed: the run file and
//! its components through this crate (as `dapr-wasm up` reads them), the
//! Kubernetes manifests against Kubernetes' own schemas and Dapr's
//! documented annotations, and the Dockerfile's paths against the
//! repository.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use runner::{RunFile, plan};
use serde::Deserialize;
use test_support::repo_path;

/// Every `dapr.io/*` pod annotation Dapr documents
/// (docs.dapr.io/reference/arguments-annotations-overview).
const DAPR_ANNOTATIONS: &[&str] = &[
    "dapr.io/enabled",
    "dapr.io/app-id",
    "dapr.io/app-port",
    "dapr.io/app-protocol",
    "dapr.io/app-channel-address",
    "dapr.io/app-max-concurrency",
    "dapr.io/app-token-secret",
    "dapr.io/api-token-secret",
    "dapr.io/config",
    "dapr.io/grpc-port",
    "dapr.io/log-level",
    "dapr.io/log-as-json",
    "dapr.io/enable-api-logging",
    "dapr.io/enable-metrics",
    "dapr.io/metrics-port",
    "dapr.io/enable-profiling",
    "dapr.io/enable-debug",
    "dapr.io/debug-port",
    "dapr.io/env",
    "dapr.io/max-body-size",
    "dapr.io/read-buffer-size",
    "dapr.io/http-max-request-size",
    "dapr.io/http-read-buffer-size",
    "dapr.io/graceful-shutdown-seconds",
    "dapr.io/block-shutdown-duration",
    "dapr.io/enable-app-health-check",
    "dapr.io/app-health-check-path",
    "dapr.io/app-health-probe-interval",
    "dapr.io/app-health-probe-timeout",
    "dapr.io/app-health-threshold",
    "dapr.io/sidecar-cpu-limit",
    "dapr.io/sidecar-memory-limit",
    "dapr.io/sidecar-cpu-request",
    "dapr.io/sidecar-memory-request",
    "dapr.io/sidecar-listen-addresses",
    "dapr.io/sidecar-image",
    "dapr.io/sidecar-liveness-probe-delay-seconds",
    "dapr.io/sidecar-liveness-probe-timeout-seconds",
    "dapr.io/sidecar-liveness-probe-period-seconds",
    "dapr.io/sidecar-liveness-probe-threshold",
    "dapr.io/sidecar-readiness-probe-delay-seconds",
    "dapr.io/sidecar-readiness-probe-timeout-seconds",
    "dapr.io/sidecar-readiness-probe-period-seconds",
    "dapr.io/sidecar-readiness-probe-threshold",
    "dapr.io/sidecar-seccomp-profile-type",
    "dapr.io/unix-domain-socket-path",
    "dapr.io/volume-mounts",
    "dapr.io/volume-mounts-rw",
    "dapr.io/disable-builtin-k8s-secret-store",
    "dapr.io/placement-host-address",
];

/// The Kubernetes documents in `deploy/k8s/image-demo.yaml`.
fn manifests() -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(repo_path("deploy/k8s/image-demo.yaml")).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .collect()
}

#[test]
fn the_run_file_plans_and_its_components_load() {
    let run_file = repo_path("deploy/dapr.yaml");
    let file = RunFile::load(&run_file).unwrap();
    let plans = plan(&run_file, &file, Path::new("/usr/local/bin/dapr-wasm")).unwrap();
    let ids: Vec<&str> = plans.iter().map(|p| p.app_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "web-port",
            "image-api-grayscale",
            "image-api-classify",
            "events"
        ]
    );
    for plan in &plans {
        plan.check_components().unwrap();
        assert_eq!(plan.dir, repo_path("").canonicalize().unwrap());
        assert_eq!(plan.program, Path::new("/usr/local/bin/dapr-wasm"));
        for (name, value) in [
            ("APP_ID", Some(plan.app_id.clone())),
            ("DAPR_HTTP_PORT", Some(plan.dapr_http_port.to_string())),
            ("DAPR_GRPC_PORT", Some(plan.dapr_grpc_port.to_string())),
            ("APP_PORT", plan.app_port.map(|p| p.to_string())),
        ] {
            let set = plan
                .env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone());
            assert_eq!(set, value, "{} {name}", plan.app_id);
        }
    }
}

#[test]
fn a_bad_run_file_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "version: 2\napps:\n- appID: a\n  command: [x]\n",
            "version 2 is not supported",
        ),
        ("apps: []\n", "lists no apps"),
        ("apps:\n- appID: a\n  command: []\n", "has no command"),
        (
            "apps:\n- appID: a\n  command: [x]\n- appID: a\n  command: [y]\n",
            "appears twice",
        ),
        (
            "apps:\n- appID: a\n  appPort: 80\n  command: [x]\n- appID: b\n  daprHTTPPort: 80\n  command: [y]\n",
            "port 80 is used twice",
        ),
        ("apps: {not: a list}\n", "not a valid Dapr run file"),
        (
            "apps:\n- appID: a\n  appProtocol: smtp\n  command: [x]\n",
            "appProtocol smtp is not supported",
        ),
    ];
    for (text, expected) in cases {
        let path = dir.path().join("dapr.yaml");
        std::fs::write(&path, text).unwrap();
        let err = RunFile::load(&path).unwrap_err().to_string();
        assert!(err.contains(expected), "{text:?}: {err}");
    }
    let missing = RunFile::load(&dir.path().join("nope.yaml")).unwrap_err();
    assert!(
        missing.to_string().contains("cannot read the run file"),
        "{missing}"
    );
}

#[test]
fn a_taken_port_is_named_before_anything_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dapr.yaml");
    for (field, other) in [("appPort", "daprHTTPPort"), ("daprHTTPPort", "appPort")] {
        // The other port is 0: an app without one, a sidecar on any port.
        std::fs::write(
            &path,
            format!(
                "apps:\n- appID: late\n  {field}: {port}\n  {other}: 0\n  daprGRPCPort: 0\n  command: [x]\n"
            ),
        )
        .unwrap();
        let file = RunFile::load(&path).unwrap();
        let plans = plan(&path, &file, Path::new("dapr-wasm")).unwrap();
        let err = plans[0].check_ports_free().unwrap_err().to_string();
        assert!(
            err.contains(&format!("app `late`: port {port} ({field}) cannot be used")),
            "{err}"
        );
    }
}

#[test]
fn the_manifests_match_the_run_file_and_use_only_documented_dapr_annotations() {
    let run_file = repo_path("deploy/dapr.yaml");
    let file = RunFile::load(&run_file).unwrap();
    let expected: Vec<(String, String)> = file
        .apps
        .iter()
        .map(|a| (a.app_id.clone(), a.app_port.unwrap().to_string()))
        .collect();
    let documented: BTreeSet<&str> = DAPR_ANNOTATIONS.iter().copied().collect();
    let mut annotated = Vec::new();
    for doc in manifests() {
        if doc["kind"] == "Component" {
            // The same loader the sidecar uses accepts it.
            let yaml = serde_yaml::to_string(&doc).unwrap();
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("component.yaml"), yaml).unwrap();
            let loaded =
                sidecar::components::load(&[dir.path().to_path_buf()], "web-port").unwrap();
            assert_eq!(loaded.len(), 1);
        }
        if doc["kind"] != "Deployment" {
            continue;
        }
        let annotations = doc["spec"]["template"]["metadata"]["annotations"]
            .as_mapping()
            .unwrap();
        for key in annotations.keys() {
            let key = key.as_str().unwrap();
            if key.starts_with("dapr.io/") {
                assert!(documented.contains(key), "{key} is not a Dapr annotation");
            }
        }
        let get = |key: &str| annotations[key].as_str().unwrap().to_string();
        assert_eq!(get("dapr.io/enabled"), "true");
        annotated.push((get("dapr.io/app-id"), get("dapr.io/app-port")));
    }
    assert_eq!(annotated, expected);
}

/// Kubernetes' own schemas, from the pinned PyPI package
/// `kubernetes-validate` (scripts/test-requirements.txt), in strict mode.
#[test]
#[ignore = "needs kubernetes-validate in build/test-venv (scripts/test.sh installs it and runs this)"]
fn the_manifests_are_valid_kubernetes() {
    let tool = repo_path("build/test-venv/bin/kubernetes-validate");
    assert!(
        tool.is_file(),
        "{} is missing: scripts/test.sh installs it",
        tool.display()
    );
    let validate = |path: &Path| {
        Command::new(&tool)
            .arg("--strict")
            .arg(path)
            .output()
            .expect("kubernetes-validate runs")
    };
    let output = validate(&repo_path("deploy/k8s/image-demo.yaml"));
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}");
    let deployments = manifests()
        .iter()
        .filter(|d| d["kind"] == "Deployment")
        .count();
    assert_eq!(
        report.matches("passed for resource deployment/").count(),
        deployments,
        "{report}"
    );

    // And the check itself can fail: a Deployment with a misspelt field.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicaz: 1\n  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: x}}\n    spec: {containers: [{name: x, image: x}]}\n",
    )
    .unwrap();
    assert!(
        !validate(&bad).status.success(),
        "a misspelt field must fail"
    );
}

/// The Dockerfile builds what the repository has: the binary it names is a
/// workspace binary, the functions it copies are built by the functions
/// workspace, and the manifests run the files it puts in the image.
#[test]
fn the_dockerfile_paths_exist_in_the_repository() {
    let dockerfile = std::fs::read_to_string(repo_path("deploy/k8s/Dockerfile")).unwrap();
    let cli = std::fs::read_to_string(repo_path("crates/cli/Cargo.toml")).unwrap();
    let mut image_files = Vec::new();
    for line in dockerfile.lines() {
        if let Some(bin) = line.split("--bin ").nth(1) {
            let bin = bin.split_whitespace().next().unwrap();
            assert!(
                cli.contains(&format!("name = \"{bin}\"")),
                "no binary {bin}"
            );
        }
        let Some(copy) = line.strip_prefix("COPY --from=build /src/") else {
            continue;
        };
        let (source, destination) = copy.split_once(' ').unwrap();
        if let Some(wasm) = source.strip_prefix("functions/target/wasm32-wasip1/release/") {
            // Built by scripts/build-functions.sh from the same workspace.
            let built = repo_path("build/functions").join(wasm);
            assert!(
                built.is_file(),
                "{source}: {} is not built",
                built.display()
            );
            image_files.push(format!("{}{wasm}", destination.trim()));
        } else {
            assert_eq!(
                source, "target/release/dapr-wasm",
                "an unknown COPY: {line}"
            );
        }
    }
    assert!(dockerfile.contains("RUN cd functions && cargo build --release --locked"));
    assert!(repo_path("functions/Cargo.toml").is_file());
    // Every function the manifests run is one the image has.
    for doc in manifests().iter().filter(|d| d["kind"] == "Deployment") {
        let args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_sequence()
            .unwrap();
        for arg in args.iter().filter_map(|a| a.as_str()) {
            if let Some((_, path)) = arg.split_once('=').filter(|_| arg.ends_with(".wasm")) {
                assert!(
                    image_files.iter().any(|f| f == path),
                    "{path} is not in the image"
                );
            }
        }
    }
}
