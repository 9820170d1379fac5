//! The checks, one function each, in the order the report lists them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::feeds::Feed;
use super::host::{
    format_cpulist, mount_of, parse_cpulist, parse_cpumask, parse_size, CpuSet, Host, HostError,
};
use super::{Check, Status};

/// CAP_IPC_LOCK's bit in `CapEff` / capability sets.
const CAP_IPC_LOCK_BIT: u32 = 14;

struct Ctx<'a> {
    host: &'a Host,
    feeds_dir: &'a Path,
    /// `None`: the feeds directory does not exist.
    found: Option<&'a [Feed]>,
    feeds: &'a [Feed],
}

impl Ctx<'_> {
    /// Hot-loop cores -> the feeds pinned there.
    fn hot_cores(&self) -> BTreeMap<usize, Vec<&str>> {
        let mut m: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
        for f in self.feeds {
            if let Some(c) = f.core {
                m.entry(c).or_default().push(&f.name);
            }
        }
        m
    }

    /// Cores something of ours spins or runs latency-critical work on: the
    /// hot loops and the SQPOLL kernel threads.
    fn critical_cores(&self) -> CpuSet {
        self.feeds
            .iter()
            .flat_map(|f| [f.core, f.sqpoll_core])
            .flatten()
            .collect()
    }

    /// The check's skip when there is no feed config to check against.
    fn skip_without_feeds(&self, name: &'static str, wanted: &str) -> Option<Check> {
        self.feeds.is_empty().then(|| {
            Check::new(
                name,
                Status::Skip,
                "no feed configs".into(),
                wanted.to_owned(),
            )
        })
    }

    fn fifo_feeds(&self) -> Vec<&Feed> {
        self.feeds
            .iter()
            .filter(|f| f.sched_fifo_priority.is_some())
            .collect()
    }
}

type CheckFn = fn(&Ctx) -> Result<Check, HostError>;

/// Every check, in report order. A check that cannot read or understand a
/// host file becomes a warning naming the file.
const CHECKS: &[(&str, CheckFn)] = &[
    ("feeds", feeds),
    ("feeds.conflicts", feeds_conflicts),
    ("hugepages.mount", hugepages_mount),
    ("hugepages.reserved", hugepages_reserved),
    ("hugepages.numa", hugepages_numa),
    ("thp", thp),
    ("cores.pinned", cores_pinned),
    ("cores.exist", cores_exist),
    ("cores.shared", cores_shared),
    ("isolcpus", isolcpus),
    ("nohz_full", nohz_full),
    ("rcu_nocbs", rcu_nocbs),
    ("irqbalance", irqbalance),
    ("irq.affinity", irq_affinity),
    ("governor", governor),
    ("memlock", memlock),
    ("io_uring", io_uring),
    ("sched_rt_runtime", sched_rt_runtime),
    ("clocksource", clocksource),
    ("numa", numa),
];

pub(super) fn run_all(host: &Host, feeds_dir: &Path, found: Option<Vec<Feed>>) -> Vec<Check> {
    let ctx = Ctx {
        host,
        feeds_dir,
        found: found.as_deref(),
        feeds: found.as_deref().unwrap_or(&[]),
    };
    CHECKS
        .iter()
        .map(|(name, f)| {
            f(&ctx).unwrap_or_else(|e| {
                Check::new(
                    name,
                    Status::Warn,
                    format!("cannot tell: {e}"),
                    "a readable, well-formed file".into(),
                )
                .fix("check that file (the kernel or tool that writes it)")
            })
        })
        .collect()
}

fn list(names: &[&str]) -> String {
    names.join(", ")
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 20 {
        let tenths = bytes.saturating_mul(10).div_ceil(1 << 20);
        format!("{}.{} MiB", tenths / 10, tenths % 10)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

fn page_str(page: u64) -> String {
    if page >= 1 << 30 {
        format!("{} GiB", page >> 30)
    } else if page >= 1 << 20 {
        format!("{} MiB", page >> 20)
    } else {
        format!("{} KiB", page >> 10)
    }
}

fn kernel_args_fix(args: &str) -> String {
    format!(
        "add `{args}` to the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, \
         update-grub, reboot; Ansible: tickring_host_isolated_cores)"
    )
}

// ---------------------------------------------------------------- feeds

fn feeds(c: &Ctx) -> Result<Check, HostError> {
    let dir = c.feeds_dir.display();
    let wanted = "one <feed>.toml per collector".to_owned();
    let fix = format!(
        "put the feed configs in {dir} (the package ships examples; Ansible: tickring_feeds) \
         or point --config-dir at them"
    );
    Ok(match c.found {
        None => Check::new(
            "feeds",
            Status::Warn,
            format!("no {dir}: only host-wide checks"),
            wanted,
        )
        .fix(fix),
        Some([]) => Check::new(
            "feeds",
            Status::Warn,
            format!("no *.toml in {dir}: only host-wide checks"),
            wanted,
        )
        .fix(fix),
        Some(feeds) => {
            let names: Vec<String> = feeds
                .iter()
                .map(|f| match f.core {
                    Some(core) => format!("{} (core {core})", f.name),
                    None => f.name.clone(),
                })
                .collect();
            Check::new(
                "feeds",
                Status::Pass,
                format!("{} in {dir}: {}", feeds.len(), names.join(", ")),
                wanted,
            )
        }
    })
}

/// Two collectors writing one ring (the second cannot take the writer
/// lock) or listening on one metrics address (the second cannot bind):
/// both stop a collector from starting.
fn feeds_conflicts(c: &Ctx) -> Result<Check, HostError> {
    const NAME: &str = "feeds.conflicts";
    let wanted = "a ring name and a metrics address of its own for each feed".to_owned();
    if let Some(skip) = c.skip_without_feeds(NAME, &wanted) {
        return Ok(skip);
    }
    let mut rings: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for f in c.feeds {
        // `auto` may end up in /dev/shm: compare by name across both.
        let dir = match f.backing {
            crate::ring::Backing::Auto { .. } => "auto".to_owned(),
            _ => f.ring_dir().display().to_string(),
        };
        rings
            .entry(format!("ring {:?} ({dir})", f.ring_name))
            .or_default()
            .push(&f.name);
    }
    let mut clashes: Vec<String> = rings
        .iter()
        .filter(|(_, who)| who.len() > 1)
        .map(|(what, who)| format!("{what}: {}", list(who)))
        .collect();
    // One port on one address, or on any address next to a specific one
    // (0.0.0.0:9101 takes 127.0.0.1:9101 too). Port 0 is any free port.
    let addrs: Vec<(&str, std::net::SocketAddr)> = c
        .feeds
        .iter()
        .filter_map(|f| f.metrics_listen.map(|a| (f.name.as_str(), a)))
        .filter(|(_, a)| a.port() != 0)
        .collect();
    for (i, (n1, a1)) in addrs.iter().enumerate() {
        for (n2, a2) in &addrs[i + 1..] {
            let overlap =
                a1.ip() == a2.ip() || a1.ip().is_unspecified() || a2.ip().is_unspecified();
            if a1.port() == a2.port() && overlap {
                clashes.push(format!("metrics {a1} / {a2}: {n1}, {n2}"));
            }
        }
    }
    if clashes.is_empty() {
        return Ok(Check::new(
            NAME,
            Status::Pass,
            format!(
                "{} rings, {} metrics addresses, all distinct",
                rings.len(),
                addrs.len()
            ),
            wanted,
        ));
    }
    Ok(Check::new(NAME, Status::Fail, clashes.join("; "), wanted).fix(
        "give each feed its own [ring] name and [metrics] listen port (Ansible: metrics_port of \
         each tickring_feeds entry)",
    ))
}

// ---------------------------------------------------------------- huge pages

/// A ring directory wanting huge pages of one size, and the feeds there.
struct HugeGroup<'a> {
    dir: PathBuf,
    page: u64,
    required: bool,
    feeds: Vec<&'a Feed>,
}

fn huge_groups<'a>(c: &Ctx<'a>) -> Vec<HugeGroup<'a>> {
    let mut groups: Vec<HugeGroup> = Vec::new();
    for f in c.feeds {
        let Some((dir, page, required)) = f.huge_placement() else {
            continue;
        };
        match groups.iter_mut().find(|g| g.dir == dir && g.page == page) {
            Some(g) => {
                g.required |= required;
                g.feeds.push(f);
            }
            None => groups.push(HugeGroup {
                dir,
                page,
                required,
                feeds: vec![f],
            }),
        }
    }
    groups
}

/// The default huge page size (`Hugepagesize:` in /proc/meminfo).
fn default_huge_page(host: &Host) -> Result<Option<u64>, HostError> {
    let Some(text) = host.read("/proc/meminfo")? else {
        return Ok(None);
    };
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Hugepagesize:") {
            return parse_size(v).map(Some).ok_or_else(|| HostError::Parse {
                path: host.path("/proc/meminfo"),
                what: format!("Hugepagesize {:?} is not a size", v.trim()),
            });
        }
    }
    Ok(None)
}

/// Whether `dir` sits on a hugetlbfs of `page`-byte pages: `Ok(())` or why not.
fn hugetlbfs_at(host: &Host, dir: &Path, page: u64) -> Result<Result<(), String>, HostError> {
    let mounts = host.mounts()?;
    let Some(m) = mount_of(&mounts, dir) else {
        return Ok(Err(format!("{} is on no mount", dir.display())));
    };
    if m.fstype != "hugetlbfs" {
        return Ok(Err(format!(
            "{} is on {} ({}), not hugetlbfs",
            dir.display(),
            m.point.display(),
            m.fstype
        )));
    }
    let size = match m.option("pagesize") {
        Some(s) => parse_size(s),
        None => default_huge_page(host)?,
    };
    match size {
        Some(s) if s == page => Ok(Ok(())),
        Some(s) => Ok(Err(format!(
            "hugetlbfs at {} has {} pages, {} wanted",
            m.point.display(),
            page_str(s),
            page_str(page)
        ))),
        None => Ok(Err(format!(
            "hugetlbfs at {}: page size unknown",
            m.point.display()
        ))),
    }
}

fn mount_fix(dir: &Path, page: u64) -> String {
    let mnt = dir.parent().unwrap_or(dir).display();
    format!(
        "mount -t hugetlbfs -o pagesize={}K,gid=tickring,mode=1770 none {mnt} \
         (persist in /etc/fstab or a .mount unit; Ansible: tickring_host_hugetlbfs and tickring_host_hugetlbfs_path)",
        page / 1024
    )
}

fn hugepages_mount(c: &Ctx) -> Result<Check, HostError> {
    const NAME: &str = "hugepages.mount";
    let mut groups = huge_groups(c);
    if c.feeds.is_empty() {
        // Host-wide: what the default (`backing = "auto"`) would use.
        groups.push(HugeGroup {
            dir: crate::ring::HUGEPAGE_DIR.into(),
            page: crate::ring::DEFAULT_HUGE_PAGE_SIZE,
            required: false,
            feeds: vec![],
        });
    } else if groups.is_empty() {
        return skip(
            NAME,
            "every feed has ring.backing = \"shm\"",
            "no huge pages",
        );
    }
    let mut status = Status::Pass;
    let mut seen = Vec::new();
    let mut wanted = Vec::new();
    let mut fixes = Vec::new();
    for g in &groups {
        wanted.push(format!(
            "hugetlbfs ({} pages) at {}",
            page_str(g.page),
            g.dir.display()
        ));
        match hugetlbfs_at(c.host, &g.dir, g.page)? {
            Ok(()) => seen.push(format!(
                "{}: hugetlbfs, {} pages",
                g.dir.display(),
                page_str(g.page)
            )),
            Err(why) => {
                let names: Vec<&str> = g.feeds.iter().map(|f| f.name.as_str()).collect();
                let effect = if g.required {
                    "backing = \"hugepages\": the collector will not start"
                } else if names.is_empty() {
                    "rings would go to /dev/shm (4 KiB pages)"
                } else {
                    "backing = \"auto\": rings fall back to /dev/shm (4 KiB pages)"
                };
                let who = if names.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", list(&names))
                };
                seen.push(format!("{why}{who}; {effect}"));
                status = status.max(if g.required {
                    Status::Fail
                } else {
                    Status::Warn
                });
                fixes.push(mount_fix(&g.dir, g.page));
            }
        }
    }
    Ok(Check::new(NAME, status, seen.join("; "), wanted.join("; ")).fix(fixes.join("; ")))
}

fn hugepages_reserved(c: &Ctx) -> Result<Check, HostError> {
    const NAME: &str = "hugepages.reserved";
    let groups = huge_groups(c);
    let default_page = default_huge_page(c.host)?;
    if c.feeds.is_empty() {
        let page = default_page.unwrap_or(crate::ring::DEFAULT_HUGE_PAGE_SIZE);
        let nr = pool(c.host, page, "nr_hugepages")?.unwrap_or(0);
        // One feed with the default ring (65536 slots): 3 ring pages + 1
        // book region page of 2 MiB.
        let per_feed =
            (layout_pages(1 << 16, page) + super::feeds::books_bytes(2, 10, page) / page).max(1);
        let wanted = format!(
            "{per_feed} x {} per feed with a default ring (no feed configs)",
            page_str(page)
        );
        return Ok(if nr > 0 {
            Check::new(
                NAME,
                Status::Pass,
                format!("{nr} x {} reserved", page_str(page)),
                wanted,
            )
        } else {
            Check::new(
                NAME,
                Status::Warn,
                format!("no {} huge pages reserved", page_str(page)),
                wanted,
            )
            .fix(reserve_fix(page, per_feed, default_page))
        });
    }
    if groups.is_empty() {
        return skip(
            NAME,
            "every feed has ring.backing = \"shm\"",
            "no huge pages",
        );
    }
    // Per page size: pages needed, pages already held by our files.
    let mut by_size: BTreeMap<u64, (u64, u64, bool, Vec<String>)> = BTreeMap::new();
    for g in &groups {
        let on_huge = hugetlbfs_at(c.host, &g.dir, g.page)?.is_ok();
        let e = by_size.entry(g.page).or_default();
        e.2 |= g.required;
        for f in &g.feeds {
            let (pages, held) = feed_pages(c.host, g, f, on_huge);
            e.0 += pages;
            e.1 += held;
            e.3.push(format!("{} {pages}", f.name));
        }
    }
    let mut status = Status::Pass;
    let (mut seen, mut wanted, mut fixes) = (Vec::new(), Vec::new(), Vec::new());
    for (page, (need, held, required, per_feed)) in &by_size {
        let nr = pool(c.host, *page, "nr_hugepages")?;
        let free = pool(c.host, *page, "free_hugepages")?.unwrap_or(0);
        wanted.push(format!(
            "{need} x {} (ring + book region: {})",
            page_str(*page),
            per_feed.join(", ")
        ));
        let have = free + held;
        seen.push(match nr {
            None => format!("no {} huge page pool", page_str(*page)),
            Some(nr) => format!(
                "{nr} x {} reserved, {free} free{}",
                page_str(*page),
                if *held > 0 {
                    format!(", {held} held by these rings already")
                } else {
                    String::new()
                }
            ),
        });
        if have < *need {
            status = status.max(if *required {
                Status::Fail
            } else {
                Status::Warn
            });
            fixes.push(reserve_fix(
                *page,
                nr.unwrap_or(0) + (need - have),
                default_page,
            ));
        }
    }
    Ok(Check::new(NAME, status, seen.join("; "), wanted.join("; ")).fix(fixes.join("; ")))
}

fn layout_pages(capacity: u64, page: u64) -> u64 {
    super::feeds::round_up(crate::ring::layout::bytes_needed(capacity), page) / page
}

fn pool(host: &Host, page: u64, file: &str) -> Result<Option<u64>, HostError> {
    let p = format!(
        "/sys/kernel/mm/hugepages/hugepages-{}kB/{file}",
        page / 1024
    );
    Ok(host.read_int(&p)?.map(|v| v.max(0) as u64))
}

fn reserve_fix(page: u64, total: u64, default_page: Option<u64>) -> String {
    if default_page.is_none_or(|d| d == page) {
        format!(
            "sysctl -w vm.nr_hugepages={total} (persist: vm.nr_hugepages = {total} in \
             /etc/sysctl.d/90-tickring.conf; Ansible: tickring_host_hugepages: [{{size_kb: {}, count: {total}}}])",
            page / 1024
        )
    } else {
        format!(
            "echo {total} > /sys/kernel/mm/hugepages/hugepages-{}kB/nr_hugepages, or boot with \
             `hugepagesz={}K hugepages={total}` (Ansible: tickring_host_hugepages with size_kb)",
            page / 1024,
            page / 1024
        )
    }
}

fn thp(c: &Ctx) -> Result<Check, HostError> {
    const FILE: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
    let wanted = "madvise or never".to_owned();
    let Some(v) = c.host.read_value(FILE)? else {
        return Ok(Check::new(
            "thp",
            Status::Skip,
            c.host.absent(FILE, "kernel without THP"),
            wanted,
        ));
    };
    let mode = v
        .split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .ok_or_else(|| HostError::Parse {
            path: c.host.path(FILE),
            what: format!("no [selected] mode in {v:?}"),
        })?;
    let status = match mode {
        "madvise" | "never" => Status::Pass,
        _ => Status::Warn,
    };
    Ok(Check::new("thp", status, mode.to_owned(), wanted).fix(
        "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (persist: kernel arg \
         transparent_hugepage=madvise; Ansible: tickring_host_thp: madvise)",
    ))
}

// ---------------------------------------------------------------- cores

fn cores_pinned(c: &Ctx) -> Result<Check, HostError> {
    const NAME: &str = "cores.pinned";
    let wanted = "every feed has [cpu] core".to_owned();
    if let Some(skip) = c.skip_without_feeds(NAME, &wanted) {
        return Ok(skip);
    }
    let unpinned: Vec<&str> = c
        .feeds
        .iter()
        .filter(|f| f.core.is_none())
        .map(|f| f.name.as_str())
        .collect();
    if unpinned.is_empty() {
        let hot = c.hot_cores();
        let list: Vec<String> = hot
            .iter()
            .map(|(core, n)| format!("{} on {core}", n.join("+")))
            .collect();
        return Ok(Check::new(NAME, Status::Pass, list.join(", "), wanted));
    }
    Ok(Check::new(
        NAME,
        Status::Warn,
        format!(
            "no [cpu] core: {} (the hot loop floats over every CPU)",
            list(&unpinned)
        ),
        wanted,
    )
    .fix(
        "set [cpu] core (and housekeeping_core) in each feed config, with the matching \
         CPUAffinity= in tickring-collector@<feed>.service.d/cpu.conf (Ansible: the core of each \
         tickring_feeds entry)",
    ))
}

fn online_cpus(host: &Host) -> Result<Option<(CpuSet, &'static str)>, HostError> {
    for f in [
        "/sys/devices/system/cpu/online",
        "/sys/devices/system/cpu/present",
    ] {
        if let Some(s) = host.read_cpulist(f)? {
            return Ok(Some((s, f)));
        }
    }
    Ok(None)
}

fn cores_exist(c: &Ctx) -> Result<Check, HostError> {
    const NAME: &str = "cores.exist";
    let mut wanted: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for f in c.feeds {
        for (what, core) in [
            ("core", f.core),
            ("housekeeping_core", f.housekeeping_core),
            ("sqpoll_core", f.sqpoll_core),
        ] {
            if let Some(core) = core {
                wanted
                    .entry(core)
                    .or_default()
                    .push(format!("{} {what}", f.name));
            }
        }
    }
    let want_set: CpuSet = wanted.keys().copied().collect();
    let wanted_s = format!("CPUs {} online", format_cpulist(&want_set));
    if wanted.is_empty() {
        return skip(NAME, "no feed names a core", "-");
    }
    let Some((online, file)) = online_cpus(c.host)? else {
        return skip(
            NAME,
            "no /sys/devices/system/cpu/online or present",
            wanted_s,
        );
    };
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(core, _)| !online.contains(core))
        .map(|(core, who)| format!("{core} ({})", who.join(", ")))
        .collect();
    let seen = format!("online: {} ({file})", format_cpulist(&online));
    if missing.is_empty() {
        return Ok(Check::new(NAME, Status::Pass, seen, wanted_s));
    }
    Ok(Check::new(
        NAME,
        Status::Fail,
        format!("{seen}; not online: {}", missing.join(", ")),
        wanted_s,
    )
    .fix("pick online cores in the feed configs ([cpu] core, housekeeping_core, [io_uring] sqpoll_core), or bring the CPUs online"))
}

fn cores_shared(c: &Ctx) -> Result<Check, HostError> {
    const NAME: &str = "cores.shared";
    let wanted = "one spinning thread per core (hot loops, SQPOLL threads)".to_owned();
    let mut users: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for f in c.feeds {
        if let Some(core) = f.core {
            users
                .entry(core)
                .or_default()
                .push(format!("{} hot loop", f.name));
        }
        if let Some(core) = f.sqpoll_core {
            users
                .entry(core)
                .or_default()
                .push(format!("{} SQPOLL", f.name));
        }
    }
    if users.is_empty() {
        return skip(NAME, "no feed pins a core", wanted);
    }
    let shared: Vec<String> = users
        .iter()
        .filter(|(_, u)| u.len() > 1)
        .map(|(core, u)| format!("core {core}: {}", u.join(" + ")))
        .collect();
    if !shared.is_empty() {
        return Ok(
            Check::new(NAME, Status::Fail, shared.join("; "), wanted).fix(
                "give each collector its own [cpu] core (and each SQPOLL thread its own \
             [io_uring] sqpoll_core); Ansible: distinct cores in tickring_feeds",
            ),
        );
    }
    let mut crowded = Vec::new();
    for f in c.feeds {
        if let Some(hk) = f.housekeeping_core {
            if let Some(u) = users.get(&hk) {
                crowded.push(format!(
                    "core {hk}: {} and {} housekeeping",
                    u.join(" + "),
                    f.name
                ));
            }
        }
    }
    let layout: Vec<String> = users
        .iter()
        .map(|(core, u)| format!("{core}: {}", u.join(" + ")))
        .collect();
    if crowded.is_empty() {
        return Ok(Check::new(NAME, Status::Pass, layout.join(", "), wanted));
    }
    Ok(Check::new(NAME, Status::Warn, crowded.join("; "), wanted)
        .fix("move housekeeping_core off the hot cores (e.g. to core 0 with the OS)"))
}

/// RCU callbacks kept off the hot cores: `rcu_nocbs=` on the command line
/// (there is no sysfs file for it), and the `nohz_full=` CPUs, which the
/// kernel offloads by itself.
fn rcu_nocbs(c: &Ctx) -> Result<Check, HostError> {
    const NAME: &str = "rcu_nocbs";
    let want = c.critical_cores();
    let wanted = format!("CPUs {} in rcu_nocbs (or nohz_full)", format_cpulist(&want));
    if want.is_empty() {
        return skip(NAME, "no feed pins a core", "the collectors' hot cores");
    }
    let mut have = CpuSet::new();
    let mut from = Vec::new();
    if let Some(v) = c.host.cmdline_arg("rcu_nocbs")? {
        let set = parse_cpulist(&v).map_err(|what| HostError::Parse {
            path: c.host.path("/proc/cmdline"),
            what: format!("rcu_nocbs=: {what}"),
        })?;
        from.push(format!("rcu_nocbs={}", format_cpulist(&set)));
        have.extend(set);
    }
    if let Some((set, src)) = kernel_cpuset(c, "/sys/devices/system/cpu/nohz_full", "nohz_full")? {
        if !set.is_empty() {
            from.push(format!("nohz_full {} ({src})", format_cpulist(&set)));
            have.extend(set);
        }
    }
    let seen = if from.is_empty() {
        "none (no rcu_nocbs= in /proc/cmdline, no nohz_full CPUs)".to_owned()
    } else {
        from.join(", ")
    };
    let missing: CpuSet = want.difference(&have).copied().collect();
    if missing.is_empty() {
        return Ok(Check::new(NAME, Status::Pass, seen, wanted));
    }
    let all: CpuSet = have.union(&want).copied().collect();
    Ok(Check::new(
        NAME,
        Status::Warn,
        format!(
            "{seen}; RCU callbacks may run on {}",
            format_cpulist(&missing)
        ),
        wanted,
    )
    .fix(kernel_args_fix(&format!(
        "rcu_nocbs={}",
        format_cpulist(&all)
    ))))
}

/// A kernel cpulist from sysfs, falling back to the command line argument
/// (`isolcpus=[flags,]LIST`, `nohz_full=LIST`) on kernels without the file.
fn kernel_cpuset(c: &Ctx, sys: &str, arg: &str) -> Result<Option<(CpuSet, String)>, HostError> {
    if let Some(set) = c.host.read_cpulist(sys)? {
        return Ok(Some((set, sys.to_owned())));
    }
    let Some(v) = c.host.cmdline_arg(arg)? else {
        return Ok(None);
    };
    // isolcpus flags (nohz, domain, managed_irq) come before the list.
    let list: Vec<&str> = v
        .split(',')
        .skip_while(|p| !p.starts_with(|ch: char| ch.is_ascii_digit()))
        .collect();
    let set = parse_cpulist(&list.join(",")).map_err(|what| HostError::Parse {
        path: c.host.path("/proc/cmdline"),
        what: format!("{arg}=: {what}"),
    })?;
    Ok(Some((set, format!("{arg}= in /proc/cmdline"))))
}

fn isolation_check(
    c: &Ctx,
    name: &str,
    sys: &str,
    arg: &str,
    fix_args: &str,
) -> Result<Check, HostError> {
    let want = c.critical_cores();
    let wanted = if want.is_empty() {
        "the collectors' hot cores".to_owned()
    } else {
        format!("CPUs {} in {arg}", format_cpulist(&want))
    };
    if want.is_empty() {
        let seen = match kernel_cpuset(c, sys, arg)? {
            Some((s, _)) => format!("{}; no feed pins a core", format_cpulist(&s)),
            None => "no feed pins a core".into(),
        };
        return Ok(Check::new(name, Status::Skip, seen, wanted));
    }
    let (have, source) = kernel_cpuset(c, sys, arg)?
        .unwrap_or_else(|| (CpuSet::new(), format!("no {sys}, no {arg}=")));
    let missing: CpuSet = want.difference(&have).copied().collect();
    let seen = format!("{} ({source})", format_cpulist(&have));
    if missing.is_empty() {
        return Ok(Check::new(name, Status::Pass, seen, wanted));
    }
    let all: CpuSet = have.union(&want).copied().collect();
    let l = format_cpulist(&all);
    Ok(Check::new(
        name,
        Status::Warn,
        format!("{seen}; missing {}", format_cpulist(&missing)),
        wanted,
    )
    .fix(kernel_args_fix(&fix_args.replace("{}", &l))))
}

fn isolcpus(c: &Ctx) -> Result<Check, HostError> {
    isolation_check(
        c,
        "isolcpus",
        "/sys/devices/system/cpu/isolated",
        "isolcpus",
        "isolcpus=managed_irq,domain,{}",
    )
}

fn nohz_full(c: &Ctx) -> Result<Check, HostError> {
    isolation_check(
        c,
        "nohz_full",
        "/sys/devices/system/cpu/nohz_full",
        "nohz_full",
        "nohz_full={} rcu_nocbs={}",
    )
}

/// `KEY=value` of a shell-style environment file, unquoted.
fn env_value(text: &str, key: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some(v) = line.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
            let v = v.split('#').next().unwrap_or("").trim();
            let v = v.trim_matches(|ch| ch == '"' || ch == '\'');
            found = Some(v.to_owned());
        }
    }
    found
}

fn irqbalance(c: &Ctx) -> Result<Check, HostError> {
    const NAME: &str = "irqbalance";
    let want = c.critical_cores();
    let wanted = if want.is_empty() {
        "no interrupts steered onto hot cores".to_owned()
    } else {
        format!("not running, or banned from {}", format_cpulist(&want))
    };
    if !c.host.has_procfs() {
        return skip(NAME, c.host.absent("/proc/<pid>/comm", ""), wanted);
    }
    let pids = c.host.pids_named("irqbalance")?;
    if pids.is_empty() {
        return Ok(Check::new(NAME, Status::Pass, "not running".into(), wanted));
    }
    let running = format!("running (pid {})", pids[0]);
    if want.is_empty() {
        return Ok(Check::new(
            NAME,
            Status::Pass,
            format!("{running}; no feed pins a core"),
            wanted,
        ));
    }
    // Its settings: Debian's /etc/default, Red Hat's /etc/sysconfig.
    let mut banned = CpuSet::new();
    let mut source = None;
    for file in ["/etc/default/irqbalance", "/etc/sysconfig/irqbalance"] {
        let Some(text) = c.host.read(file)? else {
            continue;
        };
        let mut any = false;
        if let Some(v) = env_value(&text, "IRQBALANCE_BANNED_CPULIST").filter(|v| !v.is_empty()) {
            banned.extend(parse_cpulist(&v).map_err(|what| HostError::Parse {
                path: c.host.path(file),
                what: format!("IRQBALANCE_BANNED_CPULIST: {what}"),
            })?);
            any = true;
        }
        if let Some(v) = env_value(&text, "IRQBALANCE_BANNED_CPUS").filter(|v| !v.is_empty()) {
            banned.extend(parse_cpumask(&v).map_err(|what| HostError::Parse {
                path: c.host.path(file),
                what: format!("IRQBALANCE_BANNED_CPUS: {what}"),
            })?);
            any = true;
        }
        if any {
            source = Some(file.to_owned());
            break;
        }
    }
    let source = match source {
        Some(s) => s,
        None => {
            // Without a setting, irqbalance (1.2 on) keeps off isolcpus and
            // nohz_full CPUs by itself.
            for (sys, arg) in [
                ("/sys/devices/system/cpu/isolated", "isolcpus"),
                ("/sys/devices/system/cpu/nohz_full", "nohz_full"),
            ] {
                if let Some((s, _)) = kernel_cpuset(c, sys, arg)? {
                    banned.extend(s);
                }
            }
            "its default: isolated + nohz_full CPUs".to_owned()
        }
    };
    let exposed: CpuSet = want.difference(&banned).copied().collect();
    let seen = format!("{running}, banned {} ({source})", format_cpulist(&banned));
    if exposed.is_empty() {
        return Ok(Check::new(NAME, Status::Pass, seen, wanted));
    }
    let all: CpuSet = banned.union(&want).copied().collect();
    Ok(Check::new(
        NAME,
        Status::Warn,
        format!("{seen}; may route interrupts to {}", format_cpulist(&exposed)),
        wanted,
    )
    .fix(format!(
        "IRQBALANCE_BANNED_CPULIST={} in /etc/default/irqbalance (or /etc/sysconfig/irqbalance), \
         then systemctl restart irqbalance; or isolate the cores (Ansible: tickring_host_isolated_cores)",
        format_cpulist(&all)
    )))
}

/// IRQ names from /proc/interrupts (`26: 0 16 IO-APIC 4-edge ttyS0`):
/// number -> the last column.
fn irq_names(host: &Host) -> Result<Option<BTreeMap<u32, String>>, HostError> {
    let Some(text) = host.read("/proc/interrupts")? else {
        return Ok(None);
    };
    let mut names = BTreeMap::new();
    for line in text.lines().skip(1) {
        let Some((num, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        if let Ok(n) = num.parse::<u32>() {
            let name = rest.split_whitespace().last().unwrap_or("").to_owned();
            names.insert(n, name);
        }
    }
    Ok(Some(names))
}

/// Where interrupts actually go: `/proc/irq/N/effective_affinity_list`
/// (else `smp_affinity_list`) of every IRQ with a handler.
fn irq_affinity(c: &Ctx) -> Result<Check, HostError> {
    const NAME: &str = "irq.affinity";
    let hot = c.critical_cores();
    let wanted = if hot.is_empty() {
        "no device interrupts on the hot cores".to_owned()
    } else {
        format!("no device interrupts on {}", format_cpulist(&hot))
    };
    if hot.is_empty() {
        return skip(NAME, "no feed pins a core", wanted);
    }
    let irqs: Vec<u32> = c
        .host
        .list_dir("/proc/irq")?
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    if irqs.is_empty() {
        return skip(NAME, "no /proc/irq", wanted);
    }
    let names = irq_names(c.host)?;
    let mut looked = 0;
    let mut on_hot = Vec::new();
    for irq in irqs {
        // Only IRQs with a handler (those /proc/interrupts lists) fire.
        let name = match &names {
            Some(m) => match m.get(&irq) {
                Some(n) => n.clone(),
                None => continue,
            },
            None => String::new(),
        };
        let mut aff = None;
        for f in ["effective_affinity_list", "smp_affinity_list"] {
            if let Some(set) = c.host.read_cpulist(format!("/proc/irq/{irq}/{f}"))? {
                aff = Some(set);
                break;
            }
        }
        let Some(aff) = aff else { continue };
        looked += 1;
        let hit: CpuSet = aff.intersection(&hot).copied().collect();
        if !hit.is_empty() {
            let label = if name.is_empty() {
                format!("{irq}")
            } else {
                format!("{irq} ({name})")
            };
            on_hot.push((label, irq, hit));
        }
    }
    if on_hot.is_empty() {
        return Ok(Check::new(
            NAME,
            Status::Pass,
            format!("none of {looked} IRQs may go to {}", format_cpulist(&hot)),
            wanted,
        ));
    }
    const SHOWN: usize = 8;
    let mut listed: Vec<String> = on_hot
        .iter()
        .take(SHOWN)
        .map(|(l, _, hit)| format!("{l} -> {}", format_cpulist(hit)))
        .collect();
    if on_hot.len() > SHOWN {
        listed.push(format!("{} more", on_hot.len() - SHOWN));
    }
    let others = online_cpus(c.host)?
        .map(|(all, _)| all.difference(&hot).copied().collect::<CpuSet>())
        .filter(|s| !s.is_empty())
        .map(|s| format_cpulist(&s))
        .unwrap_or_else(|| "<other CPUs>".into());
    Ok(Check::new(
        NAME,
        Status::Warn,
        format!(
            "{} of {looked} IRQs may go to hot cores: {}",
            on_hot.len(),
            listed.join(", ")
        ),
        wanted,
    )
    .fix(format!(
        "echo {others} > /proc/irq/{}/smp_affinity_list (each IRQ listed); per-CPU (managed) \
         queues move only with isolcpus=managed_irq,...; keep irqbalance off the hot cores \
         (Ansible: tickring_host_isolated_cores)",
        on_hot[0].1
    )))
}

fn governor(c: &Ctx) -> Result<Check, HostError> {
    const NAME: &str = "governor";
    let want = c.critical_cores();
    let (cores, scope) = if want.is_empty() {
        match online_cpus(c.host)? {
            Some((s, _)) => (s, "all CPUs (no feed pins a core)"),
            None => (CpuSet::new(), "all CPUs"),
        }
    } else {
        (want, "the hot cores")
    };
    let wanted = format!("performance on {scope}");
    let mut seen: BTreeMap<String, CpuSet> = BTreeMap::new();
    let mut without = CpuSet::new();
    for &cpu in &cores {
        match c.host.read_value(format!(
            "/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"
        ))? {
            Some(g) => {
                seen.entry(g).or_default().insert(cpu);
            }
            None => {
                without.insert(cpu);
            }
        }
    }
    if seen.is_empty() {
        return Ok(Check::new(
            NAME,
            Status::Skip,
            if without.is_empty() {
                c.host
                    .absent("/sys/devices/system/cpu/online", "no CPU list")
            } else if !c.host.has_sysfs() {
                c.host.absent("/sys/devices/system/cpu/cpu*/cpufreq", "")
            } else {
                format!(
                    "no cpufreq on CPUs {} (VM or fixed clock)",
                    format_cpulist(&without)
                )
            },
            wanted,
        ));
    }
    let mut parts: Vec<String> = seen
        .iter()
        .map(|(g, s)| format!("{g} on {}", format_cpulist(s)))
        .collect();
    if !without.is_empty() {
        parts.push(format!("no cpufreq on {}", format_cpulist(&without)));
    }
    let slow: CpuSet = seen
        .iter()
        .filter(|(g, _)| g.as_str() != "performance")
        .flat_map(|(_, s)| s.iter().copied())
        .collect();
    let status = if slow.is_empty() {
        Status::Pass
    } else {
        Status::Warn
    };
    Ok(
        Check::new(NAME, status, parts.join("; "), wanted).fix(format!(
        "cpupower -c {} frequency-set -g performance (Ansible: tickring_host_cpu_governor: performance)",
        format_cpulist(&slow)
    )),
    )
}

// ---------------------------------------------------------------- memlock

/// A memlock limit and whether CAP_IPC_LOCK lifts it, and where that came from.
struct LockRights {
    /// Soft limit in bytes; `None` = unlimited.
    limit: Option<u64>,
    cap_ipc_lock: bool,
    source: String,
}

const UNIT: &str = "tickring-collector@.service";
const UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// `Max locked memory` soft limit from a `/proc/<pid>/limits` text.
fn limits_memlock(text: &str) -> Option<Option<u64>> {
    let line = text.lines().find(|l| l.starts_with("Max locked memory"))?;
    let soft = line["Max locked memory".len()..]
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        Some(None)
    } else {
        soft.parse().ok().map(Some)
    }
}

fn cap_eff_has_ipc_lock(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK_BIT) != 0)
}

/// From a running process: its limits and effective capabilities.
fn process_rights(host: &Host, pid: &str, what: &str) -> Result<Option<LockRights>, HostError> {
    let limits_path = format!("/proc/{pid}/limits");
    let Some(limits) = host.read(&limits_path)? else {
        return Ok(None);
    };
    let limit = limits_memlock(&limits).ok_or_else(|| HostError::Parse {
        path: host.path(&limits_path),
        what: "no readable `Max locked memory` line".into(),
    })?;
    let cap = host
        .read(format!("/proc/{pid}/status"))?
        .is_some_and(|s| cap_eff_has_ipc_lock(&s));
    Ok(Some(LockRights {
        limit,
        cap_ipc_lock: cap,
        source: what.to_owned(),
    }))
}

/// A running collector of this very config file: `tickring collect
/// --config F` where F, seen from the process's own root and working
/// directory (`/proc/<pid>/root`, `/proc/<pid>/cwd`: a collector in a
/// container is not this host's), is the feed's file.
fn running_collector(host: &Host, feed: &Feed) -> Result<Option<u32>, HostError> {
    for pid in host.pids_named("tickring")? {
        let Some(cmd) = host.read(format!("/proc/{pid}/cmdline"))? else {
            continue;
        };
        let args: Vec<&str> = cmd.split('\0').collect();
        if !args.contains(&"collect") {
            continue;
        }
        let config = args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix("--config=").or_else(|| {
                (*a == "--config")
                    .then(|| args.get(i + 1).copied())
                    .flatten()
            })
        });
        let Some(config) = config.map(Path::new) else {
            continue;
        };
        let config = if config.is_absolute() {
            config.to_owned()
        } else {
            match std::fs::read_link(host.path(format!("/proc/{pid}/cwd"))) {
                Ok(cwd) => cwd.join(config),
                Err(_) => continue,
            }
        };
        let proc_root = host.path(format!("/proc/{pid}/root"));
        let seen_as = if proc_root.exists() {
            proc_root.join(config.strip_prefix("/").unwrap_or(&config))
        } else {
            host.path(&config)
        };
        if same_file(&seen_as, &feed.file) {
            return Ok(Some(pid));
        }
    }
    Ok(None)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// What systemd gives an instance of the collector unit: the unit file and
/// its drop-ins (template's and instance's), in systemd's order.
fn unit_rights(host: &Host, feed: &Feed) -> Result<Option<LockRights>, HostError> {
    let Some(base) = UNIT_DIRS
        .iter()
        .map(|d| format!("{d}/{UNIT}"))
        .find(|p| host.path(p).is_file())
    else {
        return Ok(None);
    };
    // Drop-ins: by file name; a name in a higher-priority directory (and an
    // instance's over the template's) replaces the same name elsewhere.
    let mut dropins: BTreeMap<String, String> = BTreeMap::new();
    for dir in UNIT_DIRS.iter().rev() {
        for d in [
            format!("{dir}/{UNIT}.d"),
            format!("{dir}/tickring-collector@{}.service.d", feed.name),
        ] {
            for name in host.list_dir(&d)? {
                if name.ends_with(".conf") {
                    dropins.insert(name.clone(), format!("{d}/{name}"));
                }
            }
        }
    }
    let mut limit: Option<String> = None;
    let mut caps: BTreeSet<String> = BTreeSet::new();
    let mut last_file = base.clone();
    let files: Vec<String> = std::iter::once(base).chain(dropins.into_values()).collect();
    for file in &files {
        let Some(text) = host.read(file)? else {
            continue;
        };
        let mut in_service = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_service = line == "[Service]";
                continue;
            }
            if !in_service || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k.trim() {
                "LimitMEMLOCK" => {
                    let v = v.trim();
                    limit = (!v.is_empty()).then(|| v.to_owned());
                    last_file = file.clone();
                }
                "AmbientCapabilities" => {
                    let v = v.trim();
                    if v.is_empty() {
                        caps.clear();
                    } else if let Some(inv) = v.strip_prefix('~') {
                        for cap in inv.split_whitespace() {
                            caps.remove(cap);
                        }
                    } else {
                        caps.extend(v.split_whitespace().map(str::to_owned));
                    }
                }
                _ => {}
            }
        }
    }
    let cap = caps.contains("CAP_IPC_LOCK");
    let (limit, source) = match limit {
        Some(v) => {
            let soft = v.split(':').next().unwrap_or(&v).trim();
            let bytes = if soft == "infinity" {
                None
            } else {
                Some(parse_size(soft).ok_or_else(|| HostError::Parse {
                    path: host.path(&last_file),
                    what: format!("LimitMEMLOCK={v} is not a size"),
                })?)
            };
            (bytes, format!("LimitMEMLOCK={v} in {last_file}"))
        }
        None => {
            // systemd's DefaultLimitMEMLOCK; 64 KiB before systemd 253,
            // 8 MiB after: assume the smaller when unset.
            let conf = host.read("/etc/systemd/system.conf")?.unwrap_or_default();
            let v = conf
                .lines()
                .filter_map(|l| l.trim().strip_prefix("DefaultLimitMEMLOCK="))
                .next_back()
                .map(str::trim)
                .filter(|v| !v.is_empty());
            match v {
                Some("infinity") => (
                    None,
                    "DefaultLimitMEMLOCK=infinity in /etc/systemd/system.conf".into(),
                ),
                Some(v) => (
                    parse_size(v.split(':').next().unwrap_or(v)),
                    format!("DefaultLimitMEMLOCK={v} in /etc/systemd/system.conf"),
                ),
                None => (
                    Some(64 << 10),
                    "the unit sets no LimitMEMLOCK (systemd default, 64 KiB assumed)".into(),
                ),
            }
        }
    };
    Ok(Some(LockRights {
        limit,
        cap_ipc_lock: cap,
        source,
    }))
}

fn memlock(c: &Ctx) -> Result<Check, HostError> {
    const NAME: &str = "memlock";
    let locking: Vec<&Feed> = c.feeds.iter().filter(|f| f.lock_memory).collect();
    if c.feeds.is_empty() {
        return skip(NAME, "no feed configs: no ring to lock", "-");
    }
    if locking.is_empty() {
        return skip(NAME, "every feed has ring.lock_memory = false", "-");
    }
    let mut status = Status::Pass;
    let mut seen: Vec<(Vec<String>, String)> = Vec::new();
    let (mut wanted, mut short) = (Vec::new(), Vec::new());
    for f in locking {
        let page = f
            .huge_placement()
            .map(|(_, p, _)| p)
            .unwrap_or(crate::ring::SMALL_PAGE_SIZE);
        let need = f.ring_bytes(page);
        wanted.push(format!("{} {}", f.name, mib(need)));
        let rights = match running_collector(c.host, f)? {
            Some(pid) => process_rights(
                c.host,
                &pid.to_string(),
                &format!("running collector pid {pid}"),
            )?,
            None => None,
        };
        let rights = match rights {
            Some(r) => Some(r),
            None => unit_rights(c.host, f)?,
        };
        let rights = match rights {
            Some(r) => Some(r),
            None => process_rights(
                c.host,
                "self",
                "the doctor's own limit: no unit, no running collector",
            )?,
        };
        let Some(r) = rights else {
            let what = format!("unknown (no running collector, no {UNIT}, no /proc/self/limits)");
            match seen.iter_mut().find(|(_, w)| *w == what) {
                Some((names, _)) => names.push(f.name.clone()),
                None => seen.push((vec![f.name.clone()], what)),
            }
            status = status.max(Status::Warn);
            continue;
        };
        let limit = r.limit.map(mib).unwrap_or_else(|| "unlimited".into());
        let cap = if r.cap_ipc_lock {
            " + CAP_IPC_LOCK"
        } else {
            ""
        };
        let what = format!("{limit}{cap} ({})", r.source);
        match seen.iter_mut().find(|(_, w)| *w == what) {
            Some((names, _)) => names.push(f.name.clone()),
            None => seen.push((vec![f.name.clone()], what)),
        }
        if !r.cap_ipc_lock && r.limit.is_some_and(|l| l < need) {
            status = Status::Fail;
            short.push(f.name.clone());
        }
    }
    let seen: Vec<String> = seen
        .iter()
        .map(|(names, what)| format!("{}: {what}", names.join(", ")))
        .collect();
    Ok(Check::new(
        NAME,
        status,
        seen.join("; "),
        format!("locked-memory limit >= ring size: {}", wanted.join(", ")),
    )
    .fix(if short.is_empty() {
        "install the package's tickring-collector@.service (LimitMEMLOCK=infinity, CAP_IPC_LOCK)"
            .to_owned()
    } else {
        format!(
            "run {} under tickring-collector@<feed>.service (LimitMEMLOCK=infinity and \
                 AmbientCapabilities=CAP_IPC_LOCK; check drop-ins that override them), or raise \
                 `ulimit -l` (/etc/security/limits.d/), or set ring.lock_memory = false",
            short.join(", ")
        )
    }))
}

// ---------------------------------------------------------------- kernel

fn io_uring(c: &Ctx) -> Result<Check, HostError> {
    const NAME: &str = "io_uring";
    const FILE: &str = "/proc/sys/kernel/io_uring_disabled";
    let wanted = "kernel.io_uring_disabled = 0".to_owned();
    let fix = "sysctl -w kernel.io_uring_disabled=0 (persist: kernel.io_uring_disabled = 0 in \
               /etc/sysctl.d/90-tickring.conf; Ansible: tickring_host_sysctls)";
    let Some(v) = c.host.read_int(FILE)? else {
        if !c.host.has_procfs() {
            return skip(NAME, c.host.absent(FILE, ""), wanted);
        }
        return Ok(Check::new(
            NAME,
            Status::Pass,
            "no kernel.io_uring_disabled (kernel before 6.6): io_uring enabled".into(),
            wanted,
        ));
    };
    Ok(match v {
        0 => Check::new(NAME, Status::Pass, "0".into(), wanted),
        1 => {
            let group = c
                .host
                .read_int("/proc/sys/kernel/io_uring_group")?
                .unwrap_or(-1);
            if group < 0 {
                Check::new(
                    NAME,
                    Status::Fail,
                    "1 with no kernel.io_uring_group: only CAP_SYS_ADMIN may use io_uring, the collector has not".into(),
                    wanted,
                )
                .fix(fix)
            } else {
                Check::new(
                    NAME,
                    Status::Warn,
                    format!("1: only group {group} may use io_uring"),
                    wanted,
                )
                .fix(format!(
                    "{fix}; or make the collector's user (tickring) a member of gid {group}"
                ))
            }
        }
        other => Check::new(
            NAME,
            Status::Fail,
            format!("{other}: io_uring disabled for every process"),
            wanted,
        )
        .fix(fix),
    })
}

fn sched_rt_runtime(c: &Ctx) -> Result<Check, HostError> {
    const NAME: &str = "sched_rt_runtime";
    let fifo = c.fifo_feeds();
    let wanted = "-1 (no RT throttling) when a feed runs SCHED_FIFO".to_owned();
    let rt = c.host.read_int("/proc/sys/kernel/sched_rt_runtime_us")?;
    if fifo.is_empty() {
        let seen = match rt {
            Some(v) => format!("{v}; no feed sets sched_fifo_priority"),
            None => "no feed sets sched_fifo_priority".into(),
        };
        return Ok(Check::new(NAME, Status::Skip, seen, wanted));
    }
    let Some(rt) = rt else {
        return Ok(Check::new(
            NAME,
            Status::Skip,
            c.host.absent(
                "/proc/sys/kernel/sched_rt_runtime_us",
                "kernel without RT group scheduling",
            ),
            wanted,
        ));
    };
    let names: Vec<&str> = fifo.iter().map(|f| f.name.as_str()).collect();
    let spinning: Vec<&str> = fifo
        .iter()
        .filter(|f| f.busy_poll)
        .map(|f| f.name.as_str())
        .collect();
    if rt < 0 {
        return Ok(Check::new(
            NAME,
            Status::Pass,
            format!("{rt} (FIFO: {})", list(&names)),
            wanted,
        ));
    }
    let period = c
        .host
        .read_int("/proc/sys/kernel/sched_rt_period_us")?
        .unwrap_or(1_000_000);
    Ok(Check::new(
        NAME,
        Status::Warn,
        if spinning.is_empty() {
            format!(
                "{rt} of {period} us: SCHED_FIFO threads ({}) are stopped {} us every period under load",
                list(&names),
                (period - rt).max(0)
            )
        } else {
            format!(
                "{rt} of {period} us: SCHED_FIFO threads ({}) are stopped {} us every period, \
                 always for {} (busy_poll)",
                list(&names),
                (period - rt).max(0),
                list(&spinning)
            )
        },
        wanted,
    )
    .fix(
        "sysctl -w kernel.sched_rt_runtime_us=-1 (persist in /etc/sysctl.d/90-tickring.conf; \
         Ansible: tickring_host_sched_rt_runtime_us: -1); only with the hot cores isolated",
    ))
}

fn clocksource(c: &Ctx) -> Result<Check, HostError> {
    const NAME: &str = "clocksource";
    const DIR: &str = "/sys/devices/system/clocksource/clocksource0";
    let wanted = "tsc (arch_sys_counter on arm64)".to_owned();
    let Some(cur) = c.host.read_value(format!("{DIR}/current_clocksource"))? else {
        return Ok(Check::new(
            NAME,
            Status::Skip,
            c.host.absent(
                &format!("{DIR}/current_clocksource"),
                "no clocksource driver",
            ),
            wanted,
        ));
    };
    if cur == "tsc" || cur == "arch_sys_counter" {
        return Ok(Check::new(NAME, Status::Pass, cur, wanted));
    }
    let available = c
        .host
        .read_value(format!("{DIR}/available_clocksource"))?
        .unwrap_or_default();
    let has_tsc = available.split_whitespace().any(|s| s == "tsc");
    let fix = if has_tsc {
        "echo tsc > /sys/devices/system/clocksource/clocksource0/current_clocksource \
         (persist: kernel args `clocksource=tsc tsc=reliable`)"
            .to_owned()
    } else {
        format!(
            "the TSC is not offered (available: {}); on a VM enable an invariant TSC for the guest, \
             on metal check the BIOS and dmesg for TSC instability",
            if available.is_empty() { "unknown" } else { &available }
        )
    };
    Ok(Check::new(
        NAME,
        Status::Warn,
        format!("{cur} (timestamps may cost a system call)"),
        wanted,
    )
    .fix(fix))
}

// ---------------------------------------------------------------- NUMA

/// The interface of the default route, from /proc/net/route.
fn default_route_iface(host: &Host) -> Result<Option<String>, HostError> {
    let Some(text) = host.read("/proc/net/route")? else {
        return Ok(None);
    };
    Ok(text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_owned())
    }))
}

fn nic_node(host: &Host, iface: &str) -> Result<Option<i64>, HostError> {
    Ok(host
        .read_int(format!("/sys/class/net/{iface}/device/numa_node"))?
        .filter(|&n| n >= 0))
}

/// The number of NUMA nodes and each CPU's node, from
/// /sys/devices/system/node/node*/cpulist.
fn cpu_nodes(host: &Host) -> Result<(usize, BTreeMap<usize, i64>), HostError> {
    let mut node_of: BTreeMap<usize, i64> = BTreeMap::new();
    let mut nodes = 0;
    for name in host.list_dir("/sys/devices/system/node")? {
        let Some(n) = name
            .strip_prefix("node")
            .and_then(|n| n.parse::<i64>().ok())
        else {
            continue;
        };
        nodes += 1;
        if let Some(cpus) = host.read_cpulist(format!("/sys/devices/system/node/{name}/cpulist"))? {
            for cpu in cpus {
                node_of.insert(cpu, n);
            }
        }
    }
    Ok((nodes, node_of))
}

/// Huge pages on each collector's own node: the kernel silently takes them
/// from another node when its node's pool is short, and every ring access
/// then crosses the interconnect.
fn hugepages_numa(c: &Ctx) -> Result<Check, HostError> {
    const NAME: &str = "hugepages.numa";
    let wanted_all = "each node's free huge pages cover the rings of the collectors pinned there";
    let (nodes, node_of) = cpu_nodes(c.host)?;
    if nodes <= 1 {
        return Ok(Check::new(
            NAME,
            Status::Pass,
            "one NUMA node".into(),
            wanted_all.into(),
        ));
    }
    // (node, page size) -> (pages needed, pages already held, feeds)
    let mut need: BTreeMap<(i64, u64), (u64, u64, Vec<String>)> = BTreeMap::new();
    let mut unknown = Vec::new();
    for g in huge_groups(c) {
        let on_huge = hugetlbfs_at(c.host, &g.dir, g.page)?.is_ok();
        for f in &g.feeds {
            let Some(core) = f.core else { continue };
            let Some(&node) = node_of.get(&core) else {
                unknown.push(format!("{} (core {core})", f.name));
                continue;
            };
            let (pages, held) = feed_pages(c.host, &g, f, on_huge);
            let e = need.entry((node, g.page)).or_default();
            e.0 += pages;
            e.1 += held;
            e.2.push(f.name.clone());
        }
    }
    if need.is_empty() {
        let why = if unknown.is_empty() {
            format!("{nodes} nodes; no pinned feed on huge pages")
        } else {
            format!("{nodes} nodes; node unknown for {}", unknown.join(", "))
        };
        return Ok(Check::new(NAME, Status::Skip, why, wanted_all.into()));
    }
    let mut status = Status::Pass;
    let (mut seen, mut wanted, mut fixes) = (Vec::new(), Vec::new(), Vec::new());
    for ((node, page), (pages, held, names)) in &need {
        let dir = format!(
            "/sys/devices/system/node/node{node}/hugepages/hugepages-{}kB",
            page / 1024
        );
        let nr = c.host.read_int(format!("{dir}/nr_hugepages"))?;
        let free = c.host.read_int(format!("{dir}/free_hugepages"))?;
        let (Some(nr), Some(free)) = (nr, free) else {
            seen.push(format!(
                "node {node}: no per-node {} pool in sysfs",
                page_str(*page)
            ));
            continue;
        };
        let (nr, free) = (nr.max(0) as u64, free.max(0) as u64);
        wanted.push(format!(
            "node {node}: {pages} x {} ({})",
            page_str(*page),
            names.join(", ")
        ));
        seen.push(format!(
            "node {node}: {nr} reserved, {free} free{}",
            if *held > 0 {
                format!(", {held} held")
            } else {
                String::new()
            }
        ));
        if free + held < *pages {
            status = Status::Warn;
            fixes.push(format!(
                "echo {} > {dir}/nr_hugepages (Ansible: tickring_host_hugepages with node)",
                nr + (pages - free - held)
            ));
        }
    }
    if wanted.is_empty() {
        return skip(NAME, seen.join("; "), wanted_all);
    }
    Ok(Check::new(NAME, status, seen.join("; "), wanted.join("; ")).fix(fixes.join("; ")))
}

/// Pages a feed's ring and book region need, and how many its existing
/// files on the hugetlbfs already hold.
fn feed_pages(host: &Host, g: &HugeGroup, f: &Feed, on_huge: bool) -> (u64, u64) {
    let pages = (f.ring_bytes(g.page) + f.books_bytes(g.page)) / g.page;
    let mut held = 0;
    if on_huge {
        for ext in ["ring", "books"] {
            let file = g.dir.join(format!("{}.{ext}", f.ring_name));
            if let Some(len) = host.file_len(&file) {
                held += len.div_ceil(g.page);
            }
        }
    }
    (pages, held)
}

fn numa(c: &Ctx) -> Result<Check, HostError> {
    const NAME: &str = "numa";
    let want = c.critical_cores();
    let wanted = "hot cores on the NIC's NUMA node".to_owned();
    let (nodes, node_of) = cpu_nodes(c.host)?;
    if nodes <= 1 {
        let seen = if nodes == 0 {
            "no /sys/devices/system/node: one node assumed".to_owned()
        } else {
            "one NUMA node".to_owned()
        };
        return Ok(Check::new(NAME, Status::Pass, seen, wanted));
    }
    if want.is_empty() {
        return skip(NAME, format!("{nodes} nodes; no feed pins a core"), wanted);
    }
    // The NIC: the default route's, else every NIC whose node is known.
    let mut nic_nodes: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut how = "";
    if let Some(iface) = default_route_iface(c.host)? {
        if let Some(n) = nic_node(c.host, &iface)? {
            nic_nodes.entry(n).or_default().push(iface);
            how = "default route";
        }
    }
    if nic_nodes.is_empty() {
        for iface in c.host.list_dir("/sys/class/net")? {
            if let Some(n) = nic_node(c.host, &iface)? {
                nic_nodes.entry(n).or_default().push(iface);
            }
        }
        how = "every NIC with a known node";
    }
    if nic_nodes.is_empty() {
        return skip(
            NAME,
            format!("{nodes} nodes; the NIC's node is unknown (no device/numa_node >= 0)"),
            wanted,
        );
    }
    let nic_desc: Vec<String> = nic_nodes
        .iter()
        .map(|(n, ifs)| format!("{} on node {n}", ifs.join(",")))
        .collect();
    let mut far = Vec::new();
    let mut desc = Vec::new();
    for core in &want {
        match node_of.get(core) {
            Some(n) => {
                desc.push(format!("core {core} node {n}"));
                if !nic_nodes.contains_key(n) {
                    far.push(*core);
                }
            }
            None => desc.push(format!("core {core} node unknown")),
        }
    }
    let seen = format!("NIC {} ({how}); {}", nic_desc.join(", "), desc.join(", "));
    if far.is_empty() {
        return Ok(Check::new(NAME, Status::Pass, seen, wanted));
    }
    let near: Vec<String> = nic_nodes
        .keys()
        .filter_map(|n| {
            c.host
                .read_value(format!("/sys/devices/system/node/node{n}/cpulist"))
                .ok()
                .flatten()
                .map(|l| format!("node {n}: CPUs {l}"))
        })
        .collect();
    Ok(Check::new(NAME, Status::Warn, seen, wanted).fix(format!(
        "pin the collectors to cores of the NIC's node ({}) in [cpu] core",
        near.join("; ")
    )))
}

#[cfg(test)]
mod tests;

/// A skipped check: `seen` says why it does not apply.
fn skip(
    name: &'static str,
    seen: impl Into<String>,
    wanted: impl Into<String>,
) -> Result<Check, HostError> {
    Ok(Check::new(name, Status::Skip, seen.into(), wanted.into()))
}
