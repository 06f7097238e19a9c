//! The `select!` macro: arms parsed one at a time, each into an arm object on the stack.

/// Waits on several channel operations and runs the arm of the one that completes (Go's
/// `select`).
///
/// ```
/// use gort_sched::{chan, select};
///
/// let (tx, rx) = chan::<u32>(1);
/// let (_quit_tx, quit) = chan::<()>(0);
/// tx.send(7).unwrap();
/// let got = select! {
///     recv(rx) -> v => v.unwrap(),
///     recv(quit) -> _ => 0,
/// };
/// assert_eq!(got, 7);
/// ```
///
/// Arms:
/// * `recv(rx) -> result => body`: `rx` is a `Receiver<T>` (borrowed, not moved), a
///   `&Receiver<T>`, or an `Option` of either, where `None` disables the arm (Go's nil
///   channel); `result` is a pattern for
///   `Result<T, RecvError>` (`Err` once the channel is closed and drained).
/// * `send(tx, value) -> result => body`: `tx` is as for `recv`, with `Sender<T>`;
///   `result` matches `Result<(), SendError<T>>` (`Err` carries the value back if the channel
///   is closed). A value whose arm did not win is dropped.
/// * `default => body`: taken at once when no other arm is ready.
///
/// Bodies are expressions followed by a comma, or blocks (comma optional). When several arms
/// are ready one is chosen uniformly at random. Without `default` the calling goroutine parks
/// (a plain thread blocks) until one arm completes; with every arm disabled and no default it
/// waits forever, as `select {}` does. Timeouts are receive arms on timer channels.
#[macro_export]
macro_rules! select {
    ($($arms:tt)*) => {
        $crate::__select_arms!(@acc [] [] $($arms)*)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_arms {
    // recv with a block body, then the comma-or-not rules, then an expression body.
    (@acc [$($acc:tt)*] [$($def:tt)*] recv($rx:expr) -> $pat:pat => $body:block , $($rest:tt)*) => {{
        match $rx {
            ref __src => {
                let mut __arm = $crate::chan::RecvArm::new(__src);
                $crate::__select_arms!(@acc [$($acc)* (__arm, $pat, $body)] [$($def)*] $($rest)*)
            }
        }
    }};
    (@acc [$($acc:tt)*] [$($def:tt)*] recv($rx:expr) -> $pat:pat => $body:block $($rest:tt)*) => {{
        match $rx {
            ref __src => {
                let mut __arm = $crate::chan::RecvArm::new(__src);
                $crate::__select_arms!(@acc [$($acc)* (__arm, $pat, $body)] [$($def)*] $($rest)*)
            }
        }
    }};
    (@acc [$($acc:tt)*] [$($def:tt)*] recv($rx:expr) -> $pat:pat => $body:expr $(, $($rest:tt)*)?) => {{
        match $rx {
            ref __src => {
                let mut __arm = $crate::chan::RecvArm::new(__src);
                $crate::__select_arms!(@acc [$($acc)* (__arm, $pat, $body)] [$($def)*] $($($rest)*)?)
            }
        }
    }};
    (@acc [$($acc:tt)*] [$($def:tt)*] send($tx:expr, $val:expr) -> $pat:pat => $body:block , $($rest:tt)*) => {{
        match $tx {
            ref __src => {
                let mut __arm = $crate::chan::SendArm::new(__src, $val);
                $crate::__select_arms!(@acc [$($acc)* (__arm, $pat, $body)] [$($def)*] $($rest)*)
            }
        }
    }};
    (@acc [$($acc:tt)*] [$($def:tt)*] send($tx:expr, $val:expr) -> $pat:pat => $body:block $($rest:tt)*) => {{
        match $tx {
            ref __src => {
                let mut __arm = $crate::chan::SendArm::new(__src, $val);
                $crate::__select_arms!(@acc [$($acc)* (__arm, $pat, $body)] [$($def)*] $($rest)*)
            }
        }
    }};
    (@acc [$($acc:tt)*] [$($def:tt)*] send($tx:expr, $val:expr) -> $pat:pat => $body:expr $(, $($rest:tt)*)?) => {{
        match $tx {
            ref __src => {
                let mut __arm = $crate::chan::SendArm::new(__src, $val);
                $crate::__select_arms!(@acc [$($acc)* (__arm, $pat, $body)] [$($def)*] $($($rest)*)?)
            }
        }
    }};
    (@acc [$($acc:tt)*] [] default => $body:block , $($rest:tt)*) => {
        $crate::__select_arms!(@acc [$($acc)*] [$body] $($rest)*)
    };
    (@acc [$($acc:tt)*] [] default => $body:block $($rest:tt)*) => {
        $crate::__select_arms!(@acc [$($acc)*] [$body] $($rest)*)
    };
    (@acc [$($acc:tt)*] [] default => $body:expr $(, $($rest:tt)*)?) => {
        $crate::__select_arms!(@acc [$($acc)*] [$body] $($($rest)*)?)
    };
    (@acc [$($acc:tt)*] [$($def:tt)+] default => $($rest:tt)*) => {
        ::core::compile_error!("select! takes at most one `default` arm")
    };
    // All arms parsed: run the select, then the chosen arm's body.
    (@acc [$(($arm:ident, $pat:pat, $body:expr))*] []) => {{
        $crate::chan::select(&mut [$(&mut $arm as &mut dyn $crate::chan::SelectArm),*], false);
        $(if $arm.won() {
            let $pat = $arm.into_result();
            $body
        } else)* {
            ::core::unreachable!("runtime: select returned without a chosen arm")
        }
    }};
    (@acc [$(($arm:ident, $pat:pat, $body:expr))*] [$def:expr]) => {{
        $crate::chan::select(&mut [$(&mut $arm as &mut dyn $crate::chan::SelectArm),*], true);
        $(if $arm.won() {
            let $pat = $arm.into_result();
            $body
        } else)* {
            $def
        }
    }};
    (@acc [$($acc:tt)*] [$($def:tt)*] $($rest:tt)+) => {
        ::core::compile_error!(
            "select! arms are `recv(rx) -> pattern => body`, `send(tx, value) -> pattern => body` or `default => body`"
        )
    };
}
