//! End to end with real clients from Debian: podman and skopeo against `wharf serve` over
//! plain HTTP (`--tls-verify=false`). Outside CI, a missing program skips its test.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{have_program, podman, WharfProcess};

pub(crate) fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("program runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A tiny image built offline: a tar of one file, imported into podman.
pub(crate) fn import_image(dir: &Path, name: &str, content: &str) -> String {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("hello.txt"), content).unwrap();
    let tar = dir.join("rootfs.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    let out = run(podman(dir).arg("import").arg(&tar).arg(name));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn podman_push_then_pull() {
    if !have_program("podman", "podman") {
        return;
    }
    let (root, conf, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let wharf = WharfProcess::spawn(root.path(), conf.path());
    let image_id = import_image(work.path(), "localhost/e2e/app:1", "hello from podman");
    let remote = format!("{}/team/app:1", wharf.addr);

    run(podman(work.path()).args(["push", "--tls-verify=false", "localhost/e2e/app:1", &remote]));
    run(podman(work.path()).args(["rmi", "-a", "-f"]));
    run(podman(work.path()).args(["pull", "-q", "--tls-verify=false", &remote]));
    let out = run(podman(work.path()).args(["image", "inspect", "--format", "{{.Id}}", &remote]));
    let pulled_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        pulled_id,
        image_id.trim_start_matches("sha256:"),
        "the pulled image is the pushed one"
    );
    // The file inside the image survived the round trip.
    let out = run(podman(work.path()).args(["image", "mount", &remote]));
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        std::fs::read_to_string(Path::new(&dir).join("hello.txt")).unwrap(),
        "hello from podman"
    );
}

#[test]
fn skopeo_copy_inspect_delete() {
    if !have_program("skopeo", "skopeo") || !have_program("podman", "podman") {
        return;
    }
    let (root, conf, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    // Deletes are off unless granted.
    let wharf = WharfProcess::spawn_config(
        conf.path(),
        &format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n[registry]\ndelete = true\n",
            root.path().display().to_string()
        ),
    );
    import_image(work.path(), "localhost/e2e/tool:1", "hello from skopeo");
    let archive = work.path().join("image.tar");
    run(podman(work.path())
        .args(["save", "--format", "oci-archive", "-o"])
        .arg(&archive)
        .arg("localhost/e2e/tool:1"));

    let src = format!("oci-archive:{}", archive.display());
    let first = format!("docker://{}/team/tool:1", wharf.addr);
    let second = format!("docker://{}/mirror/tool:2", wharf.addr);
    run(Command::new("skopeo").args(["copy", "--dest-tls-verify=false", &src, &first]));
    run(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &first,
        &second,
    ]));

    let out = run(Command::new("skopeo").args(["inspect", "--tls-verify=false", &second]));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["Name"], format!("{}/mirror/tool", wharf.addr));
    assert_eq!(info["Layers"].as_array().unwrap().len(), 1);
    let out = run(Command::new("skopeo").args(["inspect", "--tls-verify=false", &first]));
    let first_info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        first_info["Digest"], info["Digest"],
        "the copy is byte-identical"
    );

    // Copy back out to a directory and check the layer bytes against their digests.
    let out_dir = work.path().join("out");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", &second])
        .arg(format!("dir:{}", out_dir.display())));
    for layer in info["Layers"].as_array().unwrap() {
        let hex = layer.as_str().unwrap().trim_start_matches("sha256:");
        let bytes = std::fs::read(out_dir.join(hex)).unwrap();
        assert_eq!(crate::support::sha256(&bytes), layer.as_str().unwrap());
    }

    run(Command::new("skopeo").args(["delete", "--tls-verify=false", &second]));
    let gone = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &second])
        .output()
        .unwrap();
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("manifest unknown"));
    run(Command::new("skopeo").args(["inspect", "--tls-verify=false", &first]));
}

/// The ORAS project's Python client (oras-py, `pip install oras`): push a file artifact,
/// pull it back.
#[test]
fn oras_push_then_pull() {
    let has_oras = Command::new("python3")
        .args(["-c", "import oras.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_oras {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install oras-py: pip install oras"
        );
        eprintln!("SKIPPED: oras-py not found; install it with `pip install oras`");
        return;
    }
    let (root, conf, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let wharf = WharfProcess::spawn(root.path(), conf.path());
    std::fs::write(work.path().join("note.txt"), "artifact payload").unwrap();
    let script = r#"
import os, sys, oras.client
c = oras.client.OrasClient(insecure=True)
target = sys.argv[1]
r = c.push(files=["note.txt"], target=target)
assert r.status_code == 201, r.status_code
files = c.pull(target=target, outdir="out")
print(open(files[0]).read(), end="")
"#;
    let out = run(Command::new("python3").current_dir(work.path()).args([
        "-c",
        script,
        &format!("{}/team/artifact:1", wharf.addr),
    ]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "artifact payload");
}
