//! Node-to-node and client-to-provider links: Noise IK over TCP with fixed-size frames.

mod fault;
mod frame;
mod ml_kem;
mod noise;

pub use fault::{FaultSpec, LinkFaults};
pub use frame::{Frame, FrameError, FrameKind, FRAME_PLAIN, FRAME_WIRE};
pub use ml_kem::{noise_builder, noise_params, MlKem1024Kem, MlKemResolver};
pub use noise::{
    accept, connect, LinkConfig, LinkError, LinkKeypair, LinkReceiver, LinkSender, NOISE_PARAMS,
    NOISE_PARAMS_PQ,
};

#[cfg(test)]
mod tests;
