//! The text ipvsadm prints when the kernel refuses a change: libipvs `ipvs_strerror`'s
//! table (keyed on the libipvs call and the errno), falling back to glibc's
//! `strerror` wording. This module owns both tables.

use rvs_api::ApiError;

use crate::Op;

/// libipvs `ipvs_strerror` for a failed `op`, from the daemon's error: its `errno`
/// name (`"EEXIST"`, `"ESRCH"`, ...) selects the text; an errno with no entry in
/// either table, or no errno at all, gives `err.message`. The text has no newline
/// (ipvsadm prints it followed by one, on stderr, and exits 255).
///
/// `Op::Clear` uses only the call-independent entries: libipvs' `ipvs_flush` does not
/// record itself as the failing call.
pub fn error_message(op: Op, err: &ApiError) -> String {
    let Some(errno) = err.errno.as_deref() else {
        return err.message.clone();
    };
    if let Some(t) = specific(op, errno).or_else(|| generic(errno)) {
        return t.to_string();
    }
    match strerror(errno) {
        Some(t) => t.to_string(),
        None => err.message.clone(),
    }
}

/// The entries of `ipvs_strerror`'s table that name a libipvs function.
fn specific(op: Op, errno: &str) -> Option<&'static str> {
    Some(match (op, errno) {
        (Op::AddService, "EEXIST") => "Service already exists",
        (Op::AddService | Op::EditService, "ENOENT") => "Scheduler or persistence engine not found",
        (Op::EditService | Op::DeleteService | Op::Zero, "ESRCH") => "No such service",
        (Op::AddServer | Op::EditServer | Op::DeleteServer, "ESRCH") => "Service not defined",
        (Op::AddServer, "EEXIST") => "Destination already exists",
        (Op::EditServer | Op::DeleteServer, "ENOENT") => "No such destination",
        (Op::StartDaemon, "EEXIST") => "Daemon has already run",
        (Op::StopDaemon, "ESRCH") => "No daemon is running",
        _ => return None,
    })
}

/// The entries of `ipvs_strerror`'s table for any call.
fn generic(errno: &str) -> Option<&'static str> {
    Some(match errno {
        "EPERM" => "Permission denied (you must be root)",
        "EINVAL" => "Invalid operation.  Possibly wrong module version, address not unicast, ...",
        "ENOPROTOOPT" => "Protocol not available",
        "ENOMEM" => "Memory allocation problem",
        "EOPNOTSUPP" | "ENOTSUP" => "Operation not supported with IPv6",
        "EAFNOSUPPORT" => "Operation not supported with specified address family",
        "EMSGSIZE" => "Module is wrong version",
        _ => return None,
    })
}

/// glibc 2.36 `strerror` for the errno names a daemon may plausibly report.
fn strerror(errno: &str) -> Option<&'static str> {
    Some(match errno {
        "ENOENT" => "No such file or directory",
        "ESRCH" => "No such process",
        "EINTR" => "Interrupted system call",
        "EIO" => "Input/output error",
        "ENXIO" => "No such device or address",
        "E2BIG" => "Argument list too long",
        "EBADF" => "Bad file descriptor",
        "EAGAIN" | "EWOULDBLOCK" => "Resource temporarily unavailable",
        "EACCES" => "Permission denied",
        "EFAULT" => "Bad address",
        "EBUSY" => "Device or resource busy",
        "EEXIST" => "File exists",
        "ENODEV" => "No such device",
        "ENOSPC" => "No space left on device",
        "ERANGE" => "Numerical result out of range",
        "EDOM" => "Numerical argument out of domain",
        "ENOSYS" => "Function not implemented",
        "EOVERFLOW" => "Value too large for defined data type",
        "EPROTONOSUPPORT" => "Protocol not supported",
        "ENOBUFS" => "No buffer space available",
        "ENOTCONN" => "Transport endpoint is not connected",
        "ETIMEDOUT" => "Connection timed out",
        "ECONNREFUSED" => "Connection refused",
        "EADDRINUSE" => "Address already in use",
        "EADDRNOTAVAIL" => "Cannot assign requested address",
        "ENETDOWN" => "Network is down",
        "ENETUNREACH" => "Network is unreachable",
        "ENOTEMPTY" => "Directory not empty",
        "ENOLINK" => "Link has been severed",
        "EPROTO" => "Protocol error",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_api::ErrorKind;

    fn err(errno: Option<&str>) -> ApiError {
        let e = ApiError::new(ErrorKind::Invalid, "daemon says no");
        match errno {
            Some(n) => e.with_errno(n),
            None => e,
        }
    }

    #[test]
    fn table_is_keyed_on_the_call() {
        let m = |op, n| error_message(op, &err(Some(n)));
        assert_eq!(m(Op::AddService, "EEXIST"), "Service already exists");
        assert_eq!(m(Op::EditService, "EEXIST"), "File exists");
        assert_eq!(
            m(Op::AddService, "ENOENT"),
            "Scheduler or persistence engine not found"
        );
        assert_eq!(
            m(Op::EditService, "ENOENT"),
            "Scheduler or persistence engine not found"
        );
        assert_eq!(m(Op::DeleteService, "ENOENT"), "No such file or directory");
        assert_eq!(m(Op::EditService, "ESRCH"), "No such service");
        assert_eq!(m(Op::DeleteService, "ESRCH"), "No such service");
        assert_eq!(m(Op::Zero, "ESRCH"), "No such service");
        assert_eq!(m(Op::AddService, "ESRCH"), "No such process");
        assert_eq!(m(Op::AddServer, "ESRCH"), "Service not defined");
        assert_eq!(m(Op::EditServer, "ESRCH"), "Service not defined");
        assert_eq!(m(Op::DeleteServer, "ESRCH"), "Service not defined");
        assert_eq!(m(Op::AddServer, "EEXIST"), "Destination already exists");
        assert_eq!(m(Op::EditServer, "ENOENT"), "No such destination");
        assert_eq!(m(Op::DeleteServer, "ENOENT"), "No such destination");
        assert_eq!(m(Op::AddServer, "ENOENT"), "No such file or directory");
        assert_eq!(m(Op::Clear, "ESRCH"), "No such process");
        assert_eq!(m(Op::StartDaemon, "EEXIST"), "Daemon has already run");
        assert_eq!(m(Op::StopDaemon, "ESRCH"), "No daemon is running");
        assert_eq!(m(Op::StartDaemon, "ESRCH"), "No such process");
        assert_eq!(m(Op::StopDaemon, "EEXIST"), "File exists");
        assert_eq!(m(Op::StartDaemon, "ENODEV"), "No such device");
        assert_eq!(m(Op::StartDaemon, "ENETUNREACH"), "Network is unreachable");
        assert_eq!(
            m(Op::AddServer, "EINVAL"),
            "Invalid operation.  Possibly wrong module version, address not unicast, ..."
        );
        assert_eq!(
            m(Op::SetTimeouts, "EPERM"),
            "Permission denied (you must be root)"
        );
        assert_eq!(m(Op::EditServer, "ERANGE"), "Numerical result out of range");
        assert_eq!(m(Op::AddService, "EWHATEVER"), "daemon says no");
        assert_eq!(error_message(Op::AddService, &err(None)), "daemon says no");
    }
}
