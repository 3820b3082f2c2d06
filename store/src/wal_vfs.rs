//! A SQLite VFS for the writer's connection that writes a commit's WAL frames to the file at
//! once: one `pwrite` for up to 128 KiB of them. SQLite writes each frame as two (its 24-byte
//! header, then the page), and a 4,120-byte frame straddles two of the file's pages: the kernel
//! steps through about three pages a frame, where one write of the commit's frames steps
//! through about one (BENCHMARKS.md).
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
//! transaction in place, or its checksums) go straight to the file. Everything else is
//! SQLite's own default VFS (unix), whose files these are, so locking is shared with
//! connections that do not use this one.
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
    Db { wal: *mut File },
    /// Its WAL.
    Wal(Held),
}

/// Frames appended to the WAL and not yet written.
struct Held {
    db: *mut File,
    bytes: Vec<u8>,
    /// Where `bytes` go in the file.
    at: i64,
    /// The furthest byte this WAL has reached since it last started again from its header.
    end: i64,
    /// The last write was a commit frame's header: its page completes the commit.
    commit_due: bool,
    /// Times held bytes were written out so far (`TEST_WRITES`).
    #[cfg(test)]
    writes: u64,
}

impl Held {
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
unsafe fn write_out(real: *mut ffi::sqlite3_file, held: &mut Held) -> c_int {
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
        // SAFETY: `real` is open, and `rest` is valid for at least `n` bytes.
        rc = unsafe {
            (methods(real).xWrite.expect("xWrite"))(real, rest.as_ptr().cast(), n as c_int, at)
        };
        at += n as i64;
        rest = &rest[n..];
    }
    held.bytes.clear();
    held.commit_due = false;
    if held.bytes.capacity() > 2 * HOLD_AT_MOST {
        held.bytes.shrink_to(HOLD_AT_MOST);
    }
    rc
}

/// Writes out what a WAL handle holds, if `file` is one.
unsafe fn write_out_wal(file: &mut File) -> c_int {
    match &mut file.role {
        // SAFETY: `real` is this file's own.
        Role::Wal(held) => unsafe { write_out(file.real, held) },
        Role::Db { .. } => ffi::SQLITE_OK,
    }
}

/// The backstops, on the database's wal-index calls: what its WAL holds goes out.
unsafe fn backstop(db: &mut File, at: Backstop) {
    let Role::Db { wal } = db.role else { return };
    // SAFETY: the WAL unlinks itself from its database when it closes.
    let Some(wal) = (unsafe { wal.as_mut() }) else {
        return;
    };
    if unsafe { write_out_wal(wal) } == ffi::SQLITE_OK {
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
        let role = if flags & ffi::SQLITE_OPEN_WAL != 0 {
            // The database this WAL belongs to, if opened through us too (the same
            // connection's).
            let db = ffi::sqlite3_database_file_object(name).cast::<File>();
            let ours = !db.is_null() && std::ptr::eq((*db).base.pMethods, &DB_METHODS);
            Role::Wal(Held {
                db: if ours { db } else { std::ptr::null_mut() },
                bytes: Vec::new(),
                at: 0,
                end: 0,
                commit_due: false,
                #[cfg(test)]
                writes: 0,
            })
        } else if flags & ffi::SQLITE_OPEN_MAIN_DB != 0 {
            Role::Db {
                wal: std::ptr::null_mut(),
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
            && let Role::Db { wal } = &mut (*held.db).role
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

static DB_METHODS: ffi::sqlite3_io_methods = PASS_ON;

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
        let held_rc = write_out_wal(f);
        match &f.role {
            Role::Wal(held) if !held.db.is_null() => {
                if let Role::Db { wal } = &mut (*held.db).role {
                    *wal = std::ptr::null_mut();
                }
            }
            Role::Db { wal } if !wal.is_null() => {
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
            let rc = write_out(real, held);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            return (methods(real).xWrite.expect("xWrite"))(real, data, amount, offset);
        }
        if offset == 0 && amount == WAL_HEADER {
            // The WAL starts again from its header: frames overwrite the last round's.
            held.end = 0;
        }
        if !held.bytes.is_empty() && offset != held.at + held.bytes.len() as i64 {
            let rc = write_out(real, held);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if held.bytes.is_empty() {
            held.at = offset;
        }
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), amount as usize);
        held.bytes.extend_from_slice(bytes);
        held.end = held.end.max(offset + i64::from(amount));
        let completes_commit = held.commit_due && amount != FRAME_HEADER;
        // A frame's header: its bytes 4..8 are the database's size in pages after a commit,
        // 0 in any other frame.
        held.commit_due = amount == FRAME_HEADER && bytes[4..8] != [0, 0, 0, 0];
        // (Never between a commit frame's header and its page: the page completes the commit.)
        if completes_commit || (held.bytes.len() >= HOLD_AT_MOST && !held.commit_due) {
            return write_out(real, held);
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

/// Methods that write out what a WAL holds and then pass the call on to the real file.
macro_rules! write_out_then_pass {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: `file` is open; the held frames go out before anything else touches it.
            unsafe {
                let f = this(file);
                let rc = write_out_wal(f);
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
        let rc = write_out_wal(f);
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
        let rc = write_out_wal(f);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        (methods(f.real).xFileControl.expect("xFileControl"))(f.real, op, arg)
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
    /// many times its WAL's held bytes were written out, and how many it holds now.
    const TEST_WRITES: c_int = 0x5741_4c00;
    const TEST_HELD: c_int = 0x5741_4c01;

    pub(super) unsafe fn probe(db: &mut File, op: c_int, out: *mut c_void) -> Option<c_int> {
        if op != TEST_WRITES && op != TEST_HELD {
            return None;
        }
        let Role::Db { wal } = db.role else {
            return Some(ffi::SQLITE_NOTFOUND);
        };
        // SAFETY: a linked WAL is open; `out` is the caller's i64.
        unsafe {
            let Some(Role::Wal(held)) = wal.as_ref().map(|w| &w.role) else {
                return Some(ffi::SQLITE_NOTFOUND);
            };
            *out.cast::<i64>() = if op == TEST_WRITES {
                held.writes as i64
            } else {
                held.bytes.len() as i64
            };
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
}
