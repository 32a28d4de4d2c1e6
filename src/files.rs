//! Every file forcemfa writes goes through here: the audit log, the state file, the metrics file.
//!
//! A host where forcemfa runs may have other local users, and the directories it writes to may
//! be writable by someone else (a shared `/tmp`, a volume mounted from elsewhere). So:
//! - the last component of a path is never followed when it is a symbolic link, and a path that
//!   exists but is not a plain file with a single name owned by forcemfa's own user (a link, a
//!   directory, a FIFO, a device, a hard link, someone else's file) is refused, naming the
//!   configuration key and the path;
//! - a file rewritten whole goes through a temporary file created exclusively (`O_EXCL`, under a
//!   random name) beside it, which is synced and renamed over the target, and the directory is
//!   synced after the rename;
//! - modes are set explicitly, whatever the umask: the audit log and the state file name users
//!   and what was done to them, so only forcemfa's own user may read them ([`Mode::Private`]);
//!   the metrics file is read by node_exporter ([`Mode::Shared`]).
//!
//! A dry run writes nothing: it may [`check`] a path, which opens nothing.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Who may read a file forcemfa writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only forcemfa's user (0600).
    Private,
    /// Everyone may read it, only forcemfa's user write it (0644).
    Shared,
}

impl Mode {
    pub fn bits(self) -> u32 {
        match self {
            Mode::Private => 0o600,
            Mode::Shared => 0o644,
        }
    }
}

/// A file that cannot be used, naming the setting it comes from.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{key} `{}` is a symbolic link; forcemfa never writes through a link: name the file itself", path.display())]
    Link { key: &'static str, path: PathBuf },
    #[error("{key} `{}` is {what}, not a regular file", path.display())]
    NotRegular {
        key: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("{key} `{}` has {links} names (hard links); forcemfa writes only to a file with one name", path.display())]
    HardLinked {
        key: &'static str,
        path: PathBuf,
        links: u64,
    },
    #[error("{key} `{}` belongs to user {owner}, not to forcemfa's own user {me}; forcemfa keeps its records only in its own files", path.display())]
    NotOwn {
        key: &'static str,
        path: PathBuf,
        owner: u32,
        me: u32,
    },
    #[error("cannot {op} {key} `{}`: {source}", path.display())]
    Io {
        key: &'static str,
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
}

/// The flags every open of a target adds: never follow a link in the last component, never block
/// on a FIFO, never leak the descriptor into a child.
fn safe_flags() -> i32 {
    libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC
}

/// Checks, without opening or changing anything, that forcemfa could write `path`: it is absent
/// (in a directory that exists) or a regular file with one name, of forcemfa's own user.
pub fn check(key: &'static str, path: &Path) -> Result<(), FileError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => judge(key, path, &meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = directory_of(path);
            match std::fs::metadata(&dir) {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(io_error(key, path, "create", not_a_directory(&dir))),
                Err(e) => Err(io_error(key, path, "create", e)),
            }
        }
        Err(e) => Err(io_error(key, path, "inspect", e)),
    }
}

/// Opens `path` for reading and appending, creating it with `mode` when absent, and sets `mode`
/// on a file that has a looser one.
pub fn open_append(key: &'static str, path: &Path, mode: Mode) -> Result<File, FileError> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(mode.bits())
        .custom_flags(safe_flags())
        .open(path)
        .map_err(|e| open_error(key, path, "open", e))?;
    let meta = file
        .metadata()
        .map_err(|e| io_error(key, path, "inspect", e))?;
    judge(key, path, &meta)?;
    if meta.mode() & 0o777 != mode.bits() {
        file.set_permissions(Permissions::from_mode(mode.bits()))
            .map_err(|e| io_error(key, path, "set the mode of", e))?;
    }
    Ok(file)
}

/// The whole text of `path`, or `None` when there is no such file.
pub fn read(key: &'static str, path: &Path) -> Result<Option<String>, FileError> {
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(safe_flags())
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_error(key, path, "read", e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| io_error(key, path, "inspect", e))?;
    judge(key, path, &meta)?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| io_error(key, path, "read", e))?;
    Ok(Some(text))
}

/// A JSON record forcemfa keeps between runs (`key` names it, `what` says what it is): an
/// absent file is an empty record, and so is an unreadable one, with the reason. A file that is
/// not such a record is never overwritten: unless this is a dry run (`dry_run`, which writes
/// nothing), it is kept aside under a name the reason gives, for a person to read.
pub fn load_record<T: serde::de::DeserializeOwned + Default>(
    key: &'static str,
    what: &str,
    path: &Path,
    dry_run: bool,
) -> (T, Option<String>) {
    match read(key, path) {
        Ok(None) => (T::default(), None),
        Ok(Some(text)) => match serde_json::from_str(&text) {
            Ok(record) => (record, None),
            Err(e) => {
                let fate = if dry_run {
                    "a dry run leaves it as it is".to_string()
                } else {
                    match set_aside(key, path) {
                        Ok(aside) => format!("kept aside as `{}`", aside.display()),
                        Err(e) => format!("it could not be kept aside: {e}"),
                    }
                };
                let problem = format!("{} is not {what}: {e}; {fate}", path.display());
                (T::default(), Some(problem))
            }
        },
        Err(e) => (T::default(), Some(e.to_string())),
    }
}

/// Moves `path` out of the way under a name beside it that no file has,
/// `NAME.damaged-UNIXSECONDS` (with `-N` when taken): linked there first, so that nothing is
/// ever replaced, then unlinked from its own name.
fn set_aside(key: &'static str, path: &Path) -> Result<PathBuf, FileError> {
    let name = file_name(key, path, "keep aside")?;
    let dir = directory_of(path);
    let secs = crate::clock::unix_now_secs();
    for n in 0..100 {
        let mut aside = name.to_os_string();
        aside.push(format!(".damaged-{secs}"));
        if n > 0 {
            aside.push(format!("-{n}"));
        }
        let aside = dir.join(aside);
        match std::fs::hard_link(path, &aside) {
            Ok(()) => {
                std::fs::remove_file(path).map_err(|e| io_error(key, path, "keep aside", e))?;
                sync_directory(key, path, &dir)?;
                return Ok(aside);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(key, path, "keep aside", e)),
        }
    }
    Err(io_error(
        key,
        path,
        "keep aside",
        std::io::Error::other("every name beside it is taken"),
    ))
}

/// Why a record could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error(transparent)]
    File(#[from] FileError),
}

/// Writes a record whole, readable by forcemfa's user only (see [`replace`]).
pub fn save_record<T: serde::Serialize>(
    key: &'static str,
    what: &'static str,
    path: &Path,
    record: &T,
) -> Result<(), SaveError> {
    let text = serde_json::to_string_pretty(record)
        .map_err(|source| SaveError::Encode { what, source })?;
    Ok(replace(key, path, text.as_bytes(), Mode::Private)?)
}

/// Replaces `path` with `contents`: written to a new temporary file beside it, synced, renamed
/// over it, and the directory synced. A crash leaves the old file or the new one, never a mix;
/// a failure leaves the old file and no temporary one.
pub fn replace(
    key: &'static str,
    path: &Path,
    contents: &[u8],
    mode: Mode,
) -> Result<(), FileError> {
    check(key, path)?;
    let dir = directory_of(path);
    let name = file_name(key, path, "write")?;
    // A name the textfile collector and globs such as `*.json` pass over.
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(Permissions::from_mode(mode.bits()))
        .tempfile_in(&dir)
        .map_err(|e| io_error(key, path, "create a temporary file beside", e))?;
    let written = tmp
        .as_file()
        .set_permissions(Permissions::from_mode(mode.bits()))
        .and_then(|()| tmp.write_all(contents))
        .and_then(|()| tmp.as_file().sync_all());
    written.map_err(|e| io_error(key, path, "write", e))?;
    // The rename replaces whatever is at `path` now, a link planted since the check included,
    // never what such a link points to.
    tmp.persist(path)
        .map_err(|e| io_error(key, path, "replace", e.error))?;
    sync_directory(key, path, &dir)
}

/// The last component of `path`, which `op` needs.
fn file_name<'a>(
    key: &'static str,
    path: &'a Path,
    op: &'static str,
) -> Result<&'a std::ffi::OsStr, FileError> {
    let no_file = || std::io::Error::other("the path names no file");
    path.file_name()
        .ok_or_else(|| io_error(key, path, op, no_file()))
}

/// Syncs `dir`, the directory of `path`, so that a rename or an unlink in it outlasts a crash.
fn sync_directory(key: &'static str, path: &Path, dir: &Path) -> Result<(), FileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(key, path, "sync the directory of", e))
}

/// Refuses anything but a regular file with one name, of forcemfa's own user.
fn judge(key: &'static str, path: &Path, meta: &std::fs::Metadata) -> Result<(), FileError> {
    let kind = meta.file_type();
    let what = if kind.is_symlink() {
        return Err(FileError::Link {
            key,
            path: path.to_path_buf(),
        });
    } else if kind.is_file() {
        if meta.nlink() > 1 {
            return Err(FileError::HardLinked {
                key,
                path: path.to_path_buf(),
                links: meta.nlink(),
            });
        }
        // A file someone else put there (in a shared directory) is theirs to have written.
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(FileError::NotOwn {
                key,
                path: path.to_path_buf(),
                owner: meta.uid(),
                me,
            });
        }
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else {
        "a FIFO, socket or device"
    };
    Err(FileError::NotRegular {
        key,
        path: path.to_path_buf(),
        what,
    })
}

/// An error of `open(2)`: a link in the last component shows as `ELOOP` under `O_NOFOLLOW`.
fn open_error(key: &'static str, path: &Path, op: &'static str, e: std::io::Error) -> FileError {
    if e.raw_os_error() == Some(libc::ELOOP)
        && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
    {
        return FileError::Link {
            key,
            path: path.to_path_buf(),
        };
    }
    io_error(key, path, op, e)
}

fn io_error(key: &'static str, path: &Path, op: &'static str, source: std::io::Error) -> FileError {
    FileError::Io {
        key,
        path: path.to_path_buf(),
        op,
        source,
    }
}

fn not_a_directory(dir: &Path) -> std::io::Error {
    std::io::Error::other(format!("{} is not a directory", dir.display()))
}

/// The directory a path's file is in (`.` for a bare name).
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn a_link_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("passwd");
        std::fs::write(&target, "root:x:0:0\nlast line without newline").unwrap();
        let link = dir.path().join("audit.jsonl");
        symlink(&target, &link).unwrap();
        for err in [
            check("audit_log", &link).unwrap_err(),
            open_append("audit_log", &link, Mode::Private).unwrap_err(),
            read("audit_log", &link).unwrap_err(),
            replace("audit_log", &link, b"x", Mode::Private).unwrap_err(),
        ] {
            assert!(matches!(err, FileError::Link { .. }), "{err}");
            let text = err.to_string();
            assert!(
                text.contains("audit_log") && text.contains("audit.jsonl"),
                "{text}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "root:x:0:0\nlast line without newline"
        );
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn a_dangling_link_is_refused_and_nothing_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("created-through-the-link");
        let link = dir.path().join("state.json");
        symlink(&target, &link).unwrap();
        assert!(matches!(
            open_append("cleanup.state_file", &link, Mode::Private),
            Err(FileError::Link { .. })
        ));
        assert!(matches!(
            replace("cleanup.state_file", &link, b"{}", Mode::Private),
            Err(FileError::Link { .. })
        ));
        assert!(!target.exists());
    }

    #[test]
    fn fifos_directories_and_hard_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        // Opening a FIFO for writing would block until a reader comes; it must not.
        let err = open_append("audit_log", &fifo, Mode::Private).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let err = check("audit_log", dir.path()).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        std::fs::hard_link(&file, dir.path().join("other-name")).unwrap();
        assert!(matches!(
            check("audit_log", &file),
            Err(FileError::HardLinked { links: 2, .. })
        ));
    }

    #[test]
    fn modes_are_exact_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let appended = dir.path().join("audit.jsonl");
        let replaced = dir.path().join("forcemfa.prom");
        let loose = dir.path().join("loose.jsonl");
        std::fs::write(&loose, "").unwrap();
        std::fs::set_permissions(&loose, Permissions::from_mode(0o666)).unwrap();
        open_append("audit_log", &appended, Mode::Private).unwrap();
        open_append("audit_log", &loose, Mode::Private).unwrap();
        replace("--metrics-file", &replaced, b"m 1\n", Mode::Shared).unwrap();
        assert_eq!(mode_of(&appended), 0o600);
        assert_eq!(mode_of(&loose), 0o600);
        assert_eq!(mode_of(&replaced), 0o644);
        replace("cleanup.state_file", &replaced, b"{}", Mode::Private).unwrap();
        assert_eq!(mode_of(&replaced), 0o600);
    }

    #[test]
    fn replacing_leaves_no_temporary_file_and_ignores_planted_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        // Links at every name a predictable scheme would use.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        for name in ["state.tmp", ".state.json.tmp", ".state.json.1.tmp"] {
            symlink(&victim, dir.path().join(name)).unwrap();
        }
        replace("cleanup.state_file", &path, b"{\"new\":1}", Mode::Private).unwrap();
        replace("cleanup.state_file", &path, b"{\"new\":2}", Mode::Private).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"new\":2}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 5, "{names:?}");
    }

    #[test]
    fn a_file_of_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let planted = dir.path().join("state.json");
        std::fs::write(&planted, "{\"first_seen\":{}}").unwrap();
        let me = rustix::process::geteuid().as_raw();
        // Only root can give a file away; elsewhere there is nothing to test.
        if std::os::unix::fs::chown(&planted, Some(me + 1), None).is_err() {
            return;
        }
        for err in [
            check("cleanup.state_file", &planted).unwrap_err(),
            read("cleanup.state_file", &planted).unwrap_err(),
            open_append("audit_log", &planted, Mode::Private).unwrap_err(),
        ] {
            assert!(matches!(err, FileError::NotOwn { .. }), "{err}");
        }
    }

    #[test]
    fn reading_a_missing_file_is_none_and_an_unreadable_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read("cleanup.state_file", &dir.path().join("absent"))
            .unwrap()
            .is_none());
        let err = check("audit_log", Path::new("/nonexistent/dir/audit.jsonl")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/dir/audit.jsonl"),
            "{err}"
        );
    }
}
