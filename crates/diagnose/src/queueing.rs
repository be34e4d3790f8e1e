//! Queueing models behind the what-if answers: M/M/c with Erlang C, Little's
//! law, and the tail amplification of fan-out.
//!
//! Assumptions, stated once: M/M/c means Poisson arrivals, exponentially
//! distributed holding times and `c` identical servers taken first come first
//! served. Real holding times vary less than exponential ones, so the model
//! over-estimates waiting (for constant holding times, M/D/c, by up to about
//! 2×): read its answers as a conservative bound.

/// Erlang C: the probability that an arrival waits, for `c` servers offered
/// `a = λ·S` erlangs. `1.0` when `a ≥ c` (the queue grows without bound).
pub fn erlang_c(c: u32, a: f64) -> f64 {
    if c == 0 || !a.is_finite() || a < 0.0 {
        return 1.0;
    }
    if a >= c as f64 {
        return 1.0;
    }
    if a == 0.0 {
        return 0.0;
    }
    // Erlang B by its stable recursion, then C from B.
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (k as f64 + a * b);
    }
    let rho = a / c as f64;
    b / (1.0 - rho + rho * b)
}

/// An M/M/c queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MmcQueue {
    /// Servers (pool connections, workers, lock holders: 1).
    pub servers: u32,
    /// Mean holding time per request (s).
    pub service_s: f64,
}

impl MmcQueue {
    /// Utilisation at arrival rate `lambda` (per second).
    pub fn utilisation(&self, lambda: f64) -> f64 {
        lambda * self.service_s / self.servers as f64
    }

    /// Whether the queue is stable at `lambda` (utilisation below 1).
    pub fn stable(&self, lambda: f64) -> bool {
        self.utilisation(lambda) < 1.0
    }

    /// Probability of waiting at `lambda`.
    pub fn p_wait(&self, lambda: f64) -> f64 {
        erlang_c(self.servers, lambda * self.service_s)
    }

    /// Mean wait in the queue (s); infinite when unstable.
    pub fn mean_wait_s(&self, lambda: f64) -> f64 {
        if !self.stable(lambda) {
            return f64::INFINITY;
        }
        let rate_out = self.servers as f64 / self.service_s - lambda;
        self.p_wait(lambda) / rate_out
    }

    /// The `q` quantile of the wait (s): P(W > t) = C·e^(−(cμ−λ)t). Zero when
    /// fewer than `1 − q` of the arrivals wait at all; infinite when unstable.
    pub fn wait_quantile_s(&self, lambda: f64, q: f64) -> f64 {
        if !self.stable(lambda) {
            return f64::INFINITY;
        }
        let c = self.p_wait(lambda);
        let beyond = 1.0 - q;
        if c <= beyond {
            return 0.0;
        }
        let rate_out = self.servers as f64 / self.service_s - lambda;
        (c / beyond).ln() / rate_out
    }

    /// Smallest number of servers for which, at `lambda`, utilisation is at
    /// most `max_utilisation` and at most `max_p_wait` of the arrivals wait.
    pub fn servers_for(lambda: f64, service_s: f64, max_utilisation: f64, max_p_wait: f64) -> u32 {
        let a = lambda * service_s;
        let mut c = ((a / max_utilisation).ceil() as u32).max(1);
        while c < 100_000 {
            if erlang_c(c, a) <= max_p_wait {
                return c;
            }
            c += 1;
        }
        c
    }
}

/// Little's law: mean number in the system L = λ·W.
pub fn littles_law_in_flight(lambda: f64, time_s: f64) -> f64 {
    lambda * time_s
}

/// Fan-out tail amplification: with `n` parallel calls each fast with
/// probability `p`, the share of requests that wait for at least one slow
/// call is `1 − pⁿ`.
pub fn fan_out_slow_share(p: f64, n: f64) -> f64 {
    1.0 - p.clamp(0.0, 1.0).powf(n.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_c_matches_textbook_values() {
        // One server: C = ρ.
        assert!((erlang_c(1, 0.7) - 0.7).abs() < 1e-12);
        // c = 2, a = 1: C = 1/3.
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        // A classic call-centre table value: c = 10, a = 8 → C ≈ 0.409.
        assert!((erlang_c(10, 8.0) - 0.4092).abs() < 1e-3);
        assert_eq!(erlang_c(4, 4.0), 1.0);
        assert_eq!(erlang_c(4, 0.0), 0.0);
    }

    #[test]
    fn mm1_wait_quantile_is_the_closed_form() {
        // M/M/1, λ = 50/s, S = 10 ms: ρ = 0.5, P(W > t) = ρ e^(−(μ−λ)t).
        let q = MmcQueue {
            servers: 1,
            service_s: 0.01,
        };
        let t = q.wait_quantile_s(50.0, 0.99);
        let expected = (0.5f64 / 0.01).ln() / (100.0 - 50.0);
        assert!((t - expected).abs() < 1e-12);
        assert!((q.mean_wait_s(50.0) - 0.5 / 50.0).abs() < 1e-12);
        assert!(q.wait_quantile_s(100.0, 0.99).is_infinite());
    }

    #[test]
    fn servers_for_a_target_meets_both_limits() {
        let c = MmcQueue::servers_for(280.0, 0.02, 0.8, 0.05);
        let a = 280.0 * 0.02;
        assert!(c as f64 >= a / 0.8);
        assert!(erlang_c(c, a) <= 0.05);
        assert!(erlang_c(c - 1, a) > 0.05 || (c - 1) as f64 / 0.8 < a);
    }

    #[test]
    fn fan_out_amplification_matches_a_simulation() {
        // 10 parallel calls, each slow (beyond its own P99) with probability 1%.
        let predicted = fan_out_slow_share(0.99, 10.0);
        assert!((predicted - 0.0956).abs() < 1e-3);
        // Deterministic simulation with a small LCG: 200,000 requests.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let n = 200_000;
        let slow = (0..n).filter(|_| (0..10).any(|_| next() < 0.01)).count();
        let measured = slow as f64 / n as f64;
        assert!(
            (measured - predicted).abs() < 0.003,
            "{measured} vs {predicted}"
        );
    }
}
