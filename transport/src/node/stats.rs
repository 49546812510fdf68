//! Counters kept by mix nodes and providers (no per-packet logs; counters only).

crate::counters!(
    /// Counters of a mix node or provider.
    NodeStats {
        /// Packets received on links.
        received,
        /// Packets forwarded to a next hop.
        relayed,
        /// Packets submitted by gateways and injected towards the first mix.
        submitted,
        /// Packets stored in a mailbox.
        stored,
        /// Acknowledgements sent after storing.
        acks_sent,
        /// Own loop-cover packets sent.
        loops_sent,
        /// Own loop-cover packets that came back.
        loops_received,
        /// Dropped: wrong length or version, bad routing command.
        dropped_malformed,
        /// Dropped: header MAC failed (forged, corrupted, wrong key).
        dropped_bad_mac,
        /// Dropped: replay tag already seen this epoch.
        dropped_replay,
        /// Dropped: payload integrity failed at the last hop (tagging).
        dropped_tagged,
        /// Dropped: next hop not in the directory.
        dropped_unknown_hop,
        /// Dropped: a queue was full or a peer unreachable.
        dropped_overload,
        /// Dropped: the sending peer's own ingress queue was full (it sends faster than its
        /// share of the node; other peers are unaffected).
        dropped_peer_full,
        /// Dropped: mailbox quota exceeded (no acknowledgement sent).
        dropped_quota,
        /// Stored packets that expired before being polled.
        expired,
        /// Mailbox packets handed out again because neither an acknowledgement nor a receipt
        /// came within their lease (a lost poll answer, a lost poll, a slow gateway).
        offered_again,
        /// Poll requests answered.
        polls_answered,
        /// Incoming links refused (handshake failure, unknown key, timeout).
        links_refused,
        /// Links that ended with an error (garbage, stall, reset).
        link_errors,
        /// Directory documents refused (forged, expired, wrong version or parameters).
        bad_documents,
    }
);
