//! Full function names from the ELF symbol tables of the loaded objects, where debug information has only bare names.
//!
//! The workspace builds with `debug = "line-tables-only"`, which still describes inlining
//! but names each function by its bare name (`worker`, `{closure#0}`,
//! `call_once<...>`), without its module path. Whenever something was inlined at an
//! address — in optimized code, almost always — the debug information answers first and
//! the frame would print as that bare name. The symbol table still has the full
//! (mangled) name of every function that was not inlined, with its start and size, so the
//! physical frame of each address is named from here: `app::worker`, as Go prints it.
//!
//! Only Linux (`dl_iterate_phdr`, ELF). Each object's table is read once, on first use, and
//! kept for the life of the process (the file stays mapped, its pages shared with the page
//! cache). Allocates and takes a lock: like all of symbolization, never while the world is
//! stopped.

/// The function containing `addr`: its start address and its mangled name, or `None` if
/// no symbol table covers `addr`.
pub(crate) fn lookup(addr: usize) -> Option<(usize, &'static [u8])> {
    imp::lookup(addr)
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub(super) fn lookup(_addr: usize) -> Option<(usize, &'static [u8])> {
        None
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use core::ffi::{CStr, c_int, c_void};
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::AsRawFd;
    use std::path::PathBuf;
    use std::sync::Mutex;

    use object::{Object as _, ObjectSymbol as _, SymbolKind};

    /// A loaded object: the address range its segments cover and its function symbols,
    /// sorted by start, at their run-time addresses. Empty when the object has no
    /// readable file (the vDSO) or no symbols.
    struct Loaded {
        lo: usize,
        hi: usize,
        functions: Vec<Function>,
    }

    struct Function {
        start: usize,
        size: usize,
        name: &'static [u8],
    }

    /// Every object looked at so far. Objects unloaded later (`dlclose`) stay listed; an
    /// address reused by another object would find the old table, a cost only for
    /// programs that unload code.
    static OBJECTS: Mutex<Vec<Loaded>> = Mutex::new(Vec::new());

    pub(super) fn lookup(addr: usize) -> Option<(usize, &'static [u8])> {
        let mut objects = OBJECTS.lock().unwrap_or_else(|e| e.into_inner());
        let i = match objects.iter().position(|o| (o.lo..o.hi).contains(&addr)) {
            Some(i) => i,
            None => {
                let (path, bias, lo, hi) = find_object(addr)?;
                objects.push(Loaded {
                    lo,
                    hi,
                    functions: read_functions(&path, bias).unwrap_or_default(),
                });
                objects.len() - 1
            }
        };
        let functions = &objects[i].functions;
        let j = functions
            .partition_point(|f| f.start <= addr)
            .checked_sub(1)?;
        let f = &functions[j];
        (addr - f.start < f.size).then_some((f.start, f.name))
    }

    /// What `dl_iterate_phdr`'s callback looks for and finds: the object whose loaded
    /// segments contain `addr`, its file, load bias and address range.
    struct Search {
        addr: usize,
        found: Option<(PathBuf, usize, usize, usize)>,
    }

    fn find_object(addr: usize) -> Option<(PathBuf, usize, usize, usize)> {
        let mut search = Search { addr, found: None };
        // SAFETY: the callback matches the signature `dl_iterate_phdr` expects, and `data`
        // points at `search`, alive and not otherwise used until the call returns.
        unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast()) };
        search.found
    }

    /// `dl_iterate_phdr`'s callback: records the object containing `Search::addr` and
    /// stops the iteration (by returning 1) when it is this one.
    ///
    /// # Safety
    /// Only for `dl_iterate_phdr`: `info` must point at a valid `dl_phdr_info` for the
    /// call, and `data` at the `Search` given to `dl_iterate_phdr`, otherwise unused.
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `dl_iterate_phdr` passes a valid `info` for the duration of the call, and
        // `data` is the `Search` that `find_object` handed it, used by no one else meanwhile.
        let (info, search) = unsafe { (&*info, &mut *data.cast::<Search>()) };
        let bias = info.dlpi_addr as usize;
        let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: the loader's program headers: `dlpi_phnum` entries at `dlpi_phdr`,
            // mapped for as long as the object is loaded, which outlasts this call.
            unsafe { core::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
        };
        let (mut lo, mut hi, mut contains) = (usize::MAX, 0, false);
        for p in phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD) {
            let start = bias.wrapping_add(p.p_vaddr as usize);
            let end = start.wrapping_add(p.p_memsz as usize);
            lo = lo.min(start);
            hi = hi.max(end);
            contains |= (start..end).contains(&search.addr);
        }
        if !contains {
            return 0;
        }
        let name = if info.dlpi_name.is_null() {
            &[][..]
        } else {
            // SAFETY: a non-null `dlpi_name` is a NUL-terminated string owned by the loader,
            // valid during the call; it is copied out below.
            unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes()
        };
        // The main program has an empty name.
        let path = if name.is_empty() {
            PathBuf::from("/proc/self/exe")
        } else {
            PathBuf::from(OsStr::from_bytes(name))
        };
        search.found = Some((path, bias, lo, hi));
        1
    }

    /// The defined, sized function symbols of the ELF file at `path`, moved by `bias`,
    /// sorted by start. The symbol table proper (`.symtab`) if there is one, else the
    /// dynamic one.
    fn read_functions(path: &std::path::Path, bias: usize) -> Option<Vec<Function>> {
        let data = map_file(path)?;
        let file = object::File::parse(data).ok()?;
        let mut functions = Vec::new();
        push_functions(file.symbols(), bias, &mut functions);
        if functions.is_empty() {
            push_functions(file.dynamic_symbols(), bias, &mut functions);
        }
        functions.sort_unstable_by_key(|f| f.start);
        Some(functions)
    }

    fn push_functions(
        symbols: object::SymbolIterator<'static, '_>,
        bias: usize,
        out: &mut Vec<Function>,
    ) {
        for s in symbols {
            if s.kind() != SymbolKind::Text || !s.is_definition() || s.size() == 0 {
                continue;
            }
            if let Ok(name) = s.name_bytes() {
                out.push(Function {
                    start: bias.wrapping_add(s.address() as usize),
                    size: s.size() as usize,
                    name,
                });
            }
        }
    }

    /// Maps `path` read-only for the rest of the process's life.
    fn map_file(path: &std::path::Path) -> Option<&'static [u8]> {
        let file = std::fs::File::open(path).ok()?;
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: a fresh private read-only mapping of an open file; no existing memory is
        // affected. (The descriptor can be closed afterwards; the mapping stays.)
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: `len` readable bytes at `p`, never unmapped. Like the dynamic loader and
        // every symbolizer, this assumes a loaded binary is not rewritten in place while
        // it runs (replacing it by rename, as installers do, leaves our mapping intact).
        Some(unsafe { core::slice::from_raw_parts(p.cast::<u8>(), len) })
    }
}

#[cfg(all(test, not(loom), target_os = "linux"))]
mod tests {
    use super::*;

    #[inline(never)]
    fn symtab_probe(x: u64) -> u64 {
        std::hint::black_box(x).wrapping_mul(3)
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads the loader's tables and the binary")]
    fn finds_a_function_by_any_address_inside_it() {
        let f = symtab_probe as *const () as usize;
        assert_eq!(symtab_probe(2), 6);
        for addr in [f, f + 1] {
            let (start, name) = lookup(addr).expect("no symbol for the probe");
            assert_eq!(start, f);
            let name = format!("{:#}", backtrace::SymbolName::new(name));
            assert_eq!(name, "gort_sched::trace::symtab::tests::symtab_probe");
        }
        // A libc function, from a shared object's table.
        let getpid = libc::getpid as *const () as usize;
        assert!(lookup(getpid).is_some_and(|(start, _)| start <= getpid));
        // Nothing is mapped at the bottom of the address space.
        assert_eq!(lookup(0x10), None);
    }
}
