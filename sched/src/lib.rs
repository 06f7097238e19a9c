//! gort-sched (in progress)
