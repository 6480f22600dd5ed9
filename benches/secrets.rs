//! Timings of the `encrypted` secrets provider: unlock (one Argon2id
//! derivation with the production parameters), get and set.
//! Run: `cargo bench --bench secrets`.

use std::time::Instant;

use berth::secrets::SecretsProvider;
use berth::secrets::encrypted::{EncryptedStore, KdfParams, PasswordSource};
use zeroize::Zeroizing;

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secrets");
    let source = PasswordSource {
        password: Some(Zeroizing::new("bench-password".to_owned())),
        key_file: dir.path().join("secrets.key"),
    };
    let p = KdfParams::PRODUCTION;
    println!(
        "Argon2id m_cost={} KiB t_cost={} p_cost={}",
        p.m_cost, p.t_cost, p.p_cost
    );
    let t = Instant::now();
    drop(EncryptedStore::open(&path, source.clone()).expect("create"));
    println!(
        "create (new store):   {:>8.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut unlocks = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        drop(EncryptedStore::open(&path, source.clone()).expect("open"));
        unlocks.push(t.elapsed().as_secs_f64() * 1e3);
    }
    unlocks.sort_by(f64::total_cmp);
    println!(
        "unlock (open):        {:>8.1} ms median of 5 (min {:.1}, max {:.1})",
        unlocks[2], unlocks[0], unlocks[4]
    );

    let store = EncryptedStore::open(&path, source).expect("open");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for i in 0..20 {
            store
                .set(&format!("S{i}"), "value-of-some-length-0123456789")
                .await
                .unwrap();
        }
        let n = 200;
        let t = Instant::now();
        for i in 0..n {
            store
                .set(&format!("S{}", i % 20), "another-value-0123456789")
                .await
                .unwrap();
        }
        println!(
            "set (20 secrets):     {:>8.1} µs/op (fsync'd atomic replace)",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
        let n = 20_000;
        let t = Instant::now();
        for i in 0..n {
            let v = store.get(&format!("S{}", i % 20)).await.unwrap();
            std::hint::black_box(v);
        }
        println!(
            "get (cached):         {:>8.1} µs/op",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    });
}
