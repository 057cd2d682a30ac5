//! Exit codes, after sysexits(3), and the mapping from wire error kinds.
//! The table is documented in docs/OPERATIONS.md and docs/PROTOCOL.md.

use std::process::ExitCode;

use marble_proto::ErrorKind;

/// marblectl's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// The request does not fit the current state (e.g. already running).
    Failure = 1,
    /// Unknown VM (the message lists the known ones).
    NotFound = 2,
    /// Bad command line or request.
    Usage = 64,
    /// Stored data failed a check: checksum, corrupt object, unsafe archive entry
    /// (EX_DATAERR).
    DataErr = 65,
    /// marbled unreachable or a dependency unavailable.
    Unavailable = 69,
    /// Internal error.
    Software = 70,
    /// A file or directory could not be created, or the disk has no room for it (EX_CANTCREAT).
    CantCreate = 73,
    /// Reading or writing a file failed (EX_IOERR).
    IoErr = 74,
    /// Busy with a CI job or timed out: try again later or elsewhere (EX_TEMPFAIL).
    TempFail = 75,
    /// Locked, in maintenance, or not permitted (EX_NOPERM).
    NoPerm = 77,
}

impl From<Exit> for ExitCode {
    fn from(code: Exit) -> Self {
        ExitCode::from(code as u8)
    }
}

/// The exit code for a wire error kind.
pub fn for_kind(kind: ErrorKind) -> Exit {
    match kind {
        ErrorKind::InvalidRequest => Exit::Usage,
        ErrorKind::NotFound => Exit::NotFound,
        ErrorKind::InvalidState => Exit::Failure,
        ErrorKind::Busy | ErrorKind::Timeout => Exit::TempFail,
        ErrorKind::PermissionDenied | ErrorKind::Locked => Exit::NoPerm,
        ErrorKind::Unavailable | ErrorKind::Unsupported => Exit::Unavailable,
        ErrorKind::Internal => Exit::Software,
        ErrorKind::DataError => Exit::DataErr,
        ErrorKind::NoSpace => Exit::CantCreate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_slot_contract_codes() {
        assert_eq!(for_kind(ErrorKind::Busy) as u8, 75);
        assert_eq!(for_kind(ErrorKind::Locked) as u8, 77);
        assert_eq!(for_kind(ErrorKind::NotFound) as u8, 2);
        assert_eq!(for_kind(ErrorKind::Unavailable) as u8, 69);
        assert_eq!(for_kind(ErrorKind::DataError) as u8, 65);
        assert_eq!(for_kind(ErrorKind::NoSpace) as u8, 73);
    }
}
