//! The broker's protocol-neutral services: what the native and Kafka listeners
//! (sibling adapters) call after decoding a request, in the broker's own types.
//! Nothing here names a type generated for either protocol.

pub mod error;
pub mod fetch;
pub mod groups;
pub mod produce;
pub mod topics;
