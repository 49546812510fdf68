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
        /// Frames dropped because the provider link's queue was full (a stalled or
        /// reconnecting link); fragments come again after their acknowledgement timeout,
        /// reply-block packets (responses, confirmations) do not.
        frames_dropped,
        /// Acknowledgements received.
        acks,
        /// Fragment retransmissions (a SURB-ACK did not come in time).
        retransmits,
        /// Whole-message retransmissions (the end-to-end confirmation did not come in time).
        resends,
        /// Fragments whose packet could not be built (no route to the recipient's provider
        /// in the current document); each counts as an attempt and waits like a lost one.
        build_failures,
        /// End-to-end confirmations received (sender side).
        confirmations,
        /// End-to-end confirmations queued (receiver side, including repeats for duplicates).
        confirms_sent,
        /// Messages delivered: confirmed by the recipient (sender side).
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
        /// Replies on reply blocks already done with (a confirmation of an earlier
        /// transmission, a response fragment after the response completed): dropped quietly.
        late_replies,
        /// Received packets that failed to open or parse (tagged, malformed).
        dropped_bad,
        /// Link reconnections.
        reconnects,
        /// Directory documents refused (forged, expired, incomplete).
        bad_documents,
    }
);
