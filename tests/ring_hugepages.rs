//! The ring on real huge pages (a hugetlbfs mounted by the test), and the
//! fallback to /dev/shm with a warning that says how to fix it.
//!
//! Needs root to reserve huge pages and mount hugetlbfs; the reservation
//! and the mount are given back on drop, also when the test fails.

use std::path::PathBuf;
use std::process::Command;

use tickring::event::Event;
use tickring::ring::{Backing, Poll, Reader, ReaderOptions, Writer, WriterOptions, SHM_DIR};

const NR: &str = "/proc/sys/vm/nr_hugepages";
const FREE: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";

fn read_num(p: &str) -> u64 {
    std::fs::read_to_string(p).unwrap().trim().parse().unwrap()
}

/// Tests that reserve huge pages run one at a time: they share the mount
/// directory and each restores the pool size it found.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Reserves huge pages and mounts a private hugetlbfs; undoes both on drop.
struct HugeMount {
    dir: PathBuf,
    orig_nr: u64,
    mounted: bool,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl HugeMount {
    fn new(extra: u64) -> Result<HugeMount, String> {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let orig_nr = read_num(NR);
        let mut m = HugeMount {
            dir: PathBuf::from(format!("/tmp/tickring-hugetlbfs-{}", std::process::id())),
            orig_nr,
            mounted: false,
            _serial: serial,
        };
        std::fs::write(NR, (orig_nr + extra).to_string())
            .map_err(|e| format!("writing {NR}: {e}"))?;
        if read_num(FREE) < extra {
            return Err(format!(
                "the kernel reserved only {} free huge pages",
                read_num(FREE)
            ));
        }
        std::fs::create_dir_all(&m.dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "hugetlbfs", "-o", "pagesize=2M,mode=0770", "none"])
            .arg(&m.dir)
            .status()
            .map_err(|e| format!("mount: {e}"))?;
        if !st.success() {
            return Err(format!("mount -t hugetlbfs failed: {st}"));
        }
        m.mounted = true;
        Ok(m)
    }
}

impl Drop for HugeMount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir(&self.dir);
        let _ = std::fs::write(NR, self.orig_nr.to_string());
    }
}

#[test]
fn ring_on_huge_pages_records_the_page_size_and_works() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: huge page test needs root to reserve pages and mount hugetlbfs");
        return;
    }
    let mount = match HugeMount::new(2) {
        Ok(m) => m,
        Err(e) => panic!("could not set up huge pages: {e}"),
    };
    let free_before = read_num(FREE);
    let opts = WriterOptions {
        backing: Backing::HugePages {
            dir: mount.dir.join("tickring"),
            page_size: 2 << 20,
        },
        capacity: 1 << 14,
        lock_memory: true,
    };
    let mut w = Writer::create("huge", &opts).unwrap();
    assert!(w.huge_pages());
    assert_eq!(w.page_size(), 2 << 20);
    // One 2 MiB page holds the header and 16384 slots.
    assert_eq!(read_num(FREE), free_before - 1);
    for n in 0..10u64 {
        w.publish(&Event {
            seq: n,
            ..Event::default()
        });
    }
    let mut r = Reader::open(w.path(), &ReaderOptions::default()).unwrap();
    assert_eq!(r.info().page_size, 2 << 20);
    assert_eq!(r.info().file_size, 2 << 20);
    for n in 0..10u64 {
        assert!(matches!(r.poll(), Poll::Event(e) if e.seq == n));
    }
    drop(r);
    drop(w);
}

/// The collector failed to start with its ring on huge pages: the book
/// region beside the ring was sized in 4 KiB pages, and hugetlbfs refuses
/// any length that is not a whole number of huge pages (EINVAL).
#[test]
fn book_region_beside_a_ring_on_huge_pages_is_sized_in_whole_huge_pages() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: huge page test needs root to reserve pages and mount hugetlbfs");
        return;
    }
    let mount = match HugeMount::new(3) {
        Ok(m) => m,
        Err(e) => panic!("could not set up huge pages: {e}"),
    };
    let opts = WriterOptions {
        backing: Backing::HugePages {
            dir: mount.dir.join("tickring"),
            page_size: 2 << 20,
        },
        capacity: 1 << 14,
        lock_memory: true,
    };
    let w = Writer::create("huge-books", &opts).unwrap();
    let books = tickring::ring::books::BookWriter::create(w.path(), 4, 10).unwrap();
    let len = std::fs::metadata(mount.dir.join("tickring/huge-books.books"))
        .unwrap()
        .len();
    assert_eq!(len % (2 << 20), 0, "book region of {len} bytes");
    drop(books);
    drop(w);
}

#[test]
fn huge_pages_required_but_absent_is_a_clear_error() {
    let opts = WriterOptions {
        backing: Backing::HugePages {
            dir: PathBuf::from("/dev/shm/tickring-not-hugetlbfs"),
            page_size: 2 << 20,
        },
        capacity: 64,
        lock_memory: false,
    };
    let err = match Writer::create("nohuge", &opts) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a tmpfs was accepted as hugetlbfs"),
    };
    assert!(err.contains("is not a hugetlbfs mount"), "{err}");
}

#[test]
fn auto_placement_without_huge_pages_falls_back_to_shm_with_a_fix() {
    // /dev/hugepages is not mounted in the test environment unless an
    // operator did it; in that case this test has nothing to check.
    if std::path::Path::new("/dev/hugepages/tickring").exists() {
        println!("SKIPPED: /dev/hugepages/tickring exists on this host");
        return;
    }
    let name = format!("autotest-{}", std::process::id());
    let w = Writer::create(
        &name,
        &WriterOptions {
            capacity: 64,
            lock_memory: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!w.huge_pages());
    assert!(w.path().starts_with(SHM_DIR));
    let warn = w.warnings().join("\n");
    assert!(
        warn.contains("not huge pages") && warn.contains("nr_hugepages"),
        "{warn}"
    );
    let path = w.path().to_owned();
    drop(w);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(path.with_extension("ring.lock"));
    // Only removes the directory if no other ring lives there.
    let _ = std::fs::remove_dir(SHM_DIR);
}
