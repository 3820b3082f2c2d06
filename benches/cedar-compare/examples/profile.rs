//! One side of the comparison in a loop, for a profiler:
//!
//! `perf record -e cpu-clock --call-graph dwarf target/release/examples/profile spares 60000`
//! (valgrind cannot reserve the pooling allocator's address space, and `perf stat`'s hardware
//! counters are missing on this machine kind; see BENCHMARKS.md).
//!
//! Sides: `cedar`, `spares`, `no_spares`, `assess_no_spares`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cedar_compare::{Cedar, Warden};

fn main() {
    let mut args = std::env::args().skip(1);
    let side = args.next().unwrap_or_else(|| "no_spares".into());
    let n: u32 = args.next().map_or(1000, |n| n.parse().expect("a count"));
    match side.as_str() {
        "cedar" => {
            let cedar = Cedar::new();
            for _ in 0..n {
                std::hint::black_box(cedar.is_authorized());
            }
        }
        "spares" | "no_spares" | "assess_no_spares" => {
            let warden = if side == "spares" {
                Warden::new()
            } else {
                Warden::with_spares(0)
            };
            for _ in 0..n {
                if side == "assess_no_spares" {
                    std::hint::black_box(warden.assess());
                } else {
                    std::hint::black_box(warden.decide());
                }
            }
        }
        other => panic!("unknown side {other}: cedar, spares, no_spares or assess_no_spares"),
    }
}
