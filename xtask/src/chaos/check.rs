//! `cargo xtask chaos --check-relay`: the relay checked against echo servers of its own, with
//! no stack. A TCP and a UDP echo server listen on 127.0.0.1 of the host; clients inside a
//! namespace reach them through the relay while the faults change, and each fault is measured
//! from the clients' side and from the relay's counters.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::netns::Namespace;
use super::relay::{Relay, RelayHandle};

/// The seed of the relay's random loss: the check repeats exactly.
const SEED: u64 = 0xc4a0_5eed;
/// Datagrams sent per loss measurement.
const DATAGRAMS: u32 = 2000;
/// The delay the check adds.
const DELAY: Duration = Duration::from_millis(200);
/// How long nothing may come back during the cut.
const CUT_FOR: Duration = Duration::from_secs(2);
/// How long anything may take to come back when it should.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// Runs every check; fails at the first that does not hold.
pub(crate) async fn run() -> anyhow::Result<()> {
    let tcp_echo = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let udp_echo = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let unrelayed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let tcp_port = tcp_echo.local_addr()?.port();
    let udp_port = udp_echo.local_addr()?.port();
    let unrelayed_port = unrelayed.local_addr()?.port();
    // A port with nothing behind it on the host: a service that is down.
    let down_port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
    let echo_servers = [
        tokio::spawn(serve_tcp_echo(tcp_echo)),
        tokio::spawn(serve_udp_echo(udp_echo)),
        tokio::spawn(async move {
            // Accepts, so that only the namespace can make a connection to it fail.
            while let Ok((stream, _)) = unrelayed.accept().await {
                drop(stream);
            }
        }),
    ];
    let namespace = Namespace::create()?;
    println!(
        "relay check: namespace {}; host echo servers on 127.0.0.1: TCP {tcp_port}, UDP \
         {udp_port}; relayed also: TCP {down_port} (nothing listens); not relayed: TCP \
         {unrelayed_port}",
        namespace.name()
    );
    let result = async {
        let relay = Relay::start(&namespace, &[tcp_port, down_port], &[udp_port], SEED).await?;
        let handle = relay.handle();
        checks(&namespace, &handle, tcp_port, udp_port, down_port, unrelayed_port).await?;
        println!("relay check: the relay's counters over the whole check:");
        print!("{}", handle.stats().report());
        anyhow::Ok(())
    }
    .await;
    for server in echo_servers {
        server.abort();
    }
    let name = namespace.name().to_owned();
    drop(namespace);
    ensure!(
        !std::path::Path::new("/run/netns").join(&name).exists(),
        "namespace {name} is still there after the check"
    );
    if result.is_ok() {
        println!("relay check: namespace {name} deleted; every check passed");
    }
    result
}

async fn checks(
    namespace: &Namespace,
    relay: &RelayHandle,
    tcp_port: u16,
    udp_port: u16,
    down_port: u16,
    unrelayed_port: u16,
) -> anyhow::Result<()> {
    // Isolation: inside, a host port without a relay does not exist.
    let refused = namespace
        .inside(move || Ok(std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, unrelayed_port))))
        .await?;
    match refused {
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {}
        other => bail!("inside the namespace, unrelayed port {unrelayed_port} answered: {other:?}"),
    }
    println!(
        "relay check: isolated: inside, the host's unrelayed TCP port {unrelayed_port} is refused"
    );

    // A program started with `ip netns exec` reaches the echo server through the relay.
    let script =
        format!("exec 3<>/dev/tcp/127.0.0.1/{tcp_port} && printf hello >&3 && head -c 5 <&3");
    let mut command = tokio::process::Command::from(namespace.command("bash"));
    command.args(["-c", &script]).stdin(std::process::Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(ANSWER_WITHIN, command.output())
        .await
        .context("`ip netns exec … bash` did not finish")??;
    ensure!(
        output.status.success() && output.stdout == b"hello",
        "`ip netns exec {} bash` through the relay: {:?}, out {:?}, err {:?}",
        namespace.name(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "relay check: a process started with `ip netns exec` reached the TCP echo through the relay"
    );

    // Plain forwarding.
    let mut tcp = connect_inside(namespace, tcp_port).await?;
    let payload: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let started = Instant::now();
    let echoed = tcp_round_trip(&mut tcp, &payload, ANSWER_WITHIN).await?;
    ensure!(echoed == payload, "the TCP echo came back altered");
    println!(
        "relay check: plain: 256 KiB echoed over TCP in {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let udp = udp_inside(namespace, udp_port).await?;
    let plain = udp_burst(&udp, 200).await?;
    ensure!(plain.received == 200, "without faults {} of 200 datagrams came back", plain.received);
    println!(
        "relay check: plain: 200 of 200 datagrams echoed, round trip {:.2} ms",
        plain.min_rtt.as_secs_f64() * 1000.0
    );

    // Loss.
    for loss in [0.05, 0.20] {
        relay.set_loss(loss);
        let before = relay.stats();
        let burst = udp_burst(&udp, DATAGRAMS).await?;
        let stats = relay.stats().since(&before);
        let (up, down) = (stats.udp_to_service, stats.udp_to_bot);
        ensure!(
            up.forwarded + up.lost == u64::from(DATAGRAMS),
            "the relay saw {} of the {DATAGRAMS} datagrams sent",
            up.forwarded + up.lost
        );
        ensure!(
            down.forwarded + down.lost == up.forwarded,
            "the echo answered {} of the {} datagrams the relay forwarded",
            down.forwarded + down.lost,
            up.forwarded
        );
        ensure!(
            burst.received as u64 == down.forwarded,
            "the client received {} datagrams, the relay forwarded {} to it",
            burst.received,
            down.forwarded
        );
        for (name, flow) in [("to the service", &up), ("to the bot", &down)] {
            let seen = flow.forwarded + flow.lost;
            let tolerance = 4.0 * (loss * (1.0 - loss) / seen as f64).sqrt() + 0.005;
            ensure!(
                (flow.loss() - loss).abs() <= tolerance,
                "loss {name}: {:.2} % of {seen} datagrams, set {:.0} % (tolerance {:.2} points)",
                flow.loss() * 100.0,
                loss * 100.0,
                tolerance * 100.0
            );
        }
        let round_trip = burst.received as f64 / f64::from(DATAGRAMS);
        let expected = (1.0 - loss) * (1.0 - loss);
        let tolerance = 4.0 * (expected * (1.0 - expected) / f64::from(DATAGRAMS)).sqrt() + 0.005;
        ensure!(
            (round_trip - expected).abs() <= tolerance,
            "{:.2} % of the datagrams came back, expected {:.2} % (tolerance {:.2} points)",
            round_trip * 100.0,
            expected * 100.0,
            tolerance * 100.0
        );
        println!(
            "relay check: loss {:>2.0} %: dropped {:.2} % toward the service ({} of {}), {:.2} % \
             toward the bot ({} of {}); {} of {DATAGRAMS} round trips came back ({:.2} %, \
             expected {:.2} %)",
            loss * 100.0,
            up.loss() * 100.0,
            up.lost,
            up.forwarded + up.lost,
            down.loss() * 100.0,
            down.lost,
            down.forwarded + down.lost,
            burst.received,
            round_trip * 100.0,
            expected * 100.0
        );
    }
    relay.set_loss(0.0);

    // Delay, each way.
    relay.set_delay(DELAY);
    let started = Instant::now();
    let echoed = tcp_round_trip(&mut tcp, &payload, ANSWER_WITHIN).await?;
    let tcp_rtt = started.elapsed();
    ensure!(echoed == payload, "the delayed TCP echo came back altered");
    let delayed = udp_burst(&udp, 20).await?;
    ensure!(delayed.received == 20, "with delay {} of 20 datagrams came back", delayed.received);
    for (name, rtt) in [("TCP", tcp_rtt), ("UDP", delayed.min_rtt)] {
        ensure!(
            rtt >= 2 * DELAY && rtt < 2 * DELAY + Duration::from_millis(500),
            "{name} round trip with {DELAY:?} each way: {rtt:?}"
        );
    }
    println!(
        "relay check: delay {} ms each way: TCP round trip of 256 KiB {:.0} ms, in order; UDP \
         round trip {:.0} ms",
        DELAY.as_millis(),
        tcp_rtt.as_secs_f64() * 1000.0,
        delayed.min_rtt.as_secs_f64() * 1000.0
    );
    relay.set_delay(Duration::ZERO);

    // Cut, then restore.
    relay.cut();
    let before = relay.stats();
    tcp.write_all(b"during the cut").await?;
    let mut late = connect_inside(namespace, tcp_port).await?;
    late.write_all(b"new during the cut").await?;
    let cut = udp_burst_for(&udp, 50, CUT_FOR).await?;
    let mut buffer = [0u8; 64];
    ensure!(cut.received == 0, "{} datagrams came back during the cut", cut.received);
    ensure!(
        tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut buffer)).await.is_err(),
        "the open TCP connection answered during the cut"
    );
    ensure!(
        tokio::time::timeout(Duration::from_millis(100), late.read(&mut buffer)).await.is_err(),
        "a TCP connection opened during the cut answered"
    );
    let during = relay.stats().since(&before);
    ensure!(
        during.udp_to_service.cut == 50 && during.udp_to_service.forwarded == 0,
        "during the cut: {:?}",
        during.udp_to_service
    );
    ensure!(during.tcp_to_service.forwarded == 0, "TCP went through during the cut");
    println!(
        "relay check: cut: for {} s no datagram (50 dropped) and no TCP byte went through; the \
         open connection and one opened during the cut stayed open",
        CUT_FOR.as_secs()
    );
    relay.restore();
    let resumed = read_exactly(&mut tcp, b"during the cut".len(), ANSWER_WITHIN).await?;
    ensure!(resumed == b"during the cut", "the open connection resumed with {resumed:?}");
    let answered = read_exactly(&mut late, b"new during the cut".len(), ANSWER_WITHIN).await?;
    ensure!(answered == b"new during the cut", "the late connection got {answered:?}");
    let back = udp_burst(&udp, 100).await?;
    ensure!(back.received == 100, "after the cut {} of 100 datagrams came back", back.received);
    println!(
        "relay check: restored: the same TCP connection resumed with what was held, the one \
         opened during the cut was answered, 100 of 100 datagrams came back"
    );

    // A service that is down: the connection inside is reset.
    let before = relay.stats();
    let mut down = connect_inside(namespace, down_port).await?;
    let outcome = tokio::time::timeout(ANSWER_WITHIN, down.read(&mut buffer))
        .await
        .context("a connection to a service that is down stayed open")?;
    ensure!(
        matches!(&outcome, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "a connection to a service that is down: {outcome:?}"
    );
    ensure!(relay.stats().since(&before).tcp_refused == 1, "the refusal was not counted");
    println!("relay check: a service that is down: the connection inside is reset");
    Ok(())
}

/// A TCP connection made inside the namespace to 127.0.0.1:`port`.
async fn connect_inside(namespace: &Namespace, port: u16) -> anyhow::Result<TcpStream> {
    let stream = namespace
        .inside(move || {
            let stream = std::net::TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                ANSWER_WITHIN,
            )
            .with_context(|| format!("connecting to 127.0.0.1:{port} inside the namespace"))?;
            stream.set_nonblocking(true)?;
            Ok(stream)
        })
        .await?;
    Ok(TcpStream::from_std(stream)?)
}

/// A UDP socket inside the namespace, connected to 127.0.0.1:`port`.
async fn udp_inside(namespace: &Namespace, port: u16) -> anyhow::Result<UdpSocket> {
    let socket = namespace
        .inside(move || {
            let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
            socket.connect((Ipv4Addr::LOCALHOST, port))?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })
        .await?;
    Ok(UdpSocket::from_std(socket)?)
}

/// Writes `payload` and reads as many bytes back.
async fn tcp_round_trip(
    stream: &mut TcpStream,
    payload: &[u8],
    within: Duration,
) -> anyhow::Result<Vec<u8>> {
    let (mut read, mut write) = stream.split();
    let (written, echoed) = tokio::join!(
        write.write_all(payload),
        tokio::time::timeout(within, async {
            let mut echoed = vec![0u8; payload.len()];
            read.read_exact(&mut echoed).await.map(|_| echoed)
        })
    );
    written?;
    Ok(echoed.context("the TCP echo did not come back")??)
}

/// Reads `n` bytes.
async fn read_exactly(
    stream: &mut TcpStream,
    n: usize,
    within: Duration,
) -> anyhow::Result<Vec<u8>> {
    let mut bytes = vec![0u8; n];
    tokio::time::timeout(within, stream.read_exact(&mut bytes))
        .await
        .context("nothing came back")??;
    Ok(bytes)
}

/// What came back of a burst of datagrams.
#[derive(Debug)]
struct Burst {
    /// Distinct datagrams echoed.
    received: usize,
    /// The shortest round trip.
    min_rtt: Duration,
}

/// Sends `count` numbered datagrams, paced, and counts those echoed until a quiet second after
/// the last.
async fn udp_burst(socket: &UdpSocket, count: u32) -> anyhow::Result<Burst> {
    udp_burst_for(socket, count, Duration::from_secs(1)).await
}

/// As [`udp_burst`], waiting `quiet` after the last for late answers.
async fn udp_burst_for(socket: &UdpSocket, count: u32, quiet: Duration) -> anyhow::Result<Burst> {
    let started = Instant::now();
    let mut seen = vec![false; count as usize];
    let mut min_rtt = Duration::MAX;
    let mut buffer = [0u8; 64];
    let mut record = |n: usize, buffer: &[u8]| {
        let Some(bytes) = buffer.get(..n).filter(|b| b.len() == 16) else {
            return;
        };
        let number = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        let sent =
            Duration::from_nanos(u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes")));
        if let Some(slot) = seen.get_mut(number as usize) {
            *slot = true;
            min_rtt = min_rtt.min(started.elapsed().saturating_sub(sent));
        }
    };
    for number in 0..count {
        let mut datagram = [0u8; 16];
        datagram[..8].copy_from_slice(&u64::from(number).to_be_bytes());
        datagram[8..].copy_from_slice(&(started.elapsed().as_nanos() as u64).to_be_bytes());
        socket.send(&datagram).await?;
        // 20 datagrams every 2 ms: far below what a socket buffer holds.
        if number % 20 == 19 {
            let pause = tokio::time::sleep(Duration::from_millis(2));
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    () = &mut pause => break,
                    received = socket.recv(&mut buffer) => record(received?, &buffer),
                }
            }
        }
    }
    while let Ok(received) = tokio::time::timeout(quiet, socket.recv(&mut buffer)).await {
        record(received?, &buffer);
    }
    Ok(Burst { received: seen.iter().filter(|s| **s).count(), min_rtt })
}

async fn serve_tcp_echo(listener: TcpListener) {
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let (mut read, mut write) = stream.split();
            let _ = tokio::io::copy(&mut read, &mut write).await;
        });
    }
}

async fn serve_udp_echo(socket: UdpSocket) {
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok((n, from)) = socket.recv_from(&mut buffer).await {
        let _ = socket.send_to(&buffer[..n], from).await;
    }
}
