//! Small, dependency-free statistics for plugin authors: the tails and tests Warden's reference
//! plugins use, accurate enough for decisions and cheap enough to run on every call.

/// ln(n!) for a real `n ≥ 0`: summed exactly below 20, Stirling's series above (relative error
/// well under 1e-10).
pub fn ln_factorial(n: f64) -> f64 {
    if n < 20.0 {
        (1..=n as u32).map(|i| f64::from(i).ln()).sum()
    } else {
        n * n.ln() - n + 0.5 * (2.0 * std::f64::consts::PI * n).ln() + 1.0 / (12.0 * n)
            - 1.0 / (360.0 * n.powi(3))
    }
}

/// The standard normal upper tail, 1 − Φ(z) (Abramowitz–Stegun 7.1.26 on erfc; |error| < 1.5e-7).
pub fn normal_upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let erfc_abs = poly * (-x * x).exp();
    let erfc = if x >= 0.0 { erfc_abs } else { 2.0 - erfc_abs };
    0.5 * erfc
}

/// Sums a tail of probabilities that shrink geometrically (`next` gives each term from the one
/// before), stopping once a term no longer moves the sum.
fn tail_sum(first: f64, mut next: impl FnMut(f64) -> Option<f64>) -> f64 {
    let mut term = first;
    let mut sum = first;
    while term > sum * 1e-15 {
        match next(term) {
            Some(t) => {
                term = t;
                sum += t;
            }
            None => break,
        }
    }
    sum
}

/// P(X ≥ k) for X ~ Poisson(λ): summed from k upwards in log space (accurate in the far tail),
/// or, for k not above the mean, as 1 − P(X < k) (k terms, and no cancellation: the tail is
/// large there).
pub fn poisson_upper_tail(k: u32, lambda: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if f64::from(k) <= lambda + 1.0 && k <= 64 {
        let (mut term, mut below) = ((-lambda).exp(), 0.0);
        for i in 0..k {
            below += term;
            term *= lambda / f64::from(i + 1);
        }
        return (1.0 - below).clamp(0.0, 1.0);
    }
    let first = (-lambda + f64::from(k) * lambda.ln() - ln_factorial(f64::from(k))).exp();
    let mut i = f64::from(k);
    let limit = i + 10_000.0;
    tail_sum(first, |term| {
        i += 1.0;
        (i < limit).then(|| term * lambda / i)
    })
    .min(1.0)
}

/// P(X ≥ k) for X ~ Binomial(n, p), exactly: the shorter tail is summed term by term from its
/// largest term, so the result is accurate both far out in the tail and near the middle.
pub fn binomial_upper_tail(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (nf, q) = (n as f64, 1.0 - p);
    let ln_pmf = |i: u64| {
        let i = i as f64;
        ln_factorial(nf) - ln_factorial(i) - ln_factorial(nf - i) + i * p.ln() + (nf - i) * q.ln()
    };
    if k as f64 >= nf * p {
        // Upper tail from k: every later term is smaller.
        let mut i = k;
        tail_sum(ln_pmf(k).exp(), |term| {
            (i < n).then(|| {
                i += 1;
                term * (nf - i as f64 + 1.0) / i as f64 * p / q
            })
        })
        .min(1.0)
    } else {
        // 1 − P(X ≤ k − 1), summed downwards from k − 1.
        let mut i = k - 1;
        let lower = tail_sum(ln_pmf(i).exp(), |term| {
            (i > 0).then(|| {
                let t = term * i as f64 / (nf - i as f64 + 1.0) * q / p;
                i -= 1;
                t
            })
        });
        (1.0 - lower).clamp(0.0, 1.0)
    }
}

/// The median of a sample (the mean of the middle two for an even count); `None` when empty.
pub fn median(sample: &[f64]) -> Option<f64> {
    if sample.is_empty() {
        return None;
    }
    let mut sorted = sample.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// One-sided Mann–Whitney U test that `x` tends to be larger than `y`: the p-value by the normal
/// approximation with tie and continuity corrections (fine from about 10 values per sample).
/// Returns 1 when either sample is empty or every value ties.
pub fn mann_whitney_greater(x: &[f64], y: &[f64]) -> f64 {
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    if x.is_empty() || y.is_empty() {
        return 1.0;
    }
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len();
    let (mut rank_sum_x, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && all[j].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j share their average.
        let average = (i + 1 + j) as f64 / 2.0;
        let t = (j - i) as f64;
        ties += t * t * t - t;
        rank_sum_x += average * all[i..j].iter().filter(|v| v.1).count() as f64;
        i = j;
    }
    let u = rank_sum_x - n1 * (n1 + 1.0) / 2.0;
    let nf = n as f64;
    let variance = n1 * n2 / 12.0 * ((nf + 1.0) - ties / (nf * (nf - 1.0)));
    if variance <= 0.0 {
        return 1.0;
    }
    normal_upper_tail((u - n1 * n2 / 2.0 - 0.5) / variance.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn tails_match_known_values() {
        // scipy.stats.norm.sf(1.96), poisson.sf(9, 2), binom.sf(k-1, n, p).
        assert!(close(normal_upper_tail(1.96), 0.024997895, 1e-5));
        assert!(close(poisson_upper_tail(10, 2.0), 4.649807e-5, 1e-5));
        assert!(close(binomial_upper_tail(3, 10, 0.1), 0.0701908, 1e-5));
        assert!(close(
            binomial_upper_tail(1, 10, 0.1),
            1.0 - 0.9f64.powi(10),
            1e-9
        ));
        assert!(close(binomial_upper_tail(30, 1000, 0.01), 2.05999e-7, 1e-4));
        assert!(close(binomial_upper_tail(5, 1000, 0.01), 0.9713136, 1e-6));
        assert_eq!(binomial_upper_tail(0, 10, 0.5), 1.0);
        assert_eq!(binomial_upper_tail(11, 10, 0.5), 0.0);
        assert!((poisson_upper_tail(5, 2.0) - 0.052653).abs() < 1e-5);
        assert!((poisson_upper_tail(1, 2.0) - (1.0 - (-2.0f64).exp())).abs() < 1e-12);
        assert_eq!(poisson_upper_tail(0, 3.0), 1.0);
        assert!(poisson_upper_tail(200, 2.0) < 1e-200);
        // Near and below the mean, where 1 − P(X < k) is summed instead.
        assert!(close(
            poisson_upper_tail(2, 1.5),
            0.44217459962892547,
            1e-12
        ));
        assert!(close(poisson_upper_tail(3, 2.5), 0.4561868841166705, 1e-12));
        assert!(close(
            poisson_upper_tail(4, 2.5),
            0.24242386686693407,
            1e-12
        ));
        assert!(close(
            poisson_upper_tail(40, 39.5),
            0.4893902495328699,
            1e-9
        ));
        assert!((normal_upper_tail(1.959964) - 0.025).abs() < 1e-6);
        assert!((normal_upper_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_upper_tail(-1.0) - 0.841345).abs() < 1e-6);
    }

    #[test]
    fn binomial_tail_is_monotone_and_bounded() {
        let mut previous = 1.0;
        for k in 0..=200 {
            let p = binomial_upper_tail(k, 200, 0.2);
            assert!(
                (0.0..=1.0).contains(&p) && p <= previous + 1e-12,
                "k={k}: {p} after {previous}"
            );
            previous = p;
        }
    }

    #[test]
    fn mann_whitney_sees_a_shift_and_not_noise() {
        let base: Vec<f64> = (0..50).map(|i| 100.0 + f64::from(i % 10)).collect();
        let slower: Vec<f64> = base.iter().map(|v| v + 8.0).collect();
        assert!(mann_whitney_greater(&slower, &base) < 1e-6);
        assert!(mann_whitney_greater(&base, &slower) > 0.99);
        let p = mann_whitney_greater(&base, &base);
        assert!(p > 0.4 && p < 0.6, "{p}");
        assert_eq!(mann_whitney_greater(&[1.0; 20], &[1.0; 20]), 1.0);
        assert_eq!(mann_whitney_greater(&[], &base), 1.0);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
