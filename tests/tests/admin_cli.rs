//! `mixgate admin` against a running gateway: with `--url` and an admin's token in
//! `--token-file` it creates users (admins too), resets passwords and makes registration
//! tokens through the admin API; a non-admin token is refused; without `--url` the locked
//! data folder is refused with a hint.

use std::process::Command;

use mixgate_tests::{mixgate_binary, Options, TestGateway};

fn admin(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(mixgate_binary())
        .arg("admin")
        .args(args)
        .output()
        .expect("run mixgate admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_work_on_a_running_gateway() {
    let dir = TestGateway::temp_dir();
    TestGateway::admin_in(
        dir.path(),
        &[
            "create-user",
            "root",
            "--password",
            "root-password",
            "--admin",
        ],
    );
    let data = dir.path().join("data").display().to_string();
    let gw = TestGateway::start_in(dir, Options::default()).await;
    let login = gw
        .http()
        .login("root", "root-password")
        .await
        .expect("login")
        .ok();
    let files = tempfile::tempdir().expect("temp");
    let token_file = files.path().join("admin.token");
    std::fs::write(&token_file, login["access_token"].as_str().expect("token")).expect("write");
    let url = gw.url();
    let tf = token_file.display().to_string();
    let remote = |task: &[&str]| {
        let mut args = vec!["--url", url.as_str(), "--token-file", tf.as_str()];
        args.extend_from_slice(task);
        admin(&args)
    };

    let (ok, out, err) = remote(&[
        "create-user",
        "dave",
        "--password",
        "daves-password",
        "--admin",
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("@dave:"), "{out}");
    let dave = gw
        .http()
        .login("dave", "daves-password")
        .await
        .expect("login");
    assert_eq!(dave.status, 200, "{:?}", dave.body);
    let (ok, _, err) = remote(&["create-user", "dave", "--password", "daves-password"]);
    assert!(!ok && err.contains("M_USER_IN_USE"), "{err}");

    let (ok, out, err) = remote(&["reset-password", "dave", "--password", "a-new-password"]);
    assert!(ok, "{err}");
    assert!(out.contains("@dave:"), "{out}");
    let old = gw
        .http()
        .login("dave", "daves-password")
        .await
        .expect("login");
    assert_eq!(old.status, 403, "the old password no longer works");
    let new = gw
        .http()
        .login("dave", "a-new-password")
        .await
        .expect("login");
    assert_eq!(new.status, 200);

    let (ok, token, err) = remote(&["create-registration-token", "--uses", "2"]);
    assert!(ok, "{err}");
    let root = gw
        .http()
        .with_token(login["access_token"].as_str().expect("token"));
    let shown = root
        .get(&format!("/_synapse/admin/v1/registration_tokens/{token}"))
        .await
        .expect("token details")
        .ok();
    assert_eq!(
        (shown["uses_allowed"].clone(), shown["completed"].clone()),
        (2.into(), 0.into())
    );

    // A non-admin's token is refused by the gateway.
    let user = gw.http().register_ok("erin", "erins-password").await;
    std::fs::write(&token_file, &user.access_token).expect("write");
    let (ok, _, err) = remote(&["create-registration-token"]);
    assert!(!ok && err.contains("M_FORBIDDEN"), "{err}");

    // Without --url the running gateway's locked data is refused, with a hint.
    let (ok, _, err) = admin(&["--data", &data, "create-registration-token"]);
    assert!(!ok);
    assert!(err.contains("--url"), "{err}");
}
