//! Noise links: IK handshake with static keys from the directory, fixed-size encrypted frames,
//! periodic rekeying and stall timeouts. There is no plaintext mode.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use snow::TransportState;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::fault::{FaultState, LinkFaults};
use super::frame::{Frame, FrameError, FrameKind, FRAME_PLAIN, FRAME_WIRE};
use super::ml_kem::noise_builder;

/// The Noise protocol every link speaks (classical).
pub const NOISE_PARAMS: &str = "Noise_IK_25519_AESGCM_SHA256";
/// The hybrid post-quantum protocol, when the directory document sets `pq_links`: IK with
/// the KEM extension (`hfs`), X25519 and ML-KEM-1024 (FIPS 203) together, so the link keys
/// stay secret unless *both* are broken. snow cannot parse this name; build it with
/// [`super::noise_params`] / [`super::noise_builder`].
pub const NOISE_PARAMS_PQ: &str = "Noise_IKhfs_25519+MLKEM1024_AESGCM_SHA256";
const PROLOGUE: &[u8] = b"mixgate link v1";
const MSG1_LEN: usize = 32 + 48 + 16;
const MSG2_LEN: usize = 32 + 16;
/// ML-KEM-1024 public key and ciphertext sizes.
const KEM_PK: usize = super::ml_kem::ML_KEM_1024_PUB;
const KEM_CT: usize = super::ml_kem::ML_KEM_1024_CT;
/// IKhfs message 1 adds the KEM ephemeral public key (`e1`, encrypted: + tag).
const MSG1_LEN_PQ: usize = MSG1_LEN + KEM_PK + 16;
/// Message 2 adds the KEM ciphertext (`ekem1`, encrypted: + tag).
const MSG2_LEN_PQ: usize = MSG2_LEN + KEM_CT + 16;

/// Handshake message lengths for the classical or the hybrid pattern.
pub(super) fn msg_lens(pq: bool) -> (usize, usize) {
    if pq {
        (MSG1_LEN_PQ, MSG2_LEN_PQ)
    } else {
        (MSG1_LEN, MSG2_LEN)
    }
}

/// Why a link failed.
#[derive(Debug, Error)]
pub enum LinkError {
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The peer took too long (handshake, or stalled in the middle of a frame).
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// Handshake or decryption failure (garbage, wrong key, tampering).
    #[error("noise: {0}")]
    Noise(String),
    /// The decrypted frame was not valid.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// The peer's static key is not authorised.
    #[error("peer not authorised")]
    Unauthorized,
    /// A fault plan ([`LinkConfig::faults`]) closed the link.
    #[error("link reset by fault injection")]
    InjectedReset,
}

impl From<snow::Error> for LinkError {
    fn from(e: snow::Error) -> Self {
        LinkError::Noise(e.to_string())
    }
}

/// Link timing parameters.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Limit for the whole handshake.
    pub handshake_timeout: Duration,
    /// Limit for receiving the rest of a frame once its first byte arrived.
    pub frame_timeout: Duration,
    /// Limit for waiting for the next frame (cover traffic keeps healthy links busy).
    pub idle_timeout: Duration,
    /// Rekey after this many frames sent...
    pub rekey_frames: u64,
    /// ...or after this much time, whichever comes first.
    pub rekey_interval: Duration,
    /// Faults to inject into data frames (tests and measurements; `None` in production).
    pub faults: Option<Arc<LinkFaults>>,
    /// Speak the hybrid post-quantum pattern ([`NOISE_PARAMS_PQ`]). Nodes and clients set it
    /// from the directory document's `pq_links`, so both ends of every link agree.
    pub pq: bool,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            handshake_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(120),
            rekey_frames: 1 << 16,
            rekey_interval: Duration::from_secs(600),
            faults: None,
            pq: false,
        }
    }
}

/// A static X25519 key pair for links.
#[derive(Clone)]
pub struct LinkKeypair {
    /// Secret key bytes.
    pub secret: [u8; 32],
    /// Public key bytes.
    pub public: [u8; 32],
}

impl std::fmt::Debug for LinkKeypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LinkKeypair({})",
            data_encoding::HEXLOWER.encode(&self.public)
        )
    }
}

impl LinkKeypair {
    /// A fresh random key pair.
    pub fn random() -> Self {
        let k = crate::packet::SecretKey::random();
        LinkKeypair {
            secret: k.to_bytes(),
            public: k.public(),
        }
    }
}

/// The sending half of a link.
pub struct LinkSender {
    w: OwnedWriteHalf,
    state: Arc<Mutex<TransportState>>,
    cfg: LinkConfig,
    since_rekey: u64,
    last_rekey: Instant,
    out: Vec<u8>,
    faults: Option<FaultState>,
    held: Option<Frame>,
}

/// The receiving half of a link.
pub struct LinkReceiver {
    r: BufReader<OwnedReadHalf>,
    state: Arc<Mutex<TransportState>>,
    cfg: LinkConfig,
    buf: Box<[u8; FRAME_WIRE]>,
    faults: Option<FaultState>,
    held: Option<Frame>,
    pending: std::collections::VecDeque<Frame>,
}

/// Whether fault injection may touch a frame of this kind (never the link's own control).
fn faultable(kind: FrameKind) -> bool {
    !matches!(kind, FrameKind::Rekey | FrameKind::Padding)
}

fn lock(s: &Mutex<TransportState>) -> std::sync::MutexGuard<'_, TransportState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Encrypted frames a sender buffers before writing them out in one system call.
const BATCH_FRAMES: usize = 16;

impl LinkSender {
    /// Encrypts and sends one frame (and a rekey frame first when one is due), together with
    /// any frames [`LinkSender::feed`] buffered before it.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), LinkError> {
        self.feed(frame).await?;
        self.flush().await
    }

    /// Encrypts one frame into the send buffer; the buffer is written out when it holds
    /// several frames or on [`LinkSender::flush`]. For a sender with a queue of frames:
    /// feed them, then flush, and the kernel sees one write instead of one per frame.
    pub async fn feed(&mut self, frame: &Frame) -> Result<(), LinkError> {
        let plan = self.cfg.faults.clone();
        if let (Some(plan), Some(st), true) = (plan, self.faults.as_mut(), faultable(frame.kind)) {
            let d = st.decide(&plan);
            if d.reset {
                let _ = self.w.shutdown().await;
                return Err(LinkError::InjectedReset);
            }
            if d.drop {
                return Ok(());
            }
            if let Some(t) = d.delay {
                self.flush().await?;
                tokio::time::sleep(t).await;
            }
            if d.hold && self.held.is_none() {
                self.held = Some(frame.clone());
                return Ok(());
            }
            self.push(frame)?;
            if d.duplicate {
                self.push(frame)?;
            }
            if let Some(h) = self.held.take() {
                self.push(&h)?;
            }
        } else {
            self.push(frame)?;
        }
        if self.out.len() >= BATCH_FRAMES * FRAME_WIRE {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes out every buffered frame.
    pub async fn flush(&mut self) -> Result<(), LinkError> {
        if self.out.is_empty() {
            return Ok(());
        }
        // A peer that stops reading must not hold this task forever.
        let r = match timeout(self.cfg.frame_timeout, self.w.write_all(&self.out)).await {
            Err(_) => Err(LinkError::Timeout("peer not reading")),
            Ok(r) => Ok(r?),
        };
        self.out.clear();
        r
    }

    /// Encrypts a frame into the buffer, preceded by a rekey frame when one is due.
    fn push(&mut self, frame: &Frame) -> Result<(), LinkError> {
        if self.since_rekey >= self.cfg.rekey_frames
            || self.last_rekey.elapsed() >= self.cfg.rekey_interval
        {
            self.encrypt(&Frame::new(FrameKind::Rekey, &[]))?;
            lock(&self.state).rekey_outgoing();
            self.since_rekey = 0;
            self.last_rekey = Instant::now();
        }
        self.encrypt(frame)?;
        self.since_rekey += 1;
        Ok(())
    }

    /// Writes raw bytes, bypassing encryption (tests of the receiver's defences only).
    #[cfg(test)]
    pub(crate) async fn raw_write_for_test(&mut self, b: &[u8]) {
        let _ = self.w.write_all(b).await;
    }

    fn encrypt(&mut self, frame: &Frame) -> Result<(), LinkError> {
        let mut plain = [0u8; FRAME_PLAIN];
        frame.encode(&mut plain);
        let at = self.out.len();
        self.out.resize(at + FRAME_WIRE, 0);
        match lock(&self.state).write_message(&plain, &mut self.out[at..]) {
            Ok(n) => {
                debug_assert_eq!(n, FRAME_WIRE);
                Ok(())
            }
            Err(e) => {
                self.out.truncate(at);
                Err(e.into())
            }
        }
    }
}

impl LinkReceiver {
    /// Receives the next non-control frame. Rekey frames are handled here.
    pub async fn recv(&mut self) -> Result<Frame, LinkError> {
        if let Some(f) = self.pending.pop_front() {
            return Ok(f);
        }
        loop {
            let f = self.recv_now().await?;
            let plan = self.cfg.faults.clone();
            let (Some(plan), Some(st)) = (plan, self.faults.as_mut()) else {
                return Ok(f);
            };
            if !faultable(f.kind) {
                return Ok(f);
            }
            let d = st.decide(&plan);
            if d.reset {
                return Err(LinkError::InjectedReset);
            }
            if d.drop {
                continue;
            }
            if let Some(t) = d.delay {
                tokio::time::sleep(t).await;
            }
            if d.hold && self.held.is_none() {
                self.held = Some(f);
                continue;
            }
            if d.duplicate {
                self.pending.push_back(f.clone());
            }
            if let Some(h) = self.held.take() {
                self.pending.push_back(h);
            }
            return Ok(f);
        }
    }

    async fn recv_now(&mut self) -> Result<Frame, LinkError> {
        loop {
            match timeout(self.cfg.idle_timeout, self.r.read_exact(&mut self.buf[..1])).await {
                Err(_) => return Err(LinkError::Timeout("idle")),
                Ok(r) => {
                    r?;
                }
            }
            match timeout(
                self.cfg.frame_timeout,
                self.r.read_exact(&mut self.buf[1..]),
            )
            .await
            {
                Err(_) => return Err(LinkError::Timeout("stalled mid-frame")),
                Ok(r) => {
                    r?;
                }
            }
            let mut plain = [0u8; FRAME_PLAIN];
            let n = lock(&self.state).read_message(&self.buf[..], &mut plain)?;
            let f = Frame::decode(&plain[..n])?;
            match f.kind {
                FrameKind::Rekey => lock(&self.state).rekey_incoming(),
                FrameKind::Padding => {}
                _ => return Ok(f),
            }
        }
    }
}

fn split(stream: TcpStream, state: TransportState, cfg: &LinkConfig) -> (LinkSender, LinkReceiver) {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let state = Arc::new(Mutex::new(state));
    let faults = |inbound| {
        cfg.faults
            .as_deref()
            .and_then(|p| FaultState::for_link(p, inbound))
    };
    (
        LinkSender {
            w,
            state: state.clone(),
            cfg: cfg.clone(),
            since_rekey: 0,
            last_rekey: Instant::now(),
            out: Vec::with_capacity(BATCH_FRAMES * FRAME_WIRE + 2 * FRAME_WIRE),
            faults: faults(false),
            held: None,
        },
        LinkReceiver {
            r: BufReader::with_capacity(BATCH_FRAMES * FRAME_WIRE, r),
            state,
            cfg: cfg.clone(),
            buf: Box::new([0u8; FRAME_WIRE]),
            faults: faults(true),
            held: None,
            pending: std::collections::VecDeque::new(),
        },
    )
}

/// Opens a link to a peer whose static key `remote` comes from the directory.
pub async fn connect(
    mut stream: TcpStream,
    local: &LinkKeypair,
    remote: &[u8; 32],
    cfg: &LinkConfig,
) -> Result<(LinkSender, LinkReceiver), LinkError> {
    let (l1, l2) = msg_lens(cfg.pq);
    let fut = async {
        let mut hs = noise_builder(cfg.pq)
            .local_private_key(&local.secret)?
            .remote_public_key(remote)?
            .prologue(PROLOGUE)?
            .build_initiator()?;
        let mut m1 = vec![0u8; l1];
        let n = hs.write_message(&[], &mut m1)?;
        if n != l1 {
            return Err(LinkError::Noise(format!(
                "handshake message 1 is {n} bytes"
            )));
        }
        stream.write_all(&m1).await?;
        let mut m2 = vec![0u8; l2];
        stream.read_exact(&mut m2).await?;
        let mut p = [0u8; 64];
        hs.read_message(&m2, &mut p)?;
        Ok::<_, LinkError>(hs.into_transport_mode()?)
    };
    let st = timeout(cfg.handshake_timeout, fut)
        .await
        .map_err(|_| LinkError::Timeout("handshake"))??;
    Ok(split(stream, st, cfg))
}

/// Accepts a link; `authorize` decides whether the initiator's static key may connect.
/// Returns the peer's static key and the two halves.
pub async fn accept(
    mut stream: TcpStream,
    local: &LinkKeypair,
    authorize: impl Fn(&[u8; 32]) -> bool,
    cfg: &LinkConfig,
) -> Result<([u8; 32], LinkSender, LinkReceiver), LinkError> {
    let (l1, l2) = msg_lens(cfg.pq);
    let fut = async {
        let mut hs = noise_builder(cfg.pq)
            .local_private_key(&local.secret)?
            .prologue(PROLOGUE)?
            .build_responder()?;
        let mut m1 = vec![0u8; l1];
        stream.read_exact(&mut m1).await?;
        let mut p = [0u8; 64];
        hs.read_message(&m1, &mut p)?;
        let mut peer = [0u8; 32];
        match hs.get_remote_static() {
            Some(s) if s.len() == 32 => peer.copy_from_slice(s),
            _ => return Err(LinkError::Unauthorized),
        }
        if !authorize(&peer) {
            return Err(LinkError::Unauthorized);
        }
        let mut m2 = vec![0u8; l2];
        let n = hs.write_message(&[], &mut m2)?;
        if n != l2 {
            return Err(LinkError::Noise(format!(
                "handshake message 2 is {n} bytes"
            )));
        }
        stream.write_all(&m2).await?;
        Ok::<_, LinkError>((peer, hs.into_transport_mode()?))
    };
    let (peer, st) = timeout(cfg.handshake_timeout, fut)
        .await
        .map_err(|_| LinkError::Timeout("handshake"))??;
    let (s, r) = split(stream, st, cfg);
    Ok((peer, s, r))
}
