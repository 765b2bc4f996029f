//! Every committed seed of the `sidecar_request` fuzz target
//! (`fuzz/seeds/sidecar_request`), through the fuzz target's own harness:
//! the real router must answer each with a 2xx or Dapr's JSON error, and
//! never panic. `scripts/fuzz.sh sidecar_request` fuzzes from these seeds;
//! a finding worth keeping is added to them, and so runs here from then on.

#[path = "../../../../fuzz/fuzz_targets/sidecar_harness.rs"]
mod sidecar_harness;

#[test]
fn every_sidecar_request_seed_gets_a_dapr_answer() {
    let dir = test_support::repo_path("fuzz/seeds/sidecar_request");
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    seeds.sort();
    assert!(
        seeds.len() >= 10,
        "only {} seeds in {}",
        seeds.len(),
        dir.display()
    );
    for seed in seeds {
        let data = std::fs::read(&seed).unwrap();
        eprintln!("{}", seed.display());
        sidecar_harness::check(&data);
    }
}
