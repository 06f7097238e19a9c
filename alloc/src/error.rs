//! The recoverable allocation error: what went wrong, the errno when the OS refused, what to do.

use std::fmt;

/// Why an allocation could not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocErrorKind {
    /// The request is larger than the heap can ever map.
    TooLarge,
    /// The operating system refused to map more memory.
    OutOfMemory,
    /// The object has drop glue (`Shape::finalize`) but the heap has no drop queue to hand it
    /// to when it dies.
    NoDropQueue,
}

/// A recoverable allocation failure. The heap is left consistent; the caller may free memory
/// (run a collection) and retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocError {
    kind: AllocErrorKind,
    errno: Option<i32>,
    message: String,
}

impl AllocError {
    pub(crate) fn too_large(size: usize) -> Self {
        AllocError {
            kind: AllocErrorKind::TooLarge,
            errno: None,
            message: format!(
                "gort-alloc: cannot allocate {size} bytes: larger than the heap's address space \
                 allows; allocate less or split the object"
            ),
        }
    }

    pub(crate) fn no_drop_queue(size: usize) -> Self {
        AllocError {
            kind: AllocErrorKind::NoDropQueue,
            errno: None,
            message: format!(
                "gort-alloc: cannot allocate {size} bytes with drop glue (Shape::finalize): this \
                 heap has no drop queue to run it; create the heap with Heap::with_drop_queue"
            ),
        }
    }

    pub(crate) fn os(bytes: usize, err: &std::io::Error) -> Self {
        AllocError {
            kind: AllocErrorKind::OutOfMemory,
            errno: err.raw_os_error(),
            message: format!(
                "gort-alloc: the OS refused to reserve {bytes} bytes of address space ({err}); \
                 free memory, run a collection, or raise the process's memory limits"
            ),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> AllocErrorKind {
        self.kind
    }

    /// The OS error number when the OS refused the mapping.
    pub fn errno(&self) -> Option<i32> {
        self.errno
    }
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AllocError {}
