//! The Hydrogen web client in headless Chromium against a real gateway: log in, open a room,
//! send a message, see a live message from another user. The browser side is
//! `tests/browser/run.mjs` (see its header); this test starts the gateway and runs it.
//!
//! Needs `npm ci` in tests/browser and Chromium at /usr/bin/chromium (`.ci/run` installs both).
//! Set MIXGATE_SKIP_BROWSER=1 to skip it on a machine without them.

use std::{path::PathBuf, process::Stdio, time::Duration};

use mixgate_tests::TestGateway;

#[tokio::test]
async fn hydrogen_chats_through_the_gateway() {
    if std::env::var_os("MIXGATE_SKIP_BROWSER").is_some() {
        eprintln!("SKIPPED: MIXGATE_SKIP_BROWSER is set");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        dir.join("node_modules/hydrogen-view-sdk").is_dir(),
        "run `npm ci` in {} first (or set MIXGATE_SKIP_BROWSER=1)",
        dir.display()
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: `apt-get install chromium` (or set CHROMIUM)"
    );
    if !dir.join("dist/app.js").is_file() {
        let status = tokio::process::Command::new("node")
            .arg("build.mjs")
            .current_dir(&dir)
            .status()
            .await
            .expect("run node build.mjs");
        assert!(status.success(), "node build.mjs failed");
    }
    let gw = TestGateway::start().await;
    let child = tokio::process::Command::new("node")
        .arg("run.mjs")
        .current_dir(&dir)
        .env("MIXGATE_URL", gw.url())
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node run.mjs");
    let out = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .expect("browser test did not finish in 240 s")
        .expect("browser test output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed ({}); screenshots and console in {}/out\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status,
        dir.display()
    );
    println!("{stdout}");
}
