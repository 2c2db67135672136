//! A steady stream of packets from a peer to a guest, to measure what a live
//! migration costs the guest's users: every `interval` one ICMP echo request and one
//! UDP datagram, each numbered. Echo replies answer the ICMP; the guest kernel's
//! port-unreachable errors answer the UDP (they quote the datagram, number included;
//! the guest's ICMP rate limit must be off, see [`GUEST_SETUP`]). A packet without
//! an answer within [`LATE`] is lost; the report gives, per protocol, how many, the
//! first and last lost (time since the stream began) and the longest run of losses.
//!
//! The sockets are opened on a thread of its own that enters the peer's network
//! namespace (never a tokio worker); they keep that namespace for their lifetime.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Turns the guest's ICMP rate limit off, so that every UDP datagram gets its
/// port-unreachable answer.
pub const GUEST_SETUP: &str = "echo 0 > /proc/sys/net/ipv4/icmp_ratelimit";

/// How long an answer may take and still count.
pub const LATE: Duration = Duration::from_millis(500);

/// The UDP port the datagrams go to (closed in the guest).
pub const UDP_PORT: u16 = 33999;

const MAGIC: &[u8; 4] = b"sNmg";

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("failed to enter the peer's network namespace {netns}: {source}")]
    Enter {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open the stream's {what} socket: {source}")]
    Socket {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the stream's sender thread panicked")]
    Panicked,
}

/// A running stream; [`Stream::stop`] ends it and returns what was seen.
pub struct Stream {
    stop: Arc<AtomicBool>,
    sender: Option<std::thread::JoinHandle<Result<(), StreamError>>>,
    receiver: Option<std::thread::JoinHandle<()>>,
    log: Arc<Mutex<Log>>,
    pub started: Instant,
    pub interval: Duration,
    pub target: Ipv4Addr,
}

#[derive(Debug, Default)]
struct Log {
    /// Send time of packet `seq` (index), for both protocols.
    sent: Vec<Instant>,
    icmp: Vec<Option<Instant>>,
    udp: Vec<Option<Instant>>,
}

/// One protocol's losses.
#[derive(Debug, Clone, PartialEq)]
pub struct Losses {
    pub(crate) protocol: &'static str,
    pub(crate) sent: usize,
    pub(crate) answered: usize,
    pub(crate) lost: usize,
    /// Send time of the first and the last lost packet, since the stream began.
    pub(crate) first_lost: Option<Duration>,
    pub(crate) last_lost: Option<Duration>,
    /// The longest run of consecutive losses, as time (packets × interval).
    pub(crate) longest_gap: Duration,
    /// When the first and the last answer (in time) arrived, since the stream
    /// began: where a guest answered at one address until a moment, or from one
    /// moment on. Arrival, not send time: a packet held in a queue until the
    /// guest could answer it was not answered earlier.
    pub(crate) first_answer: Option<Duration>,
    pub(crate) last_answer: Option<Duration>,
}

impl std::fmt::Display for Losses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} sent, {} lost",
            self.protocol, self.sent, self.lost
        )?;
        if let (Some(a), Some(b)) = (self.first_lost, self.last_lost) {
            write!(
                f,
                " (first at {:.3} s, last at {:.3} s, longest gap {:.0} ms)",
                a.as_secs_f64(),
                b.as_secs_f64(),
                self.longest_gap.as_secs_f64() * 1000.0
            )?;
        }
        Ok(())
    }
}

/// What a stopped stream saw.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamReport {
    /// When the stream began: the base of every time in it.
    pub(crate) started: Instant,
    pub(crate) interval: Duration,
    pub(crate) icmp: Losses,
    pub(crate) udp: Losses,
}

impl StreamReport {
    /// The longer of the two protocols' gaps.
    pub fn downtime(&self) -> Duration {
        self.icmp.longest_gap.max(self.udp.longest_gap)
    }
}

impl std::fmt::Display for StreamReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stream every {} ms: {}; {}",
            self.interval.as_millis(),
            self.icmp,
            self.udp
        )
    }
}

fn socket_err(what: &'static str) -> impl Fn(std::io::Error) -> StreamError {
    move |source| StreamError::Socket { what, source }
}

impl Stream {
    /// Starts sending from network namespace `netns` to `target`.
    pub fn start(
        netns: PathBuf,
        target: Ipv4Addr,
        interval: Duration,
    ) -> Result<Stream, StreamError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Log::default()));
        let started = Instant::now();
        let id = (std::process::id() as u16)
            ^ (xxhash_rust::xxh64::xxh64(target.to_string().as_bytes(), 5) as u16);
        let (stop_s, log_s) = (stop.clone(), log.clone());
        let sender = std::thread::spawn(move || -> Result<(), StreamError> {
            let opened = open_in(&netns);
            let (icmp, udp) = match opened {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return Err(e);
                }
            };
            let reader = icmp.try_clone().map_err(socket_err("ICMP"))?;
            let _ = tx.send(Ok(reader));
            let dest = SockAddr::from(SocketAddrV4::new(target, 0));
            let udp_dest = SockAddr::from(SocketAddrV4::new(target, UDP_PORT));
            let mut seq: u32 = 0;
            let mut next = Instant::now();
            while !stop_s.load(Ordering::Relaxed) {
                let payload = payload(id, seq);
                {
                    let mut l = log_s.lock().unwrap_or_else(|p| p.into_inner());
                    l.sent.push(Instant::now());
                    l.icmp.push(None);
                    l.udp.push(None);
                }
                let _ = icmp.send_to(&echo_request(id, seq as u16, &payload), &dest);
                let _ = udp.send_to(&payload, &udp_dest);
                seq += 1;
                next += interval;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
            }
            Ok(())
        });
        let reader = match rx.recv() {
            Ok(Ok(r)) => r,
            Ok(Err(_)) | Err(_) => {
                return Err(match sender.join() {
                    Ok(Err(e)) => e,
                    _ => StreamError::Panicked,
                });
            }
        };
        let (stop_r, log_r) = (stop.clone(), log.clone());
        let receiver = std::thread::spawn(move || receive(reader, id, stop_r, log_r));
        Ok(Stream {
            stop,
            sender: Some(sender),
            receiver: Some(receiver),
            log,
            started,
            interval,
            target,
        })
    }

    /// Whether packet `after` onwards had at least one answer (the stream is
    /// flowing): for waiting until the path is warm.
    pub fn answered_since(&self, after: Instant) -> bool {
        let l = self.log.lock().unwrap_or_else(|p| p.into_inner());
        l.sent
            .iter()
            .zip(&l.icmp)
            .any(|(s, a)| *s >= after && a.is_some())
    }

    /// Stops sending, waits [`LATE`] for the last answers, and reports.
    pub fn stop(mut self) -> Result<StreamReport, StreamError> {
        // The last packets get their time to be answered.
        let last_sent = Instant::now();
        std::thread::sleep(LATE);
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.sender.take().map(|h| h.join());
        if let Some(h) = self.receiver.take() {
            let _ = h.join();
        }
        match sent {
            Some(Ok(Ok(()))) | None => {}
            Some(Ok(Err(e))) => return Err(e),
            Some(Err(_)) => return Err(StreamError::Panicked),
        }
        let l = self.log.lock().unwrap_or_else(|p| p.into_inner());
        // Only packets that had their full LATE to be answered are judged.
        let judged = l.sent.iter().take_while(|s| **s <= last_sent).count();
        Ok(StreamReport {
            started: self.started,
            interval: self.interval,
            icmp: losses(
                "ICMP",
                &l.sent[..judged],
                &l.icmp[..judged],
                self.started,
                self.interval,
            ),
            udp: losses(
                "UDP",
                &l.sent[..judged],
                &l.udp[..judged],
                self.started,
                self.interval,
            ),
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The raw ICMP socket and the UDP socket, opened inside `netns` on this thread.
fn open_in(netns: &std::path::Path) -> Result<(Socket, Socket), StreamError> {
    let enter_err = |source| StreamError::Enter {
        netns: netns.display().to_string(),
        source,
    };
    let f = std::fs::File::open(netns).map_err(enter_err)?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| enter_err(std::io::Error::from_raw_os_error(e as i32)))?;
    let icmp = Socket::new(
        Domain::IPV4,
        Type::from(nix::libc::SOCK_RAW),
        Some(Protocol::ICMPV4),
    )
    .map_err(socket_err("raw ICMP"))?;
    icmp.set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(socket_err("raw ICMP"))?;
    let udp =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(socket_err("UDP"))?;
    Ok((icmp, udp))
}

fn payload(id: u16, seq: u32) -> Vec<u8> {
    let mut p = MAGIC.to_vec();
    p.extend(id.to_be_bytes());
    p.extend(seq.to_be_bytes());
    p
}

/// The (id, seq) a payload carries, if it is ours.
fn parse_payload(p: &[u8]) -> Option<(u16, u32)> {
    if p.len() < 10 || &p[..4] != MAGIC {
        return None;
    }
    Some((
        u16::from_be_bytes([p[4], p[5]]),
        u32::from_be_bytes([p[6], p[7], p[8], p[9]]),
    ))
}

fn echo_request(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![8u8, 0, 0, 0];
    m.extend(id.to_be_bytes());
    m.extend(seq.to_be_bytes());
    m.extend(payload);
    let sum = checksum(&m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What an IPv4 packet with an ICMP message answers: (is UDP, seq).
fn answer_of(packet: &[u8], id: u16) -> Option<(bool, u32)> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    let icmp = packet.get(ihl..)?;
    match (icmp.first()?, icmp.get(1)?) {
        // Echo reply: our id, the payload's seq.
        (0, 0) => {
            let (pid, seq) = parse_payload(icmp.get(8..)?)?;
            (u16::from_be_bytes([icmp[4], icmp[5]]) == id && pid == id).then_some((false, seq))
        }
        // Port unreachable quoting our datagram: inner IP header, UDP header, payload.
        (3, 3) => {
            let inner = icmp.get(8..)?;
            let inner_ihl = usize::from(inner.first()? & 0x0f) * 4;
            let udp = inner.get(inner_ihl..)?;
            let (pid, seq) = parse_payload(udp.get(8..)?)?;
            (pid == id).then_some((true, seq))
        }
        _ => None,
    }
}

fn receive(socket: Socket, id: u16, stop: Arc<AtomicBool>, log: Arc<Mutex<Log>>) {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let now = Instant::now();
        // SAFETY: recv initialised the first n bytes.
        let packet: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        if let Some((is_udp, seq)) = answer_of(&packet, id) {
            let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
            let slot = if is_udp { &mut l.udp } else { &mut l.icmp };
            if let Some(s) = slot.get_mut(seq as usize)
                && s.is_none()
            {
                *s = Some(now);
            }
        }
    }
}

fn losses(
    protocol: &'static str,
    sent: &[Instant],
    answers: &[Option<Instant>],
    started: Instant,
    interval: Duration,
) -> Losses {
    let lost_at: Vec<Duration> = sent
        .iter()
        .zip(answers)
        .filter(|(s, a)| a.is_none_or(|a| a.duration_since(**s) > LATE))
        .map(|(s, _)| s.duration_since(started))
        .collect();
    let answered_at: Vec<Duration> = sent
        .iter()
        .zip(answers)
        .filter_map(|(s, a)| a.filter(|a| a.duration_since(*s) <= LATE))
        .map(|a| a.duration_since(started))
        .collect();
    let mut longest = 0usize;
    let mut run = 0usize;
    for (s, a) in sent.iter().zip(answers) {
        if a.is_none_or(|a| a.duration_since(*s) > LATE) {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    Losses {
        protocol,
        sent: sent.len(),
        answered: sent.len() - lost_at.len(),
        lost: lost_at.len(),
        first_lost: lost_at.first().copied(),
        last_lost: lost_at.last().copied(),
        longest_gap: interval * longest as u32,
        first_answer: answered_at.iter().min().copied(),
        last_answer: answered_at.iter().max().copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_checksum_to_zero() {
        let m = echo_request(7, 3, &payload(7, 3));
        assert_eq!(checksum(&m), 0);
    }

    #[test]
    fn answers_are_matched_by_id_and_seq() {
        let mut ip = vec![0x45u8];
        ip.extend([0u8; 19]);
        let mut reply = ip.clone();
        reply.extend([0, 0, 0, 0, 0, 9, 0, 4]);
        reply.extend(payload(9, 4));
        assert_eq!(answer_of(&reply, 9), Some((false, 4)));
        assert_eq!(answer_of(&reply, 8), None);
        let mut unreachable = ip.clone();
        unreachable.extend([3, 3, 0, 0, 0, 0, 0, 0]);
        unreachable.extend(&ip);
        unreachable.extend([0u8; 8]);
        unreachable.extend(payload(9, 77));
        assert_eq!(answer_of(&unreachable, 9), Some((true, 77)));
    }

    #[test]
    fn losses_give_first_last_and_the_longest_run() {
        let t0 = Instant::now();
        let iv = Duration::from_millis(10);
        let sent: Vec<Instant> = (0..10).map(|i| t0 + iv * i).collect();
        let answers: Vec<Option<Instant>> = (0..10)
            .map(|i| (![3, 4, 5, 8].contains(&i)).then(|| t0 + iv * i + iv))
            .collect();
        let l = losses("ICMP", &sent, &answers, t0, iv);
        assert_eq!((l.sent, l.lost, l.answered), (10, 4, 6));
        assert_eq!(l.first_lost, Some(iv * 3));
        assert_eq!(l.last_lost, Some(iv * 8));
        assert_eq!(l.longest_gap, iv * 3);
        assert_eq!(l.first_answer, Some(iv));
        assert_eq!(l.last_answer, Some(iv * 10));
    }
}
