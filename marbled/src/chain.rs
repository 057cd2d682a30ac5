//! Error chains: [`ErrorChain`] displays an error and its sources joined by ": " (how every
//! log line and failure message shows an error), [`to_wire`] turns one into a
//! [`WireError`], and [`WireKind`] gives a domain error the [`ErrorKind`] its wire error (and
//! so marblectl's or marbled's exit code) carries.

use std::error::Error;
use std::fmt;

use marble_proto::{ErrorKind, WireError};

/// Display of an error followed by each of its sources, joined by ": "
/// (`cannot load persisted state: cannot read /x: No such file or directory`).
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl ErrorChain<'_> {
    /// The messages of the error and its sources, outermost first.
    pub fn messages(&self) -> Vec<String> {
        let mut out = vec![self.0.to_string()];
        let mut cur = self.0.source();
        while let Some(e) = cur {
            out.push(e.to_string());
            cur = e.source();
        }
        out
    }
}

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(e) = cur {
            write!(f, ": {e}")?;
            cur = e.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The messages of an error and its sources, outermost first.
pub fn error_chain(err: &(dyn Error + 'static)) -> Vec<String> {
    ErrorChain(err).messages()
}

/// Convert an internal error into a wire error with the given kind and full chain.
pub fn to_wire(kind: ErrorKind, err: &(dyn Error + 'static)) -> WireError {
    let mut chain = error_chain(err);
    let message = chain.remove(0);
    WireError {
        kind,
        message,
        chain,
    }
}

/// An error that knows its wire [`ErrorKind`] (the kind decides the exit code).
pub trait WireKind: Error + 'static {
    /// The kind this error is reported with.
    fn kind(&self) -> ErrorKind;

    /// The wire error: [`Self::kind`] with the whole chain.
    fn to_wire(&self) -> WireError
    where
        Self: Sized,
    {
        to_wire(self.kind(), self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer {0}")]
    struct Outer(u32, #[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    fn sample() -> Outer {
        Outer(1, Middle(std::io::Error::other("inner")))
    }

    #[test]
    fn display_joins_the_error_and_its_sources() {
        let err = sample();
        assert_eq!(ErrorChain(&err).to_string(), "outer 1: middle: inner");
        assert_eq!(format!("{:?}", ErrorChain(&err)), "outer 1: middle: inner");
        assert_eq!(ErrorChain(&err).messages(), ["outer 1", "middle", "inner"]);
        let alone = std::io::Error::other("alone");
        assert_eq!(ErrorChain(&alone).to_string(), "alone");
    }

    #[test]
    fn display_equals_the_joined_messages() {
        let err = sample();
        assert_eq!(ErrorChain(&err).to_string(), error_chain(&err).join(": "));
    }

    #[test]
    fn wire_errors_carry_the_kind_message_and_chain() {
        struct Kinded(Outer);
        impl fmt::Debug for Kinded {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
        impl fmt::Display for Kinded {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
        impl Error for Kinded {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                self.0.source()
            }
        }
        impl WireKind for Kinded {
            fn kind(&self) -> ErrorKind {
                ErrorKind::Busy
            }
        }
        let wire = Kinded(sample()).to_wire();
        assert_eq!(wire.kind, ErrorKind::Busy);
        assert_eq!(wire.message, "outer 1");
        assert_eq!(wire.chain, ["middle", "inner"]);
    }
}
