//! Child processes that `tickring demo` and the benchmarks start.

use std::process::Child;
use std::time::{Duration, Instant};

/// Stops `child` the way systemd would: SIGTERM, up to `grace` to exit
/// (a collector unsubscribes and marks its ring's writer stopped), then
/// SIGKILL. Always reaps it.
pub fn terminate(child: &mut Child, grace: Duration) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}
