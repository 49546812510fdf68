//! The directory: a signed document per epoch listing nodes, layers, keys, addresses and
//! traffic parameters; the authority service; registration and fetching.

pub mod consensus;
mod document;
pub mod hexser;
mod server;

pub use document::*;
pub use server::{
    fetch_document, fetch_verified, majority, publish_gateway, register, run_directory,
    DirectoryConfig, DirectoryGauges, DirectoryProbe, DirectoryServer, DirectoryStats,
    PeerAuthority,
};

#[cfg(test)]
mod tests;
