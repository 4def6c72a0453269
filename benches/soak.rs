//! The soak bench: `callsync run --headless` through thousands of rounds of random kills,
//! network faults (drop after commit, 503, row locks, session expiry, answers slower than the
//! timeout), memos racing sends and log rotations, with and without the external id. Prints
//! calls written, Tasks in the org, lost, duplicated, parked and memos lost.
//!
//! `CALLSYNC_SOAK_ROUNDS` (default 1,000 per mode), `CALLSYNC_SOAK_SEED`,
//! `CALLSYNC_SOAK_MODES` (`on` or `off`: only with or without the external id) and
//! `CALLSYNC_SOAK_KEEP=1` (stop at the first duplicate or parked item, keeping the agent's
//! folder).

#[path = "../tests/common/soak.rs"]
mod soak;

fn main() {
    let rounds = std::env::var("CALLSYNC_SOAK_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    let seed = std::env::var("CALLSYNC_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2026);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut all_clean = true;
    let modes: Vec<bool> = match std::env::var("CALLSYNC_SOAK_MODES").as_deref() {
        Ok("off") => vec![false],
        Ok("on") => vec![true],
        _ => vec![true, false],
    };
    for external_id in modes {
        let plan = soak::Plan {
            rounds,
            seed,
            external_id,
            rotate: true,
        };
        let t0 = std::time::Instant::now();
        let out = rt.block_on(soak::run(&plan, |round, o| {
            if (round + 1) % 100 == 0 {
                eprintln!("  … round {}: {o}", round + 1);
            }
        }));
        println!(
            "soak (external id {}, seed {seed}, {:.0} s): {out}",
            if external_id { "on" } else { "off" },
            t0.elapsed().as_secs_f64()
        );
        all_clean &= out.clean();
    }
    if !all_clean {
        std::process::exit(1);
    }
}
