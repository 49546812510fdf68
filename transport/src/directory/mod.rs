//! The directory: a signed document per epoch listing nodes, layers, keys, addresses and
//! traffic parameters; the authority service; registration and fetching.

mod document;
pub mod hexser;
mod server;

pub use document::*;
pub use server::{
    fetch_document, publish_gateway, register, run_directory, DirectoryConfig, DirectoryServer,
    DirectoryStats,
};

#[cfg(test)]
mod tests;
