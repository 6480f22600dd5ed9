//! Timings of the `encrypted` secrets provider: unlock (one Argon2id
//! derivation with the production parameters), then get and set latency on
//! an unlocked store holding 100 secrets.
//! Run: `cargo bench --bench secrets` (add `-- --sweep` to time unlocks over
//! a grid of Argon2 parameters, to choose `KdfParams::PRODUCTION`).

use std::path::Path;
use std::time::{Duration, Instant};

use berth::secrets::SecretsProvider;
use berth::secrets::encrypted::{EncryptedStore, KdfParams, PasswordSource, StoreOptions};
use zeroize::Zeroizing;

const UNLOCKS: usize = 5;
const SECRETS: usize = 100;
const OPS: usize = 1000;

fn source(dir: &Path) -> PasswordSource {
    PasswordSource {
        password: Some(Zeroizing::new("bench-password".to_owned())),
        key_file: dir.join("secrets.key"),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The `q` quantile (0..=1) of sorted samples.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// Median unlock time of a store created with `kdf` (each open derives the
/// key once).
fn unlock_median(kdf: KdfParams, n: usize) -> (Duration, Duration, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secrets");
    let options = StoreOptions { kdf };
    drop(EncryptedStore::open_with(&path, source(dir.path()), options).expect("create"));
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            drop(EncryptedStore::open_with(&path, source(dir.path()), options).expect("open"));
            t.elapsed()
        })
        .collect();
    times.sort();
    (times[n / 2], times[0], times[n - 1])
}

fn sweep() {
    println!("unlock time (median of 3) by Argon2id parameters:");
    for m_mib in [19, 32, 46, 64, 96, 128] {
        for t_cost in [1, 2, 3, 4] {
            let kdf = KdfParams {
                m_cost: m_mib * 1024,
                t_cost,
                p_cost: 1,
            };
            let (median, _, _) = unlock_median(kdf, 3);
            println!(
                "  m_cost {m_mib:>3} MiB  t_cost {t_cost}  p_cost 1: {:>7.1} ms",
                ms(median)
            );
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--sweep") {
        sweep();
        return;
    }
    let p = KdfParams::PRODUCTION;
    println!(
        "KdfParams::PRODUCTION: Argon2id m_cost {} KiB ({} MiB), t_cost {}, p_cost {}",
        p.m_cost,
        p.m_cost / 1024,
        p.t_cost,
        p.p_cost
    );
    let (median, min, max) = unlock_median(p, UNLOCKS);
    println!(
        "unlock (open, one derivation): median {:.1} ms of {UNLOCKS} (min {:.1}, max {:.1})",
        ms(median),
        ms(min),
        ms(max)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secrets");
    let store = EncryptedStore::open(&path, source(dir.path())).expect("open");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let value = "v".repeat(64);
    rt.block_on(async {
        for i in 0..SECRETS {
            store
                .set(&format!("SECRET_{i}"), &value)
                .await
                .expect("set");
        }
        let mut gets = Vec::with_capacity(OPS);
        for i in 0..OPS {
            let t = Instant::now();
            let v = store
                .get(&format!("SECRET_{}", i % SECRETS))
                .await
                .expect("get");
            gets.push(t.elapsed());
            std::hint::black_box(v);
        }
        let mut sets = Vec::with_capacity(OPS);
        for i in 0..OPS {
            let t = Instant::now();
            store
                .set(&format!("SECRET_{}", i % SECRETS), &value)
                .await
                .expect("set");
            sets.push(t.elapsed());
        }
        gets.sort();
        sets.sort();
        let size = std::fs::metadata(&path).expect("stat").len();
        println!(
            "store: {SECRETS} secrets of {} bytes, file {size} bytes",
            value.len()
        );
        println!(
            "get (unlocked, {OPS} ops): p50 {:.1} µs, p99 {:.1} µs",
            us(quantile(&gets, 0.5)),
            us(quantile(&gets, 0.99))
        );
        println!(
            "set (unlocked, {OPS} ops, fsync'd atomic replace): p50 {:.1} µs, p99 {:.1} µs",
            us(quantile(&sets, 0.5)),
            us(quantile(&sets, 0.99))
        );

        // Baselines in the same run: the blocking-pool hop every get makes,
        // and berth's plain atomic write of a file of the store's size
        // (what any durable write costs here).
        let mut hops = Vec::with_capacity(OPS);
        for _ in 0..OPS {
            let t = Instant::now();
            tokio::task::spawn_blocking(|| std::hint::black_box(0))
                .await
                .expect("hop");
            hops.push(t.elapsed());
        }
        let bytes = std::fs::read(&path).expect("read");
        let plain = dir.path().join("plain");
        let mut writes = Vec::with_capacity(OPS);
        for _ in 0..OPS {
            let t = Instant::now();
            berth::state::write_atomic(&plain, &bytes).expect("write");
            writes.push(t.elapsed());
        }
        hops.sort();
        writes.sort();
        let (get50, hop50) = (quantile(&gets, 0.5), quantile(&hops, 0.5));
        let (set50, write50) = (quantile(&sets, 0.5), quantile(&writes, 0.5));
        println!(
            "baseline blocking-pool hop: p50 {:.1} µs -> get/hop {:.2}x",
            us(hop50),
            get50.as_secs_f64() / hop50.as_secs_f64()
        );
        println!(
            "baseline write_atomic of {} bytes: p50 {:.1} µs -> set/write {:.2}x",
            bytes.len(),
            us(write50),
            set50.as_secs_f64() / write50.as_secs_f64()
        );
    });
}
