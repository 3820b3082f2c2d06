//! One run, two engines: Cedar's `is_authorized` over a 20-policy set equivalent to Warden's
//! built-in tiers, and Warden's in-process decision pipeline (validate, classify, anomaly,
//! permission, violation handling, building the record) with the three reference plugins loaded,
//! each plugin call in a fresh instance. Both sides are set up in `src/lib.rs`.
//!
//! Run: `cargo bench --manifest-path benches/cedar-compare/Cargo.toml --target-dir target --bench compare`

// The allocator `warden serve` runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cedar_compare::{Cedar, Warden};
use cedar_policy::Decision;
use criterion::{Criterion, criterion_group, criterion_main};
use warden::engine::Verdict;
use warden::policy::RiskLevel;

fn compare(c: &mut Criterion) {
    let cedar = Cedar::new();
    assert_eq!(cedar.is_authorized().decision(), Decision::Allow);
    let warden = Warden::new();
    // The plugins really ran and agreed: two reports, nothing anomalous, allowed.
    let first = warden.decide();
    assert_eq!(first.answer.plugins.iter().map(|p| p.outcome.as_str()).collect::<Vec<_>>(), ["ok", "ok"], "{:?}", first.answer.plugins);
    assert_eq!((first.answer.verdict, first.answer.risk.level), (Verdict::Allow, RiskLevel::Low), "{:?}", first.answer.reasons);
    for p in &first.answer.plugins {
        eprintln!("{}: fuel used {}, peak memory {} bytes, logs {:?}", p.plugin, p.fuel_used, p.peak_memory, p.logs);
    }

    c.bench_function("compare/cedar_is_authorized_20_policies", |b| b.iter(|| cedar.is_authorized()));
    c.bench_function("compare/warden_pipeline_3_plugins", |b| b.iter(|| warden.decide()));
    let before = warden.instances();
    interleaved(|| cedar.is_authorized(), || warden.decide());
    let after = warden.instances();
    let (spare, on_demand) = (after.0 - before.0, after.1 - before.1);
    println!("interleaved: {spare} plugin calls ran in spare instances, {on_demand} instantiated on the spot ({:.1}% spares)", 100.0 * spare as f64 / (spare + on_demand) as f64);
    // The parts: the two plugin calls alone, and the pipeline around them.
    c.bench_function("parts/plugins_assess", |b| b.iter(|| warden.assess()));
    let assessment = warden.assess();
    c.bench_function("parts/pipeline_around_plugins", |b| b.iter(|| warden.judge(assessment.clone())));
}

/// Both, alternating in rounds of `BATCH` calls, so that whatever else the machine does
/// (noisy neighbours, frequency changes) falls on both alike; prints the medians of the
/// rounds' per-call means and of the per-round ratio.
fn interleaved<A, B>(cedar: impl Fn() -> A, warden: impl Fn() -> B) {
    const ROUNDS: usize = 400;
    const BATCH: u32 = 100;
    let time = |f: &dyn Fn()| {
        let start = std::time::Instant::now();
        for _ in 0..BATCH {
            f();
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH)
    };
    let (mut a, mut b, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let x = time(&|| drop(std::hint::black_box(cedar())));
        let y = time(&|| drop(std::hint::black_box(warden())));
        a.push(x);
        b.push(y);
        ratio.push(y / x);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "interleaved ({ROUNDS} rounds of {BATCH} calls each): cedar_is_authorized_20_policies median {:.2} µs, warden_pipeline_3_plugins median {:.2} µs, median ratio warden/cedar {:.3}",
        median(&mut a),
        median(&mut b),
        median(&mut ratio)
    );
}

criterion_group!(benches, compare);
criterion_main!(benches);
