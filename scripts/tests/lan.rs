//! LAN emulation: namespaces come up, a process inside one reaches the root namespace through
//! its link with the added delay, and everything is removed on drop. Needs root + ip + tc;
//! skipped (with a note) otherwise.

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use scripts::lan::{DelayVia, Lan};

fn netns_list() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn namespaces_route_through_the_delay_and_are_removed() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || Command::new("ip").arg("-V").output().is_err() {
        eprintln!("skipped: needs root and iproute2");
        return;
    }
    let delay = Duration::from_millis(20);
    let lan = Lan::create(2, delay, 1000, DelayVia::Auto).unwrap();
    assert!(netns_list().contains("gm-ex1") && netns_list().contains("gm-ex2"));

    // An echo "manager" on the root namespace's loopback.
    let echo = UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = echo.local_addr().unwrap().port();
    let echo_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let (n, from) = echo.recv_from(&mut buf).unwrap();
        echo.send_to(&buf[..n], from).unwrap();
    });
    let (targets, relays) = lan.links(port).unwrap();
    assert_eq!(targets.len(), 2);
    // A client inside gm-ex2 (bash's /dev/udp) sends one line and reads the echo.
    let script = format!(
        "exec 3<>/dev/udp/{}/{}; echo hello-from-ns >&3; timeout 5 head -n1 <&3",
        targets[1].ip(),
        targets[1].port()
    );
    let start = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", "gm-ex2", "bash", "-c", &script])
        .output()
        .unwrap();
    let rtt = start.elapsed();
    echo_thread.join().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello-from-ns",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        rtt >= 2 * delay,
        "round trip {rtt:?} without the {delay:?} each way"
    );
    drop(relays);
    drop(lan);
    assert!(
        !netns_list().contains("gm-ex"),
        "left behind: {}",
        netns_list()
    );
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains("gm-vh"));
}
