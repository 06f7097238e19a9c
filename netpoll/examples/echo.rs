//! A blocking-style TCP echo server and clients on the standalone netpoll driver.
//!
//! Every socket is non-blocking and registered once with the driver; the threads read and
//! write in a plain loop and park on the poll descriptor whenever the kernel says
//! `WouldBlock`. The server serves a fixed number of clients, each with a read deadline, and
//! the program exits by itself.

use gort_netpoll::{Direction, Driver};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;
const MESSAGES: usize = 50;

fn serve(driver: &Driver, conn: TcpStream) -> io::Result<usize> {
    conn.set_nonblocking(true)?;
    let src = driver.register(conn.as_fd())?;
    let mut buf = [0u8; 1024];
    let mut echoed = 0;
    loop {
        // An idle client is dropped after two seconds.
        src.set_deadline(
            Direction::Read,
            Some(Instant::now() + Duration::from_secs(2)),
        )?;
        let n = src.read_with(|| (&conn).read(&mut buf))?;
        if n == 0 {
            return Ok(echoed);
        }
        let mut off = 0;
        while off < n {
            off += src.write_with(|| (&conn).write(&buf[off..n]))?;
        }
        echoed += n;
    }
}

fn client(driver: &Driver, addr: std::net::SocketAddr, id: usize) -> io::Result<Duration> {
    let conn = TcpStream::connect(addr)?;
    conn.set_nonblocking(true)?;
    let src = driver.register(conn.as_fd())?;
    let start = Instant::now();
    let mut buf = [0u8; 64];
    for i in 0..MESSAGES {
        let msg = format!("client {id} message {i:03}\n");
        src.write_with(|| (&conn).write(msg.as_bytes()))?;
        let mut got = 0;
        while got < msg.len() {
            got += src.read_with(|| (&conn).read(&mut buf[got..msg.len()]))?;
        }
        assert_eq!(&buf[..got], msg.as_bytes(), "echo mismatch");
    }
    Ok(start.elapsed())
}

fn main() -> io::Result<()> {
    let driver = Arc::new(Driver::start()?);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    println!("echo: server listening on {addr}, {CLIENTS} clients x {MESSAGES} messages");

    let d = Arc::clone(&driver);
    let server = thread::spawn(move || -> io::Result<usize> {
        let src = d.register(listener.as_fd())?;
        let mut handlers = Vec::new();
        for _ in 0..CLIENTS {
            let (conn, peer) = src.read_with(|| listener.accept())?;
            let d = Arc::clone(&d);
            handlers.push(thread::spawn(move || {
                let n = serve(&d, conn);
                (peer, n)
            }));
        }
        let mut total = 0;
        for h in handlers {
            let (peer, n) = h.join().expect("server handler panicked");
            let n = n?;
            println!("echo: server echoed {n} bytes to {peer}");
            total += n;
        }
        Ok(total)
    });

    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let d = Arc::clone(&driver);
            thread::spawn(move || client(&d, addr, id))
        })
        .collect();
    for (id, c) in clients.into_iter().enumerate() {
        let took = c.join().expect("client panicked")?;
        println!("echo: client {id} sent and got back {MESSAGES} lines in {took:.2?}");
    }
    let total = server.join().expect("server panicked")?;
    println!(
        "echo: done, {total} bytes echoed; waiters left parked: {}",
        driver.poller().has_waiters()
    );
    Ok(())
}
