//! Reading the host through a root directory: every path the doctor looks
//! at is `<root>/<absolute path>`, so tests (and a mounted image) can be
//! checked exactly like the running system.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The largest CPU number a cpulist or mask may name. Real hosts stay far
/// below; the cap keeps a corrupt `0-4294967295` from allocating gigabytes.
pub const MAX_CPU: usize = 65_535;

/// A set of CPU numbers.
pub type CpuSet = BTreeSet<usize>;

/// A host file that could not be read or understood. Names the file.
#[derive(Debug)]
pub enum HostError {
    /// Reading failed for another reason than "not there".
    Io { path: PathBuf, source: io::Error },
    /// The contents are not what the kernel (or the tool) writes there.
    Parse { path: PathBuf, what: String },
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            HostError::Parse { path, what } => write!(f, "{}: {what}", path.display()),
        }
    }
}

impl std::error::Error for HostError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HostError::Io { source, .. } => Some(source),
            HostError::Parse { .. } => None,
        }
    }
}

/// The host as seen from a root directory (`/` for the running system).
#[derive(Clone, Debug)]
pub struct Host {
    root: PathBuf,
}

impl Host {
    pub fn new(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<abs>` for an absolute path such as `/proc/mounts`.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.root.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    /// The file's text, or `None` when it does not exist.
    pub fn read(&self, abs: impl AsRef<Path>) -> Result<Option<String>, HostError> {
        let path = self.path(abs);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if is_absent(&e) => Ok(None),
            Err(source) => Err(HostError::Io { path, source }),
        }
    }

    /// The file's first line, trimmed, or `None` when it does not exist.
    pub fn read_value(&self, abs: impl AsRef<Path>) -> Result<Option<String>, HostError> {
        Ok(self
            .read(abs)?
            .map(|t| t.lines().next().unwrap_or("").trim().to_owned()))
    }

    /// A file holding one integer (sysctls, sysfs counters).
    pub fn read_int(&self, abs: impl AsRef<Path>) -> Result<Option<i64>, HostError> {
        let abs = abs.as_ref();
        match self.read_value(abs)? {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| HostError::Parse {
                path: self.path(abs),
                what: format!("{v:?} is not an integer"),
            }),
        }
    }

    /// A file holding a cpulist (`0-3,8`); `None` when it does not exist.
    pub fn read_cpulist(&self, abs: impl AsRef<Path>) -> Result<Option<CpuSet>, HostError> {
        let abs = abs.as_ref();
        match self.read_value(abs)? {
            None => Ok(None),
            Some(v) => parse_cpulist(&v)
                .map(Some)
                .map_err(|what| HostError::Parse {
                    path: self.path(abs),
                    what,
                }),
        }
    }

    /// Names of a directory's entries, sorted; empty when it does not exist.
    pub fn list_dir(&self, abs: impl AsRef<Path>) -> Result<Vec<String>, HostError> {
        let path = self.path(abs);
        let rd = match std::fs::read_dir(&path) {
            Ok(rd) => rd,
            Err(e) if is_absent(&e) => return Ok(Vec::new()),
            Err(source) => return Err(HostError::Io { path, source }),
        };
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|source| HostError::Io {
                path: path.clone(),
                source,
            })?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// Size of a file in bytes, `None` when it does not exist.
    pub fn file_len(&self, abs: impl AsRef<Path>) -> Option<u64> {
        std::fs::metadata(self.path(abs)).ok().map(|m| m.len())
    }

    /// Running processes whose `comm` is `name`: their pids, ascending.
    /// Processes that exit while being looked at are skipped.
    pub fn pids_named(&self, name: &str) -> Result<Vec<u32>, HostError> {
        let mut pids = Vec::new();
        for entry in self.list_dir("/proc")? {
            let Ok(pid) = entry.parse::<u32>() else {
                continue;
            };
            if let Ok(Some(comm)) = self.read_value(format!("/proc/{pid}/comm")) {
                if comm == name {
                    pids.push(pid);
                }
            }
        }
        pids.sort_unstable();
        Ok(pids)
    }

    /// The kernel command line's `key=value` for `key`, when present.
    pub fn cmdline_arg(&self, key: &str) -> Result<Option<String>, HostError> {
        let Some(cmdline) = self.read("/proc/cmdline")? else {
            return Ok(None);
        };
        // Everything after a bare "--" goes to init, not the kernel.
        let mut found = None;
        for word in cmdline.split_whitespace() {
            if word == "--" {
                break;
            }
            if let Some(v) = word.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
                found = Some(v.to_owned());
            }
        }
        Ok(found)
    }

    /// Whether a procfs is there (`<root>/proc/sys/kernel`): an image not
    /// booted has an empty `/proc`, where a missing file means nothing.
    pub fn has_procfs(&self) -> bool {
        self.path("/proc/sys/kernel").is_dir()
    }

    /// Whether a sysfs is there (`<root>/sys/devices/system/cpu`).
    pub fn has_sysfs(&self) -> bool {
        self.path("/sys/devices/system/cpu").is_dir()
    }

    /// Why `abs` may be absent: no procfs/sysfs under the root at all, or
    /// `usual` (what its absence means on a live system).
    pub fn absent(&self, abs: &str, usual: &str) -> String {
        let fs = if abs.starts_with("/proc/") && !self.has_procfs() {
            Some("procfs")
        } else if abs.starts_with("/sys/") && !self.has_sysfs() {
            Some("sysfs")
        } else {
            None
        };
        match fs {
            Some(fs) => format!("no {fs} under {}: {abs} unknown", self.root.display()),
            None => format!("no {abs}: {usual}"),
        }
    }

    /// Mounts from `<root>/proc/mounts`.
    pub fn mounts(&self) -> Result<Vec<Mount>, HostError> {
        let Some(text) = self.read("/proc/mounts")? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 {
                return Err(HostError::Parse {
                    path: self.path("/proc/mounts"),
                    what: format!("line {}: {line:?} has fewer than 4 fields", i + 1),
                });
            }
            out.push(Mount {
                point: PathBuf::from(unescape_mount(f[1])),
                fstype: f[2].to_owned(),
                options: f[3].split(',').map(str::to_owned).collect(),
            });
        }
        Ok(out)
    }
}

fn is_absent(e: &io::Error) -> bool {
    // ENOTDIR: a path through a file, e.g. cpufreq missing on a VM.
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// One line of /proc/mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    pub fstype: String,
    pub options: Vec<String>,
}

impl Mount {
    /// The value of a `key=value` mount option.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find_map(|o| o.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }
}

/// The mount that holds `path`: the longest mount point that is a prefix of
/// it (component-wise); the last such line wins, as in the kernel's view.
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        if path.starts_with(&m.point)
            && best.is_none_or(|b| m.point.components().count() >= b.point.components().count())
        {
            best = Some(m);
        }
    }
    best
}

/// /proc/mounts escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a size with an optional unit, as `pagesize=` mount options and
/// `/proc/meminfo` write it: `2M`, `1G`, `2048k`, `2097152`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => {
            let unit = s[i..].trim().to_ascii_lowercase();
            let mult = match unit.trim_end_matches('b').trim_end_matches('i') {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1 << 40,
                _ => return None,
            };
            (&s[..i], mult)
        }
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// Parses a Linux cpulist: `0-3,8,10-11`, optionally with strides
/// (`0-7:2`, every second CPU); empty and `(null)` are the empty set.
pub fn parse_cpulist(s: &str) -> Result<CpuSet, String> {
    let s = s.trim();
    let mut set = CpuSet::new();
    if s.is_empty() || s == "(null)" {
        return Ok(set);
    }
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let num = |t: &str| -> Result<usize, String> {
            let n: usize = t
                .trim()
                .parse()
                .map_err(|_| format!("{t:?} in cpulist {s:?} is not a CPU number"))?;
            if n > MAX_CPU {
                return Err(format!("CPU {n} in cpulist {s:?} is beyond {MAX_CPU}"));
            }
            Ok(n)
        };
        let (range, stride) = match part.split_once(':') {
            None => (part, 1),
            Some((r, st)) => {
                let st = st.split('/').next().unwrap_or(st);
                let n = num(st)?;
                if n == 0 {
                    return Err(format!("stride 0 in cpulist {s:?}"));
                }
                (r, n)
            }
        };
        match range.split_once('-') {
            None => {
                set.insert(num(range)?);
            }
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("range {part:?} in cpulist {s:?} runs backwards"));
                }
                set.extend((a..=b).step_by(stride));
            }
        }
    }
    Ok(set)
}

/// Parses a hexadecimal CPU mask as irqbalance and `/proc/irq/*/smp_affinity`
/// write it: `c`, `0x0c`, `00000000,0000000c` (32-bit groups, high first).
pub fn parse_cpumask(s: &str) -> Result<CpuSet, String> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let digits: Vec<char> = t.chars().filter(|&c| c != ',').collect();
    if digits.is_empty() {
        return Err(format!("{s:?} is not a hexadecimal CPU mask (empty)"));
    }
    let mut set = CpuSet::new();
    for (i, c) in digits.iter().rev().enumerate() {
        let v = c
            .to_digit(16)
            .ok_or_else(|| format!("{s:?} is not a hexadecimal CPU mask ({c:?})"))?;
        for bit in 0..4 {
            if v & (1 << bit) != 0 {
                let cpu = i * 4 + bit;
                if cpu > MAX_CPU {
                    return Err(format!("{s:?} names CPU {cpu}, beyond {MAX_CPU}"));
                }
                set.insert(cpu);
            }
        }
    }
    Ok(set)
}

/// Formats a set as a cpulist (`0-3,8`); `none` when empty.
pub fn format_cpulist(set: &CpuSet) -> String {
    if set.is_empty() {
        return "none".into();
    }
    let mut parts = Vec::new();
    let mut it = set.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end += 1;
            it.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[usize]) -> CpuSet {
        v.iter().copied().collect()
    }

    #[test]
    fn cpulists_parse_ranges_singles_strides_and_empty() {
        assert_eq!(
            parse_cpulist("0-3,8,10-11\n").unwrap(),
            set(&[0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpulist("").unwrap(), set(&[]));
        assert_eq!(parse_cpulist("(null)").unwrap(), set(&[]));
        assert_eq!(parse_cpulist("0-7:2").unwrap(), set(&[0, 2, 4, 6]));
        assert_eq!(
            format_cpulist(&set(&[0, 1, 2, 3, 8, 10, 11])),
            "0-3,8,10-11"
        );
        assert_eq!(format_cpulist(&set(&[])), "none");
    }

    #[test]
    fn bad_cpulists_are_refused_saying_what() {
        assert!(parse_cpulist("0-x").unwrap_err().contains("\"x\""));
        assert!(parse_cpulist("3-1").unwrap_err().contains("backwards"));
        assert!(parse_cpulist("0-4294967295")
            .unwrap_err()
            .contains("beyond"));
        assert!(parse_cpulist("0-7:0").unwrap_err().contains("stride 0"));
    }

    #[test]
    fn hex_masks_parse_with_groups_and_prefix() {
        assert_eq!(parse_cpumask("c").unwrap(), set(&[2, 3]));
        assert_eq!(parse_cpumask("0x0C").unwrap(), set(&[2, 3]));
        assert_eq!(
            parse_cpumask("00000001,00000003").unwrap(),
            set(&[0, 1, 32])
        );
        assert!(parse_cpumask("0g").unwrap_err().contains("'g'"));
        assert!(parse_cpumask("").is_err());
    }

    #[test]
    fn sizes_and_mount_escapes() {
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("2048 kB"), Some(2 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("3X"), None);
        assert_eq!(unescape_mount("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mount("/x\\"), "/x\\");
    }

    #[test]
    fn mount_of_takes_the_longest_prefix() {
        let m = |p: &str, t: &str| Mount {
            point: p.into(),
            fstype: t.into(),
            options: vec![],
        };
        let ms = vec![
            m("/", "ext4"),
            m("/dev", "devtmpfs"),
            m("/dev/hugepages", "hugetlbfs"),
        ];
        let got = mount_of(&ms, Path::new("/dev/hugepages/tickring")).unwrap();
        assert_eq!(got.fstype, "hugetlbfs");
        let got = mount_of(&ms, Path::new("/dev/hugepagesX")).unwrap();
        assert_eq!(got.fstype, "devtmpfs");
    }
}
