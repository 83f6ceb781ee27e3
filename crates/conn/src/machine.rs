//! The one contract of every sans-I/O machine in the workspace.

use crate::Instant;

/// The input a shell feeds when the instant a machine asked for in
/// [`Machine::poll_timeout`] has come. Every machine's input type converts from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeout;

/// A sans-I/O machine: inputs in, outputs out, time passed in.
///
/// A shell's loop is always the same:
/// 1. feed what happened with [`handle`](Self::handle)`(now, input)` (bytes, a connection
///    opened or lost, or [`Timeout`] when the instant from `poll_timeout` has come);
/// 2. take every output with [`poll_output`](Self::poll_output) and do it (write bytes,
///    close, connect);
/// 3. sleep until something happens or until [`poll_timeout`](Self::poll_timeout), never on
///    a fixed tick.
///
/// A machine never reads a clock, a random source or a socket: the same `(now, input)`
/// stream gives the same outputs, which is what record/replay and the simulator rely on.
pub trait Machine {
    /// What happens to the machine.
    type Input: From<Timeout>;
    /// What the machine asks its shell to do.
    type Output;

    /// Handles one input at `now`. `now` never goes backwards between calls.
    fn handle(&mut self, now: Instant, input: Self::Input);

    /// The next output, in order; `None` when there is nothing to do.
    fn poll_output(&mut self) -> Option<Self::Output>;

    /// When the machine next needs [`Timeout`] fed in, if ever. Feeding it earlier is
    /// harmless (nothing is due yet); later delays keep-alives and expiries.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Feeds [`Timeout`] if its instant has come; true if it did.
    fn handle_timeout_if_due(&mut self, now: Instant) -> bool {
        match self.poll_timeout() {
            Some(at) if at <= now => {
                self.handle(now, Timeout.into());
                true
            }
            _ => false,
        }
    }
}
