//! gort-netpoll: the netpoller (work in progress, see issue 4).
#![deny(unsafe_op_in_unsafe_fn)]
