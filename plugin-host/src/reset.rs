//! How a used instance's memory goes back to its original contents before its pool slot is
//! used again. Every call runs in a fresh instance, so this happens once per plugin call, on
//! the calling thread when there are no spares: by copying, a third of the plugins' cost.
//!
//! Two ways, and which is cheaper depends on the machine (BENCHMARKS.md, "Which pages a call
//! dirtied"): copying the whole resident part back (a reference plugin's two 64 KiB pages),
//! or asking the kernel which pages the call wrote (`PAGEMAP_SCAN`, Linux 6.7) and copying only
//! those. On one machine the copy was 15% cheaper, on another the scan was; so by default the
//! engine measures both once per process and keeps the faster.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtime::{Enabled, Instance, Module, PoolingAllocationConfig, Store};

/// `[plugins] memory_reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryReset {
    /// Measure both at start and use the faster (the copy where the kernel cannot scan).
    #[default]
    Auto,
    /// Copy the whole resident part of a used memory back.
    Copy,
    /// Ask the kernel which pages a call wrote and copy only those (Linux 6.7 or later).
    Scan,
}

impl MemoryReset {
    /// The way to use: `Auto` measured (once per process), `Scan` refused where the kernel
    /// cannot scan.
    pub(crate) fn resolve(self) -> anyhow::Result<MemoryReset> {
        match self {
            MemoryReset::Copy => Ok(MemoryReset::Copy),
            MemoryReset::Scan if scan_available() => Ok(MemoryReset::Scan),
            MemoryReset::Scan => anyhow::bail!(
                "invalid [plugins] in the configuration: memory_reset is \"scan\", which needs PAGEMAP_SCAN (Linux 6.7 or later); this kernel has none (use \"copy\" or \"auto\")"
            ),
            MemoryReset::Auto => Ok(*MEASURED.get_or_init(|| match measure() {
                Ok(m) => {
                    tracing::info!(
                        copy_ns = m.copy.as_nanos() as u64,
                        scan_ns = m.scan.as_nanos() as u64,
                        chosen = ?m.faster(),
                        "plugin memory reset measured (median of an instance's round trip each way)"
                    );
                    m.faster()
                }
                Err(e) => {
                    tracing::debug!(error = %e, "plugin memory reset: no scan measured, copying");
                    MemoryReset::Copy
                }
            })),
        }
    }

    /// The engine's setting for this way.
    pub(crate) fn pagemap(self) -> Enabled {
        match self {
            MemoryReset::Scan => Enabled::Yes,
            MemoryReset::Copy | MemoryReset::Auto => Enabled::No,
        }
    }
}

static MEASURED: OnceLock<MemoryReset> = OnceLock::new();

fn scan_available() -> bool {
    PoolingAllocationConfig::is_pagemap_scan_available()
}

/// The median cost, each way, of instantiating a plugin-shaped module, writing to it as a
/// call does and tearing it down.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measured {
    pub(crate) copy: Duration,
    pub(crate) scan: Duration,
}

impl Measured {
    pub(crate) fn faster(self) -> MemoryReset {
        if self.scan < self.copy {
            MemoryReset::Scan
        } else {
            MemoryReset::Copy
        }
    }
}

/// Rounds of each way, alternating so that the machine's drift falls on both.
const ROUNDS: usize = 15;
/// Instances a round.
const BATCH: u32 = 32;

/// Measures both ways on engines configured as the runtime's (a few milliseconds).
pub(crate) fn measure() -> anyhow::Result<Measured> {
    anyhow::ensure!(scan_available(), "this kernel has no PAGEMAP_SCAN");
    let module_bytes = plugin_shaped_module();
    let mut ways = Vec::new();
    for way in [MemoryReset::Copy, MemoryReset::Scan] {
        let engine = crate::runtime::engine(way, 4)?;
        let module = Module::new(&engine, &module_bytes)?;
        ways.push((engine, module, Vec::with_capacity(ROUNDS)));
    }
    for round in 0..=ROUNDS {
        for (engine, module, times) in &mut ways {
            let started = Instant::now();
            for _ in 0..BATCH {
                let mut store = Store::new(engine, ());
                store.set_fuel(1_000_000)?;
                let instance = Instance::new(&mut store, module, &[])?;
                instance
                    .get_typed_func::<(), ()>(&mut store, "call")?
                    .call(&mut store, ())?;
            }
            // The first round warms the slots up and is not counted.
            if round > 0 {
                times.push(started.elapsed() / BATCH);
            }
        }
    }
    let mut medians = ways.into_iter().map(|(_, _, mut times)| {
        times.sort();
        times[times.len() / 2]
    });
    let (copy, scan) = (medians.next().unwrap(), medians.next().unwrap());
    Ok(Measured { copy, scan })
}

/// A core module laid out as an SDK plugin is (`warden plugin build`): two 64 KiB pages, the
/// first the shadow stack, the second holding 32 KiB of data then the arena; its one function
/// writes to the stack's top, the data and the arena, as a call does.
fn plugin_shaped_module() -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, ConstExpr, DataSection, ExportKind, ExportSection, Function, FunctionSection,
        MemArg, MemorySection, MemoryType, TypeSection,
    };
    const PAGE: i32 = 1 << 16;
    const DATA: i32 = 32 << 10;
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut functions = FunctionSection::new();
    functions.function(0);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 2,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut exports = ExportSection::new();
    exports.export("call", ExportKind::Func, 0);
    let mut call = Function::new([]);
    for address in [PAGE - 64, PAGE - 4096 - 64, PAGE + 512, PAGE + DATA + 256] {
        call.instructions()
            .i32_const(address)
            .i32_const(1)
            .i32_store(MemArg {
                offset: 0,
                align: 2,
                memory_index: 0,
            });
    }
    call.instructions().end();
    let mut code = CodeSection::new();
    code.function(&call);
    let mut data = DataSection::new();
    data.active(
        0,
        &ConstExpr::i32_const(PAGE),
        (0..DATA).map(|i| (i % 251) as u8 | 1),
    );
    let mut module = wasm_encoder::Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&memories)
        .section(&exports)
        .section(&code)
        .section(&data);
    module.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_measured_module_is_shaped_like_a_plugin() {
        let engine = crate::runtime::engine(MemoryReset::Copy, 1).unwrap();
        let module = Module::new(&engine, plugin_shaped_module()).unwrap();
        let mut store = Store::new(&engine, ());
        store.set_fuel(1_000_000).unwrap();
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let memory = instance.get_memory(&mut store, "memory");
        assert!(memory.is_none(), "the memory is not exported");
        instance
            .get_typed_func::<(), ()>(&mut store, "call")
            .unwrap()
            .call(&mut store, ())
            .unwrap();
        let left = store.get_fuel().unwrap();
        assert!(left < 1_000_000, "the call ran and used fuel");
    }

    #[test]
    fn auto_resolves_to_a_way_the_kernel_has() {
        let resolved = MemoryReset::Auto.resolve().unwrap();
        if scan_available() {
            assert!(matches!(resolved, MemoryReset::Copy | MemoryReset::Scan));
            let m = measure().unwrap();
            assert!(m.copy > Duration::ZERO && m.scan > Duration::ZERO, "{m:?}");
        } else {
            assert_eq!(resolved, MemoryReset::Copy);
            let err = MemoryReset::Scan.resolve().unwrap_err().to_string();
            assert!(err.contains("memory_reset is \"scan\""), "{err}");
        }
        assert_eq!(MemoryReset::Copy.resolve().unwrap(), MemoryReset::Copy);
    }

    #[test]
    fn the_faster_way_is_kept() {
        let (fast, slow) = (Duration::from_micros(1), Duration::from_micros(2));
        let m = |copy, scan| Measured { copy, scan }.faster();
        assert_eq!(m(fast, slow), MemoryReset::Copy);
        assert_eq!(m(slow, fast), MemoryReset::Scan);
        assert_eq!(m(fast, fast), MemoryReset::Copy);
    }
}
