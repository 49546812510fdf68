//! The node's own loop cover.

use super::*;

/// Sends the node's own loop cover at the directory's rate, through every other layer and
/// back to itself.
pub(super) async fn loop_cover(inner: Arc<Inner>) {
    let mut rng = rand::rngs::StdRng::from_entropy();
    loop {
        let Some(doc) = inner.document() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let rate = doc.params.mix_loop_per_s;
        if rate <= 0.0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tokio::time::sleep(Duration::from_secs_f64(exp_sample(&mut rng, 1.0 / rate))).await;
        if let Some((first, p)) = build_loop(&inner, &doc, &mut rng) {
            NodeStats::inc(&inner.stats.loops_sent);
            inner.send_to(first, p);
        }
    }
}

fn build_loop(
    inner: &Inner,
    doc: &Document,
    rng: &mut rand::rngs::StdRng,
) -> Option<(NodeId, Packet)> {
    let me = doc.node(&inner.id)?;
    let mu_us = doc.params.mu_ms * 1000.0;
    let layers: Vec<Option<u8>> = match me.role {
        Role::Provider => vec![Some(1), Some(2), Some(3)],
        Role::Mix { layer } => (layer + 1..=3)
            .map(Some)
            .chain(std::iter::once(None))
            .chain((1..layer).map(Some))
            .collect(),
    };
    let mut route = vec![];
    for l in layers {
        let n = match l {
            Some(l) => doc.layer(l).choose(rng)?,
            None => doc.providers().choose(rng)?,
        };
        let delay = if l.is_some() {
            exp_sample(rng, mu_us) as u32
        } else {
            0
        };
        route.push(RouteHop {
            id: n.id,
            public: n.mix_key,
            delay_us: delay,
        });
    }
    route.push(RouteHop {
        id: me.id,
        public: me.mix_key,
        delay_us: 0,
    });
    let dummy = SecretKey::random().public();
    let p = create_forward(rng, &route, &inner.id, &dummy, None, &[]).ok()?;
    Some((route[0].id, p))
}
