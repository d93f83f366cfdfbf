//! Start-up privileges: the capabilities kept while starting, the open-file limit, and
//! the switch to the unprivileged user with every capability dropped.
//!
//! Started as root, the process first narrows its capabilities to [`STARTUP_CAPS`]; after
//! the listeners are bound and the plugins loaded it switches to the configured user and
//! group and drops every capability, including the bounding set, and sets
//! `no_new_privs`. All of this happens before any thread exists.

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Group, Uid, User};

/// The capabilities start-up needs: binding ports below 1024, raising RLIMIT_NOFILE
/// beyond the hard limit, creating the PID file in its directory (which belongs to the
/// user after the first start) and handing both to the user, switching user and group,
/// and clearing the bounding set.
pub const STARTUP_CAPS: [Capability; 7] = [
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_CHOWN,
    Capability::CAP_SYS_RESOURCE,
    Capability::CAP_SETUID,
    Capability::CAP_SETGID,
    Capability::CAP_SETPCAP,
];

/// Whether the process runs as root (effective uid 0).
pub fn is_root() -> bool {
    Uid::effective().is_root()
}

/// Narrows the permitted and effective sets to [`STARTUP_CAPS`] (plus `CAP_NET_RAW`
/// when an interface must be bound with `SO_BINDTODEVICE`). Returns the wanted
/// capabilities the process did not have (a container may withhold some).
///
/// # Errors
/// A message if the kernel refuses.
pub fn keep_startup_caps(bind_device: bool) -> Result<Vec<Capability>, String> {
    let mut wanted: CapsHashSet = STARTUP_CAPS.into_iter().collect();
    if bind_device {
        wanted.insert(Capability::CAP_NET_RAW);
    }
    let permitted = caps::read(None, CapSet::Permitted)
        .map_err(|e| format!("cannot read capabilities: {e}"))?;
    let keep: CapsHashSet = wanted.intersection(&permitted).copied().collect();
    let mut missing: Vec<Capability> = wanted.difference(&permitted).copied().collect();
    missing.sort_by_key(|c| c.index());
    let set = |which, value: &CapsHashSet| {
        caps::set(None, which, value)
            .map_err(|e| format!("cannot limit capabilities ({which:?}): {e}"))
    };
    // Effective must stay a subset of permitted, so shrink it first.
    set(CapSet::Effective, &keep)?;
    set(CapSet::Permitted, &keep)?;
    set(CapSet::Inheritable, &CapsHashSet::new())?;
    Ok(missing)
}

/// Raises RLIMIT_NOFILE to `wanted` (root may raise the hard limit; others get at most
/// their hard limit). Returns the soft limit now in force.
///
/// # Errors
/// A message if the limit cannot be read or set.
pub fn raise_nofile(wanted: u64) -> Result<u64, String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit: {e}"))?;
    let hard_new = if is_root() { hard.max(wanted) } else { hard };
    let soft_new = wanted.min(hard_new).max(soft);
    setrlimit(Resource::RLIMIT_NOFILE, soft_new, hard_new)
        .or_else(|_| setrlimit(Resource::RLIMIT_NOFILE, wanted.min(hard).max(soft), hard))
        .map_err(|e| format!("cannot raise the open-file limit to {wanted}: {e}"))?;
    Ok(getrlimit(Resource::RLIMIT_NOFILE).map_or(soft_new, |(s, _)| s))
}

/// The user and group to switch to.
#[derive(Debug, Clone)]
pub struct Target {
    /// The user's name.
    pub user: String,
    /// The uid.
    pub uid: Uid,
    /// The gid (the configured group's, or the user's primary group).
    pub gid: Gid,
}

/// Resolves the configured user and group.
///
/// # Errors
/// A message naming the configuration key that names a missing user or group, or
/// refusing root unless `allow_root_apps` is set.
pub fn resolve(user: &str, group: &str, allow_root: bool) -> Result<Target, String> {
    let entry = User::from_name(user)
        .map_err(|e| format!("user: cannot look up '{user}': {e}"))?
        .ok_or_else(|| {
            format!("user: '{user}' does not exist (create it with `useradd --system --no-create-home --shell /usr/sbin/nologin {user}`, or set \"user\")")
        })?;
    let gid = if group.is_empty() {
        entry.gid
    } else {
        Group::from_name(group)
            .map_err(|e| format!("group: cannot look up '{group}': {e}"))?
            .ok_or_else(|| format!("group: '{group}' does not exist"))?
            .gid
    };
    if (entry.uid.is_root() || gid.as_raw() == 0) && !allow_root {
        return Err(format!(
            "user: '{user}' is root: plugins would run as root; set \"allow_root_apps\": true if that is really wanted"
        ));
    }
    Ok(Target {
        user: user.to_string(),
        uid: entry.uid,
        gid,
    })
}

/// Switches to `target` and drops every capability for good.
///
/// # Errors
/// A message if any step fails; the caller must then exit rather than serve.
pub fn drop_to(target: &Target) -> Result<(), String> {
    use nix::unistd::{setgroups, setresgid, setresuid};
    // The bounding set limits what any future execve could regain; clearing it needs
    // CAP_SETPCAP, so it comes first.
    for cap in caps::all() {
        let _ = caps::drop(None, CapSet::Bounding, cap);
    }
    setgroups(&[target.gid]).map_err(|e| format!("setgroups: {e}"))?;
    setresgid(target.gid, target.gid, target.gid)
        .map_err(|e| format!("setresgid({}): {e}", target.gid))?;
    setresuid(target.uid, target.uid, target.uid)
        .map_err(|e| format!("setresuid({}): {e}", target.uid))?;
    // Leaving uid 0 clears the permitted and effective sets (no PR_SET_KEEPCAPS); make
    // sure, and clear the rest too.
    for which in [
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
    ] {
        caps::clear(None, which)
            .map_err(|e| format!("cannot clear capabilities ({which:?}): {e}"))?;
    }
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) only sets a flag on this process.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(format!(
            "prctl(PR_SET_NO_NEW_PRIVS): {}",
            std::io::Error::last_os_error()
        ));
    }
    if !caps::read(None, CapSet::Effective)
        .map_err(|e| e.to_string())?
        .is_empty()
    {
        return Err("capabilities remain after dropping them".into());
    }
    Ok(())
}
