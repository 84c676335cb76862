//! Ctrl-C (SIGINT) to the driver stops waits and the guards then clean up. Own test binary:
//! the interrupt flag is process-wide.

use std::process::Command;
use std::time::{Duration, Instant};

use scripts::process::{install_interrupt_handler, interrupted, pid_alive, Guarded};
use scripts::Error;

#[test]
fn sigint_interrupts_waits_and_drop_cleans_up() {
    install_interrupt_handler().unwrap();
    let mut c = Command::new("sleep");
    c.arg("100");
    let mut g = Guarded::spawn("sleep", c).unwrap();
    let pid = g.pid();
    // SAFETY: sends SIGINT to this test process; the handler installed above catches it.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGINT);
    }
    let start = Instant::now();
    let r = g.wait_timeout(Duration::from_secs(20));
    assert!(matches!(r, Err(Error::Interrupted)), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(interrupted());
    // The child is in its own process group, so the terminal's SIGINT would not reach it:
    // it is still running until the guard stops it.
    assert!(pid_alive(pid));
    drop(g);
    assert!(!pid_alive(pid));
}
