//! Peering: the second front door, beside `api/`. Other gateways reach this gateway's rooms
//! through it, over the mixnet only; it calls the same services the CS API calls and is never
//! imported by them.

pub mod net;
