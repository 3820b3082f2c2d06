//! A SQLite VFS that writes a commit's WAL frames to the file at once, and a checkpoint's
//! copies into the database a run of pages at a time: one `pwrite` for up to 128 KiB. SQLite
//! writes each frame as two (its 24-byte header, then the page), and a 4,120-byte frame
//! straddles two of the file's pages: the kernel steps through about three pages a frame,
//! where one write of the commit's frames steps through about one; and a checkpoint writes each
//! page it copies as a call of its own (BENCHMARKS.md).
//!
//! Frames appended to the WAL are held only while nobody could read them, and written out:
//! - when a commit's last frame is complete (the one whose header carries the database's size),
//!   so that the commit fails if the write does, before SQLite shows it to anyone;
//! - before anything else touches the file through this handle: a read (the connection reading
//!   its own frames back), a sync, a truncation, its size, a file control, closing, or a write
//!   anywhere but at the end of what is held;
//! - past [`HOLD_AT_MOST`] bytes;
//! - as a backstop, before SQLite publishes frames (the wal-index barrier, `xShmBarrier`) and
//!   before it releases any wal-index lock (`xShmLock`): nothing held outlives the write lock.
//!   A write that fails before frames are published cannot be reported to SQLite, so the
//!   process stops rather than let a commit be answered that is not in the file. (In SQLite's
//!   exclusive locking mode neither call is made; no other connection can read the file then.)
//!
//! Writes below the furthest point this WAL has reached (SQLite rewriting a frame of the
//! transaction in place, or its checksums) go straight to the file.
//!
//! A checkpoint through this VFS (the store's background checkpoint has a connection of its
//! own for it, and the writer checkpoints through it too) copies frames into the database a
//! page at a time, in page order. Between SQLite's `CKPT_START` and `CKPT_DONE` file controls,
//! pages that run on from one another are held and written at once, up to 128 KiB a write.
//! A held page goes out when the checkpoint ends, where SQLite can no longer be told of a
//! failure, so pages are held only where writing them cannot find the disk full:
//! - only on Linux, on ext4, XFS or tmpfs (which overwrite allocated blocks in place), and only
//!   once the whole file has room allocated for this checkpoint (`fallocate` with
//!   `FALLOC_FL_KEEP_SIZE` from its start, which fills any holes; a few µs when there are none),
//!   and past its end up to the size SQLite says the checkpoint needs (`SIZE_HINT`). Where that
//!   fails (a full disk), every page goes straight to the file, as SQLite writes it;
//! - a page that does not run on from what is held writes it out first, and a failure is that
//!   page's, so SQLite's to hear of; a page past the room goes straight to the file;
//! - at `CKPT_DONE` what is held goes out. SQLite goes on to record the frames as copied
//!   whatever that file control returns, so if this write fails (an I/O error) the process
//!   stops: the WAL still holds every frame, and whoever opens the database next copies them
//!   again.
//!
//! Nobody reads a page the checkpoint is copying from the database file until SQLite records
//! it as copied, which is after `CKPT_DONE`. Everything else is SQLite's own default VFS
//! (unix), whose files these are, so locking is shared with connections that do not use this
//! one.
//!
//! All `unsafe` of the store's SQLite access is in this file.

use libsqlite3_sys as ffi;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;

/// The VFS's name, for a connection's `vfs=` parameter.
pub(crate) const NAME: &str = "warden-wal";
const NAME_C: &CStr = c"warden-wal";

/// Bytes held at most before they are written out, whatever the transaction's size.
const HOLD_AT_MOST: usize = 4 << 20;

/// The WAL file's header (`WAL_HDRSIZE`) and a frame's (`WAL_FRAME_HDRSIZE`).
const WAL_HEADER: c_int = 32;
const FRAME_HEADER: c_int = 24;

/// Registers the VFS (once per process) and returns `url` with `vfs=` naming it: a file
/// database's URL only, one that names no VFS of its own. `None` if SQLite has no default
/// VFS to wrap.
pub(crate) fn url(url: &str) -> Option<String> {
    if url.contains(":memory:") || url.contains("mode=memory") || url.contains("vfs=") {
        return None;
    }
    register()?;
    let separator = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{separator}vfs={NAME}"))
}

/// Registers our `sqlite3_vfs` once; its `pAppData` is the default VFS it wraps.
fn register() -> Option<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        // SAFETY: a null name asks for the default VFS, which lives as long as the process.
        let real = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
        if real.is_null() {
            return false;
        }
        // SAFETY: `real` is a valid, registered VFS.
        let (real_size, max_path) = unsafe { ((*real).szOsFile, (*real).mxPathname) };
        let vfs = Box::leak(Box::new(ffi::sqlite3_vfs {
            iVersion: 2,
            szOsFile: (REAL_AT + real_size as usize) as c_int,
            mxPathname: max_path,
            pNext: std::ptr::null_mut(),
            zName: NAME_C.as_ptr(),
            pAppData: real.cast(),
            xOpen: Some(open),
            xDelete: Some(delete),
            xAccess: Some(access),
            xFullPathname: Some(full_pathname),
            xDlOpen: Some(dl_open),
            xDlError: Some(dl_error),
            xDlSym: Some(dl_sym),
            xDlClose: Some(dl_close),
            xRandomness: Some(randomness),
            xSleep: Some(sleep),
            xCurrentTime: Some(current_time),
            xGetLastError: Some(get_last_error),
            xCurrentTimeInt64: Some(current_time_int64),
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        }));
        // SAFETY: `vfs` is leaked, so it outlives every connection that uses it.
        unsafe { ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK }
    });
    registered.then_some(())
}

/// An open file: SQLite's `sqlite3_file` header with our methods, then what we keep, then
/// (at [`REAL_AT`]) the default VFS's own file.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    role: Role,
}

/// Where the default VFS's file starts within ours.
const REAL_AT: usize = std::mem::size_of::<File>().next_multiple_of(16);

enum Role {
    /// The main database: its wal-index calls are where held frames must be out.
    Db { wal: *mut File, copy: Copies },
    /// Its WAL.
    Wal(Held),
}

/// Bytes that run on from one another in a file, held to be written at once.
#[derive(Default)]
struct Run {
    bytes: Vec<u8>,
    /// Where `bytes` go in the file.
    at: i64,
    /// Times held bytes were written out so far (`TEST_WRITES`), and the calls to the real
    /// file that took.
    #[cfg(test)]
    writes: u64,
    #[cfg(test)]
    calls: u64,
}

impl Run {
    /// Whether `offset` is where the held bytes end (or nothing is held).
    fn runs_on_at(&self, offset: i64) -> bool {
        self.bytes.is_empty() || offset == self.at + self.bytes.len() as i64
    }

    fn hold(&mut self, offset: i64, bytes: &[u8]) {
        if self.bytes.is_empty() {
            self.at = offset;
        }
        self.bytes.extend_from_slice(bytes);
    }
}

/// Frames appended to the WAL and not yet written.
struct Held {
    db: *mut File,
    run: Run,
    /// The furthest byte this WAL has reached since it last started again from its header.
    end: i64,
    /// The last write was a commit frame's header: its page completes the commit.
    commit_due: bool,
}

/// A checkpoint's copy of pages into the database (SQLite's `CKPT_START` to `CKPT_DONE`
/// file controls): page writes that run on from one another are held and written at once.
#[derive(Default)]
struct Copies {
    /// While a checkpoint copies: how far the file has room allocated for it, within which
    /// writes are held. A write past it goes out at once, so that a full disk is SQLite's to
    /// hear of.
    size: Option<i64>,
    run: Run,
    /// The file, to allocate room in (`Room::of`); none where writes are never held.
    room: Option<Room>,
    /// Pages SQLite wrote in checkpoints so far (`TEST_COPIED`), and those that went straight
    /// to the file.
    #[cfg(test)]
    pages: u64,
    #[cfg(test)]
    through: u64,
}

impl Held {
    /// Writes the held frames out to `real`, the WAL's own file.
    unsafe fn write_out(&mut self, real: *mut ffi::sqlite3_file) -> c_int {
        self.commit_due = false;
        // SAFETY: the caller's.
        unsafe { write_out(real, &mut self.run) }
    }

    /// Whether a write at `offset` extends the WAL (held) rather than rewrites it (written
    /// now).
    fn appends(&self, offset: i64, amount: c_int) -> bool {
        offset >= self.end || (offset == 0 && amount == WAL_HEADER)
    }
}

/// The real file's methods.
unsafe fn methods(real: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: an open file's methods outlive it.
    unsafe { &*(*real).pMethods }
}

unsafe fn this<'a>(file: *mut ffi::sqlite3_file) -> &'a mut File {
    // SAFETY: SQLite passes back the file our `open` filled in, used by one thread at a time.
    unsafe { &mut *file.cast::<File>() }
}

/// The most one write to the real VFS may carry: the unix VFS masks a write's length with
/// `0x1ffff` (`seekAndWriteFd`), so a longer one would be cut short.
const MOST_A_WRITE: usize = 0x1ffff;

/// Writes what `held` holds to `real`, in as few writes as the real VFS takes, each but the
/// last ending on a page of the file; empties it either way.
unsafe fn write_out(real: *mut ffi::sqlite3_file, held: &mut Run) -> c_int {
    #[cfg(test)]
    {
        held.writes += u64::from(!held.bytes.is_empty());
    }
    let mut rc = ffi::SQLITE_OK;
    let (mut at, mut rest) = (held.at, &held.bytes[..]);
    while !rest.is_empty() && rc == ffi::SQLITE_OK {
        let mut n = rest.len().min(MOST_A_WRITE);
        if n < rest.len() {
            let page_end = (at + n as i64) & !4095;
            if page_end > at {
                n = (page_end - at) as usize;
            }
        }
        #[cfg(test)]
        {
            held.calls += 1;
        }
        // SAFETY: `real` is open, and `rest` is valid for at least `n` bytes.
        rc = unsafe {
            (methods(real).xWrite.expect("xWrite"))(real, rest.as_ptr().cast(), n as c_int, at)
        };
        at += n as i64;
        rest = &rest[n..];
    }
    held.bytes.clear();
    if held.bytes.capacity() > 2 * HOLD_AT_MOST {
        held.bytes.shrink_to(HOLD_AT_MOST);
    }
    rc
}

/// Writes out what a handle holds: a WAL's frames, or a checkpoint's pages.
unsafe fn write_out_held(file: &mut File) -> c_int {
    // SAFETY: `real` is this file's own.
    unsafe {
        match &mut file.role {
            Role::Wal(held) => held.write_out(file.real),
            Role::Db { copy, .. } => write_out(file.real, &mut copy.run),
        }
    }
}

/// The backstops, on the database's wal-index calls: what it and its WAL hold goes out.
unsafe fn backstop(db: &mut File, at: Backstop) {
    // A checkpoint's pages are out when it ends (`CKPT_DONE`); if some were held past it,
    // SQLite may have told readers to find them in the file.
    // SAFETY: `db` is open.
    if unsafe { write_out_held(db) } != ffi::SQLITE_OK {
        copy_lost();
    }
    let Role::Db { wal, .. } = db.role else {
        return;
    };
    // SAFETY: the WAL unlinks itself from its database when it closes.
    let Some(wal) = (unsafe { wal.as_mut() }) else {
        return;
    };
    if unsafe { write_out_held(wal) } == ffi::SQLITE_OK {
        return;
    }
    match at {
        // Frames SQLite is about to publish: none are held once their commit frame is
        // complete, but if some were, a commit could be answered that is not in the file, and
        // SQLite cannot be told. The process stops instead.
        Backstop::Publish => {
            tracing::error!("cannot write the SQLite WAL's held frames before publishing them");
            std::process::abort();
        }
        // Only frames of a transaction that did not commit (spilled, then rolled back) can be
        // held when a lock is released: nobody reads past the last commit, and the next
        // transaction writes over them.
        Backstop::Unlock => tracing::warn!("cannot write a rolled-back transaction's WAL frames"),
    }
}

enum Backstop {
    Publish,
    Unlock,
}

/// A checkpoint's held pages could not be written when it ended. SQLite, which cannot be told,
/// goes on to record the frames as copied, and readers would then read the old pages from the
/// file; the process stops instead. The WAL still holds every frame, and whoever opens the
/// database next copies them again.
fn copy_lost() -> ! {
    tracing::error!("cannot write a checkpoint's pages into the SQLite database");
    std::process::abort();
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite gives us `szOsFile` bytes at `file`, ours up to `REAL_AT` and the real
    // VFS's after it; `pAppData` is the real VFS (`register`).
    unsafe {
        let real_vfs = real_vfs(vfs);
        let real_open = (*real_vfs).xOpen.expect("xOpen");
        let mut role = if flags & ffi::SQLITE_OPEN_WAL != 0 {
            // The database this WAL belongs to, if opened through us too (the same
            // connection's).
            let db = ffi::sqlite3_database_file_object(name).cast::<File>();
            let ours = !db.is_null() && std::ptr::eq((*db).base.pMethods, &DB_METHODS);
            Role::Wal(Held {
                db: if ours { db } else { std::ptr::null_mut() },
                run: Run::default(),
                end: 0,
                commit_due: false,
            })
        } else if flags & ffi::SQLITE_OPEN_MAIN_DB != 0 {
            Role::Db {
                wal: std::ptr::null_mut(),
                copy: Copies::default(),
            }
        } else {
            // Journals and temporary files are the real VFS's alone, in the same memory.
            return real_open(real_vfs, name, file, flags, out_flags);
        };
        (*file).pMethods = std::ptr::null();
        let real = file.cast::<u8>().add(REAL_AT).cast::<ffi::sqlite3_file>();
        let rc = real_open(real_vfs, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        if let Role::Db { copy, .. } = &mut role {
            copy.room = Room::of(real, name);
        }
        let methods: &'static ffi::sqlite3_io_methods = match role {
            Role::Wal(_) => &WAL_METHODS,
            Role::Db { .. } => &DB_METHODS,
        };
        let file = file.cast::<File>();
        file.write(File {
            base: ffi::sqlite3_file { pMethods: methods },
            real,
            role,
        });
        if let Role::Wal(held) = &(*file).role
            && !held.db.is_null()
            && let Role::Db { wal, .. } = &mut (*held.db).role
        {
            *wal = file;
        }
        ffi::SQLITE_OK
    }
}

/// The methods of a file we wrap: each passes the call on to the real file, and those below
/// do what this module is for first. Version 3, as the unix VFS's own files are.
const PASS_ON: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write_through),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

static DB_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    xWrite: Some(db_write),
    ..PASS_ON
};

/// A WAL is never mapped and has no wal-index of its own: version 1.
static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xWrite: Some(wal_write),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
    ..PASS_ON
};

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is one `open` filled in; after this SQLite does not use it again.
    unsafe {
        let f = this(file);
        let held_rc = write_out_held(f);
        match &f.role {
            Role::Wal(held) if !held.db.is_null() => {
                if let Role::Db { wal, .. } = &mut (*held.db).role {
                    *wal = std::ptr::null_mut();
                }
            }
            Role::Db { wal, .. } if !wal.is_null() => {
                if let Role::Wal(held) = &mut (**wal).role {
                    held.db = std::ptr::null_mut();
                }
            }
            _ => {}
        }
        let real = f.real;
        let rc = (methods(real).xClose.expect("xClose"))(real);
        std::ptr::drop_in_place(file.cast::<File>());
        if rc != ffi::SQLITE_OK { rc } else { held_rc }
    }
}

unsafe extern "C" fn wal_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: `file` is an open WAL of ours; `data` holds `amount` bytes.
    unsafe {
        let f = this(file);
        let real = f.real;
        let Role::Wal(held) = &mut f.role else {
            return write_through(file, data, amount, offset);
        };
        if !held.appends(offset, amount) {
            let rc = held.write_out(real);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            return (methods(real).xWrite.expect("xWrite"))(real, data, amount, offset);
        }
        if offset == 0 && amount == WAL_HEADER {
            // The WAL starts again from its header: frames overwrite the last round's.
            held.end = 0;
        }
        if !held.run.runs_on_at(offset) {
            let rc = held.write_out(real);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), amount as usize);
        held.run.hold(offset, bytes);
        held.end = held.end.max(offset + i64::from(amount));
        let completes_commit = held.commit_due && amount != FRAME_HEADER;
        // A frame's header: its bytes 4..8 are the database's size in pages after a commit,
        // 0 in any other frame.
        held.commit_due = amount == FRAME_HEADER && bytes[4..8] != [0, 0, 0, 0];
        // (Never between a commit frame's header and its page: the page completes the commit.)
        if completes_commit || (held.run.bytes.len() >= HOLD_AT_MOST && !held.commit_due) {
            return held.write_out(real);
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn write_through(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: `file` is open.
    unsafe {
        let real = this(file).real;
        (methods(real).xWrite.expect("xWrite"))(real, data, amount, offset)
    }
}

/// A page written into the database. While a checkpoint copies, pages that run on from what
/// is held, within the file's size, are held; each other write first writes out what is.
unsafe extern "C" fn db_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: `file` is an open database of ours; `data` holds `amount` bytes.
    unsafe {
        let f = this(file);
        let real = f.real;
        let real_write = methods(real).xWrite.expect("xWrite");
        let Role::Db { copy, .. } = &mut f.role else {
            return real_write(real, data, amount, offset);
        };
        let Some(size) = copy.size else {
            return real_write(real, data, amount, offset);
        };
        #[cfg(test)]
        {
            copy.pages += 1;
        }
        let end = offset + i64::from(amount);
        if !copy.run.runs_on_at(offset)
            || copy.run.bytes.len() + amount as usize > MOST_A_WRITE
            || end > size
        {
            let rc = write_out(real, &mut copy.run);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if end > size {
            #[cfg(test)]
            {
                copy.through += 1;
            }
            let rc = real_write(real, data, amount, offset);
            if rc == ffi::SQLITE_OK {
                copy.size = Some(end);
            }
            return rc;
        }
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), amount as usize);
        copy.run.hold(offset, bytes);
        ffi::SQLITE_OK
    }
}

/// Methods that write out what a WAL holds and then pass the call on to the real file.
macro_rules! write_out_then_pass {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: `file` is open; the held frames go out before anything else touches it.
            unsafe {
                let f = this(file);
                let rc = write_out_held(f);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                (methods(f.real).$field.expect(stringify!($field)))(f.real $(, $arg)*)
            }
        }
    };
}

write_out_then_pass!(read, xRead, (data: *mut c_void, amount: c_int, offset: i64));
write_out_then_pass!(sync, xSync, (flags: c_int));
write_out_then_pass!(file_size, xFileSize, (size: *mut i64));

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: `file` is open.
    unsafe {
        let f = this(file);
        let rc = write_out_held(f);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        if let Role::Wal(held) = &mut f.role {
            held.end = held.end.min(size);
        }
        (methods(f.real).xTruncate.expect("xTruncate"))(f.real, size)
    }
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: `file` is open.
    unsafe {
        let f = this(file);
        #[cfg(test)]
        if let Some(rc) = tests::probe(f, op, arg) {
            return rc;
        }
        let real = f.real;
        if op == ffi::SQLITE_FCNTL_CKPT_DONE
            && let Role::Db { copy, .. } = &mut f.role
        {
            // SQLite goes on to record the frames as copied whatever this returns.
            copy.size = None;
            if write_out(real, &mut copy.run) != ffi::SQLITE_OK {
                copy_lost();
            }
        }
        let rc = write_out_held(f);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        if op == ffi::SQLITE_FCNTL_CKPT_START
            && let Role::Db { copy, .. } = &mut f.role
        {
            let mut size = 0;
            let rc = (methods(real).xFileSize.expect("xFileSize"))(real, &mut size);
            copy.size = (rc == ffi::SQLITE_OK
                && copy
                    .room
                    .as_ref()
                    .is_some_and(|room| room.allocate(0, size)))
            .then_some(size);
        }
        if op == ffi::SQLITE_FCNTL_SIZE_HINT
            && let Role::Db { copy, .. } = &mut f.role
            && let Some(size) = copy.size
        {
            // The checkpoint will grow the file to this size: with room for it allocated
            // first, the pages it copies past the end are held too.
            let wanted = *arg.cast::<i64>();
            if size < wanted
                && copy
                    .room
                    .as_ref()
                    .is_some_and(|room| room.allocate(size, wanted))
            {
                copy.size = Some(wanted);
            }
        }
        (methods(real).xFileControl.expect("xFileControl"))(real, op, arg)
    }
}

/// A database file the unix VFS opened, on a file system that overwrites allocated blocks in
/// place (so that writing where room is allocated needs no more of the disk).
struct Room {
    fd: c_int,
    /// The file's device and inode, checked again before each allocation.
    id: (u64, u64),
}

impl Room {
    /// The unix VFS keeps its descriptor in its `unixFile` after three pointers (its methods,
    /// its VFS and its inode's locks; sqlite3.c), as it has since 2008, and has no call that
    /// returns it. What is found there must be open on the file `name` names (device and
    /// inode), or there is no room to allocate and nothing is held.
    #[cfg(target_os = "linux")]
    unsafe fn of(real: *mut ffi::sqlite3_file, name: ffi::sqlite3_filename) -> Option<Room> {
        const EXT4: i64 = 0xef53;
        const XFS: i64 = 0x5846_5342;
        const TMPFS: i64 = 0x0102_1994;
        // SAFETY: the unix VFS's file is at least three pointers and an int long, zeroed
        // before it is filled in; `name` is the path SQLite opened it by.
        unsafe {
            let fd = *real
                .cast::<u8>()
                .add(3 * std::mem::size_of::<*const c_void>())
                .cast::<c_int>();
            let mut named: libc::stat = std::mem::zeroed();
            let mut fs: libc::statfs = std::mem::zeroed();
            let room = Room {
                fd,
                id: Room::id(fd)?,
            };
            let same = !name.is_null()
                && libc::stat(name, &mut named) == 0
                && room.id == (named.st_dev as u64, named.st_ino as u64)
                && libc::fstatfs(fd, &mut fs) == 0
                && [EXT4, XFS, TMPFS].contains(&(fs.f_type as i64));
            same.then_some(room)
        }
    }

    #[cfg(not(target_os = "linux"))]
    unsafe fn of(_: *mut ffi::sqlite3_file, _: ffi::sqlite3_filename) -> Option<Room> {
        None
    }

    #[cfg(target_os = "linux")]
    fn id(fd: c_int) -> Option<(u64, u64)> {
        // SAFETY: `fstat` fills the zeroed struct or fails.
        unsafe {
            let mut open: libc::stat = std::mem::zeroed();
            (fd >= 0 && libc::fstat(fd, &mut open) == 0)
                .then_some((open.st_dev as u64, open.st_ino as u64))
        }
    }

    /// Allocates the bytes from `from` to `to` without changing the file's size; false where
    /// it cannot (a full disk), or where the descriptor no longer names the file.
    #[cfg(target_os = "linux")]
    fn allocate(&self, from: i64, to: i64) -> bool {
        if to <= from {
            return true;
        }
        // SAFETY: `fallocate` reads only its arguments, on the file checked just before.
        Room::id(self.fd) == Some(self.id)
            && unsafe { libc::fallocate(self.fd, libc::FALLOC_FL_KEEP_SIZE, from, to - from) } == 0
    }

    #[cfg(not(target_os = "linux"))]
    fn allocate(&self, _: i64, _: i64) -> bool {
        false
    }
}

unsafe extern "C" fn shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: `file` is an open database of ours.
    unsafe {
        let f = this(file);
        if flags & ffi::SQLITE_SHM_UNLOCK != 0 {
            backstop(f, Backstop::Unlock);
        }
        (methods(f.real).xShmLock.expect("xShmLock"))(f.real, offset, n, flags)
    }
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: `file` is an open database of ours.
    unsafe {
        let f = this(file);
        backstop(f, Backstop::Publish);
        (methods(f.real).xShmBarrier.expect("xShmBarrier"))(f.real)
    }
}

/// Methods that only pass the call on to the real file.
macro_rules! pass {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            // SAFETY: `file` is open; the real file has the method if SQLite calls ours (the
            // version of our methods is at most the real ones').
            unsafe {
                let real = this(file).real;
                (methods(real).$field.expect(stringify!($field)))(real $(, $arg)*)
            }
        }
    };
}

pass!(lock, xLock, (level: c_int) -> c_int);
pass!(unlock, xUnlock, (level: c_int) -> c_int);
pass!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int) -> c_int);
pass!(sector_size, xSectorSize, () -> c_int);
pass!(device_characteristics, xDeviceCharacteristics, () -> c_int);
pass!(shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int);
pass!(shm_unmap, xShmUnmap, (delete: c_int) -> c_int);
pass!(fetch, xFetch, (offset: i64, amount: c_int, out: *mut *mut c_void) -> c_int);
pass!(unfetch, xUnfetch, (offset: i64, p: *mut c_void) -> c_int);

/// The real VFS behind ours.
unsafe fn real_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: `pAppData` is the real VFS (`register`).
    unsafe { (*vfs).pAppData.cast() }
}

/// VFS methods that only pass the call on to the real VFS.
macro_rules! pass_vfs {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        unsafe extern "C" fn $name(vfs: *mut ffi::sqlite3_vfs $(, $arg: $ty)*) -> $ret {
            // SAFETY: the real VFS is registered for the process's life.
            unsafe {
                let real = real_vfs(vfs);
                ((*real).$field.expect(stringify!($field)))(real $(, $arg)*)
            }
        }
    };
}

pass_vfs!(delete, xDelete, (name: *const c_char, sync_dir: c_int) -> c_int);
pass_vfs!(access, xAccess, (name: *const c_char, flags: c_int, out: *mut c_int) -> c_int);
pass_vfs!(full_pathname, xFullPathname, (name: *const c_char, n: c_int, out: *mut c_char) -> c_int);
pass_vfs!(dl_open, xDlOpen, (name: *const c_char) -> *mut c_void);
pass_vfs!(dl_error, xDlError, (n: c_int, out: *mut c_char) -> ());
type Symbol = Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)>;
pass_vfs!(dl_sym, xDlSym, (handle: *mut c_void, symbol: *const c_char) -> Symbol);
pass_vfs!(dl_close, xDlClose, (handle: *mut c_void) -> ());
pass_vfs!(randomness, xRandomness, (n: c_int, out: *mut c_char) -> c_int);
pass_vfs!(sleep, xSleep, (micros: c_int) -> c_int);
pass_vfs!(current_time, xCurrentTime, (out: *mut f64) -> c_int);
pass_vfs!(get_last_error, xGetLastError, (n: c_int, out: *mut c_char) -> c_int);
pass_vfs!(current_time_int64, xCurrentTimeInt64, (out: *mut ffi::sqlite3_int64) -> c_int);

#[cfg(test)]
mod tests {
    use super::*;

    /// File controls on the main database (not SQLite's own) that read, into an `i64`, how
    /// many times its WAL's held bytes were written out, how many it holds now, how many pages
    /// checkpoints wrote into the database, in how many calls to the real file, and whether
    /// the file is one pages are held for (`Room`).
    const TEST_WRITES: c_int = 0x5741_4c00;
    const TEST_HELD: c_int = 0x5741_4c01;
    const TEST_COPIED: c_int = 0x5741_4c02;
    const TEST_COPY_WRITES: c_int = 0x5741_4c03;
    const TEST_ROOM: c_int = 0x5741_4c04;

    pub(super) unsafe fn probe(db: &mut File, op: c_int, out: *mut c_void) -> Option<c_int> {
        let Role::Db { wal, copy } = &db.role else {
            return None;
        };
        // SAFETY: a linked WAL is open; `out` is the caller's i64.
        unsafe {
            let wal = wal.as_ref().and_then(|w| match &w.role {
                Role::Wal(held) => Some(held),
                Role::Db { .. } => None,
            });
            let n = match op {
                TEST_WRITES => wal.map(|held| held.run.writes),
                TEST_HELD => wal.map(|held| held.run.bytes.len() as u64),
                TEST_COPIED => Some(copy.pages),
                TEST_COPY_WRITES => Some(copy.run.calls + copy.through),
                TEST_ROOM => Some(u64::from(copy.room.is_some())),
                _ => return None,
            };
            let Some(n) = n else {
                return Some(ffi::SQLITE_NOTFOUND);
            };
            *out.cast::<i64>() = n as i64;
        }
        Some(ffi::SQLITE_OK)
    }

    use sqlx::sqlite::SqliteConnection;
    use sqlx::{Connection, Executor};

    async fn connect(url: &str) -> SqliteConnection {
        let mut conn = SqliteConnection::connect(url).await.unwrap();
        // The writer's settings (`Backend::writer_settings`), without its checkpoints: what
        // the WAL holds stays in it for the copies below.
        for sql in [
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL",
            "PRAGMA wal_autocheckpoint = 0",
        ] {
            conn.execute(sql).await.unwrap();
        }
        conn
    }

    async fn held_writes(conn: &mut SqliteConnection) -> i64 {
        probe_wal(conn, TEST_WRITES).await
    }

    async fn held_bytes(conn: &mut SqliteConnection) -> i64 {
        probe_wal(conn, TEST_HELD).await
    }

    /// Pages checkpoints wrote into the database through `conn`, and the writes they took.
    async fn copied(conn: &mut SqliteConnection) -> (i64, i64) {
        (
            probe_wal(conn, TEST_COPIED).await,
            probe_wal(conn, TEST_COPY_WRITES).await,
        )
    }

    /// Whether `dir` is on a file system `Room` holds pages on, as `df` says.
    fn on_ext4_xfs_or_tmpfs(dir: &std::path::Path) -> bool {
        let out = std::process::Command::new("df")
            .args(["--output=fstype"])
            .arg(dir)
            .output()
            .unwrap();
        let kind = String::from_utf8_lossy(&out.stdout);
        ["ext4", "xfs", "tmpfs"].contains(&kind.lines().last().unwrap_or("").trim())
    }

    async fn rows(conn: &mut SqliteConnection) -> Vec<(i64, Vec<u8>)> {
        sqlx::query_as("SELECT id, v FROM t ORDER BY id")
            .fetch_all(conn)
            .await
            .unwrap()
    }

    async fn probe_wal(conn: &mut SqliteConnection, op: c_int) -> i64 {
        let mut handle = conn.lock_handle().await.unwrap();
        let mut n = -1i64;
        // SAFETY: the handle is locked for this call; `n` is the i64 the file control fills.
        let rc = unsafe {
            ffi::sqlite3_file_control(
                handle.as_raw_handle().as_ptr(),
                c"main".as_ptr(),
                op,
                (&raw mut n).cast(),
            )
        };
        assert_eq!(rc, ffi::SQLITE_OK);
        n
    }

    /// What a crash would leave: the database and its WAL as the files hold them now (the
    /// page cache is what a `fdatasync` makes durable), opened elsewhere with SQLite's own
    /// VFS, which rebuilds the wal-index from the frames and their checksums.
    async fn recovered(dir: &std::path::Path, rows: i64) {
        let copy = tempfile::tempdir().unwrap();
        for name in ["w.db", "w.db-wal"] {
            std::fs::copy(dir.join(name), copy.path().join(name)).unwrap();
        }
        let url = format!("sqlite://{}", copy.path().join("w.db").display());
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!((count, check.as_str()), (rows, "ok"));
    }

    async fn insert(conn: &mut SqliteConnection, rows: i64) {
        insert_into(conn, "t", rows).await
    }

    async fn insert_into(conn: &mut SqliteConnection, table: &str, rows: i64) {
        sqlx::query(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
             INSERT INTO {table} (v) SELECT randomblob(3000) FROM n"
        ))
        .bind(rows)
        .execute(conn)
        .await
        .unwrap();
    }

    #[test]
    fn only_a_file_database_that_names_no_vfs_gets_this_one() {
        assert_eq!(
            url("sqlite:///data/warden.db?mode=rwc").as_deref(),
            Some("sqlite:///data/warden.db?mode=rwc&vfs=warden-wal")
        );
        assert_eq!(
            url("sqlite:///data/warden.db").as_deref(),
            Some("sqlite:///data/warden.db?vfs=warden-wal")
        );
        assert_eq!(url("sqlite::memory:"), None);
        assert_eq!(url("sqlite://shared?mode=memory&cache=shared"), None);
        assert_eq!(url("sqlite:///data/warden.db?vfs=unix-dotfile"), None);
    }

    #[tokio::test]
    async fn a_commit_writes_its_frames_at_once_before_anyone_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let plain = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        let mut writer = connect(&url(&plain).unwrap()).await;
        writer
            .execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB); CREATE INDEX t_v ON t(v)")
            .await
            .unwrap();
        let mut reader = connect(&plain).await;
        let before = held_writes(&mut writer).await;
        let wal = dir.path().join("w.db-wal");
        let size = std::fs::metadata(&wal).unwrap().len();
        for commit in 1..=20 {
            let mut tx = writer.begin().await.unwrap();
            insert(&mut tx, 10).await;
            tx.commit().await.unwrap();
            // Another connection, on its own file handle, reads every committed row.
            let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
                .fetch_one(&mut reader)
                .await
                .unwrap();
            assert_eq!(seen, commit * 10);
        }
        // Each commit wrote over ten frames (two writes each without this VFS), written out at
        // once (in writes of up to 128 KiB).
        let frames = (std::fs::metadata(&wal).unwrap().len() - size) / 4120;
        assert!(frames > 20 * 10, "{frames} frames");
        assert_eq!(held_writes(&mut writer).await - before, 20);
        recovered(dir.path(), 200).await;
    }

    #[tokio::test]
    async fn spilled_rewritten_and_rolled_back_frames_leave_a_sound_wal() {
        let dir = tempfile::tempdir().unwrap();
        let plain = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        let mut writer = connect(&url(&plain).unwrap()).await;
        // A cache of a few pages: a transaction's pages spill into the WAL before it commits,
        // and pages spilled and changed again are rewritten in place.
        writer.execute("PRAGMA cache_size = 10").await.unwrap();
        writer
            .execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB); CREATE INDEX t_v ON t(v)")
            .await
            .unwrap();
        let mut tx = writer.begin().await.unwrap();
        insert(&mut tx, 100).await;
        sqlx::query("UPDATE t SET v = randomblob(3000) WHERE id % 7 = 0")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        recovered(dir.path(), 100).await;

        // Spilled and rolled back: appended to a table without an index, no spilled page is
        // read back, so the frames are still held when the transaction ends. They are written
        // before the write lock is released, and another connection then writes where they
        // were.
        writer.execute("CREATE TABLE u (v BLOB)").await.unwrap();
        let mut tx = writer.begin().await.unwrap();
        insert_into(&mut tx, "u", 100).await;
        assert!(held_bytes(&mut tx).await > 0);
        tx.rollback().await.unwrap();
        assert_eq!(held_bytes(&mut writer).await, 0);
        let mut other = connect(&plain).await;
        insert(&mut other, 5).await;
        let mut tx = writer.begin().await.unwrap();
        insert(&mut tx, 3).await;
        tx.commit().await.unwrap();
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut other)
            .await
            .unwrap();
        assert_eq!(count, 108);
        recovered(dir.path(), 108).await;
    }

    #[tokio::test]
    async fn a_checkpoint_writes_runs_of_pages_at_once_before_anyone_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let plain = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        let mut conn = connect(&url(&plain).unwrap()).await;
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
            .await
            .unwrap();
        // New pages, copied past the file's old end (room allocated first), then every row
        // rewritten in place: each checkpoint copies runs of pages, up to 31 (128 KiB) a write,
        // so at most a tenth as many writes as pages. On a file system where room cannot be
        // allocated, or that does not overwrite in place, it writes each page as SQLite does.
        let room = probe_wal(&mut conn, TEST_ROOM).await == 1;
        assert_eq!(
            room,
            cfg!(target_os = "linux") && on_ext4_xfs_or_tmpfs(dir.path())
        );
        insert(&mut conn, 300).await;
        let (mut copies, mut expected) = ((0, 0), Vec::new());
        for rewrite in [false, true] {
            if rewrite {
                sqlx::query("UPDATE t SET v = randomblob(3000)")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            // What the WAL holds, read before it is copied.
            expected = rows(&mut conn).await;
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                .await
                .unwrap();
            let (pages, writes) = copied(&mut conn).await;
            let (pages, writes) = (pages - copies.0, writes - copies.1);
            assert!(pages >= 300, "{pages} pages");
            if room {
                assert!(
                    writes > 0 && writes * 10 <= pages,
                    "{pages} pages in {writes} writes"
                );
            } else {
                assert_eq!(writes, pages);
            }
            copies = copied(&mut conn).await;
        }
        let mut reader = connect(&plain).await;
        assert_eq!(
            std::fs::metadata(dir.path().join("w.db-wal"))
                .unwrap()
                .len(),
            0
        );
        // The file is as long as the database: the zeros were all written over.
        let (count, size): (i64, i64) =
            sqlx::query_as("SELECT page_count, page_size FROM pragma_page_count, pragma_page_size")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        let length = std::fs::metadata(dir.path().join("w.db")).unwrap().len();
        assert_eq!(length as i64, count * size);
        // This connection and another read them from the file, as does one opened on a copy.
        assert_eq!(rows(&mut conn).await, expected);
        assert_eq!(rows(&mut reader).await, expected);
        drop(reader);
        let copy = tempfile::tempdir().unwrap();
        std::fs::copy(dir.path().join("w.db"), copy.path().join("w.db")).unwrap();
        let mut copied =
            SqliteConnection::connect(&format!("sqlite://{}", copy.path().join("w.db").display()))
                .await
                .unwrap();
        assert_eq!(rows(&mut copied).await, expected);
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut copied)
            .await
            .unwrap();
        assert_eq!(check, "ok");
    }
}
