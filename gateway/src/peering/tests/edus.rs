//! The EDU sender serves its destinations side by side.

use super::*;

/// A to-device message for a gateway that does not answer (no Olm session yet, so its
/// one-time key claim waits 5 + 7 s and fails) must not hold up the one for a gateway that
/// is online, sent in the same request. The silent gateway sorts first, so a sender that
/// served destinations one after the other would make the online one wait for the claim.
#[tokio::test]
async fn a_silent_gateway_does_not_hold_up_to_device_messages_for_others() {
    let net = Net::new(2);
    let (_alice, at) = net.user(0, "alice").await;
    let (bob, bob_device, bt) = net.user_device(1, "bob").await;
    // On the network, but nothing reads its inbox: requests to it go unanswered.
    let silent = ServerName::parse("0.example").expect("name");
    let (_silent_net, _silent_inbox) = net.hub.attach(&silent);
    assert!(*silent < *net.name(1), "the silent gateway sorts first");

    net.ok(
        0,
        Method::PUT,
        "/_matrix/client/v3/sendToDevice/m.room_key_request/side-by-side",
        &at,
        Some(json!({
            "messages": {
                format!("@carol:{silent}"): {"CAROLDEVICE": {"secret": "for carol"}},
                bob.as_str(): {&bob_device: {"secret": "for bob"}},
            }
        })),
    )
    .await;
    until_to_device(&net, 1, &bt, "to-device on the online gateway", |m| {
        m["content"]["secret"] == "for bob"
    })
    .await;
    assert_eq!(
        net.nodes[0].stats.drops_of("olm_claim_failed"),
        0,
        "bob's message arrived while the claim to the silent gateway was still waiting"
    );
}
