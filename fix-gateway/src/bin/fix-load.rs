//! `fix-load`: a FIX 4.4 initiator for load only. It logs on to a gateway as one broker, streams
//! an orders file (`user-sim generate`) as NewOrderSingle and OrderCancelRequest messages,
//! paced or as fast as the window allows, and measures each request's first answer
//! (ExecutionReport or OrderCancelReject).
//!
//! Written on this crate's own codec, so it tests nothing: the behaviour tests use QuickFIX.
//! Its session layer is the minimum a load needs: Logon with ResetSeqNumFlag (no store),
//! Heartbeat answers to TestRequests, Logout at the end.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use fix_gateway::codec::{Decoded, Decoder, Message, MessageBuilder};
use fix_gateway::{tags, utc};
use hdrhistogram::Histogram;
use matching::stream::{parse_orders, Action, OrderRow};
use matching::{OrderType, Side};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Streams an orders file through one FIX session and reports throughput and latency.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The gateway's FIX address, host:port.
    #[arg(long, default_value = "127.0.0.1:9878")]
    gateway: String,
    /// SenderCompID: the broker.
    #[arg(long, default_value = "B01")]
    sender: String,
    /// The broker's secret (Password in the Logon): the value, or `@FILE` for the `broker,secret`
    /// file (the manager's brokers.csv) to look the sender up in.
    #[arg(long)]
    password: String,
    /// The gateway's CompID (TargetCompID).
    #[arg(long, default_value = "GRIDMATCH")]
    target: String,
    /// Orders file (`user-sim generate`); every row is sent, whatever its broker column says.
    #[arg(long)]
    orders: PathBuf,
    /// Paced sending, requests per second, evenly spaced; latency is counted from each
    /// request's due time (coordinated omission corrected). Default: as fast as the window
    /// allows, latency from the actual send.
    #[arg(long)]
    rate: Option<f64>,
    /// Most requests sent but not yet answered (unpaced runs).
    #[arg(long, default_value_t = 2000)]
    window: usize,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One request to send, prebuilt (body only).
struct Request {
    msg_type: &'static [u8],
    cl_ord_id: String,
    body: MessageBuilder,
}

fn requests(rows: &[OrderRow], run: &str) -> Vec<Request> {
    let mut sides: HashMap<u64, Side> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for (k, r) in rows.iter().enumerate() {
        let mut b = MessageBuilder::body();
        match r.action {
            Action::New => {
                let kind = r.kind.unwrap_or(OrderType::Limit);
                let side = r.side.unwrap_or(Side::Buy);
                sides.insert(r.order_id, side);
                let (ord_type, tif) = fix_gateway::mapping::fix_type(kind);
                let cl = format!("{run}-{}", r.order_id);
                b.str_field(11, &cl)
                    .str_field(55, &r.security)
                    .field(54, fix_gateway::mapping::fix_side(side))
                    .u64_field(38, r.qty)
                    .field(40, ord_type)
                    .field(59, tif);
                if !kind.is_priceless() || r.price != 0 {
                    b.str_field(44, &r.price.to_string());
                }
                b.str_field(60, &utc::format(now_ms()));
                out.push(Request {
                    msg_type: b"D",
                    cl_ord_id: cl,
                    body: b,
                });
            }
            Action::Cancel => {
                let cl = format!("{run}-c{k}");
                let side = sides.get(&r.order_id).copied().unwrap_or(Side::Buy);
                b.str_field(11, &cl)
                    .str_field(41, &format!("{run}-{}", r.order_id))
                    .str_field(55, &r.security)
                    .field(54, fix_gateway::mapping::fix_side(side))
                    .str_field(60, &utc::format(now_ms()));
                out.push(Request {
                    msg_type: b"F",
                    cl_ord_id: cl,
                    body: b,
                });
            }
            Action::Amend | Action::Phase => {}
        }
    }
    out
}

struct Framer {
    sender: String,
    target: String,
    seq: u64,
}

impl Framer {
    fn frame(&mut self, msg_type: &[u8], body: &MessageBuilder, out: &mut Vec<u8>) {
        let mut b = MessageBuilder::new(msg_type);
        b.str_field(tags::SENDER_COMP_ID, &self.sender)
            .str_field(tags::TARGET_COMP_ID, &self.target)
            .u64_field(tags::MSG_SEQ_NUM, self.seq)
            .str_field(tags::SENDING_TIME, &utc::format(now_ms()))
            .append(body);
        self.seq += 1;
        out.extend_from_slice(&b.finish("FIX.4.4"));
    }
}

fn secret(password: &str, sender: &str) -> anyhow::Result<String> {
    let Some(path) = password.strip_prefix('@') else {
        return Ok(password.to_string());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let creds = transport::credentials::parse(&text, path)?;
    creds
        .get(sender)
        .cloned()
        .with_context(|| format!("{sender} is not in {path}"))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    transport::runtime::exit_code("fix-load", run(args))
}

#[tokio::main(flavor = "current_thread")]
async fn run(args: Args) -> anyhow::Result<()> {
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a positive number");
    }
    let password = secret(&args.password, &args.sender)?;
    let text = std::fs::read_to_string(&args.orders)
        .with_context(|| format!("reading {}", args.orders.display()))?;
    let rows = parse_orders(&text).with_context(|| format!("in {}", args.orders.display()))?;
    let run = format!("{:x}", now_ms());
    let reqs = requests(&rows, &run);
    let n = reqs.len();
    if n == 0 {
        bail!("no orders or cancels in {}", args.orders.display());
    }
    let index: HashMap<String, usize> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.cl_ord_id.clone(), i))
        .collect();

    let stream = TcpStream::connect(&args.gateway)
        .await
        .with_context(|| format!("connecting to {}", args.gateway))?;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let mut framer = Framer {
        sender: args.sender.clone(),
        target: args.target.clone(),
        seq: 1,
    };
    let mut logon = MessageBuilder::body();
    logon
        .u64_field(tags::ENCRYPT_METHOD, 0)
        .u64_field(tags::HEART_BT_INT, 30)
        .field(tags::RESET_SEQ_NUM_FLAG, b"Y")
        .str_field(tags::PASSWORD, &password);
    let mut wire = Vec::new();
    framer.frame(tags::msg_type::LOGON, &logon, &mut wire);
    wr.write_all(&wire).await?;
    let mut decoder = Decoder::new(1 << 20);
    let mut buf = vec![0u8; 256 * 1024];
    'logon: loop {
        let k = tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf))
            .await
            .context("no answer to the Logon")??;
        if k == 0 {
            bail!("the gateway closed the connection");
        }
        decoder.extend(&buf[..k]);
        while let Some(frame) = decoder.next_frame() {
            if let Ok(Decoded::Message(m)) = frame {
                match m.msg_type() {
                    b"A" => break 'logon,
                    b"5" => bail!("logon refused: {}", m.get_str(tags::TEXT).unwrap_or("")),
                    _ => {}
                }
            }
        }
    }

    // When each request was due (paced) or sent, and when its first answer came: ns since start.
    let due: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let answered_at: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let answered = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let (admin_tx, mut admin_rx) = mpsc::channel::<(Vec<u8>, MessageBuilder)>(64);
    let start = Instant::now();
    let reader = {
        let (answered_at, answered) = (answered_at.clone(), answered.clone());
        let progress = progress.clone();
        tokio::spawn(async move {
            let on = |m: Message| -> bool {
                match m.msg_type() {
                    b"8" | b"9" => {
                        if let Some(&i) = m.get_str(11).and_then(|c| index.get(c)) {
                            let t = start.elapsed().as_nanos().max(1) as u64;
                            if answered_at[i]
                                .compare_exchange(0, t, Ordering::Relaxed, Ordering::Relaxed)
                                .is_ok()
                            {
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    b"1" => {
                        let mut b = MessageBuilder::body();
                        b.field(tags::TEST_REQ_ID, m.get(tags::TEST_REQ_ID).unwrap_or(b"?"));
                        let _ = admin_tx.try_send((b"0".to_vec(), b));
                    }
                    b"5" => return false,
                    b"3" | b"j" => eprintln!("fix-load: the gateway rejected a message: {m:?}"),
                    _ => {}
                }
                true
            };
            loop {
                let k = match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => k,
                };
                decoder.extend(&buf[..k]);
                while let Some(frame) = decoder.next_frame() {
                    if let Ok(Decoded::Message(m)) = frame {
                        if !on(m) {
                            progress.notify_one();
                            return;
                        }
                    }
                }
                progress.notify_one();
            }
        })
    };

    let mut pos = 0;
    let mut out = Vec::with_capacity(256 * 1024);
    while pos < n {
        while let Ok((t, b)) = admin_rx.try_recv() {
            framer.frame(&t, &b, &mut out);
        }
        let end = match args.rate {
            Some(r) => {
                let at = start + Duration::from_secs_f64(pos as f64 / r);
                wait_until(at).await;
                due[pos].store((at - start).as_nanos().max(1) as u64, Ordering::Relaxed);
                pos + 1
            }
            None => {
                while pos - answered.load(Ordering::Relaxed) >= args.window {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(50), progress.notified()).await;
                    if reader.is_finished() {
                        bail!("the gateway ended the session");
                    }
                }
                let room = args.window - (pos - answered.load(Ordering::Relaxed));
                let end = (pos + room.min(256)).min(n);
                let t = start.elapsed().as_nanos().max(1) as u64;
                for d in &due[pos..end] {
                    d.store(t, Ordering::Relaxed);
                }
                end
            }
        };
        for r in &reqs[pos..end] {
            framer.frame(r.msg_type, &r.body, &mut out);
        }
        wr.write_all(&out).await?;
        out.clear();
        pos = end;
        if reader.is_finished() {
            bail!("the gateway ended the session");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline || reader.is_finished() {
            bail!(
                "only {} of {n} requests answered",
                answered.load(Ordering::Relaxed)
            );
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), progress.notified()).await;
    }
    framer.frame(tags::msg_type::LOGOUT, &MessageBuilder::body(), &mut out);
    wr.write_all(&out).await?;
    let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;

    let mut h = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let mut last = 0u64;
    for i in 0..n {
        let (d, a) = (
            due[i].load(Ordering::Relaxed),
            answered_at[i].load(Ordering::Relaxed),
        );
        last = last.max(a);
        h.record((a.saturating_sub(d) / 1000).max(1))?;
    }
    let elapsed = last as f64 / 1e9;
    let q = |p: f64| h.value_at_quantile(p);
    let mode = if args.rate.is_some() { "due" } else { "send" };
    println!(
        "{n} requests through one FIX session in {elapsed:.3} s: {:.0} requests/s",
        n as f64 / elapsed
    );
    println!(
        "  {mode}->first answer us  p50 {:>7}  p90 {:>7}  p99 {:>7}  p99.9 {:>7}  max {:>7}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        h.max()
    );
    if let Some(path) = args.json {
        let json = format!(
            "{{\"requests\":{n},\"elapsed_s\":{elapsed},\"throughput\":{},\"rate\":{},\"answer_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{}}}}}\n",
            n as f64 / elapsed,
            args.rate.map_or("null".into(), |r| r.to_string()),
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            h.max()
        );
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Waits until `due` with sub-millisecond precision (sleep while far, then yield).
async fn wait_until(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        if due - now > Duration::from_millis(2) {
            tokio::time::sleep_until((due - Duration::from_millis(1)).into()).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}
