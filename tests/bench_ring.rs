//! `tickring bench ring --json` end to end: a short run (a few seconds)
//! whose output must have the documented shape. Benchmarks are reported,
//! not asserted: nothing here checks a latency or a rate against a value.

use std::process::{Command, Stdio};

use serde_json::Value;

const ALWAYS_BUILT: [&str; 3] = ["tickring", "floor", "uds"];
const PEERS: [&str; 4] = ["rtrb", "crossbeam", "disruptor", "iceoryx2"];

fn run_json(extra: &[&str]) -> Value {
    run_json_pid(extra).0
}

/// Runs the benchmark; returns its JSON and its pid (its files in /dev/shm
/// carry the pid).
fn run_json_pid(extra: &[&str]) -> (Value, u32) {
    let child = Command::new(env!("CARGO_BIN_EXE_tickring"))
        .args(["bench", "ring", "--json", "--duration", "0.2"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tickring bench ring");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "exit {:?}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (v, pid)
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} is not an unsigned integer in {v}"))
}

#[test]
fn json_has_one_ordered_result_per_measured_path_and_skips_the_rest() {
    let v = run_json(&["--readers", "2"]);
    assert_eq!(v["bench"], "ring");
    let results = v["results"].as_array().expect("results array");
    let skipped = v["skipped"].as_array().expect("skipped array");
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    let skipped_names: Vec<&str> = skipped
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();

    for name in ALWAYS_BUILT {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    // Every peer is either measured or skipped with a reason, never both.
    for name in PEERS {
        assert!(
            names.contains(&name) != skipped_names.contains(&name),
            "{name}: measured {names:?}, skipped {skipped_names:?}"
        );
    }
    if !cfg!(feature = "bench-peers") {
        for s in skipped {
            assert!(
                s["reason"].as_str().unwrap().contains("bench-peers"),
                "skip reason should say how to build it: {s}"
            );
        }
    }

    for r in results {
        let (p50, p99, p999, p9999, max) = (
            u(r, "p50_ns"),
            u(r, "p99_ns"),
            u(r, "p999_ns"),
            u(r, "p9999_ns"),
            u(r, "max_ns"),
        );
        assert!(
            p50 <= p99 && p99 <= p999 && p999 <= p9999 && p9999 <= max,
            "percentiles out of order: {r}"
        );
        assert!(u(r, "count") > 0, "no samples: {r}");
        let t = &r["throughput_per_s"];
        assert!(t.is_null() || t.as_f64().is_some_and(|x| x > 0.0), "{r}");
    }
    // Every path but the floor moves events, so it has a throughput.
    for r in results.iter().filter(|r| r["name"] != "floor") {
        assert!(r["throughput_per_s"].is_number(), "no throughput: {r}");
    }
    let floor = results.iter().find(|r| r["name"] == "floor").unwrap();
    assert!(floor["throughput_per_s"].is_null());
    assert!(u(&floor["one_way"], "count") > 0);
    let tickring = results.iter().find(|r| r["name"] == "tickring").unwrap();
    assert!(u(&tickring["in_process"], "count") > 0);

    // Writer cost with 0, 1 and --readers readers.
    let cost = v["writer_cost"].as_array().expect("writer_cost array");
    let readers: Vec<u64> = cost.iter().map(|c| u(c, "readers")).collect();
    assert_eq!(readers, vec![0, 1, 2]);
    for c in cost {
        assert!(c["ns_per_publish"].as_f64().is_some_and(|x| x > 0.0), "{c}");
    }

    let targets = v["targets"].as_array().expect("targets array");
    assert!(!targets.is_empty());
    for t in targets {
        let s = t["status"].as_str().unwrap();
        assert!(["PASS", "MISS", "SKIP"].contains(&s), "{t}");
    }
    assert!(v["clock"]["ticks_per_ns"].as_f64().is_some_and(|x| x > 0.0));
}

#[test]
fn only_measures_the_named_paths_and_leaves_no_files_behind() {
    let (v, pid) = run_json_pid(&["--only", "floor,uds", "--clock", "monotonic"]);
    let names: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["floor", "uds"]);
    assert_eq!(v["clock"]["source"], "monotonic");
    assert!(v.get("writer_cost").is_none());
    let leaked = shm_entries_of(pid);
    assert!(leaked.is_empty(), "left in /dev/shm: {leaked:?}");
}

#[test]
fn unknown_path_is_refused_with_the_known_names() {
    let out = Command::new(env!("CARGO_BIN_EXE_tickring"))
        .args(["bench", "ring", "--only", "zmq"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zmq") && err.contains("tickring"), "{err}");
}

/// Entries the benchmark run with `pid` created in /dev/shm (its run
/// directory and iceoryx2's objects carry its pid).
fn shm_entries_of(pid: u32) -> Vec<String> {
    let mine = [
        format!("tickring-bench-{pid}-"),
        format!("iox2_tickring_bench_{pid}_"),
    ];
    std::fs::read_dir("/dev/shm")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| mine.iter().any(|m| n.starts_with(m.as_str())))
                .collect()
        })
        .unwrap_or_default()
}
