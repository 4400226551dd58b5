//! Virtual time: the clock every device reads, derived either from retired instructions
//! (deterministic, the default) or paced to the host clock (interactive use).
//!
//! - **Virtual** (`--time virtual`): `now = retired instructions × NS_PER_INSTRUCTION + idle`,
//!   where `idle` is the time a halted CPU skipped to reach the next device deadline. The same
//!   guest with the same input therefore sees the same timer interrupts at the same
//!   instructions on every run, on every host — what differential testing and record/replay
//!   need. The guest sees a CPU running 100 million instructions per virtual second.
//! - **Real time** (`--time realtime`): `now` is the host's monotonic time since power-on. A
//!   halted CPU sleeps until the next deadline (or until input arrives) instead of skipping.

use std::time::{Duration, Instant};

use devices::Nanos;

/// Virtual nanoseconds one retired instruction takes in virtual-time mode (a 100 MIPS CPU).
pub const NS_PER_INSTRUCTION: u64 = 10;

/// How virtual time relates to the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeMode {
    /// Derived from retired instructions: deterministic.
    Virtual,
    /// Paced to the host's monotonic clock.
    Realtime,
}

/// The machine's clock.
#[derive(Debug)]
pub struct Clock {
    mode: TimeMode,
    /// Virtual mode: time skipped while halted.
    idle: Nanos,
    /// Real-time mode: the host instant of power-on.
    start: Instant,
}

impl Clock {
    /// A clock starting at 0 in `mode`.
    pub fn new(mode: TimeMode) -> Clock {
        Clock { mode, idle: 0, start: Instant::now() }
    }

    /// The mode.
    pub fn mode(&self) -> TimeMode {
        self.mode
    }

    /// Virtual time now, given the instructions retired so far.
    #[inline]
    pub fn now(&self, retired: u64) -> Nanos {
        match self.mode {
            TimeMode::Virtual => retired.saturating_mul(NS_PER_INSTRUCTION).saturating_add(self.idle),
            TimeMode::Realtime => self.start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64,
        }
    }

    /// Virtual mode: the first retired-instruction count at which `now` reaches `deadline` (an
    /// instruction starting at a smaller count runs before the deadline). `None` in real time,
    /// where time does not follow the count.
    pub fn retired_at(&self, deadline: Nanos) -> Option<u64> {
        match self.mode {
            TimeMode::Virtual => Some(deadline.saturating_sub(self.idle).div_ceil(NS_PER_INSTRUCTION)),
            TimeMode::Realtime => None,
        }
    }

    /// The CPU is halted until `deadline`: skip to it (virtual) or wait for it, at most
    /// `max_wait` of host time so input can be polled (real time). Returns the new `now`.
    pub fn idle_until(&mut self, retired: u64, deadline: Nanos, max_wait: Duration) -> Nanos {
        let now = self.now(retired);
        if deadline <= now {
            return now;
        }
        match self.mode {
            TimeMode::Virtual => {
                self.idle += deadline - now;
            }
            TimeMode::Realtime => {
                std::thread::sleep(Duration::from_nanos(deadline - now).min(max_wait));
            }
        }
        self.now(retired)
    }

    /// Resets to power-on time 0 (a machine reset keeps time running on a PC; bt86 keeps it
    /// too, so this is only for a new machine).
    pub fn restart(&mut self) {
        self.idle = 0;
        self.start = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_time_follows_instructions_and_idle_skips() {
        let mut c = Clock::new(TimeMode::Virtual);
        assert_eq!(c.now(0), 0);
        assert_eq!(c.now(1000), 10_000);
        assert_eq!(c.idle_until(1000, 50_000, Duration::ZERO), 50_000);
        assert_eq!(c.now(1001), 50_010);
        // A deadline in the past changes nothing.
        assert_eq!(c.idle_until(1001, 10, Duration::ZERO), 50_010);
    }

    #[test]
    fn retired_at_is_the_first_count_at_the_deadline() {
        let mut c = Clock::new(TimeMode::Virtual);
        c.idle_until(0, 5, Duration::ZERO);
        for deadline in [0, 5, 6, 14, 15, 16, 1_000_005] {
            let r = c.retired_at(deadline).unwrap();
            assert!(c.now(r) >= deadline, "{deadline}");
            assert!(r == 0 || c.now(r - 1) < deadline, "{deadline}");
        }
        assert_eq!(Clock::new(TimeMode::Realtime).retired_at(100), None);
    }

    #[test]
    fn real_time_is_monotonic() {
        let c = Clock::new(TimeMode::Realtime);
        let a = c.now(0);
        let b = c.now(0);
        assert!(b >= a);
    }
}
