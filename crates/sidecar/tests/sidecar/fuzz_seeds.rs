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

/// The harness leaves out what would make the sidecar call a URL (an app
/// id that is one, encoded or not), so a fuzz run never reaches the
/// network; everything else goes through.
#[test]
fn inputs_that_name_a_url_are_left_out_of_fuzz_runs() {
    for text in [
        "v1.0/invoke/http://203.0.113.1/method/x",
        "v1.0/invoke/HTTP%3a%2F%2F203.0.113.1/method/x",
        "/v1.0/invoke/%68ttps%3A%2F%2Fexample/method/x",
        " https://example",
    ] {
        assert!(sidecar_harness::names_a_url(text.as_bytes()), "{text}");
    }
    for text in [
        "v1.0/invoke/orders/method/http",
        "v1.0/state/statestore/key",
        "%zz%3",
    ] {
        assert!(!sidecar_harness::names_a_url(text.as_bytes()), "{text}");
    }
}
