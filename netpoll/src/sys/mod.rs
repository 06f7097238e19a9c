//! The kernel readiness mechanism: one file per mechanism, each exporting the same names
//! (`Backend` with `new` / `open` / `close` / `poll` / `wake` / `event`, `Events`, `Event`,
//! `WAKE_TOKEN`).

#[cfg(any(target_os = "linux", target_os = "android"))]
mod epoll;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) use epoll::*;

#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
mod kqueue;
#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
pub(crate) use kqueue::*;

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd"
)))]
compile_error!("gort-netpoll supports epoll (Linux) and kqueue with EVFILT_USER (macOS, FreeBSD)");
