//! An image uploaded on one gateway is downloaded, and thumbnailed, by a user of another
//! gateway who shares a room with the uploader; a gateway that shares none gets nothing.

use bytes::Bytes;
use rand::{Rng, SeedableRng};

use super::*;
use crate::service::media::Upload;

/// A noisy PNG (does not compress: several chunks on the wire).
fn noisy_png(width: u32, height: u32) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let img = image::RgbImage::from_fn(width, height, |_, _| image::Rgb(rng.gen()));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

/// GET `uri` on gateway `i`: status, content type and bytes.
async fn get(net: &Net, i: usize, uri: &str, token: &str) -> (StatusCode, String, Vec<u8>) {
    let req = Request::builder()
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(HttpBody::empty())
        .expect("request");
    let res = net.nodes[i]
        .app
        .clone()
        .oneshot(req)
        .await
        .expect("infallible");
    let status = res.status();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, ct, body_bytes(res).await.to_vec())
}

#[tokio::test]
async fn an_image_from_another_gateway_downloads_and_thumbnails() {
    let net = Net::new(3);
    net.hub.record();
    let (alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let (_carol, ct) = net.user(2, "carol").await;
    let room = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;
    net.join_and_wait(1, &bob, &bt, &room).await;

    let png = noisy_png(320, 200);
    assert!(png.len() > 3 * super::super::media::CHUNK, "several chunks");
    let id = net.nodes[0]
        .gw
        .media
        .create(
            &alice,
            Upload {
                content_type: Some("image/png".into()),
                filename: Some("noise.png".into()),
                data: Bytes::from(png.clone()),
            },
        )
        .await
        .expect("upload");
    let a = net.name(0).to_owned();
    let uri = format!("/_matrix/client/v1/media/download/{a}/{id}");

    let (status, content_type, bytes) = get(&net, 1, &uri, &bt).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "image/png");
    assert_eq!(bytes, png, "the same bytes");
    let (status, content_type, thumb) = get(
        &net,
        1,
        &format!("/_matrix/client/v1/media/thumbnail/{a}/{id}?width=32&height=32&method=crop"),
        &bt,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("image/"), "{content_type}");
    assert!(
        !thumb.is_empty() && thumb.len() < png.len(),
        "{} of {}",
        thumb.len(),
        png.len()
    );

    // No piece of the file crossed the hub readable: not its bytes, nor their base64 at any
    // alignment (chunks travel under keys used once per request).
    let piece = &png[3000..3048];
    let mut needles = vec![piece.to_vec()];
    for shift in 0..3 {
        let b64 = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &piece[shift..shift + 45],
        );
        needles.push(b64.into_bytes());
    }
    for message in net.hub.recorded() {
        for needle in &needles {
            assert!(
                !message
                    .windows(needle.len())
                    .any(|w| w == needle.as_slice()),
                "a piece of the file crossed in the clear"
            );
        }
    }

    // A second download is served from the cache: nothing more crosses the network.
    let before = net.hub.delivered();
    assert_eq!(get(&net, 1, &uri, &bt).await.2, png);
    assert_eq!(net.hub.delivered(), before);

    // Carol's gateway shares no room with alice: the file does not exist for it.
    let (status, _, _) = get(&net, 2, &uri, &ct).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(
            &net,
            1,
            &format!("/_matrix/client/v1/media/download/{a}/nosuchmedia"),
            &bt
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_one_mebibyte_file_crosses_in_chunks() {
    let net = Net::new(2);
    let (alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let room = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;
    net.join_and_wait(1, &bob, &bt, &room).await;
    let file: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let id = net.nodes[0]
        .gw
        .media
        .create(
            &alice,
            Upload {
                content_type: None,
                filename: None,
                data: Bytes::from(file.clone()),
            },
        )
        .await
        .expect("upload");
    let (status, _, bytes) = get(
        &net,
        1,
        &format!("/_matrix/client/v1/media/download/{}/{id}", net.name(0)),
        &bt,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes == file, "{} of {}", bytes.len(), file.len());
}
