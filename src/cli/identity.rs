//! `--user` and `--group`: names (or `#uid`, `#gid`, as Apache writes them) resolved to
//! ids once, at start-up, from the system's user and group databases.

use std::ffi::{CStr, CString};

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
    let uid = unsafe { libc::getuid() };
    // SAFETY: getpwuid returns null or a pointer to a static record valid until the next
    // call; we copy the name out at once, at start-up, before any other thread exists.
    unsafe {
        let entry = libc::getpwuid(uid);
        if entry.is_null() {
            format!("#{uid}")
        } else {
            CStr::from_ptr((*entry).pw_name)
                .to_string_lossy()
                .into_owned()
        }
    }
}

fn lookup_user(user: &str) -> Result<(u32, u32), String> {
    if let Some(number) = user.strip_prefix('#') {
        let uid = number
            .parse()
            .map_err(|_| format!("--user '{user}' is not a user id"))?;
        return Ok((uid, uid));
    }
    let name = CString::new(user).map_err(|_| format!("--user '{user}' is not a user name"))?;
    // SAFETY: getpwnam takes a valid C string and returns null or a pointer to a static
    // record, read at once at start-up before any other thread exists.
    unsafe {
        let entry = libc::getpwnam(name.as_ptr());
        if entry.is_null() {
            return Err(format!("--user '{user}': no such user on this system"));
        }
        Ok(((*entry).pw_uid, (*entry).pw_gid))
    }
}

fn lookup_group(group: &str) -> Result<u32, String> {
    if let Some(number) = group.strip_prefix('#') {
        return number
            .parse()
            .map_err(|_| format!("--group '{group}' is not a group id"));
    }
    let name = CString::new(group).map_err(|_| format!("--group '{group}' is not a group name"))?;
    // SAFETY: as in `lookup_user`, for the group database.
    unsafe {
        let entry = libc::getgrnam(name.as_ptr());
        if entry.is_null() {
            return Err(format!("--group '{group}': no such group on this system"));
        }
        Ok((*entry).gr_gid)
    }
}

fn group_name(gid: u32) -> String {
    // SAFETY: as in `lookup_user`, for the group database.
    unsafe {
        let entry = libc::getgrgid(gid);
        if entry.is_null() {
            format!("#{gid}")
        } else {
            CStr::from_ptr((*entry).gr_name)
                .to_string_lossy()
                .into_owned()
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
