//! Mapping dump files safely while a training job may still be writing them.
//!
//! A mapped file that shrinks under the map makes the next read of a page past its new end
//! raise SIGBUS, which kills the process with no word of which file. Two defences:
//! - files that are small, or were modified in the last [`SETTLE`] (still being written, most
//!   likely), are read with `read()` into an anonymous map: a copy nothing can truncate;
//! - every other map is registered here, and a SIGBUS handler turns a fault inside one into a
//!   clear error naming the file and exit code 2 (the process cannot resume the read; it ends
//!   as any input error does). Faults outside our maps go to the handler that was there before.

use memmap2::{Mmap, MmapMut};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Files smaller than this are read, not mapped: a map costs more than the copy.
pub const SMALL: u64 = 1 << 20;
/// Files modified more recently than this are taken to be still growing and are read.
pub const SETTLE: Duration = Duration::from_secs(5);

/// The file's bytes, mapped read-only, or read into an anonymous map when it is small or
/// still settling. Never empty (empty maps are not portable): callers handle empty files.
pub fn map(file: &mut File, len: u64, path: &Path) -> std::io::Result<Mmap> {
    map_or_read(file, len, path).map(|(m, _)| m)
}

/// As [`map`], telling whether the bytes are a map of the file (true) or a copy read into
/// memory (false): pages of a file map can be given back and fault in again from the file.
pub fn map_or_read(file: &mut File, len: u64, path: &Path) -> std::io::Result<(Mmap, bool)> {
    let settling = file
        .metadata()?
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_none_or(|age| age < SETTLE);
    if len < SMALL || settling {
        return read(file, len).map(|m| (m, false));
    }
    // SAFETY: the map is read-only and registered below: a file that shrinks under it ends
    // the process through `on_sigbus` with an error naming it, never with wrong numbers read
    // past its end.
    let map = unsafe { Mmap::map(&*file) }?;
    #[cfg(unix)]
    registry::register(map.as_ptr() as usize, map.len(), path);
    #[cfg(not(unix))]
    let _ = path;
    Ok((map, true))
}

/// Gives back to the kernel the pages of a file map that a single forward pass has left
/// behind, so a large file read once costs a bounded window of memory, not its size.
pub struct ReleaseBehind<'a> {
    map: &'a Mmap,
    /// `map[..done]` is given back.
    done: usize,
}

impl<'a> ReleaseBehind<'a> {
    /// Bytes given back at a time.
    const STEP: usize = 32 << 20;

    /// For a map of the file (see [`map_or_read`]); `None` for a copy in memory, whose pages
    /// would come back zeroed.
    pub fn new(map: &'a Mmap, from_file: bool) -> Option<Self> {
        (from_file && cfg!(unix)).then_some(ReleaseBehind { map, done: 0 })
    }

    /// The reader is at `at` (a pointer into the map, or elsewhere: then nothing happens) and
    /// never reads before it again, except to count lines for an error message, which reads
    /// the file again.
    pub fn reached(&mut self, at: *const u8) {
        let Some(pos) = (at as usize).checked_sub(self.map.as_ptr() as usize) else {
            return;
        };
        if pos > self.map.len() || pos < self.done + Self::STEP {
            return;
        }
        let end = pos & !(Self::STEP - 1); // a multiple of every page size
        #[cfg(unix)]
        {
            // SAFETY: the map is a private read-only map of a file: dropped pages fault in
            // again with the same bytes. Nothing in it was written, so nothing is lost.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    self.done,
                    end - self.done,
                )
            };
        }
        self.done = end;
    }
}

/// `len` bytes of `file` (fewer if it shrank meanwhile: the readers then report it truncated).
fn read(file: &mut File, len: u64) -> std::io::Result<Mmap> {
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    let mut buf = MmapMut::map_anon(len)?;
    let mut filled = 0;
    while filled < len {
        match file.read(&mut buf[filled..len]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if filled < len {
        // Shrank while being read: the bytes that are there, so the readers' bounds checks
        // name the truncation.
        let mut short = MmapMut::map_anon(filled)?;
        short[..filled].copy_from_slice(&buf[..filled]);
        buf = short;
    }
    buf.make_read_only()
}

#[cfg(unix)]
mod registry {
    //! Which mapped range belongs to which file, readable from a signal handler: fixed slots
    //! of atomics, newest registration wins where ranges were reused.

    use std::path::Path;
    use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};
    use std::sync::Once;

    const SLOTS: usize = 1024;
    const PATH: usize = 384;

    struct Slot {
        start: AtomicUsize,
        len: AtomicUsize,
        seq: AtomicUsize,
        path_len: AtomicUsize,
        path: [AtomicU8; PATH],
    }

    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Slot = Slot {
        start: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        seq: AtomicUsize::new(0),
        path_len: AtomicUsize::new(0),
        path: [const { AtomicU8::new(0) }; PATH],
    };
    static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    static INSTALL: Once = Once::new();
    static mut PREVIOUS: Option<libc::sigaction> = None;

    /// Records that `len` bytes at `start` map `path`, installing the handler on first use.
    pub fn register(start: usize, len: usize, path: &Path) {
        INSTALL.call_once(install);
        let seq = NEXT.fetch_add(1, Relaxed);
        let slot = &TABLE[seq % SLOTS];
        slot.seq.store(0, Relaxed);
        slot.start.store(start, Relaxed);
        slot.len.store(len, Relaxed);
        // The tail of a long path: it names the file.
        let bytes = path.as_os_str().as_encoded_bytes();
        let tail = &bytes[bytes.len().saturating_sub(PATH)..];
        for (a, b) in slot.path.iter().zip(tail) {
            a.store(*b, Relaxed);
        }
        slot.path_len.store(tail.len(), Relaxed);
        slot.seq.store(seq, std::sync::atomic::Ordering::Release);
    }

    fn install() {
        // SAFETY: a plain sigaction call; the handler only reads atomics and calls
        // async-signal-safe functions (write, _exit, sigaction).
        unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = on_sigbus as *const () as usize;
            new.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut new.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, &new, &mut old) == 0 {
                PREVIOUS = Some(old);
            }
        }
    }

    extern "C" fn on_sigbus(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
        let addr = unsafe { (*info).si_addr() } as usize;
        let mut best: Option<&Slot> = None;
        for s in &TABLE {
            let seq = s.seq.load(std::sync::atomic::Ordering::Acquire);
            let (start, len) = (s.start.load(Relaxed), s.len.load(Relaxed));
            let inside = seq != 0 && addr >= start && addr - start < len;
            if inside && best.is_none_or(|b| b.seq.load(Relaxed) < seq) {
                best = Some(s);
            }
        }
        let Some(slot) = best else {
            // Not ours: put back the previous disposition; the fault repeats on return and
            // meets it.
            // SAFETY: restoring the action saved at install; sigaction is async-signal-safe.
            unsafe {
                #[allow(static_mut_refs)]
                match &PREVIOUS {
                    Some(old) => libc::sigaction(libc::SIGBUS, old, std::ptr::null_mut()),
                    None => libc::signal(libc::SIGBUS, libc::SIG_DFL) as libc::c_int,
                };
            }
            return;
        };
        let mut msg = [0u8; PATH + 256];
        let mut n = 0;
        let mut put = |b: &[u8]| {
            let k = b.len().min(msg.len() - n);
            msg[n..n + k].copy_from_slice(&b[..k]);
            n += k;
        };
        put(b"driftscope: error: ");
        let mut path = [0u8; PATH];
        let plen = slot.path_len.load(Relaxed).min(PATH);
        for (p, a) in path.iter_mut().zip(&slot.path).take(plen) {
            *p = a.load(Relaxed);
        }
        put(&path[..plen]);
        put(b": the file shrank while it was being read (is the dump still being written?); compare it once the run has finished\n");
        // SAFETY: write and _exit are async-signal-safe.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), n);
            libc::_exit(2);
        }
    }
}
