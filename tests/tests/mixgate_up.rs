//! `mixgate up` as a user runs it: a whole local network in one process. Three gateways come
//! up and answer `/versions`, users register on each, and the network file it writes lets a
//! separately started `mixgate gateway` join the mixnet and publish its descriptor.

mod common;

use std::{collections::HashSet, time::Duration};

use common::register;
use gateway::{config::NetworkConfig, identity::key_for_server_name};
use matrix_sdk::ruma::ServerName;
use mixgate_tests::{network_table, within, Options, TestGateway, TestNetwork};

/// Fetches the directory document the network file points at until it lists every gateway in
/// `names` (bounded), and returns whether it did.
async fn directory_lists(network: &NetworkConfig, names: &[String]) -> bool {
    let authorities: Vec<[u8; 32]> = network.authorities.iter().map(|k| k.0).collect();
    let keys: Vec<[u8; 32]> = names
        .iter()
        .map(|n| {
            let name = ServerName::parse(n).expect("server name");
            key_for_server_name(&name).expect("a key-derived server name")
        })
        .collect();
    for _ in 0..100 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        if let Ok(doc) = transport::directory::fetch_verified(
            &network.directories,
            &authorities,
            network.threshold(),
            now,
        )
        .await
        {
            if keys.iter().all(|k| doc.gateway(k).is_some()) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_three_gateways_and_a_fourth_joins_from_the_network_file() {
    let net = TestNetwork::start(3).await;
    assert_eq!(net.gateways.len(), 3, "three gateways in the ready line");
    let names: HashSet<_> = net.gateways.iter().map(|g| g.server_name.clone()).collect();
    assert_eq!(names.len(), 3, "distinct server names");

    let http = reqwest::Client::new();
    for (i, gw) in net.gateways.iter().enumerate() {
        let versions = within(
            20,
            "/versions",
            http.get(format!("{}/_matrix/client/versions", gw.url))
                .send(),
        )
        .await
        .expect("/versions answers");
        assert!(versions.status().is_success(), "gateway {i}: /versions");
        assert_eq!(gw.server_name.len(), 52, "a key-derived server name");
        // Open registration; the user lives on that gateway's server name.
        let user = register(&gw.url, &format!("user{i}"), "password-of-a-user").await;
        let id = user.user_id().expect("user id");
        assert_eq!(id.server_name().as_str(), gw.server_name);
    }

    // The network file is what a separately started gateway needs.
    let network = NetworkConfig::from_file(&net.network_file).expect("network file parses");
    let joined = TestGateway::start_with(Options {
        config: format!(
            "auth_attempts_per_minute = 10000\n{}",
            network_table(&net.network_file)
        ),
        ..Options::default()
    })
    .await;
    let dave = register(&joined.url(), "dave", "password-of-dave").await;
    let dave_server = dave
        .user_id()
        .expect("dave's id")
        .server_name()
        .as_str()
        .to_owned();
    assert!(!names.contains(&dave_server));

    // Every gateway, the separate one included, published its descriptor.
    let mut all: Vec<String> = net.gateways.iter().map(|g| g.server_name.clone()).collect();
    all.push(dave_server);
    assert!(
        directory_lists(&network, &all).await,
        "the directory never listed all four gateways\n--- separate gateway ---\n{}",
        joined.log_tail(4000)
    );

    // A restart on the same folder keeps every server name (keys live under --data).
    let before: Vec<_> = net.gateways.iter().map(|g| g.server_name.clone()).collect();
    let mut net = net;
    net.restart().await;
    let after: Vec<_> = net.gateways.iter().map(|g| g.server_name.clone()).collect();
    assert_eq!(after, before, "same server names after a restart");
}
