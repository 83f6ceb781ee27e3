//! The one error type of this crate.

/// Why a [`Replica`](crate::Replica) refused a change batch.
///
/// A batch that is *older* than the replica (its seq is at or below the replica's) is not
/// an error: it is ignored and reported as [`ApplyOutcome::AlreadyHad`](crate::ApplyOutcome).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorldError {
    /// A batch arrived before the replica received its first snapshot.
    #[error("change batch (epoch {epoch}, seq {seq}) before any snapshot")]
    NotSynced {
        /// The batch's epoch.
        epoch: u64,
        /// The batch's seq.
        seq: u64,
    },
    /// The batch belongs to another history than the replica's: resync from a snapshot.
    #[error("change batch of epoch {got}, replica is at epoch {expected}")]
    EpochMismatch {
        /// The replica's epoch.
        expected: u64,
        /// The batch's epoch.
        got: u64,
    },
    /// Batches are missing between the replica and this batch: resync from a snapshot.
    #[error("gap in sequence: expected seq {expected}, got {got}")]
    Gap {
        /// The seq the replica needed next.
        expected: u64,
        /// The batch's seq.
        got: u64,
    },
}
