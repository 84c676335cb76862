//! A userspace UDP relay that adds a fixed one-way delay in each direction.
//!
//! Stand-in for `tc netem` on kernels built without `sch_netem` (this machine's VM kernel has
//! none). QUIC runs over UDP, so delaying datagrams is enough to emulate link latency. Timers
//! are OS threads sleeping to a deadline (sub-millisecond precision), not tokio timers (1 ms
//! granularity). The relay serves one client (one executor): replies go to the last address
//! the client sent from. Its own CPU cost is part of what a run measures; say so in results.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Error, Result};

const TICK: Duration = Duration::from_millis(100);
const MAX_DATAGRAM: usize = 65_535;
/// Socket buffers large enough that bursts of a fast sender are not dropped at the relay.
const SOCKET_BUFFER: libc::c_int = 8 << 20;

/// A running relay; stops its threads on drop.
pub struct DelayRelay {
    listen: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    forwarded: Arc<AtomicU64>,
}

type Packet = (Instant, Vec<u8>);

impl DelayRelay {
    /// Listens on `bind` (port 0 picks one) and relays to `upstream` with `delay` each way.
    pub fn start(bind: SocketAddr, upstream: SocketAddr, delay: Duration) -> Result<Self> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |e| Error::io(format!("relay {bind} -> {upstream}: {what}"), e)
        };
        let front = UdpSocket::bind(bind).map_err(io("bind"))?;
        let back_bind: SocketAddr = if upstream.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .expect("literal address");
        let back = UdpSocket::bind(back_bind).map_err(io("bind upstream side"))?;
        back.connect(upstream).map_err(io("connect upstream"))?;
        for s in [&front, &back] {
            s.set_read_timeout(Some(TICK)).map_err(io("timeout"))?;
            grow_buffers(s);
        }
        let listen = front.local_addr().map_err(io("local addr"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let (up_tx, up_rx) = mpsc::channel::<Packet>();
        let (down_tx, down_rx) = mpsc::channel::<Packet>();
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(io("spawn thread"))
        };
        {
            let (sock, stop, client) = (
                front.try_clone().map_err(io("clone"))?,
                stop.clone(),
                client.clone(),
            );
            threads.push(spawn(
                "relay-in",
                Box::new(move || receive(&sock, delay, &up_tx, &stop, Some(&client))),
            )?);
        }
        {
            let (sock, stop, n) = (
                back.try_clone().map_err(io("clone"))?,
                stop.clone(),
                forwarded.clone(),
            );
            threads.push(spawn(
                "relay-up",
                Box::new(move || deliver(&up_rx, &stop, &n, |b| sock.send(b).map(drop))),
            )?);
        }
        {
            let (sock, stop) = (back, stop.clone());
            threads.push(spawn(
                "relay-back",
                Box::new(move || receive(&sock, delay, &down_tx, &stop, None)),
            )?);
        }
        {
            let (sock, stop, n) = (front, stop.clone(), forwarded.clone());
            threads.push(spawn(
                "relay-down",
                Box::new(move || {
                    deliver(&down_rx, &stop, &n, |b| {
                        match *client.lock().unwrap_or_else(|p| p.into_inner()) {
                            Some(to) => sock.send_to(b, to).map(drop),
                            None => Ok(()),
                        }
                    })
                }),
            )?);
        }
        Ok(DelayRelay {
            listen,
            stop,
            threads,
            forwarded,
        })
    }

    /// The address clients should dial.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// Datagrams forwarded so far (both directions).
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Best effort: bigger kernel buffers (SO_*BUFFORCE needs root, else the capped variant).
fn grow_buffers(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    let size = SOCKET_BUFFER;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        for opt in [force, plain] {
            // SAFETY: setsockopt with a valid fd and a pointer to a c_int of the stated size.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
        }
    }
}

fn receive(
    sock: &UdpSocket,
    delay: Duration,
    out: &Sender<Packet>,
    stop: &AtomicBool,
    client: Option<&Mutex<Option<SocketAddr>>>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((len, from)) => {
                if let Some(client) = client {
                    *client.lock().unwrap_or_else(|p| p.into_inner()) = Some(from);
                }
                if out
                    .send((Instant::now() + delay, buf[..len].to_vec()))
                    .is_err()
                {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // ICMP errors from a peer that went away show up here; keep relaying.
            Err(_) => {}
        }
    }
}

fn deliver(
    input: &Receiver<Packet>,
    stop: &AtomicBool,
    count: &AtomicU64,
    mut send: impl FnMut(&[u8]) -> std::io::Result<()>,
) {
    while !stop.load(Ordering::Relaxed) {
        match input.recv_timeout(TICK) {
            Ok((due, bytes)) => {
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                // A lost datagram is what a real network does too; QUIC retransmits.
                if send(&bytes).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_both_ways_with_the_delay() {
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let echo_addr = echo.local_addr().unwrap();
        let echo_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            for _ in 0..3 {
                let (n, from) = echo.recv_from(&mut buf).unwrap();
                echo.send_to(&buf[..n], from).unwrap();
            }
        });
        let delay = Duration::from_millis(5);
        let relay = DelayRelay::start("127.0.0.1:0".parse().unwrap(), echo_addr, delay).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 2048];
        for i in 0..3u8 {
            let start = Instant::now();
            client.send_to(&[i; 1200], relay.addr()).unwrap();
            let n = client.recv(&mut buf).unwrap();
            let rtt = start.elapsed();
            assert_eq!(&buf[..n], &[i; 1200][..]);
            assert!(
                rtt >= 2 * delay,
                "round trip {rtt:?} shorter than twice the delay"
            );
            assert!(rtt < Duration::from_secs(1), "round trip {rtt:?}");
        }
        echo_thread.join().unwrap();
        // The counter is bumped just after the send the client already saw: allow it a moment.
        let deadline = Instant::now() + Duration::from_secs(2);
        while relay.forwarded() < 6 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(relay.forwarded(), 6);
        drop(relay); // joins its threads: must not hang
    }
}
