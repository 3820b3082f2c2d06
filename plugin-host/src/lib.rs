//! The WebAssembly plugin host (DESIGN.md, "Plugins"): one wasmtime engine with a pooling
//! allocator, components compiled and pre-instantiated on load, a fresh instance per call
//! (spares made ahead of need on a background thread), limits per plugin, manifests, building
//! and testing components, and the set of loaded plugins the decision pipeline consults.
//!
//! The WIT contract's generated bindings are private to this crate: callers speak
//! `warden_core`'s types, and [`convert`](crate) is the one file that translates. This crate
//! depends on `warden-core` (and the SDK, for fixtures), never on the store or the service.

pub mod build;
mod convert;
pub mod fixture;
pub mod manifest;
mod registry;
mod reset;
pub mod runtime;
pub mod scaffold;
pub mod spares;

pub use registry::{Judged, PluginHost, read_dir};
pub use reset::MemoryReset;
