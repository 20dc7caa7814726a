//! Sequence alignment of two key streams: Myers' O((N+M)D) greedy diff with a bound on the
//! edit distance D, and an O(n log n) longest increasing subsequence for anchored fallbacks.

/// Matched positions `(i, j)` of a longest common subsequence of `a` and `b`, increasing in
/// both, found by Myers' greedy algorithm ("An O(ND) difference algorithm", 1986): time
/// O((N+M)·D) and memory O(D²) for an edit distance D. `None` when D exceeds `max_d`, so a
/// caller can bound the cost on very different streams.
///
/// Where several alignments are equally short, matches are taken as early as possible, so an
/// extra or missing element inside a run of equal keys is placed at the run's end (after the
/// calls whose msprobe counters still agree).
pub fn myers(a: &[u64], b: &[u64], max_d: usize) -> Option<Vec<(usize, usize)>> {
    let (n, m) = (a.len() as i64, b.len() as i64);
    let max = (n + m).min(i64::try_from(max_d).unwrap_or(i64::MAX));
    // v[k + off] = furthest x reached on diagonal k = x - y; one slot of slack on each side.
    let off = max + 1;
    let mut v = vec![0i64; (2 * max + 3) as usize];
    // trace[d] holds v[-d-1 ..= d+1] as it was before round d.
    let mut trace: Vec<Vec<i64>> = Vec::new();
    for d in 0..=max {
        trace.push(v[(off - d - 1) as usize..=(off + d + 1) as usize].to_vec());
        for k in (-d..=d).step_by(2) {
            let at = |k: i64| (k + off) as usize;
            let mut x = if k == -d || (k != d && v[at(k - 1)] < v[at(k + 1)]) {
                v[at(k + 1)]
            } else {
                v[at(k - 1)] + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[at(k)] = x;
            if x >= n && y >= m {
                return Some(backtrack(&trace, n, m));
            }
        }
    }
    None
}

/// Walks the rounds of [`myers`] back from (n, m), collecting the diagonal moves.
fn backtrack(trace: &[Vec<i64>], n: i64, m: i64) -> Vec<(usize, usize)> {
    let (mut x, mut y) = (n, m);
    let mut out = Vec::new();
    for d in (0..trace.len() as i64).rev() {
        let v = &trace[d as usize];
        // v holds diagonals -d-1 ..= d+1.
        let at = |k: i64| v[(k + d + 1) as usize];
        let k = x - y;
        let prev_k = if k == -d || (k != d && at(k - 1) < at(k + 1)) {
            k + 1
        } else {
            k - 1
        };
        let prev_x = if d == 0 { 0 } else { at(prev_k) };
        let prev_y = if d == 0 { 0 } else { prev_x - prev_k };
        while x > prev_x && y > prev_y {
            x -= 1;
            y -= 1;
            out.push((x as usize, y as usize));
        }
        x = prev_x;
        y = prev_y;
    }
    out.reverse();
    out
}

/// Positions in `seq` of a longest strictly increasing subsequence (O(n log n), patience
/// sorting); the earliest such subsequence among equals.
pub fn longest_increasing(seq: &[usize]) -> Vec<usize> {
    // tails[l] = index in seq of the smallest tail of an increasing run of length l+1.
    let mut tails: Vec<usize> = Vec::new();
    let mut prev = vec![usize::MAX; seq.len()];
    for (i, &x) in seq.iter().enumerate() {
        let l = tails.partition_point(|&t| seq[t] < x);
        if l > 0 {
            prev[i] = tails[l - 1];
        }
        if l == tails.len() {
            tails.push(i);
        } else {
            tails[l] = i;
        }
    }
    let mut out = Vec::with_capacity(tails.len());
    let mut i = tails.last().copied().unwrap_or(usize::MAX);
    while i != usize::MAX {
        out.push(i);
        i = prev[i];
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Length of a longest common subsequence by dynamic programming, the reference answer.
    fn lcs_len(a: &[u64], b: &[u64]) -> usize {
        let mut t = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                t[i][j] = if a[i] == b[j] {
                    t[i + 1][j + 1] + 1
                } else {
                    t[i + 1][j].max(t[i][j + 1])
                };
            }
        }
        t[0][0]
    }

    fn check(a: &[u64], b: &[u64]) -> Vec<(usize, usize)> {
        let m = myers(a, b, usize::MAX).unwrap();
        assert_eq!(m.len(), lcs_len(a, b), "{a:?} {b:?}");
        for w in m.windows(2) {
            assert!(w[0].0 < w[1].0 && w[0].1 < w[1].1);
        }
        for &(i, j) in &m {
            assert_eq!(a[i], b[j]);
        }
        m
    }

    #[test]
    fn finds_a_longest_common_subsequence() {
        check(&[], &[]);
        check(&[1], &[]);
        check(&[], &[1, 2]);
        check(&[1, 2, 3], &[1, 2, 3]);
        check(&[1, 2, 3, 1, 2, 2, 1], &[3, 2, 1, 2, 1, 3]);
        // A pseudo-random sweep against the dynamic programme.
        let mut s = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..200 {
            let (la, lb) = ((next() % 30) as usize, (next() % 30) as usize);
            let a: Vec<u64> = (0..la).map(|_| next() % 4).collect();
            let b: Vec<u64> = (0..lb).map(|_| next() % 4).collect();
            check(&a, &b);
        }
    }

    #[test]
    fn an_extra_element_in_a_run_of_equals_goes_last() {
        // Reference: x y y z, device: x y y y z. The third y is the extra one.
        let m = check(&[0, 1, 1, 2], &[0, 1, 1, 1, 2]);
        assert_eq!(m, vec![(0, 0), (1, 1), (2, 2), (3, 4)]);
        let m = check(&[0, 1, 1, 1, 2], &[0, 1, 1, 2]);
        assert_eq!(m, vec![(0, 0), (1, 1), (2, 2), (4, 3)]);
    }

    #[test]
    fn gives_up_beyond_the_bound() {
        let a: Vec<u64> = (0..100).collect();
        let b: Vec<u64> = (100..200).collect();
        assert!(myers(&a, &b, 150).is_none());
        assert_eq!(myers(&a, &b, 200).unwrap().len(), 0);
        let mut c = a.clone();
        c.insert(50, 999);
        assert_eq!(myers(&a, &c, 1).unwrap().len(), 100);
    }

    #[test]
    fn longest_increasing_subsequence() {
        let s = [3, 1, 4, 1, 5, 9, 2, 6];
        let l = longest_increasing(&s);
        let vals: Vec<usize> = l.iter().map(|&i| s[i]).collect();
        assert_eq!(vals.len(), 4);
        assert!(vals.windows(2).all(|w| w[0] < w[1]));
        assert!(longest_increasing(&[]).is_empty());
    }
}
