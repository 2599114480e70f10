//! `--user` and `--group`: names (or `#uid`, `#gid`, as Apache writes them) resolved to
//! ids once, at start-up, from the system's user and group databases.
//!
//! The lookups use the re-entrant `getpwnam_r` family: the plain ones share one static
//! record per process, which another thread (a parallel test, a logger) may overwrite
//! between the call and the read.

use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;

/// The user and group the server runs the application as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    pub group: String,
    pub gid: u32,
}

/// Resolves `--user` and `--group`; without `--group`, the user's primary group.
pub(super) fn resolve(user: &str, group: Option<&str>) -> Result<RunAs, String> {
    let (uid, primary_gid) = lookup_user(user)?;
    let gid = match group {
        Some(group) => lookup_group(group)?,
        None => primary_gid,
    };
    Ok(RunAs {
        user: user.to_owned(),
        uid,
        group: group.map_or_else(|| group_name(gid), ToOwned::to_owned),
        gid,
    })
}

/// The name of the user running this process (`#uid` if it has none).
pub(super) fn current_user() -> String {
    // SAFETY: getuid has no preconditions.
    user_name(unsafe { libc::getuid() })
}

/// The name of user `uid` (`#uid` if it has none).
pub(super) fn user_name(uid: u32) -> String {
    user_record(|record, buffer, result| {
        // SAFETY: every pointer comes from `user_record` and is valid for the call.
        unsafe { libc::getpwuid_r(uid, record, buffer.as_mut_ptr(), buffer.len(), result) }
    })
    .map_or_else(|| format!("#{uid}"), |entry| entry.name)
}

fn lookup_user(user: &str) -> Result<(u32, u32), String> {
    if let Some(number) = user.strip_prefix('#') {
        let uid = number
            .parse()
            .map_err(|_| format!("--user '{user}' is not a user id"))?;
        return Ok((uid, uid));
    }
    let name = CString::new(user).map_err(|_| format!("--user '{user}' is not a user name"))?;
    user_record(|record, buffer, result| {
        // SAFETY: `name` is a valid C string; the other pointers come from `user_record`.
        unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                record,
                buffer.as_mut_ptr(),
                buffer.len(),
                result,
            )
        }
    })
    .map(|entry| (entry.id, entry.group_id))
    .ok_or_else(|| format!("--user '{user}': no such user on this system"))
}

fn lookup_group(group: &str) -> Result<u32, String> {
    if let Some(number) = group.strip_prefix('#') {
        return number
            .parse()
            .map_err(|_| format!("--group '{group}' is not a group id"));
    }
    let name = CString::new(group).map_err(|_| format!("--group '{group}' is not a group name"))?;
    group_record(|record, buffer, result| {
        // SAFETY: `name` is a valid C string; the other pointers come from `group_record`.
        unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                record,
                buffer.as_mut_ptr(),
                buffer.len(),
                result,
            )
        }
    })
    .map(|entry| entry.id)
    .ok_or_else(|| format!("--group '{group}': no such group on this system"))
}

fn group_name(gid: u32) -> String {
    group_record(|record, buffer, result| {
        // SAFETY: every pointer comes from `group_record` and is valid for the call.
        unsafe { libc::getgrgid_r(gid, record, buffer.as_mut_ptr(), buffer.len(), result) }
    })
    .map_or_else(|| format!("#{gid}"), |entry| entry.name)
}

/// What we keep of a user or group record, copied out of the lookup's buffer.
struct Entry {
    name: String,
    id: u32,
    group_id: u32,
}

/// Runs a `getpw*_r` lookup, growing the string buffer while the C library asks for more.
fn user_record(
    lookup: impl Fn(*mut libc::passwd, &mut [libc::c_char], *mut *mut libc::passwd) -> libc::c_int,
) -> Option<Entry> {
    record(lookup, |user: &libc::passwd| Entry {
        // SAFETY: a record filled in by the C library holds a valid C string.
        name: unsafe { owned_name(user.pw_name) },
        id: user.pw_uid,
        group_id: user.pw_gid,
    })
}

/// Runs a `getgr*_r` lookup, growing the string buffer while the C library asks for more.
fn group_record(
    lookup: impl Fn(*mut libc::group, &mut [libc::c_char], *mut *mut libc::group) -> libc::c_int,
) -> Option<Entry> {
    record(lookup, |group: &libc::group| Entry {
        // SAFETY: as above.
        name: unsafe { owned_name(group.gr_name) },
        id: group.gr_gid,
        group_id: group.gr_gid,
    })
}

/// One re-entrant lookup into a record of type `R` whose strings live in the buffer;
/// `keep` copies out what we need while the buffer is alive.
fn record<R>(
    lookup: impl Fn(*mut R, &mut [libc::c_char], *mut *mut R) -> libc::c_int,
    keep: impl Fn(&R) -> Entry,
) -> Option<Entry> {
    with_growing_buffer(|buffer| {
        let mut record = MaybeUninit::<R>::zeroed();
        let mut result: *mut R = std::ptr::null_mut();
        let status = lookup(record.as_mut_ptr(), buffer, &raw mut result);
        if status != 0 || result.is_null() {
            return (status, None);
        }
        // SAFETY: on success `result` points at `record`, filled in by the lookup.
        (0, Some(keep(unsafe { &*result })))
    })
}

/// # Safety
/// `name` points at a NUL-terminated string.
unsafe fn owned_name(name: *const libc::c_char) -> String {
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned()
}

/// Group files can list thousands of members; start small and double on `ERANGE`.
fn with_growing_buffer(
    mut attempt: impl FnMut(&mut [libc::c_char]) -> (libc::c_int, Option<Entry>),
) -> Option<Entry> {
    let mut size = 1024;
    loop {
        let mut buffer = vec![0 as libc::c_char; size];
        match attempt(&mut buffer) {
            (libc::ERANGE, _) if size < 1 << 24 => size *= 2,
            (_, entry) => return entry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_by_name_and_by_number() {
        let by_name = resolve("root", None).expect("root exists");
        assert_eq!((by_name.uid, by_name.gid), (0, 0));
        let by_number = resolve("#0", Some("#0")).expect("ids parse");
        assert_eq!((by_number.uid, by_number.gid), (0, 0));
    }

    #[test]
    fn lookups_from_many_threads_do_not_see_each_others_records() {
        let nobody = resolve("nobody", None).expect("nobody exists");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let nobody = nobody.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        if i % 2 == 0 {
                            let root = resolve("root", None).unwrap();
                            assert_eq!((root.uid, root.gid), (0, 0));
                        } else {
                            assert_eq!(resolve("nobody", None).unwrap(), nobody);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread
                .join()
                .expect("no lookup saw another thread's record");
        }
    }

    #[test]
    fn unknown_names_are_reported_with_their_option() {
        assert_eq!(
            resolve("no-such-user-here", None),
            Err("--user 'no-such-user-here': no such user on this system".to_owned())
        );
        assert!(
            resolve("root", Some("no-such-group-here"))
                .unwrap_err()
                .starts_with("--group 'no-such-group-here'")
        );
    }
}
