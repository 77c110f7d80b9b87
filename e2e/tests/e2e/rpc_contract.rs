//! The RPC contract (common/proto, docs/rpc.md) keeps buf's rules: `buf lint` with the module's
//! buf.yaml (STANDARD), and `buf breaking` (FILE: nothing that breaks code generated from an
//! earlier version, nor the binary or JSON encoding) against common/proto/oort-v1.binpb.
//!
//! oort-v1.binpb is the contract baseline: the FileDescriptorSet of oort.v1 as first released,
//! made once with `buf build common/proto -o common/proto/oort-v1.binpb` and committed. It is not
//! regenerated when the .proto changes; a change that buf calls breaking belongs in a new
//! package (oort.v2), not in an edit of the baseline. buf is the one npm installs in
//! e2e/rpc-clients (pinned in its package.json).

use std::time::Duration;

use crate::rpc_support::{PROTO_ROOT, buf, run};
use crate::support::{describe, workspace_root};

const BASELINE: &str = "common/proto/oort-v1.binpb";
const BUF_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_proto_passes_buf_lint() {
    let mut command = tokio::process::Command::new(buf());
    command.args(["lint", PROTO_ROOT]);
    let output = run(command, BUF_TIMEOUT).await;
    assert!(
        output.status.success(),
        "buf lint {PROTO_ROOT} found problems\n{}",
        describe(&output)
    );
}

#[tokio::test]
async fn the_proto_has_no_breaking_change_since_the_baseline() {
    assert!(
        workspace_root().join(BASELINE).exists(),
        "{BASELINE}, the contract baseline, is missing"
    );
    let mut command = tokio::process::Command::new(buf());
    command.args(["breaking", PROTO_ROOT, "--against", BASELINE]);
    let output = run(command, BUF_TIMEOUT).await;
    assert!(
        output.status.success(),
        "buf breaking {PROTO_ROOT} --against {BASELINE} found breaking changes\n{}",
        describe(&output)
    );
}

/// The baseline is the real contract, and buf compares against it: a copy of the module with
/// a status deleted is breaking. (An empty or wrong baseline would let every change pass.)
#[tokio::test]
async fn deleting_a_status_is_breaking_against_the_baseline() {
    let copy = oort_e2e::temp::TempDir::new("rpc-breaking");
    let proto = workspace_root().join(PROTO_ROOT);
    std::fs::copy(proto.join("buf.yaml"), copy.path().join("buf.yaml")).unwrap();
    std::fs::create_dir_all(copy.path().join("oort/v1")).unwrap();
    let source = std::fs::read_to_string(proto.join("oort/v1/gateway.proto")).unwrap();
    let status = "  DELIVERY_STATUS_UNSUPPORTED = 10;\n";
    assert!(
        source.contains(status),
        "gateway.proto has no line {status:?}"
    );
    copy.write("oort/v1/gateway.proto", source.replace(status, ""));

    let mut command = tokio::process::Command::new(buf());
    command
        .arg("breaking")
        .arg(copy.path())
        .args(["--against", BASELINE]);
    let output = run(command, BUF_TIMEOUT).await;
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        // FILE names the deleted value by number: `enum value "10" on enum "DeliveryStatus"`.
        !output.status.success() && report.contains(r#""10" on enum "DeliveryStatus""#),
        "buf breaking did not report the deleted status\n{}",
        describe(&output)
    );
}
