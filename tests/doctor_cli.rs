//! `tickring doctor` as a user runs it, on a fake host tree (`--root`) with
//! feed configs (`--config-dir`): the table, the JSON shape and the exit
//! codes 0 (nothing fails), 1 (a check fails), 2 (usage or config error).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary directory tree, removed on drop.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new(tag: &str) -> Tree {
        let root =
            std::env::temp_dir().join(format!("tickring-doctor-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Tree { root }
    }

    fn file(&self, rel: &str, text: &str) -> &Tree {
        let p = self.root.join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn feed_toml(name: &str, core: usize) -> String {
    format!(
        "exchange = \"kraken\"\nsymbols = [\"BTC/USD\"]\n\
         [ring]\nname = \"{name}\"\ncapacity = 65536\nbacking = \"auto\"\n\
         [cpu]\ncore = {core}\nhousekeeping_core = 0\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n"
    )
}

/// A host that satisfies two collectors on cores 2 and 3 (eight CPUs: more
/// than this machine may have, which the doctor must not hold against the
/// configs), with the feed configs in `<root>/etc/tickring/feeds`.
fn good_host(tag: &str) -> Tree {
    let t = Tree::new(tag);
    t.file("/etc/tickring/feeds/alpha.toml", &feed_toml("alpha", 2))
        .file("/etc/tickring/feeds/beta.toml", &feed_toml("beta", 3))
        .file("/etc/tickring/feeds/README", "not a feed")
        .file(
            "/proc/mounts",
            "/dev/root / ext4 rw 0 0\nhugetlbfs /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\n",
        )
        .file("/proc/meminfo", "Hugepagesize:       2048 kB\n")
        .file(
            "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
            "8\n",
        )
        .file(
            "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
            "8\n",
        )
        .file(
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "always [madvise] never\n",
        )
        .file("/sys/devices/system/cpu/online", "0-7\n")
        .file("/sys/devices/system/cpu/isolated", "2-3\n")
        .file("/sys/devices/system/cpu/nohz_full", "2-3\n")
        .file(
            "/sys/devices/system/cpu/cpu2/cpufreq/scaling_governor",
            "performance\n",
        )
        .file(
            "/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor",
            "schedutil\n",
        )
        .file("/proc/cmdline", "root=/dev/sda1\n")
        .file(
            "/lib/systemd/system/tickring-collector@.service",
            "[Service]\nLimitMEMLOCK=infinity\nAmbientCapabilities=CAP_IPC_LOCK CAP_SYS_NICE\n",
        )
        .file("/proc/sys/kernel/io_uring_disabled", "0\n")
        .file("/proc/sys/kernel/sched_rt_runtime_us", "950000\n")
        .file(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            "tsc\n",
        )
        .file("/sys/devices/system/node/node0/cpulist", "0-7\n");
    t
}

fn doctor(root: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tickring"))
        .arg("doctor")
        .arg("--root")
        .arg(root)
        .args(extra)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn check<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {v}"))
}

#[test]
fn a_good_host_exits_0_with_warnings_shown_in_the_table() {
    let t = good_host("good");
    let out = doctor(&t.root, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("pass  feeds"), "{text}");
    assert!(text.contains("alpha (core 2), beta (core 3)"), "{text}");
    assert!(text.contains("pass  hugepages.reserved"), "{text}");
    assert!(text.contains("WARN  governor"), "{text}");
    assert!(
        text.contains("fix: cpupower -c 3 frequency-set -g performance"),
        "{text}"
    );
    assert!(
        text.contains("skip  irqbalance") || text.contains("pass  irqbalance"),
        "{text}"
    );
    assert!(
        text.contains("WARN  sched_rt_runtime") || text.contains("skip  sched_rt_runtime"),
        "{text}"
    );
    assert!(text.contains(" fail, "), "{text}");
    assert!(text.contains("0 fail"), "{text}");
}

#[test]
fn json_has_the_contract_shape_and_a_failure_exits_1() {
    let t = good_host("json");
    let out = doctor(&t.root, &["--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    let checks = v["checks"].as_array().unwrap();
    assert!(checks.len() >= 15, "{v}");
    let mut counted = [0u64; 4];
    for c in checks {
        assert!(
            c["name"].is_string() && c["seen"].is_string() && c["wanted"].is_string(),
            "{c}"
        );
        assert!(c["fix"].is_string() || c["fix"].is_null(), "{c}");
        let i = ["pass", "warn", "fail", "skip"]
            .iter()
            .position(|s| c["status"] == *s)
            .unwrap_or_else(|| panic!("bad status in {c}"));
        counted[i] += 1;
    }
    let s = &v["summary"];
    assert_eq!(
        [&s["pass"], &s["warn"], &s["fail"], &s["skip"]].map(|n| n.as_u64().unwrap()),
        counted
    );
    assert_eq!(check(&v, "governor")["status"], "warn");

    // Break the host: io_uring off, both collectors on one core.
    t.file("/proc/sys/kernel/io_uring_disabled", "2\n")
        .file("/etc/tickring/feeds/beta.toml", &feed_toml("beta", 2));
    let out = doctor(&t.root, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(check(&v, "io_uring")["status"], "fail");
    assert_eq!(check(&v, "cores.shared")["status"], "fail");
    assert!(check(&v, "io_uring")["fix"]
        .as_str()
        .unwrap()
        .contains("kernel.io_uring_disabled=0"));
    assert_eq!(v["summary"]["fail"], 2);
    let out = doctor(&t.root, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  io_uring"));
}

#[test]
fn bad_configs_and_bad_usage_exit_2() {
    let t = good_host("bad");
    t.file(
        "/etc/tickring/feeds/beta.toml",
        &feed_toml("beta", 3).replace("capacity = 65536", "capacity = 1000"),
    );
    let out = doctor(&t.root, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("beta.toml") && err.contains("ring.capacity"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let out = doctor(&t.root, &["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = doctor(&t.root.join("missing"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such directory (--root)"));
}

#[test]
fn config_dir_is_taken_as_given_and_an_empty_one_warns() {
    let t = good_host("cfgdir");
    let elsewhere = Tree::new("cfgdir-elsewhere");
    elsewhere.file("feeds/gamma.toml", &feed_toml("gamma", 4));
    let out = doctor(
        &t.root,
        &["--json", "--config-dir", elsewhere.root.to_str().unwrap()],
    );
    let v = json(&out);
    assert!(
        check(&v, "feeds")["seen"]
            .as_str()
            .unwrap()
            .contains("gamma (core 4)"),
        "{v}"
    );
    // Core 4 is not isolated on this host.
    assert_eq!(check(&v, "isolcpus")["status"], "warn");
    assert_eq!(out.status.code(), Some(0));
    let out = doctor(
        &t.root,
        &["--json", "--config-dir", "/nonexistent/tickring"],
    );
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(check(&v, "feeds")["status"], "warn");
    assert_eq!(check(&v, "thp")["status"], "pass");
}
