//! The Kubernetes manifests and the gateway's Containerfile under `deploy/`
//! pass the offline validator (`deploy/kubernetes/validate.py`): kustomize
//! renders them, the Kubernetes and CRD schemas accept them, their
//! cross-references hold, and the validator refuses a set of broken copies.
//! The Python tools it needs come from `deploy/requirements.txt`, which
//! `cargo xtask setup` installs; without them this test fails and says so.

use std::path::Path;
use std::process::Command;

#[test]
fn manifests_and_containerfile_pass_the_offline_validator() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("deploy/kubernetes/validate.py");
    let output = Command::new("python3")
        .arg(&script)
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "validate.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // The run validated something and checked itself on broken copies.
    assert!(stdout.contains("SpinApp/items"), "{stdout}");
    assert!(
        stdout.contains("caught: grace period below drain_ms"),
        "{stdout}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
