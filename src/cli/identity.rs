//! `--user` and `--group`: names (or `#uid`, `#gid`, as Apache writes them) resolved to
//! ids once, at start-up, from the system's user and group databases.
//!
//! The lookups are `nix`'s `User` and `Group`, which call the re-entrant `getpwnam_r`
//! family with a buffer of their own that grows on `ERANGE`: the plain `getpwnam` family
//! shares one static record per process, which another thread (a parallel test, a
//! logger) may overwrite between the call and the read.

use nix::unistd::{Gid, Group, Uid, User};

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
    user_name(nix::unistd::getuid().as_raw())
}

/// The name of user `uid` (`#uid` if it has none, or if the lookup fails).
pub(super) fn user_name(uid: u32) -> String {
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(entry)) => entry.name,
        _ => format!("#{uid}"),
    }
}

fn lookup_user(user: &str) -> Result<(u32, u32), String> {
    if let Some(number) = user.strip_prefix('#') {
        let uid = number
            .parse()
            .map_err(|_| format!("--user '{user}' is not a user id"))?;
        return Ok((uid, uid));
    }
    // `nix` reports a name with a NUL in it as not found; it is not a name at all.
    if user.contains('\0') {
        return Err(format!("--user '{user}' is not a user name"));
    }
    // A lookup that fails (the name service unreachable, say) is reported as a missing
    // user: either way the server cannot run as that user, and the message names it.
    match User::from_name(user) {
        Ok(Some(entry)) => Ok((entry.uid.as_raw(), entry.gid.as_raw())),
        _ => Err(format!("--user '{user}': no such user on this system")),
    }
}

fn lookup_group(group: &str) -> Result<u32, String> {
    if let Some(number) = group.strip_prefix('#') {
        return number
            .parse()
            .map_err(|_| format!("--group '{group}' is not a group id"));
    }
    if group.contains('\0') {
        return Err(format!("--group '{group}' is not a group name"));
    }
    match Group::from_name(group) {
        Ok(Some(entry)) => Ok(entry.gid.as_raw()),
        _ => Err(format!("--group '{group}': no such group on this system")),
    }
}

pub(super) fn group_name(gid: u32) -> String {
    match Group::from_gid(Gid::from_raw(gid)) {
        Ok(Some(entry)) => entry.name,
        _ => format!("#{gid}"),
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

    #[test]
    fn a_name_with_a_nul_is_not_a_name() {
        assert_eq!(
            resolve("ro\0ot", None),
            Err("--user 'ro\0ot' is not a user name".to_owned())
        );
        assert_eq!(
            resolve("root", Some("ro\0ot")),
            Err("--group 'ro\0ot' is not a group name".to_owned())
        );
    }
}
