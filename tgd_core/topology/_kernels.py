"""Compiled kernels (numba) behind ``tgd_core.topology``.

- H0 of the sublevel filtration of a 1-D signal on the path graph (paper mode), on uint8 levels
  with a counting sort: O(L) per signal.
- H0 and H1 of the 2-D cubical sublevel filtration: H0 by union-find over pixels in increasing
  order with the elder rule; H1 by Alexander duality, as the H0 of the superlevel filtration of
  the complement with the dual connectivity and one extra "outside" node (Garin et al., "Duality
  in persistent homology of images", 2020).
- Persistence images as sums of separable Gaussians: per point, a birth factor times a
  persistence factor, accumulated with the points grouped by birth.

Everything is batched over images with ``prange`` (threads) and written for exactness first:
diagrams are exact, and the persistence-image arithmetic follows the reference formulas.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# ---------------------------------------------------------------------------------------------
# Union-find
# ---------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _find(parent, i):
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


# ---------------------------------------------------------------------------------------------
# Paper mode: 1-D H0 on uint8 levels
# ---------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def h0_path_levels(levels, left_min, stack_val, stack_min, births, deaths):
    """Finite H0 bars of the sublevel filtration of ``levels`` on the path graph, in O(L).

    Vertex i enters at levels[i], edge (i, i+1) at max(levels[i], levels[i+1]). Vertex i merges
    two components exactly when both its sides hold lower values before the nearest higher value
    (strictly higher on the left, higher-or-equal on the right, so each merge counts once): the
    younger component, whose minimum is the larger of the two side minima, dies at levels[i]
    (elder rule). Both side minima come from monotonic stacks, one pass each way, no sorting.

    Bars are written as (birth, death) levels (zero-length bars skipped); returns their count.
    ``left_min``, ``stack_val`` and ``stack_min`` are scratch arrays of the signal's length.
    """
    n = levels.shape[0]
    none = 1 << 30
    top = -1
    for i in range(n):
        v = levels[i]
        m = none
        while top >= 0 and stack_val[top] <= v:
            if stack_min[top] < m:
                m = stack_min[top]
            if stack_val[top] < m:
                m = stack_val[top]
            top -= 1
        left_min[i] = m
        top += 1
        stack_val[top] = v
        stack_min[top] = m
    count = 0
    top = -1
    for i in range(n - 1, -1, -1):
        v = levels[i]
        m = none
        while top >= 0 and stack_val[top] < v:
            if stack_min[top] < m:
                m = stack_min[top]
            if stack_val[top] < m:
                m = stack_val[top]
            top -= 1
        lm = left_min[i]
        if m != none and lm != none:
            b = lm if lm > m else m
            if b < v:
                births[count] = b
                deaths[count] = v
                count += 1
        top += 1
        stack_val[top] = v
        stack_min[top] = m
    return count


#: Terms below this fraction of a lower bound of the PI's maximum are skipped: together they
#: move the PI by less than float64 rounding does (< 1e-15 of its maximum).
NEGLIGIBLE = 1e-18


@njit(cache=True, parallel=True, nogil=True)
def paper_pis_kernel(signals, keep, pers, tx, tx_max, ty, ty_max, write_raw, raw, out_u8):
    """Persistence images of the H0 diagrams of ``signals`` (N×S×L uint8 levels).

    Each PI is accumulated in a per-thread buffer, then copied to ``raw`` (N×S×R×C float64, when
    ``write_raw``) and max-normalised into ``out_u8`` (N×S×R×C uint8, see
    :func:`max_normalise_uint8`); without ``write_raw`` no float array of the batch is made.

    ``keep[b, d]``: bar (b, d) passes the threshold; ``pers[b, d]``: its persistence;
    ``tx[b]``: birth factor over image columns; ``ty[b, d]``: persistence factor over image rows
    (top row = largest persistence); ``tx_max``/``ty_max``: their maxima. A PI is
    sum_p w_p * ty[p] ⊗ tx[p] with w_p = (1 / max persistence) * pers_p.

    Each term is non-negative and its maximum is w·max(ty)·max(tx), so the largest of these
    bounds the PI's maximum from below; terms under NEGLIGIBLE times that bound are skipped.
    Terms are grouped by birth: sum_b (sum_{p: birth b} w_p ty[p]) ⊗ tx[b], one matrix product.
    """
    n_img, n_sig, length = signals.shape
    n_rows = ty.shape[2]
    n_cols = tx.shape[1]
    for n in prange(n_img):
        left_min = np.empty(length, np.int64)
        stack_val = np.empty(length, np.int64)
        stack_min = np.empty(length, np.int64)
        births = np.empty(length, np.int64)
        deaths = np.empty(length, np.int64)
        bound = np.empty(length, np.float64)
        group = np.zeros((256, n_rows), np.float64)
        used = np.zeros(256, np.bool_)
        used_list = np.empty(256, np.int64)
        img = np.empty((n_rows, n_cols), np.float64)
        for s in range(n_sig):
            img[:] = 0.0
            _paper_pi(signals[n, s], keep, pers, tx, tx_max, ty, ty_max, left_min, stack_val,
                      stack_min, births, deaths, bound, group, used, used_list, img)
            if write_raw:
                raw[n, s] = img
            _uint8_image(img, out_u8[n, s])


@njit(cache=True, nogil=True)
def _paper_pi(signal, keep, pers, tx, tx_max, ty, ty_max, left_min, stack_val, stack_min,
              births, deaths, bound, group, used, used_list, img):
    """Accumulate the PI of one signal into ``img`` (zeroed); see :func:`paper_pis_kernel`."""
    n_rows = ty.shape[2]
    n_cols = tx.shape[1]
    m = h0_path_levels(signal, left_min, stack_val, stack_min, births, deaths)
    k = 0
    maxp = 0.0
    for j in range(m):
        b = births[j]
        d = deaths[j]
        if keep[b, d]:
            births[k] = b
            deaths[k] = d
            k += 1
            if pers[b, d] > maxp:
                maxp = pers[b, d]
    if k == 0:
        return
    inv = 1.0 / maxp
    lower = 0.0
    for j in range(k):
        b = births[j]
        d = deaths[j]
        bound[j] = inv * pers[b, d] * ty_max[b, d] * tx_max[b]
        if bound[j] > lower:
            lower = bound[j]
    cut = lower * NEGLIGIBLE
    # touch every cache line of the rows needed next: independent loads overlap their
    # memory latency, where the accumulation below would wait for them one at a time
    touch = 0.0
    for j in range(k):
        if bound[j] > cut:
            row = ty[births[j], deaths[j]]
            for r in range(0, n_rows, 8):
                touch += row[r]
    cut += touch * 0.0  # keeps the loads; touch is finite, so cut is unchanged
    n_used = 0
    for j in range(k):
        if bound[j] <= cut:
            continue
        b = births[j]
        d = deaths[j]
        w = inv * pers[b, d]
        if not used[b]:
            used[b] = True
            used_list[n_used] = b
            n_used += 1
            for r in range(n_rows):
                group[b, r] = 0.0
        for r in range(n_rows):
            group[b, r] += w * ty[b, d, r]
    if n_used == 0:  # every term is exactly zero (all points far outside the window)
        return
    # sum over births of group[b] ⊗ tx[b]: one small matrix product (BLAS dgemm)
    gt = np.empty((n_rows, n_used))
    tg = np.empty((n_used, n_cols))
    for u in range(n_used):
        b = used_list[u]
        used[b] = False
        for r in range(n_rows):
            gt[r, u] = group[b, r]
        for c in range(n_cols):
            tg[u, c] = tx[b, c]
    img += np.dot(gt, tg)


@njit(cache=True, nogil=True)
def _uint8_image(img, out):
    """``uint8((img / max(img)) * 255)`` (truncation) in float64; an all-zero image stays zero."""
    m = 0.0
    for r in range(img.shape[0]):
        for c in range(img.shape[1]):
            if img[r, c] > m:
                m = img[r, c]
    for r in range(img.shape[0]):
        for c in range(img.shape[1]):
            out[r, c] = np.uint8((img[r, c] / m) * 255.0) if m > 0.0 else 0


@njit(cache=True, parallel=True, nogil=True)
def max_normalise_uint8(pis, out):
    """:func:`_uint8_image` over an N×S×R×C batch."""
    for n in prange(pis.shape[0]):
        for s in range(pis.shape[1]):
            _uint8_image(pis[n, s], out[n, s])


# ---------------------------------------------------------------------------------------------
# Cubical mode: 2-D H0 and H1
# ---------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _neighbours(i, h, w, conn8, nb):
    """Write the 4- or 8-neighbours of flat pixel index i into nb; return how many."""
    y = i // w
    x = i - y * w
    k = 0
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            if dy == 0 and dx == 0:
                continue
            if not conn8 and dy != 0 and dx != 0:
                continue
            yy = y + dy
            xx = x + dx
            if 0 <= yy < h and 0 <= xx < w:
                nb[k] = yy * w + xx
                k += 1
    return k


@njit(cache=True, nogil=True)
def _union_find_h0(keys, order, h, w, conn8, outside, out_b, out_d):
    """H0 of the filtration where pixel ``order[k]`` enters k-th at ``keys[order[k]]`` (keys
    ascending) and joins its 4- or 8-neighbours already in; with ``outside``, border pixels
    also join a node present from the start (key -inf) that never dies. Elder rule: the
    component with the larger minimum key dies, giving the bar (its minimum, current key);
    zero-length bars are skipped. Returns the number of bars written."""
    n = keys.shape[0]
    parent = np.full(n + 1, -1, np.int64)
    low = np.empty(n + 1, np.float64)  # the component's minimum key
    if outside:
        parent[n] = n
        low[n] = -np.inf
    nb = np.empty(9, np.int64)
    m = 0
    for k in range(n):
        i = order[k]
        v = keys[i]
        parent[i] = i
        low[i] = v
        cnt = _neighbours(i, h, w, conn8, nb)
        if outside:
            y = i // w
            x = i - y * w
            if y == 0 or x == 0 or y == h - 1 or x == w - 1:
                nb[cnt] = n
                cnt += 1
        for t in range(cnt):
            j = nb[t]
            if parent[j] == -1:
                continue
            ra = _find(parent, i)
            rb = _find(parent, j)
            if ra == rb:
                continue
            if low[ra] < low[rb]:
                old, young = ra, rb
            else:
                old, young = rb, ra
            if low[young] < v:
                out_b[m] = low[young]
                out_d[m] = v
                m += 1
            parent[young] = old
    return m


@njit(cache=True, nogil=True)
def cubical_h0(values, order, h, w, conn8, out_b, out_d):
    """Sublevel H0 of a flat h×w image under 4- or 8-connectivity; ``order`` sorts ``values``
    ascending. Writes finite bars to out_b/out_d and returns (count, global minimum): the
    essential bar is (global minimum, inf)."""
    return _union_find_h0(values, order, h, w, conn8, False, out_b, out_d), values[order[0]]


@njit(cache=True, nogil=True)
def cubical_h1(values, order, h, w, conn8_dual, out_b, out_d):
    """Sublevel H1 of a flat h×w image by duality: the superlevel H0 of the complement.

    Pixels enter in decreasing order (keys -values) and join their ``conn8_dual`` neighbours;
    border pixels join the "outside", which never dies. A component born at its maximum M and
    dying at value v is the hole of H1 bar (v, M). ``order`` sorts ``values`` ascending.
    """
    m = _union_find_h0(-values, order[::-1], h, w, conn8_dual, True, out_d, out_b)
    for j in range(m):  # (-M, -v) -> (v, M)
        out_b[j], out_d[j] = -out_b[j], -out_d[j]
    return m


@njit(cache=True, parallel=True, nogil=True)
def cubical_batch(images, dim0, dim1, conn8, out_b, out_d, counts, mins):
    """H0 and/or H1 of each image in ``images`` (M×H×W float64).

    Bars go to out_b/out_d[M, 2, cap]; counts[M, 2] holds how many; mins[M] the global minimum.
    T-construction (pixels as top cells): H0 with 8-, H1 with 4-connectivity (``conn8=True``);
    V-construction (pixels as vertices): the reverse.
    """
    n_img, h, w = images.shape
    for n in prange(n_img):
        flat = images[n].ravel()
        order = np.argsort(flat)
        if dim0:
            cnt, mn = cubical_h0(flat, order, h, w, conn8, out_b[n, 0], out_d[n, 0])
            counts[n, 0] = cnt
            mins[n] = mn
        if dim1:
            counts[n, 1] = cubical_h1(flat, order, h, w, not conn8, out_b[n, 1], out_d[n, 1])


# ---------------------------------------------------------------------------------------------
# Persistence images of general diagrams
# ---------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def ndtr(a):
    """Standard normal CDF with the same formula as Cephes/SciPy ``ndtr``."""
    if a > 9.0:  # 1 - 0.5 erfc(a / sqrt 2) rounds to exactly 1.0 here
        return 1.0
    if a < -39.0:  # 0.5 erfc(-a / sqrt 2) underflows to exactly 0.0 here
        return 0.0
    x = a * 0.7071067811865476
    z = abs(x)
    if z < 0.7071067811865476:
        return 0.5 + 0.5 * math.erf(x)
    y = 0.5 * math.erfc(z)
    return 1.0 - y if x > 0 else y


@njit(cache=True, nogil=True)
def _gauss_factor(centre, edges, sigma, integrate, out):
    """Integrated (CDF differences over consecutive ``edges``) or sampled (density at
    ``edges``) 1-D Gaussian factor of a point at ``centre``."""
    if integrate:
        prev = ndtr((edges[0] - centre) / sigma)
        for i in range(out.shape[0]):
            cur = ndtr((edges[i + 1] - centre) / sigma)
            out[i] = cur - prev
            prev = cur
    else:
        c = 1.0 / (math.sqrt(2.0 * math.pi) * sigma)
        for i in range(out.shape[0]):
            z = (edges[i] - centre) / sigma
            out[i] = c * math.exp(-0.5 * z * z)


@njit(cache=True, parallel=True, nogil=True)
def persistence_images_kernel(births, pers, weights, offsets, bx, py, sigma, integrate, out):
    """Persistence images of many diagrams packed in (births, pers, weights) with CSR
    ``offsets``: out[k] (R×C, zeroed; row 0 = highest persistence) += w · py-factor ⊗ bx-factor.

    ``bx``/``py`` are the birth/persistence pixel edges (integrate) or sample points (sampled).
    """
    n_dgm = offsets.shape[0] - 1
    n_cols = out.shape[2]
    n_rows = out.shape[1]
    for k in prange(n_dgm):
        fx = np.empty(n_cols, np.float64)
        fy = np.empty(n_rows, np.float64)
        img = out[k]
        for p in range(offsets[k], offsets[k + 1]):
            w = weights[p]
            if w == 0.0:
                continue
            _gauss_factor(births[p], bx, sigma, integrate, fx)
            _gauss_factor(pers[p], py, sigma, integrate, fy)
            for r in range(n_rows):
                g = w * fy[n_rows - 1 - r]
                if g != 0.0:
                    for c in range(n_cols):
                        img[r, c] += g * fx[c]
