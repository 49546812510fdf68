//! `mixgate config check FILE` as an operator runs it: the documented example configs pass
//! with their role detected; a wrong value fails with exit status 1 and a message naming the
//! file and the key; nothing is started or created.

use std::{path::PathBuf, process::Command};

use mixgate_tests::mixgate_binary;

fn check(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(mixgate_binary())
        .args(["config", "check"])
        .args(args)
        .output()
        .expect("run mixgate config check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn example_configs_pass_and_bad_ones_name_file_and_key() {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config");
    for (file, role) in [
        ("gateway.toml", "gateway"),
        ("mixnode.toml", "mixnode"),
        ("provider.toml", "provider"),
        ("directory.toml", "directory"),
    ] {
        let path = examples.join(file);
        let (ok, stdout, stderr) = check(&[&path.display().to_string()]);
        assert!(ok, "{file}: {stderr}");
        assert!(stdout.contains(&format!("ok ({role} config)")), "{stdout}");
    }
    let dir = tempfile::tempdir().expect("temp");
    let bad = dir.path().join("provider.toml");
    let text = std::fs::read_to_string(examples.join("provider.toml"))
        .expect("read")
        .replace("threshold = 1", "threshold = 5");
    std::fs::write(&bad, text).expect("write");
    let (ok, _, stderr) = check(&[&bad.display().to_string()]);
    assert!(!ok);
    assert!(
        stderr.contains(&bad.display().to_string()) && stderr.contains("threshold"),
        "{stderr}"
    );
    let (ok, _, stderr) = check(&[
        &examples.join("mixnode.toml").display().to_string(),
        "--role",
        "provider",
    ]);
    assert!(!ok);
    assert!(stderr.contains("role"), "{stderr}");
    let (ok, _, stderr) = check(&[&dir.path().join("missing.toml").display().to_string()]);
    assert!(!ok);
    assert!(stderr.contains("missing.toml"), "{stderr}");
}
