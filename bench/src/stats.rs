//! Summaries of repeated measurements: min, median, max (and p99 for long series).

use serde::Serialize;

/// A series of measurements boiled down.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// How many values.
    pub n: usize,
    /// The smallest.
    pub min: f64,
    /// The median (mean of the two middle values for an even count).
    pub median: f64,
    /// The largest.
    pub max: f64,
    /// The 99th percentile (nearest rank).
    pub p99: f64,
    /// The arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// Summarizes `values`; all zero for an empty series.
    pub fn of(values: &[f64]) -> Self {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        if n == 0 {
            return Self {
                n,
                min: 0.0,
                median: 0.0,
                max: 0.0,
                p99: 0.0,
                mean: 0.0,
            };
        }
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let rank = ((0.99 * n as f64).ceil() as usize).clamp(1, n);
        Self {
            n,
            min: sorted[0],
            median,
            max: sorted[n - 1],
            p99: sorted[rank - 1],
            mean: sorted.iter().sum::<f64>() / n as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn median_of_odd_and_even_series() {
        let odd = Summary::of(&[3.0, 1.0, 2.0]);
        assert_eq!((odd.min, odd.median, odd.max), (1.0, 2.0, 3.0));
        let even = Summary::of(&[4.0, 1.0, 2.0, 3.0]);
        assert_eq!(even.median, 2.5);
        assert_eq!(even.p99, 4.0);
    }

    #[test]
    fn p99_is_nearest_rank() {
        let values: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(Summary::of(&values).p99, 990.0);
        assert_eq!(Summary::of(&[]).n, 0);
    }
}
