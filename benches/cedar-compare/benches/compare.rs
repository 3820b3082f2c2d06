//! One run, two engines: Cedar's `is_authorized` over a 20-policy set equivalent to Warden's
//! built-in tiers, and Warden's in-process decision pipeline (validate, classify, anomaly,
//! permission, violation handling, building the record) with the three reference plugins loaded,
//! each plugin call in a fresh instance: with spare instances made ahead of need on another
//! thread (the default), and without (every call instantiates its plugin). Both sides are set
//! up in `src/lib.rs`.
//!
//! Run: `cargo bench --manifest-path benches/cedar-compare/Cargo.toml --target-dir target --bench compare`

// The allocator `warden serve` runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cedar_compare::{Cedar, Warden};
use cedar_policy::Decision;
use criterion::{Criterion, criterion_group, criterion_main};
use warden_core::decision::Verdict;
use warden_core::policy::RiskLevel;

fn compare(c: &mut Criterion) {
    let cedar = Cedar::new();
    assert_eq!(cedar.is_authorized().decision(), Decision::Allow);
    let warden = Warden::new();
    let on_demand = Warden::with_spares(0);
    println!("plugin memory reset: {:?}", warden.memory_reset());
    // The plugins really ran and agreed: two reports, nothing anomalous, allowed.
    for w in [&warden, &on_demand] {
        let first = w.decide();
        assert_eq!(
            first
                .answer
                .plugins
                .iter()
                .map(|p| p.outcome.as_str())
                .collect::<Vec<_>>(),
            ["ok", "ok"],
            "{:?}",
            first.answer.plugins
        );
        assert_eq!(
            (first.answer.verdict, first.answer.risk.level),
            (Verdict::Allow, RiskLevel::Low),
            "{:?}",
            first.answer.reasons
        );
        for p in &first.answer.plugins {
            eprintln!(
                "{}: fuel used {}, peak memory {} bytes, logs {:?}",
                p.plugin, p.fuel_used, p.peak_memory, p.logs
            );
        }
    }

    // How many plugin calls found a spare instance ready (made ahead of need on another thread).
    let spares = |what: &str, f: &mut dyn FnMut()| {
        let before = warden.instances();
        f();
        let after = warden.instances();
        let (spare, on_demand) = (after.0 - before.0, after.1 - before.1);
        println!(
            "{what}: {spare} plugin calls ran in spare instances, {on_demand} instantiated on the spot ({:.1}% spares)",
            100.0 * spare as f64 / (spare + on_demand).max(1) as f64
        );
    };
    c.bench_function("compare/cedar_is_authorized_20_policies", |b| {
        b.iter(|| cedar.is_authorized())
    });
    spares("compare/warden_pipeline_3_plugins", &mut || {
        c.bench_function("compare/warden_pipeline_3_plugins", |b| {
            b.iter(|| warden.decide())
        });
    });
    c.bench_function("compare/warden_pipeline_3_plugins_no_spares", |b| {
        b.iter(|| on_demand.decide())
    });
    // Spares are made on another core: how dear it is to hand memory from core to core shifts
    // on a virtual machine as its vCPUs move between the host's core complexes.
    println!(
        "core-to-core round trip before the interleaved run: {:.0} ns",
        core_to_core()
    );
    spares("interleaved", &mut || {
        interleaved(&[
            ("cedar_is_authorized_20_policies", &|| {
                drop(std::hint::black_box(cedar.is_authorized()))
            }),
            ("warden_pipeline_3_plugins", &|| {
                drop(std::hint::black_box(warden.decide()))
            }),
            ("warden_pipeline_3_plugins_no_spares", &|| {
                drop(std::hint::black_box(on_demand.decide()))
            }),
        ])
    });
    println!("core-to-core round trip after it: {:.0} ns", core_to_core());
    // The parts: the two plugin calls alone, and the pipeline around them.
    c.bench_function("parts/plugins_assess", |b| b.iter(|| warden.assess()));
    c.bench_function("parts/plugins_assess_no_spares", |b| {
        b.iter(|| on_demand.assess())
    });
    let assessment = warden.assess();
    c.bench_function("parts/pipeline_around_plugins", |b| {
        b.iter(|| warden.judge(assessment.clone()))
    });
}

/// Median over five rounds of the time for one thread to see another's write and answer it
/// (two spinning threads on a 2-core machine run on different cores).
fn core_to_core() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    const N: u64 = 200_000;
    let mut rounds: Vec<f64> = (0..5)
        .map(|_| {
            let flag = AtomicU64::new(0);
            std::thread::scope(|s| {
                s.spawn(|| {
                    for i in 0..N {
                        while flag.load(Ordering::Acquire) != 2 * i + 1 {
                            std::hint::spin_loop();
                        }
                        flag.store(2 * i + 2, Ordering::Release);
                    }
                });
                let start = std::time::Instant::now();
                for i in 0..N {
                    flag.store(2 * i + 1, Ordering::Release);
                    while flag.load(Ordering::Acquire) != 2 * i + 2 {
                        std::hint::spin_loop();
                    }
                }
                start.elapsed().as_secs_f64() * 1e9 / N as f64
            })
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[2]
}

/// Each in turn, in rounds of `BATCH` calls, so that whatever else the machine does (noisy
/// neighbours, frequency changes) falls on all alike; prints the medians of the rounds'
/// per-call means, and of each one's per-round ratio to the first.
fn interleaved(sides: &[(&str, &dyn Fn())]) {
    const ROUNDS: usize = 400;
    const BATCH: u32 = 100;
    let time = |f: &dyn Fn()| {
        let start = std::time::Instant::now();
        for _ in 0..BATCH {
            f();
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH)
    };
    let mut means = vec![Vec::new(); sides.len()];
    for _ in 0..ROUNDS {
        for (i, (_, f)) in sides.iter().enumerate() {
            means[i].push(time(*f));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut line = format!("interleaved ({ROUNDS} rounds of {BATCH} calls each):");
    for (i, (name, _)) in sides.iter().enumerate() {
        line += &format!(" {name} median {:.2} µs", median(means[i].clone()));
        if i > 0 {
            line += &format!(
                " (ratio to {} {:.3})",
                sides[0].0,
                median(means[i].iter().zip(&means[0]).map(|(x, y)| x / y).collect())
            );
        }
        line += if i + 1 < sides.len() { "," } else { "" };
    }
    println!("{line}");
}

criterion_group!(benches, compare);
criterion_main!(benches);
