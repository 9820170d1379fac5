//! Each check's pass and fail (or warn) case on a fake `/proc` + `/sys` +
//! `/etc` tree: [`good_tree`] passes everything for two pinned feeds; each
//! test changes one thing and checks that exactly that check notices.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::ring::Backing;

/// A temporary directory tree, removed on drop.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "tickring-doctor-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Tree { root }
    }

    fn file(&self, abs: &str, text: &str) -> &Tree {
        let p = self.root.join(abs.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    fn rm(&self, abs: &str) -> &Tree {
        let p = self.root.join(abs.trim_start_matches('/'));
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
        self
    }

    fn sized(&self, abs: &str, len: u64) -> &Tree {
        let p = self.root.join(abs.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::File::create(&p).unwrap().set_len(len).unwrap();
        self
    }

    fn run(&self, feeds: Option<Vec<Feed>>) -> Vec<Check> {
        run_all(
            &Host::new(&self.root),
            Path::new("/etc/tickring/feeds"),
            feeds,
        )
    }

    fn check(&self, feeds: &[Feed], name: &str) -> Check {
        self.run(Some(feeds.to_vec()))
            .into_iter()
            .find(|c| c.name == name)
            .unwrap()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn feed(name: &str, core: Option<usize>) -> Feed {
    Feed {
        name: name.into(),
        file: format!("/etc/tickring/feeds/{name}.toml").into(),
        ring_name: name.into(),
        capacity: 65536,
        backing: Backing::Auto { page_size: 2 << 20 },
        lock_memory: true,
        core,
        housekeeping_core: Some(0),
        sched_fifo_priority: Some(50),
        sqpoll_core: None,
        sqpoll: false,
        busy_poll: false,
        book_depth: 10,
        instruments: 2,
        metrics_listen: Some(
            format!(
                "127.0.0.1:{}",
                9100 + name.len() as u16 + name.as_bytes()[0] as u16
            )
            .parse()
            .unwrap(),
        ),
    }
}

fn two_feeds() -> Vec<Feed> {
    vec![feed("a", Some(2)), feed("b", Some(3))]
}

const MOUNTS: &str = "/dev/root / ext4 rw,relatime 0 0\n\
    tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0\n\
    hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n";

const UNIT_OK: &str = "[Unit]\nDescription=x\n\n[Service]\nLimitMEMLOCK=infinity\n\
    AmbientCapabilities=CAP_IPC_LOCK CAP_SYS_NICE\n";

/// A host that passes every check for [`two_feeds`] (cores 2 and 3 on
/// node 0 with the NIC, isolated, performance, irqbalance banned...).
fn good_tree() -> Tree {
    let t = Tree::new();
    t.file("/proc/mounts", MOUNTS)
        .file(
            "/proc/meminfo",
            "MemTotal: 1 kB\nHugepagesize:       2048 kB\n",
        )
        .file(
            "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
            "16\n",
        )
        .file(
            "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
            "16\n",
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
            "performance\n",
        )
        .file(
            "/proc/cmdline",
            "BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet\n",
        )
        .file("/proc/1/comm", "systemd\n")
        .file("/proc/731/comm", "irqbalance\n")
        .file(
            "/etc/default/irqbalance",
            "#IRQBALANCE_ONESHOT=\nIRQBALANCE_BANNED_CPULIST=\"2-3\"\n",
        )
        .file(
            "/usr/lib/systemd/system/tickring-collector@.service",
            UNIT_OK,
        )
        .file("/proc/sys/kernel/io_uring_disabled", "0\n")
        .file("/proc/sys/kernel/sched_rt_runtime_us", "-1\n")
        .file("/proc/sys/kernel/sched_rt_period_us", "1000000\n")
        .file(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            "tsc\n",
        )
        .file(
            "/sys/devices/system/clocksource/clocksource0/available_clocksource",
            "tsc hpet acpi_pm\n",
        )
        .file("/sys/devices/system/node/node0/cpulist", "0-3\n")
        .file("/sys/devices/system/node/node1/cpulist", "4-7\n")
        .file(
            "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages",
            "8\n",
        )
        .file(
            "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/free_hugepages",
            "8\n",
        )
        .file(
            "/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages",
            "8\n",
        )
        .file(
            "/sys/devices/system/node/node1/hugepages/hugepages-2048kB/free_hugepages",
            "8\n",
        )
        .file(
            "/proc/net/route",
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
        )
        .file("/sys/class/net/eth0/device/numa_node", "0\n")
        .file("/sys/class/net/lo/addr_len", "6\n")
        .file(
            "/proc/interrupts",
            "           CPU0       CPU1\n  0:         40          0   IO-APIC   2-edge      timer\n \
             26:          0         16   IO-APIC   4-edge      ttyS0\n \
             28:          0          0   PCI-MSIX-0000:00:01.0   0-edge      eth0-rx-0\n\
             NMI:          0          0   Non-maskable interrupts\n",
        )
        .file("/proc/irq/0/smp_affinity_list", "0-7\n")
        .file("/proc/irq/0/effective_affinity_list", "0\n")
        .file("/proc/irq/26/smp_affinity_list", "0-1\n")
        .file("/proc/irq/28/effective_affinity_list", "1\n")
        .file("/proc/irq/99/effective_affinity_list", "2\n");
    t
}

fn status(t: &Tree, feeds: &[Feed], name: &str) -> Status {
    t.check(feeds, name).status
}

#[test]
fn a_well_tuned_host_passes_every_check() {
    let t = good_tree();
    for c in t.run(Some(two_feeds())) {
        assert_eq!(c.status, Status::Pass, "{c:?}");
        assert_eq!(c.fix, None, "{c:?}");
    }
}

#[test]
fn no_feed_configs_warn_and_host_wide_checks_still_run() {
    let t = good_tree();
    let checks = t.run(None);
    let get = |n: &str| checks.iter().find(|c| c.name == n).unwrap();
    assert_eq!(get("feeds").status, Status::Warn);
    assert!(
        get("feeds").seen.contains("no /etc/tickring/feeds"),
        "{:?}",
        get("feeds")
    );
    assert!(get("feeds")
        .fix
        .as_deref()
        .unwrap()
        .contains("tickring_feeds"));
    assert_eq!(get("thp").status, Status::Pass);
    assert_eq!(get("hugepages.mount").status, Status::Pass);
    assert_eq!(get("hugepages.reserved").status, Status::Pass);
    assert_eq!(get("clocksource").status, Status::Pass);
    assert_eq!(get("io_uring").status, Status::Pass);
    assert_eq!(get("isolcpus").status, Status::Skip);
    // Every check is reported, none silently left out.
    assert_eq!(checks.len(), CHECKS.len());
    let t = good_tree();
    t.file(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never\n",
    );
    let checks = t.run(Some(vec![]));
    assert_eq!(checks[0].status, Status::Warn);
    assert!(checks[0].seen.contains("no *.toml"));
    assert_eq!(
        checks.iter().find(|c| c.name == "thp").unwrap().status,
        Status::Warn
    );
}

#[test]
fn hugepages_mount_missing_warns_for_auto_and_fails_for_hugepages_backing() {
    let t = good_tree();
    t.file(
        "/proc/mounts",
        "/dev/root / ext4 rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\n",
    );
    let c = t.check(&two_feeds(), "hugepages.mount");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.seen.contains("not hugetlbfs"), "{c:?}");
    assert!(c
        .fix
        .unwrap()
        .contains("mount -t hugetlbfs -o pagesize=2048K"));
    let mut strict = two_feeds();
    strict[1].backing = Backing::HugePages {
        dir: "/dev/hugepages/tickring".into(),
        page_size: 2 << 20,
    };
    let c = t.check(&strict, "hugepages.mount");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.seen.contains("will not start"), "{c:?}");
    // A hugetlbfs of another page size is not enough either.
    let t = good_tree();
    t.file(
        "/proc/mounts",
        &MOUNTS.replace("pagesize=2M", "pagesize=1G"),
    );
    let c = t.check(&strict, "hugepages.mount");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.seen.contains("1 GiB pages, 2 MiB wanted"), "{c:?}");
    // shm everywhere: nothing to check.
    let mut shm = two_feeds();
    for f in &mut shm {
        f.backing = Backing::Shm {
            dir: "/dev/shm/tickring".into(),
        };
    }
    assert_eq!(status(&t, &shm, "hugepages.mount"), Status::Skip);
    assert_eq!(status(&t, &shm, "hugepages.reserved"), Status::Skip);
}

#[test]
fn hugepages_reserved_counts_rings_books_and_pages_already_held() {
    let t = good_tree();
    // Each default feed: 65536 slots -> 3 x 2 MiB ring + 1 book page.
    let c = t.check(&two_feeds(), "hugepages.reserved");
    assert_eq!(c.status, Status::Pass, "{c:?}");
    assert!(c.wanted.starts_with("8 x 2 MiB"), "{c:?}");
    t.file(
        "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
        "5\n",
    );
    let c = t.check(&two_feeds(), "hugepages.reserved");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(
        c.fix.as_deref().unwrap().contains("vm.nr_hugepages=19"),
        "{c:?}"
    );
    assert!(c
        .fix
        .as_deref()
        .unwrap()
        .contains("tickring_host_hugepages: [{size_kb: 2048, count: "));
    let mut strict = two_feeds();
    strict[0].backing = Backing::HugePages {
        dir: "/dev/hugepages/tickring".into(),
        page_size: 2 << 20,
    };
    assert_eq!(status(&t, &strict, "hugepages.reserved"), Status::Fail);
    // Feed a already runs: its ring and book region hold 4 pages.
    t.sized("/dev/hugepages/tickring/a.ring", 6 << 20)
        .sized("/dev/hugepages/tickring/a.books", 2 << 20);
    let c = t.check(&strict, "hugepages.reserved");
    assert_eq!(c.status, Status::Pass, "{c:?}");
    assert!(c.seen.contains("4 held"), "{c:?}");
    // No pool at all.
    t.rm("/sys/kernel/mm/hugepages");
    let c = t.check(&strict, "hugepages.reserved");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.seen.contains("no 2 MiB huge page pool"), "{c:?}");
}

#[test]
fn thp_always_warns_and_a_kernel_without_thp_is_skipped() {
    let t = good_tree();
    t.file(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never\n",
    );
    let c = t.check(&two_feeds(), "thp");
    assert_eq!((c.status, c.seen.as_str()), (Status::Warn, "always"));
    assert!(c.fix.unwrap().contains("transparent_hugepage=madvise"));
    t.file(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "always madvise never\n",
    );
    let c = t.check(&two_feeds(), "thp");
    assert_eq!(c.status, Status::Warn);
    assert!(c.seen.contains("transparent_hugepage/enabled"), "{c:?}");
    t.rm("/sys/kernel/mm/transparent_hugepage");
    assert_eq!(status(&t, &two_feeds(), "thp"), Status::Skip);
}

#[test]
fn an_unpinned_feed_warns() {
    let t = good_tree();
    let feeds = vec![feed("a", Some(2)), feed("b", None)];
    let c = t.check(&feeds, "cores.pinned");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.seen.contains("b"), "{c:?}");
}

#[test]
fn a_core_that_is_not_online_fails() {
    let t = good_tree();
    t.file("/sys/devices/system/cpu/online", "0-2\n");
    let c = t.check(&two_feeds(), "cores.exist");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.seen.contains("3 (b core)"), "{c:?}");
}

#[test]
fn two_collectors_on_one_core_fail_and_housekeeping_on_a_hot_core_warns() {
    let t = good_tree();
    let feeds = vec![feed("a", Some(2)), feed("b", Some(2))];
    let c = t.check(&feeds, "cores.shared");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.seen.contains("core 2: a hot loop + b hot loop"), "{c:?}");
    let mut feeds = two_feeds();
    feeds[1].sqpoll = true;
    feeds[1].sqpoll_core = Some(2);
    assert_eq!(status(&t, &feeds, "cores.shared"), Status::Fail);
    let mut feeds = two_feeds();
    feeds[1].housekeeping_core = Some(2);
    let c = t.check(&feeds, "cores.shared");
    assert_eq!(c.status, Status::Warn, "{c:?}");
}

#[test]
fn hot_cores_outside_isolcpus_warn_with_the_kernel_args() {
    let t = good_tree();
    t.file("/sys/devices/system/cpu/isolated", "3\n");
    let c = t.check(&two_feeds(), "isolcpus");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.seen.contains("missing 2"), "{c:?}");
    assert!(
        c.fix.unwrap().contains("isolcpus=managed_irq,domain,2-3"),
        "fix names the whole list"
    );
    // Older kernels: no sysfs file, the command line tells.
    t.rm("/sys/devices/system/cpu/isolated").file(
        "/proc/cmdline",
        "root=/dev/sda1 isolcpus=domain,managed_irq,2-3 -- isolcpus=9\n",
    );
    let c = t.check(&two_feeds(), "isolcpus");
    assert_eq!(c.status, Status::Pass, "{c:?}");
    assert!(c.seen.contains("/proc/cmdline"), "{c:?}");
}

#[test]
fn hot_cores_outside_nohz_full_warn() {
    let t = good_tree();
    t.file("/sys/devices/system/cpu/nohz_full", "(null)\n");
    let c = t.check(&two_feeds(), "nohz_full");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.fix.unwrap().contains("nohz_full=2-3 rcu_nocbs=2-3"));
    t.file("/sys/devices/system/cpu/nohz_full", "1-3,5\n");
    assert_eq!(status(&t, &two_feeds(), "nohz_full"), Status::Pass);
}

#[test]
fn hot_cores_with_rcu_callbacks_warn() {
    // good_tree: nohz_full 2-3, which the kernel offloads by itself.
    let t = good_tree();
    let c = t.check(&two_feeds(), "rcu_nocbs");
    assert_eq!(c.status, Status::Pass, "{c:?}");
    assert!(c.seen.contains("nohz_full 2-3"), "{c:?}");
    t.file("/sys/devices/system/cpu/nohz_full", "(null)\n");
    let c = t.check(&two_feeds(), "rcu_nocbs");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.seen.contains("RCU callbacks may run on 2-3"), "{c:?}");
    assert!(c.fix.unwrap().contains("rcu_nocbs=2-3"));
    t.file("/proc/cmdline", "root=/dev/sda1 rcu_nocbs=1-3\n");
    let c = t.check(&two_feeds(), "rcu_nocbs");
    assert_eq!(c.status, Status::Pass, "{c:?}");
    assert!(c.seen.contains("rcu_nocbs=1-3"), "{c:?}");
    t.file("/proc/cmdline", "root=/dev/sda1 rcu_nocbs=2-x\n");
    let c = t.check(&two_feeds(), "rcu_nocbs");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.seen.contains("/proc/cmdline"), "{c:?}");
}

#[test]
fn irqbalance_free_to_use_hot_cores_warns() {
    let t = good_tree();
    t.file("/etc/default/irqbalance", "IRQBALANCE_BANNED_CPULIST=3\n");
    let c = t.check(&two_feeds(), "irqbalance");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.seen.contains("may route interrupts to 2"), "{c:?}");
    assert!(c.fix.unwrap().contains("IRQBALANCE_BANNED_CPULIST=2-3"));
    // The old hex mask form.
    t.file(
        "/etc/default/irqbalance",
        "IRQBALANCE_BANNED_CPUS=0000000c\n",
    );
    assert_eq!(status(&t, &two_feeds(), "irqbalance"), Status::Pass);
    // Red Hat's file.
    t.rm("/etc/default/irqbalance").file(
        "/etc/sysconfig/irqbalance",
        "IRQBALANCE_BANNED_CPUS=\"4\"\n",
    );
    assert_eq!(status(&t, &two_feeds(), "irqbalance"), Status::Warn);
    // No setting: irqbalance keeps off isolated CPUs by itself.
    t.rm("/etc/sysconfig/irqbalance");
    let c = t.check(&two_feeds(), "irqbalance");
    assert_eq!(c.status, Status::Pass, "{c:?}");
    t.file("/sys/devices/system/cpu/isolated", "")
        .file("/sys/devices/system/cpu/nohz_full", "3");
    assert_eq!(status(&t, &two_feeds(), "irqbalance"), Status::Warn);
    // Not running: nothing to ban.
    t.rm("/proc/731");
    let c = t.check(&two_feeds(), "irqbalance");
    assert_eq!((c.status, c.seen.as_str()), (Status::Pass, "not running"));
}

#[test]
fn a_bad_irqbalance_mask_is_reported_naming_the_file() {
    let t = good_tree();
    t.file("/etc/default/irqbalance", "IRQBALANCE_BANNED_CPUS=zz\n");
    let c = t.check(&two_feeds(), "irqbalance");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.seen.contains("etc/default/irqbalance"), "{c:?}");
    assert!(c.seen.contains("IRQBALANCE_BANNED_CPUS"), "{c:?}");
}

#[test]
fn a_governor_other_than_performance_warns_and_no_cpufreq_is_skipped() {
    let t = good_tree();
    t.file(
        "/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor",
        "powersave\n",
    );
    let c = t.check(&two_feeds(), "governor");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.seen.contains("powersave on 3"), "{c:?}");
    assert!(c
        .fix
        .unwrap()
        .contains("cpupower -c 3 frequency-set -g performance"));
    t.rm("/sys/devices/system/cpu/cpu2")
        .rm("/sys/devices/system/cpu/cpu3");
    let c = t.check(&two_feeds(), "governor");
    assert_eq!(c.status, Status::Skip, "{c:?}");
    assert!(c.seen.contains("no cpufreq"), "{c:?}");
}

#[test]
fn memlock_below_the_ring_without_cap_ipc_lock_fails() {
    let t = good_tree();
    t.file(
        "/usr/lib/systemd/system/tickring-collector@.service",
        "[Service]\nLimitMEMLOCK=64K\n",
    );
    let c = t.check(&two_feeds(), "memlock");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.seen.contains("LimitMEMLOCK=64K"), "{c:?}");
    assert!(c.wanted.contains("a 6 MiB"), "{c:?}");
    // CAP_IPC_LOCK lifts the limit.
    t.file(
        "/usr/lib/systemd/system/tickring-collector@.service",
        "[Service]\nLimitMEMLOCK=64K\nAmbientCapabilities=CAP_IPC_LOCK\n",
    );
    assert_eq!(status(&t, &two_feeds(), "memlock"), Status::Pass);
    // A drop-in of one instance takes both away again.
    t.file(
        "/etc/systemd/system/tickring-collector@b.service.d/override.conf",
        "[Service]\nAmbientCapabilities=\nLimitMEMLOCK=1M\n",
    );
    let c = t.check(&two_feeds(), "memlock");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.fix.as_deref().unwrap().contains("run b under"), "{c:?}");
}

#[test]
fn memlock_prefers_a_running_collector_then_falls_back_to_this_process() {
    let t = good_tree();
    let mut feeds = two_feeds();
    t.file("/etc/tickring/feeds/a.toml", "");
    feeds[0].file = t.root.join("etc/tickring/feeds/a.toml");
    // Another process with a config of the same name, elsewhere: not ours.
    t.file("/proc/4243/comm", "tickring\n")
        .file(
            "/proc/4243/cmdline",
            "tickring\0collect\0--config=/tmp/demo/a.toml\0",
        )
        .file("/proc/4243/limits", "Max locked memory         1 1 bytes\n")
        .file("/tmp/demo/a.toml", "");
    assert_eq!(status(&t, &feeds, "memlock"), Status::Pass);
    t.file("/proc/4242/comm", "tickring\n")
        .file(
            "/proc/4242/cmdline",
            "/usr/bin/tickring\0collect\0--config\0/etc/tickring/feeds/a.toml\0",
        )
        .file(
            "/proc/4242/limits",
            "Limit                     Soft Limit           Hard Limit           Units\n\
             Max locked memory         65536                65536                bytes\n",
        )
        .file(
            "/proc/4242/status",
            "Name:\ttickring\nCapEff:\t0000000000000000\n",
        );
    let c = t.check(&feeds, "memlock");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(
        c.seen.contains("a: 64 KiB (running collector pid 4242)"),
        "{c:?}"
    );
    assert!(
        c.seen
            .contains("b: unlimited + CAP_IPC_LOCK (LimitMEMLOCK=infinity"),
        "{c:?}"
    );
    t.file(
        "/proc/4242/status",
        "Name:\ttickring\nCapEff:\t0000000000004000\n",
    );
    assert_eq!(status(&t, &feeds, "memlock"), Status::Pass);
    // No unit, no collector: what a collector started from here would get.
    t.rm("/proc/4242").rm("/usr/lib/systemd/system").file(
        "/proc/self/limits",
        "Max locked memory         8388608              8388608              bytes\n",
    );
    let c = t.check(&feeds, "memlock");
    assert_eq!(c.status, Status::Pass, "{c:?}");
    assert!(c.seen.contains("8 MiB (the doctor's own limit"), "{c:?}");
    t.file(
        "/proc/self/limits",
        "Max locked memory         65536              65536              bytes\n",
    );
    assert_eq!(status(&t, &feeds, "memlock"), Status::Fail);
}

#[test]
fn io_uring_disabled_fails_and_an_old_kernel_passes() {
    let t = good_tree();
    t.file("/proc/sys/kernel/io_uring_disabled", "2\n");
    let c = t.check(&two_feeds(), "io_uring");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.fix.unwrap().contains("kernel.io_uring_disabled=0"));
    t.file("/proc/sys/kernel/io_uring_disabled", "1\n")
        .file("/proc/sys/kernel/io_uring_group", "-1\n");
    assert_eq!(status(&t, &two_feeds(), "io_uring"), Status::Fail);
    t.file("/proc/sys/kernel/io_uring_group", "990\n");
    assert_eq!(status(&t, &two_feeds(), "io_uring"), Status::Warn);
    t.rm("/proc/sys/kernel/io_uring_disabled");
    let c = t.check(&two_feeds(), "io_uring");
    assert_eq!(c.status, Status::Pass, "{c:?}");
    assert!(c.seen.contains("before 6.6"), "{c:?}");
    t.file("/proc/sys/kernel/io_uring_disabled", "zero\n");
    let c = t.check(&two_feeds(), "io_uring");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(
        c.seen
            .contains("io_uring_disabled: \"zero\" is not an integer"),
        "{c:?}"
    );
}

#[test]
fn rt_throttling_warns_only_when_a_feed_wants_sched_fifo() {
    let t = good_tree();
    t.file("/proc/sys/kernel/sched_rt_runtime_us", "950000\n");
    let c = t.check(&two_feeds(), "sched_rt_runtime");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(
        c.seen.contains("stopped 50000 us every period under load"),
        "{c:?}"
    );
    // A busy-polling FIFO loop never sleeps: it is throttled every period.
    let mut feeds = two_feeds();
    feeds[1].busy_poll = true;
    let c = t.check(&feeds, "sched_rt_runtime");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(
        c.seen
            .contains("stopped 50000 us every period, always for b (busy_poll)"),
        "{c:?}"
    );
    let mut feeds = two_feeds();
    for f in &mut feeds {
        f.sched_fifo_priority = None;
    }
    assert_eq!(status(&t, &feeds, "sched_rt_runtime"), Status::Skip);
}

#[test]
fn a_clocksource_other_than_tsc_warns() {
    let t = good_tree();
    t.file(
        "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        "hpet\n",
    );
    let c = t.check(&two_feeds(), "clocksource");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.fix.unwrap().contains("clocksource=tsc"));
    t.file(
        "/sys/devices/system/clocksource/clocksource0/available_clocksource",
        "kvm-clock\n",
    );
    let c = t.check(&two_feeds(), "clocksource");
    assert!(c.fix.unwrap().contains("TSC is not offered"));
}

#[test]
fn a_hot_core_on_another_numa_node_than_the_nic_warns() {
    let t = good_tree();
    let feeds = vec![feed("a", Some(2)), feed("b", Some(5))];
    let c = t.check(&feeds, "numa");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.seen.contains("eth0 on node 0 (default route)"), "{c:?}");
    assert!(c.seen.contains("core 5 node 1"), "{c:?}");
    assert!(c.fix.unwrap().contains("node 0: CPUs 0-3"));
    // Unknown NIC node: skipped, saying so.
    t.file("/sys/class/net/eth0/device/numa_node", "-1\n");
    let c = t.check(&feeds, "numa");
    assert_eq!(c.status, Status::Skip, "{c:?}");
    assert!(c.seen.contains("unknown"), "{c:?}");
    // One node: nothing to mismatch.
    t.rm("/sys/devices/system/node/node1");
    assert_eq!(status(&t, &feeds, "numa"), Status::Pass);
}

#[test]
fn huge_pages_short_on_the_collectors_node_warn() {
    let t = good_tree();
    let c = t.check(&two_feeds(), "hugepages.numa");
    assert_eq!(c.status, Status::Pass, "{c:?}");
    assert_eq!(c.wanted, "node 0: 8 x 2 MiB (a, b)");
    // 16 free in total, but only 4 on node 0 where both collectors run.
    t.file(
        "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/free_hugepages",
        "4\n",
    )
    .file(
        "/sys/devices/system/node/node1/hugepages/hugepages-2048kB/free_hugepages",
        "12\n",
    );
    assert_eq!(status(&t, &two_feeds(), "hugepages.reserved"), Status::Pass);
    let c = t.check(&two_feeds(), "hugepages.numa");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.fix.unwrap().contains(
        "echo 12 > /sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages"
    ),);
    // One node: nothing to balance.
    t.rm("/sys/devices/system/node/node1");
    assert_eq!(status(&t, &two_feeds(), "hugepages.numa"), Status::Pass);
}

#[test]
fn a_device_interrupt_on_a_hot_core_warns() {
    let t = good_tree();
    // IRQ 99 has no handler (not in /proc/interrupts): never fires.
    let c = t.check(&two_feeds(), "irq.affinity");
    assert_eq!(c.status, Status::Pass, "{c:?}");
    assert!(c.seen.contains("none of 3 IRQs"), "{c:?}");
    t.file("/proc/irq/28/effective_affinity_list", "3\n");
    let c = t.check(&two_feeds(), "irq.affinity");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.seen.contains("28 (eth0-rx-0) -> 3"), "{c:?}");
    assert!(c
        .fix
        .unwrap()
        .contains("echo 0-1,4-7 > /proc/irq/28/smp_affinity_list"),);
    // Older kernels: no effective affinity, the allowed set counts.
    t.rm("/proc/irq/28/effective_affinity_list")
        .file("/proc/irq/28/smp_affinity_list", "0-7\n");
    assert_eq!(status(&t, &two_feeds(), "irq.affinity"), Status::Warn);
    t.rm("/proc/irq");
    assert_eq!(status(&t, &two_feeds(), "irq.affinity"), Status::Skip);
}

#[test]
fn an_image_without_procfs_or_sysfs_is_skipped_not_passed() {
    let t = Tree::new();
    t.file("/etc/hostname", "image\n");
    let checks = t.run(Some(two_feeds()));
    let get = |n: &str| checks.iter().find(|c| c.name == n).unwrap();
    for name in ["io_uring", "irqbalance", "thp", "clocksource", "governor"] {
        let c = get(name);
        assert_eq!(c.status, Status::Skip, "{c:?}");
        assert!(
            c.seen.contains("no procfs under") || c.seen.contains("no sysfs under"),
            "{c:?}"
        );
    }
    // What a booted system would have to show is still reported as missing.
    assert_eq!(get("hugepages.mount").status, Status::Warn);
}

#[test]
fn two_feeds_on_one_ring_or_one_metrics_port_fail() {
    let t = good_tree();
    let c = t.check(&two_feeds(), "feeds.conflicts");
    assert_eq!(c.status, Status::Pass, "{c:?}");
    let mut feeds = two_feeds();
    feeds[1].ring_name = "a".into();
    let c = t.check(&feeds, "feeds.conflicts");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.seen.contains("ring \"a\" (auto): a, b"), "{c:?}");
    let mut feeds = two_feeds();
    feeds[1].metrics_listen = feeds[0].metrics_listen;
    let c = t.check(&feeds, "feeds.conflicts");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.seen.contains("metrics 127.0.0.1:"), "{c:?}");
    let mut feeds = two_feeds();
    feeds[0].metrics_listen = Some("0.0.0.0:9101".parse().unwrap());
    feeds[1].metrics_listen = Some("127.0.0.1:9101".parse().unwrap());
    assert_eq!(status(&t, &feeds, "feeds.conflicts"), Status::Fail);
    feeds[1].metrics_listen = Some("127.0.0.1:9102".parse().unwrap());
    assert_eq!(status(&t, &feeds, "feeds.conflicts"), Status::Pass);
    // Port 0 (any free port) never clashes.
    for f in &mut feeds {
        f.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    }
    assert_eq!(status(&t, &feeds, "feeds.conflicts"), Status::Pass);
}
