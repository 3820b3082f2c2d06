//! The wasmtime side: one engine (pooling allocator, copy-on-write memory images), components
//! compiled once on load and pre-instantiated, and a fresh store and instance for every call,
//! bounded by fuel, memory and output limits.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, HasSelf, Instance, InstancePre, Lift,
    Linker, Lower, TypedFunc,
};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap,
};

use crate::manifest::{Limits, MAX_LIMITS, Manifest, PluginKind, check_contract};
use crate::reset::MemoryReset;
use crate::spares::{self, Queue, Spare, Spares};

/// Generated host bindings, one module per world; the shared types are generated once.
pub(crate) mod bindings {
    /// The `classifier` world (and the shared `types` and `log` interfaces).
    pub(crate) mod classifier {
        wasmtime::component::bindgen!({ path: "../wit/warden-plugin.wit", world: "classifier", exports: { default: async } });
    }
    /// The `anomaly-detector` world.
    pub(crate) mod anomaly {
        wasmtime::component::bindgen!({
            path: "../wit/warden-plugin.wit",
            world: "anomaly-detector",
            exports: { default: async },
            with: { "warden:plugin/types": super::classifier::warden::plugin::types, "warden:plugin/log": super::classifier::warden::plugin::log },
        });
    }
    /// The `rollback-trigger` world.
    pub(crate) mod rollback {
        wasmtime::component::bindgen!({
            path: "../wit/warden-plugin.wit",
            world: "rollback-trigger",
            exports: { default: async },
            with: { "warden:plugin/types": super::classifier::warden::plugin::types, "warden:plugin/log": super::classifier::warden::plugin::log },
        });
    }
    pub(crate) use classifier::warden::plugin::log::Level;
    pub(crate) use classifier::warden::plugin::types;
}

use bindings::types;
use warden_core::plugin::{
    AnomalyContext, Classification, Finding, Judgement, MetricWindow, PluginAction,
};

/// Concurrent plugin instances the pool holds (a decision holds one per classifier and anomaly
/// detector while its plugins run); a call beyond it fails by its failure policy.
pub const POOL_INSTANCES: u32 = 256;

/// Fuel between yields to the async executor: a busy plugin never holds a worker thread long.
const YIELD_FUEL: u64 = 20_000;

/// Fuel a call may use on the fast path: a plain call on the caller's thread, without the
/// fiber an async call needs (a few hundred microseconds at most; the reference plugins use
/// about 10,000). A call that runs out is made again from the start on the async path with the
/// plugin's whole budget, yielding every [`YIELD_FUEL`]. A plugin sees nothing but its
/// arguments in a fresh instance, so the second run reaches the verdict the first would have.
pub const FAST_FUEL: u64 = 500_000;

/// Set to `perfmap` to have the engine write `/tmp/perf-PID.map`, naming plugins' compiled
/// functions in `perf record` profiles.
pub const PROFILER_ENV: &str = "WARDEN_PLUGIN_PROFILER";

/// Per-call state inside the store.
pub struct CallState {
    limits: Limits,
    logs: Vec<String>,
    peak_memory: usize,
    memory_denied: bool,
}

impl CallState {
    pub(crate) fn new(limits: Limits) -> CallState {
        CallState {
            limits,
            logs: Vec::new(),
            peak_memory: 0,
            memory_denied: false,
        }
    }
}

impl ResourceLimiter for CallState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limits.memory_bytes {
            self.memory_denied = true;
            return Ok(false);
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl bindings::classifier::warden::plugin::log::Host for CallState {
    fn log(&mut self, level: bindings::Level, message: String) {
        if self.logs.len() < self.limits.log_lines as usize {
            let name = match level {
                bindings::Level::Debug => "debug",
                bindings::Level::Info => "info",
                bindings::Level::Warn => "warn",
                bindings::Level::Error => "error",
            };
            let mut line = format!("{name}: {message}");
            line.truncate(line.floor_char_boundary(1024));
            self.logs.push(line);
        }
    }
}

/// The compiled, pre-instantiated form of one plugin's component: the handle to instantiate
/// it from and its export, whose type was checked against the plugin's world when it loaded.
pub struct Prepared {
    pre: InstancePre<CallState>,
    export: ComponentExportIndex,
}

impl Prepared {
    /// A fresh instance in `store`.
    pub(crate) fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Instance> {
        self.pre.instantiate(store)
    }

    /// The export of a fresh `instance` as a typed function.
    fn export<P: ComponentNamedList + Lower, R: ComponentNamedList + Lift>(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
    ) -> wasmtime::Result<TypedFunc<P, R>> {
        let func = instance
            .get_func(&mut *store, self.export)
            .ok_or_else(|| wasmtime::format_err!("the component has no such export"))?;
        // SAFETY: the export's type was checked against the world's signature when the plugin
        // loaded (the generated `*Pre::new` in `Runtime::load`), and every caller names that signature.
        Ok(unsafe { TypedFunc::new_unchecked(func) })
    }
}

/// A loaded plugin: manifest, hash, and a handle to instantiate it from.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// Its manifest.
    pub manifest: Arc<Manifest>,
    /// `name@version` ([`Manifest::id`]), formatted once: every call's report names it.
    pub id: String,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// Component size in bytes.
    pub size: usize,
    /// The manifest's config as JSON text, passed on every call.
    pub config_json: Arc<str>,
    /// Its spare instances and the handle they (and on-the-spot instances) are made from.
    spares: Arc<Queue>,
}

impl LoadedPlugin {
    /// Spare instances of this version ready now.
    pub fn spares_ready(&self) -> usize {
        self.spares.ready()
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("plugin", &self.id)
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// What a call returned, or how it failed.
#[derive(Debug, Clone)]
pub enum CallOutcome<T> {
    /// The plugin answered.
    Ok(T),
    /// The plugin returned its own error.
    PluginError {
        /// Its code.
        code: String,
        /// Its message.
        message: String,
    },
    /// A trap or a limit: the instance is discarded.
    Failed {
        /// `fuel`, `memory`, `output`, `input`, `trap` or `instantiate`.
        limit: &'static str,
        /// What happened.
        message: String,
    },
}

/// A call's outcome with its costs.
#[derive(Debug, Clone)]
pub struct Call<T> {
    /// What happened.
    pub outcome: CallOutcome<T>,
    /// Fuel consumed.
    pub fuel_used: u64,
    /// Peak linear memory, bytes.
    pub peak_memory: usize,
    /// Wall time, microseconds.
    pub duration_us: u64,
    /// The plugin's log lines.
    pub logs: Vec<String>,
    /// Whether the call ran in a spare instance, made ahead of need (see [`spares`]).
    pub spare: bool,
}

impl<T> Call<T> {
    /// The same call with its value converted.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Call<U> {
        let outcome = match self.outcome {
            CallOutcome::Ok(v) => CallOutcome::Ok(f(v)),
            CallOutcome::PluginError { code, message } => {
                CallOutcome::PluginError { code, message }
            }
            CallOutcome::Failed { limit, message } => CallOutcome::Failed { limit, message },
        };
        Call {
            outcome,
            fuel_used: self.fuel_used,
            peak_memory: self.peak_memory,
            duration_us: self.duration_us,
            logs: self.logs,
            spare: self.spare,
        }
    }
}

/// The engine, the base linker (only the `log` import) and the spare-instance thread.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    spares: Spares,
    memory_reset: MemoryReset,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Runtime")
    }
}

impl Runtime {
    /// Builds the engine (pooling allocator, copy-on-write heaps, fuel, async yields) with
    /// [`spares::DEFAULT_PER_PLUGIN`] spare instances per plugin.
    pub fn new() -> anyhow::Result<Runtime> {
        Runtime::with_spares(spares::DEFAULT_PER_PLUGIN)
    }

    /// Builds the engine keeping `per_plugin` fresh instances of each plugin ready, made and
    /// torn down off the calls' path (see [`spares`]); 0 instantiates on every call.
    pub fn with_spares(per_plugin: usize) -> anyhow::Result<Runtime> {
        Runtime::configured(per_plugin, MemoryReset::Auto)
    }

    /// Builds the engine with `per_plugin` spares and a used memory reset as `reset` says.
    pub fn configured(per_plugin: usize, reset: MemoryReset) -> anyhow::Result<Runtime> {
        if per_plugin > spares::MAX_PER_PLUGIN {
            bail!(
                "invalid [plugins] in the configuration: spare_instances is {per_plugin}, at most {}",
                spares::MAX_PER_PLUGIN
            );
        }
        let memory_reset = reset.resolve()?;
        let engine = engine(memory_reset, POOL_INSTANCES)?;
        let mut linker = Linker::new(&engine);
        bindings::classifier::warden::plugin::log::add_to_linker::<CallState, HasSelf<CallState>>(
            &mut linker,
            |s| s,
        )?;
        let spares = Spares::start(&engine, per_plugin);
        Ok(Runtime {
            engine,
            linker,
            spares,
            memory_reset,
        })
    }

    /// How this engine resets a used memory: `Copy` or `Scan` (`Auto` resolved).
    pub fn memory_reset(&self) -> MemoryReset {
        self.memory_reset
    }

    /// Compiles and pre-instantiates a component for its manifest. Refuses what is not a
    /// component, is over its size limit, targets another contract version or another world.
    pub fn load(&self, manifest: Manifest, bytes: &[u8]) -> anyhow::Result<LoadedPlugin> {
        manifest
            .validate()
            .map_err(|(field, message)| anyhow!("manifest field `{field}`: {message}"))?;
        let id = manifest.id();
        if bytes.len() as u64 > manifest.limits.module_bytes {
            bail!(
                "plugin {id}: the component is {} bytes, over its module size limit of {} (limits.module_bytes)",
                bytes.len(),
                manifest.limits.module_bytes
            );
        }
        if !bytes.starts_with(b"\0asm") || bytes.get(4..8) != Some(&[0x0d, 0x00, 0x01, 0x00]) {
            bail!(
                "plugin {id}: not a WebAssembly component (a core module must be turned into one: `warden plugin build`)"
            );
        }
        let component = any(Component::new(&self.engine, bytes))
            .with_context(|| format!("plugin {id}: cannot compile the component"))?;
        // The contract version a component was built against is in its imports' names.
        let ty = component.component_type();
        for (name, _) in ty.imports(&self.engine) {
            if let Some(rest) = name.strip_prefix("warden:plugin/")
                && let Some((_, version)) = rest.split_once('@')
            {
                check_contract(version).map_err(|e| anyhow!("plugin {id}: {e}"))?;
            }
        }
        let mut linker = self.linker.clone();
        // Components built for wasm32-wasip2 import WASI; they get none of it: every WASI call traps.
        linker.define_unknown_imports_as_traps(&component)?;
        let pre = any(linker.instantiate_pre(&component))
            .with_context(|| format!("plugin {id}: cannot link the component"))?;
        let wrong_world = |e: wasmtime::Error| {
            anyhow!(
                "plugin {id}: the component does not implement the `{}` world (no `{}` export): {e:#}",
                manifest.kind.world(),
                manifest.kind.export()
            )
        };
        // Checks the export's type against the world (and says which world was expected).
        match manifest.kind {
            PluginKind::Classifier => {
                bindings::classifier::ClassifierPre::new(pre.clone()).map(drop)
            }
            PluginKind::AnomalyDetector => {
                bindings::anomaly::AnomalyDetectorPre::new(pre.clone()).map(drop)
            }
            PluginKind::RollbackTrigger => {
                bindings::rollback::RollbackTriggerPre::new(pre.clone()).map(drop)
            }
        }
        .map_err(wrong_world)?;
        let export = component
            .get_export_index(None, manifest.kind.export())
            .ok_or_else(|| wrong_world(wasmtime::format_err!("no export")))?;
        let prepared = Prepared { pre, export };
        let config_json: Arc<str> = serde_json::to_string(&manifest.config)?.into();
        let spares = self.spares.queue(prepared, manifest.limits);
        Ok(LoadedPlugin {
            id: manifest.id(),
            sha256: hex::encode(Sha256::digest(bytes)),
            size: bytes.len(),
            config_json,
            manifest: Arc::new(manifest),
            spares,
        })
    }

    /// The counts of calls that ran in a spare instance and calls that instantiated on the spot.
    pub fn instance_counters(&self) -> spares::InstanceCounters {
        self.spares.counters()
    }

    /// A set of calls; see [`Calls`].
    pub fn calls(&self) -> Calls<'_> {
        Calls {
            runtime: self,
            store: None,
        }
    }

    /// A store for the async path: the plugin's whole fuel, yielding to the executor as it burns it.
    fn async_store(&self, limits: Limits) -> wasmtime::Result<Store<CallState>> {
        let mut store = spares::store(&self.engine, limits, limits.fuel)?;
        store.fuel_async_yield_interval(Some(YIELD_FUEL))?;
        Ok(store)
    }
}

/// The engine: a pool of `instances` fresh-instance slots with copy-on-write heaps, fuel and
/// async yields, resetting used memories the way `reset` says (`Copy` or `Scan`).
pub(crate) fn engine(reset: MemoryReset, instances: u32) -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances * 2)
        .total_memories(instances * 2)
        .total_tables(instances * 2)
        .total_stacks(instances)
        .max_memory_size(MAX_LIMITS.memory_bytes as usize)
        // Keep the first MiB of each slot's memory mapped between calls and reset it in place
        // (all of it copied back, or only the pages a call wrote: `reset`), decommitting the
        // rest. A plugin built with the SDK has two 64 KiB pages; a plugin that grows its
        // memory past a MiB pays for its faults, not the others.
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(reset.pagemap());
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .memory_init_cow(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // `perf` can name plugins' compiled functions when the engine writes /tmp/perf-PID.map.
    if std::env::var_os(PROFILER_ENV).is_some_and(|v| v == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    any(Engine::new(&config)).context("cannot start the WebAssembly engine")
}

/// Plugin calls, such as one decision's classifiers and anomaly detectors. Every call runs in
/// a fresh instance of its plugin under its own limits: a spare made ahead of need when one is
/// ready, else one instantiated on the spot in a store the calls share (saving setting one up
/// and tearing it down for each). Dropping it tears down the instances, on the spare thread
/// when there is one (see [`spares`]).
pub struct Calls<'r> {
    runtime: &'r Runtime,
    store: Option<Store<CallState>>,
}

impl Drop for Calls<'_> {
    fn drop(&mut self) {
        // Resetting the instances' memory is a third of an on-the-spot call's cost: when no
        // spare was ready (a burst), the caller still need not wait for it.
        if let Some(store) = self.store.take() {
            self.runtime.spares.retire(store);
        }
    }
}

impl std::fmt::Debug for Calls<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Calls")
    }
}

impl Calls<'_> {
    /// Runs a classifier on an action in a fresh instance.
    pub async fn classify(
        &mut self,
        plugin: &LoadedPlugin,
        action: &PluginAction,
        input_bytes: usize,
    ) -> Call<Classification> {
        self.classify_wit(plugin, &action.clone().into(), input_bytes)
            .await
            .map(Into::into)
    }

    /// Runs an anomaly detector in a fresh instance.
    pub async fn detect(
        &mut self,
        plugin: &LoadedPlugin,
        action: &PluginAction,
        context: &AnomalyContext,
        input_bytes: usize,
    ) -> Call<Vec<Finding>> {
        let (baseline, activity) = (
            context.baseline.clone().into(),
            context.activity.clone().into(),
        );
        self.detect_wit(
            plugin,
            &action.clone().into(),
            &baseline,
            &activity,
            input_bytes,
        )
        .await
        .map(|f| f.into_iter().map(Into::into).collect())
    }

    /// Runs a rollback trigger in a fresh instance.
    pub async fn judge(
        &mut self,
        plugin: &LoadedPlugin,
        action: &PluginAction,
        windows: &[MetricWindow],
        input_bytes: usize,
    ) -> Call<Judgement> {
        let windows: Vec<types::MetricWindow> = windows.iter().cloned().map(Into::into).collect();
        self.judge_wit(plugin, &action.clone().into(), &windows, input_bytes)
            .await
            .map(Into::into)
    }

    /// Runs a classifier on the contract's form of an action (built once per decision).
    pub(crate) async fn classify_wit(
        &mut self,
        plugin: &LoadedPlugin,
        action: &types::Action,
        input_bytes: usize,
    ) -> Call<types::Classification> {
        if plugin.manifest.kind != PluginKind::Classifier {
            return not_kind(plugin, PluginKind::Classifier);
        }
        let args = (action, &*plugin.config_json);
        self.call(plugin, input_bytes, args, |c: &types::Classification| {
            c.categories
                .iter()
                .chain(&c.reasons)
                .map(|s| s.len() + 16)
                .sum()
        })
        .await
    }

    /// Runs an anomaly detector on the contract's forms of its inputs.
    pub(crate) async fn detect_wit(
        &mut self,
        plugin: &LoadedPlugin,
        action: &types::Action,
        baseline: &types::Baseline,
        activity: &types::Activity,
        input_bytes: usize,
    ) -> Call<Vec<types::Finding>> {
        if plugin.manifest.kind != PluginKind::AnomalyDetector {
            return not_kind(plugin, PluginKind::AnomalyDetector);
        }
        let args = (action, baseline, activity, &*plugin.config_json);
        self.call(plugin, input_bytes, args, |f: &Vec<types::Finding>| {
            f.iter()
                .map(|f| f.detector.len() + f.message.len() + 32)
                .sum()
        })
        .await
    }

    /// Runs a rollback trigger on the contract's forms of its inputs.
    pub(crate) async fn judge_wit(
        &mut self,
        plugin: &LoadedPlugin,
        action: &types::Action,
        windows: &[types::MetricWindow],
        input_bytes: usize,
    ) -> Call<types::Judgement> {
        if plugin.manifest.kind != PluginKind::RollbackTrigger {
            return not_kind(plugin, PluginKind::RollbackTrigger);
        }
        let args = (action, windows, &*plugin.config_json);
        self.call(plugin, input_bytes, args, |j: &types::Judgement| {
            j.reasons.iter().map(|s| s.len() + 16).sum()
        })
        .await
    }

    /// Runs a call on the fast path, and again on the async path if it needs more than
    /// [`FAST_FUEL`]; then applies the output limit and names what failed.
    async fn call<P, T>(
        &mut self,
        plugin: &LoadedPlugin,
        input_bytes: usize,
        args: P,
        output_size: impl Fn(&T) -> usize,
    ) -> Call<T>
    where
        P: ComponentNamedList + Lower + Copy + Send + Sync,
        T: Lift + Send + Sync + 'static,
    {
        let pre = plugin.spares.prepared();
        let fast = |store: &mut Store<CallState>| {
            let instance = pre.pre.instantiate(&mut *store)?;
            let (result,) = pre
                .export::<P, (Result<T, types::PluginError>,)>(store, &instance)?
                .call(&mut *store, args)?;
            Ok(result)
        };
        let slow = async |store: &mut Store<CallState>| {
            let instance = pre.pre.instantiate_async(&mut *store).await?;
            let (result,) = pre
                .export::<P, (Result<T, types::PluginError>,)>(store, &instance)?
                .call_async(&mut *store, args)
                .await?;
            Ok(result)
        };
        let limits = plugin.manifest.limits;
        let started = Instant::now();
        let fail = |limit, message: String| Call {
            outcome: CallOutcome::Failed { limit, message },
            fuel_used: 0,
            peak_memory: 0,
            duration_us: started.elapsed().as_micros() as u64,
            logs: Vec::new(),
            spare: false,
        };
        if input_bytes as u64 > limits.input_bytes {
            return fail(
                "input",
                format!(
                    "plugin {}: the input is {input_bytes} bytes, over its limit of {} (limits.input_bytes)",
                    plugin.id, limits.input_bytes
                ),
            );
        }
        let cannot_start =
            |e: wasmtime::Error| fail("instantiate", format!("plugin {}: {e:#}", plugin.id));
        let fast_fuel = limits.fuel.min(FAST_FUEL);
        let taken = plugin.spares.take();
        let mut spare = taken.is_some();
        self.runtime.spares.refill(&plugin.spares);
        let mut result: wasmtime::Result<Result<T, types::PluginError>>;
        let mut left;
        let mut state;
        match taken {
            // Made ahead of need: its instantiation's fuel is this call's, and the used store
            // is torn down off this path.
            Some(Spare {
                mut store,
                instance,
                instantiate_fuel,
            }) => {
                if let Err(e) = store.set_fuel(fast_fuel.saturating_sub(instantiate_fuel)) {
                    return cannot_start(e);
                }
                result = pre
                    .export::<P, (Result<T, types::PluginError>,)>(&mut store, &instance)
                    .and_then(|f| f.call(&mut store, args))
                    .map(|(r,)| r);
                left = store.get_fuel().unwrap_or(0);
                state = std::mem::replace(store.data_mut(), CallState::new(limits));
                self.runtime.spares.retire(store);
            }
            None => {
                let store = match &mut self.store {
                    Some(store) => store,
                    None => match spares::store(&self.runtime.engine, limits, 0) {
                        Ok(store) => self.store.insert(store),
                        Err(e) => return cannot_start(e),
                    },
                };
                *store.data_mut() = CallState::new(limits);
                if let Err(e) = store.set_fuel(fast_fuel) {
                    return cannot_start(e);
                }
                result = fast(store);
                left = store.get_fuel().unwrap_or(0);
                state = std::mem::replace(store.data_mut(), CallState::new(limits));
                if result.is_err() {
                    // wasmtime refuses to enter any instance of a store after a trap in one: the
                    // next call (another plugin of the same decision) gets a store of its own.
                    if let Some(store) = self.store.take() {
                        self.runtime.spares.retire(store);
                    }
                }
            }
        }
        let mut fuel = fast_fuel;
        let out_of_fuel =
            matches!(&result, Err(e) if matches!(e.downcast_ref::<Trap>(), Some(Trap::OutOfFuel)));
        if out_of_fuel && limits.fuel > fast_fuel {
            let mut store = match self.runtime.async_store(limits) {
                Ok(s) => s,
                Err(e) => return cannot_start(e),
            };
            (result, spare) = (slow(&mut store).await, false);
            (fuel, left) = (limits.fuel, store.get_fuel().unwrap_or(0));
            state = store.into_data();
        }
        let fuel_used = fuel.saturating_sub(left);
        let id = &plugin.id;
        let outcome = match result {
            Ok(Ok(value)) => {
                let size = output_size(&value);
                if size as u64 > limits.output_bytes {
                    CallOutcome::Failed {
                        limit: "output",
                        message: format!(
                            "plugin {id}: its output is about {size} bytes, over its limit of {} (limits.output_bytes)",
                            limits.output_bytes
                        ),
                    }
                } else {
                    CallOutcome::Ok(value)
                }
            }
            Ok(Err(e)) => CallOutcome::PluginError {
                code: e.code,
                message: e.message,
            },
            Err(e) => {
                let (limit, what) = match e.downcast_ref::<Trap>() {
                    Some(Trap::OutOfFuel) => (
                        "fuel",
                        format!("ran out of fuel after {} units (limits.fuel)", limits.fuel),
                    ),
                    _ if state.memory_denied => (
                        "memory",
                        format!(
                            "tried to grow its memory past {} bytes (limits.memory_bytes)",
                            limits.memory_bytes
                        ),
                    ),
                    _ => ("trap", format!("trapped: {e:#}")),
                };
                CallOutcome::Failed {
                    limit,
                    message: format!("plugin {id}: {what}"),
                }
            }
        };
        Call {
            outcome,
            fuel_used,
            peak_memory: state.peak_memory,
            duration_us: started.elapsed().as_micros() as u64,
            logs: state.logs,
            spare,
        }
    }
}

/// wasmtime's errors as anyhow's, for `context`.
fn any<T>(r: wasmtime::Result<T>) -> anyhow::Result<T> {
    r.map_err(anyhow::Error::from)
}

fn not_kind<T>(plugin: &LoadedPlugin, kind: PluginKind) -> Call<T> {
    Call {
        outcome: CallOutcome::Failed {
            limit: "trap",
            message: format!(
                "plugin {} is a {:?}, not a {kind:?}",
                plugin.id, plugin.manifest.kind
            ),
        },
        fuel_used: 0,
        peak_memory: 0,
        duration_us: 0,
        logs: Vec::new(),
        spare: false,
    }
}
