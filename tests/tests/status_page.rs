//! The status page of `mixgate up --metrics` in headless Chromium (`tests/browser/status.mjs`,
//! playwright-core; `.ci/run` installs Chromium and the node packages): it renders its charts
//! and tables from a live network, with no script error and no request outside the page; the
//! screenshot goes to `target/tmp/status-page.png` (the README's picture is one of these).
//! Set MIXGATE_SKIP_BROWSER=1 to skip it on a machine without Chromium.

use std::{path::PathBuf, process::Stdio, time::Duration};

use mixgate_tests::TestNetwork;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_in_chromium_without_errors() {
    if std::env::var_os("MIXGATE_SKIP_BROWSER").is_some() {
        eprintln!("SKIPPED: MIXGATE_SKIP_BROWSER is set");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "run `npm ci` in {} first (or set MIXGATE_SKIP_BROWSER=1)",
        dir.display()
    );
    let net = TestNetwork::start_with_metrics(2).await;
    let base = net.metrics.clone().expect("metrics URL");
    // Wait (bounded) for three samples, so every chart has a line.
    let mut html = String::new();
    for _ in 0..60 {
        html = reqwest::get(format!("{base}/"))
            .await
            .expect("GET /")
            .text()
            .await
            .expect("page");
        if !html.contains("data-samples=\"0\"")
            && !html.contains("data-samples=\"1\"")
            && !html.contains("data-samples=\"2\"")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(html.contains("<svg"), "{html}");
    for (i, gw) in net.gateways.iter().enumerate() {
        assert!(
            !html.contains(&gw.server_name),
            "gateway {i}'s server name is on the page"
        );
    }
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tmp/status-page.png");
    std::fs::create_dir_all(shot.parent().expect("folder")).expect("mkdir");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let child = tokio::process::Command::new("node")
        .arg("status.mjs")
        .current_dir(&dir)
        .env("STATUS_URL", format!("{base}/"))
        .env("SHOT", &shot)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node status.mjs");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("status.mjs did not finish in 120 s")
        .expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "status.mjs failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(report["status"], 200, "{report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert_eq!(
        report["charts"], 4,
        "packets, latency, node rates, queues: {report}"
    );
    assert!(report["polylines"].as_u64().unwrap_or(0) >= 6, "{report}");
    assert!(report["tables"].as_u64().unwrap_or(0) >= 3, "{report}");
    assert!(report["samples"].as_u64().unwrap_or(0) >= 3, "{report}");
    assert!(shot.is_file());
    println!("{report}");
}
