//! Behaviour that ends or reshapes the process, each in a child process (the test binary run
//! again with `GORT_CHILD` naming the scenario): the deadlock detector with and without a
//! goroutine waiting on a socket, EMFILE on accept.
#![cfg(not(loom))]

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

/// Run this test binary's `test` as a child with scenario `child`; its output and status.
fn child(test: &str, scenario: &str) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("GORT_CHILD", scenario)
        .output()
        .unwrap()
}

fn scenario() -> Option<String> {
    std::env::var("GORT_CHILD").ok()
}

#[test]
fn deadlock_detector_waits_for_a_socket_then_fires_when_nothing_can_wake_anyone() {
    match scenario().as_deref() {
        Some("socket") => {
            // main waits on a channel fed by a goroutine that waits on a socket whose peer (a
            // plain thread the runtime does not know) writes after a while: not a deadlock.
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                std::thread::sleep(Duration::from_millis(300));
                s.write_all(b"late").unwrap();
                std::thread::sleep(Duration::from_secs(5));
            });
            // SAFETY: the goroutines hold no thread-bound values across scheduling points.
            let n = unsafe {
                gort::run(move || {
                    let mut c = gort::net::TcpStream::connect(addr).unwrap();
                    let (tx, rx) = gort::chan(0);
                    gort::go(move || {
                        let mut buf = [0u8; 4];
                        c.read_exact(&mut buf).unwrap();
                        tx.send(buf.len()).unwrap();
                    });
                    rx.recv().unwrap()
                })
            };
            println!("survived: {n}");
        }
        Some("nothing") => {
            // SAFETY: as above.
            unsafe {
                gort::run(|| {
                    let (_tx, rx) = gort::chan::<u8>(0);
                    let _l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
                    let _ = rx.recv();
                })
            };
            println!("not reached");
        }
        Some(_) => {}
        None => {
            let test =
                "deadlock_detector_waits_for_a_socket_then_fires_when_nothing_can_wake_anyone";
            let out = child(test, "socket");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("survived: 4"),
                "{out:?}"
            );
            let out = child(test, "nothing");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{out:?}");
            assert!(
                stderr.contains("fatal error: all goroutines are asleep - deadlock!"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn emfile_on_accept_is_an_error_and_accept_works_once_descriptors_are_free() {
    match scenario().as_deref() {
        Some("emfile") => {
            // SAFETY: as above.
            unsafe { gort::run(emfile_main) };
        }
        Some(_) => {}
        None => {
            let out = child(
                "emfile_on_accept_is_an_error_and_accept_works_once_descriptors_are_free",
                "emfile",
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{out:?}");
            assert!(stdout.contains("accepted after freeing: true"), "{stdout}");
        }
    }
}

fn emfile_main() {
    let l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    // A client waiting in the backlog.
    let _c = std::net::TcpStream::connect(addr).unwrap();
    // Use up every descriptor.
    let lim = libc::rlimit {
        rlim_cur: 256,
        rlim_max: 256,
    };
    // SAFETY: lowering our own descriptor limit; `lim` is a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let mut files = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        files.push(f);
    }
    let e = l.accept().unwrap_err();
    println!("accept error: {:?}", e.raw_os_error());
    assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
    files.truncate(files.len() - 4);
    let (s, _) = l.accept().unwrap();
    println!("accepted after freeing: {}", s.peer_addr().is_ok());
}

/// GOMAXPROCS from the environment, with Go's handling of bad values (ignored: the CPU count).
#[test]
fn gomaxprocs_from_the_environment() {
    if let Some("procs") = scenario().as_deref() {
        // SAFETY: as above.
        let n = unsafe { gort::run(|| gort::runtime::gomaxprocs(0)) };
        println!("procs={n}");
        return;
    }
    if scenario().is_some() {
        return;
    }
    let cpus = gort::runtime::num_cpu();
    for (value, want) in [
        ("3", 3),
        ("1", 1),
        ("0", cpus),
        ("-2", cpus),
        ("abc", cpus),
        (" 4", cpus),
    ] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["gomaxprocs_from_the_environment", "--exact", "--nocapture"])
            .env("GORT_CHILD", "procs")
            .env("GOMAXPROCS", value)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("procs={want}\n")),
            "GOMAXPROCS={value:?}: {stdout}"
        );
    }
}
