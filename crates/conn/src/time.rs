//! The one time type of every machine: [`Instant`], nanoseconds since an origin the shell
//! chooses. Machines only compare instants and add durations; they never read a clock.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};
use core::time::Duration;

/// A point in time: nanoseconds since the shell's origin (its start, or zero of a
/// simulation's virtual clock). Arithmetic saturates instead of overflowing: 2^64 ns is
/// 584 years, so saturation only ever means "never".
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Instant {
    nanos: u64,
}

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant { nanos: 0 };
    /// The latest representable instant ("never").
    pub const MAX: Instant = Instant { nanos: u64::MAX };

    /// The instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self { nanos }
    }

    /// The instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Self {
            nanos: millis.saturating_mul(1_000_000),
        }
    }

    /// The instant `since_origin` after the origin (saturating at [`Instant::MAX`]).
    pub fn from_duration(since_origin: Duration) -> Self {
        Self {
            nanos: u64::try_from(since_origin.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// The time since the origin.
    pub const fn as_duration(self) -> Duration {
        Duration::from_nanos(self.nanos)
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }

    /// `self + by`, or `None` past [`Instant::MAX`].
    pub fn checked_add(self, by: Duration) -> Option<Instant> {
        let by = u64::try_from(by.as_nanos()).ok()?;
        self.nanos.checked_add(by).map(Instant::from_nanos)
    }

    /// `self + by`, [`Instant::MAX`] past it.
    pub fn saturating_add(self, by: Duration) -> Instant {
        self.checked_add(by).unwrap_or(Instant::MAX)
    }

    /// `self - by`, [`Instant::ZERO`] before it.
    pub fn saturating_sub(self, by: Duration) -> Instant {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        Instant::from_nanos(self.nanos.saturating_sub(by))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturating: see [`Instant::saturating_add`].
    fn add(self, by: Duration) -> Instant {
        self.saturating_add(by)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, by: Duration) {
        *self = self.saturating_add(by);
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    /// Saturating: see [`Instant::saturating_sub`].
    fn sub(self, by: Duration) -> Instant {
        self.saturating_sub(by)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturating: see [`Instant::saturating_duration_since`].
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Instant {
    /// Seconds since the origin with millisecond precision, e.g. `12.345s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Instant::MAX {
            return f.write_str("never");
        }
        let millis = self.nanos / 1_000_000;
        write!(f, "{}.{:03}s", millis / 1000, millis % 1000)
    }
}

/// The shells' bridge from the OS's monotonic clock to [`Instant`]: the origin is when the
/// clock was made. Only shells read it; machines get `now` from them.
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: std::time::Instant,
}

#[cfg(feature = "std")]
#[allow(clippy::disallowed_methods)] // The one place a shell's `now` comes from.
impl Clock {
    /// A clock whose origin is now.
    pub fn start() -> Self {
        Self {
            origin: std::time::Instant::now(),
        }
    }

    /// The process's clock: one origin (its first use) shared by every shell in the
    /// process, so instants from different tasks and connections compare.
    pub fn process() -> Self {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        Self {
            origin: *ORIGIN.get_or_init(std::time::Instant::now),
        }
    }

    /// A clock whose origin is `origin`.
    pub fn with_origin(origin: std::time::Instant) -> Self {
        Self { origin }
    }

    /// Now, as an [`Instant`] since the origin.
    pub fn now(&self) -> Instant {
        self.at(std::time::Instant::now())
    }

    /// `at` as an [`Instant`] (the origin if `at` is earlier).
    pub fn at(&self, at: std::time::Instant) -> Instant {
        Instant::from_duration(at.saturating_duration_since(self.origin))
    }

    /// The OS instant of `instant`, for a shell's `sleep_until` (far in the future for
    /// [`Instant::MAX`]).
    pub fn to_std(&self, instant: Instant) -> std::time::Instant {
        // A year ahead stands for "never" without overflowing the OS type.
        const FAR: Duration = Duration::from_secs(365 * 24 * 3600);
        let since = instant.as_duration().min(self.now().as_duration() + FAR);
        self.origin + since
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_millis(1500);
        assert_eq!(t + Duration::from_millis(500), Instant::from_millis(2000));
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(t - Duration::from_secs(10), Instant::ZERO);
        assert_eq!(t - Instant::from_millis(500), Duration::from_secs(1));
        assert_eq!(Instant::from_millis(500) - t, Duration::ZERO);
        assert_eq!(Instant::from_duration(Duration::MAX), Instant::MAX);
        assert_eq!(t.checked_add(Duration::MAX), None);
    }

    #[test]
    fn it_prints_as_seconds() {
        assert_eq!(format!("{}", Instant::from_millis(12_345)), "12.345s");
        assert_eq!(format!("{:?}", Instant::MAX), "never");
    }

    #[cfg(feature = "std")]
    #[test]
    fn the_clock_maps_both_ways() {
        let clock = Clock::start();
        let now = clock.now();
        let back = clock.at(clock.to_std(now));
        assert_eq!(back, now);
        assert!(clock.to_std(Instant::MAX) > clock.to_std(clock.now()));
    }
}
