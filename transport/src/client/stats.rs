//! Client counters.

crate::counters!(
    /// Counters of a client.
    ClientStats {
        /// Real packets sent (fragments and replies).
        sent_real,
        /// Cover packets sent on the Poisson stream.
        sent_cover,
        /// Loop-cover packets sent on the loop stream.
        sent_loops,
        /// Mailbox polls sent.
        polls,
        /// Frames written to the provider link (all kinds).
        frames_out,
        /// Acknowledgements received.
        acks,
        /// Retransmissions.
        retransmits,
        /// Messages delivered (sender side).
        delivered,
        /// Messages failed (sender side).
        failed,
        /// Messages received (receiver side, after duplicate suppression).
        received,
        /// Fragments of incoming messages accepted for reassembly.
        fragments,
        /// Duplicate fragments or messages suppressed.
        duplicates,
        /// Loop-cover packets that came back.
        loops_received,
        /// Received packets that failed to open or parse (tagged, malformed).
        dropped_bad,
        /// Link reconnections.
        reconnects,
        /// Directory documents refused (forged, expired, incomplete).
        bad_documents,
    }
);
