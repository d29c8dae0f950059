"""Compiled kernels (numba) behind ``tgd_core.topology``.

- H0 of the sublevel filtration of a 1-D signal on the path graph (paper mode), on uint8 levels:
  O(L) per signal with one monotonic stack, the bars in ripser's order (a counting sort by death),
  and their persistence images summed exactly as persim sums them (bit-for-bit equal).
  Optionally (``grouped``) the same PI summed with the points grouped by birth level: equal
  up to rounding, several times less work.
- H0 and H1 of the 2-D cubical sublevel filtration: H0 by union-find over pixels in increasing
  order with the elder rule; H1 by Alexander duality, as the H0 of the superlevel filtration of
  the complement with the dual connectivity and one extra "outside" node (Garin et al., "Duality
  in persistent homology of images", 2020).
- Persistence images as sums of separable Gaussians: per point, a birth factor times a
  persistence factor.

Everything is batched over images with ``prange`` (threads) and written for exactness first:
diagrams are exact, paper-mode PIs equal persim's bit for bit, and the cubical PIs follow the
reference formulas.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

# the register tile of the persim-order sums, shared with the C kernel
from tgd_core.topology._ckernel import TILE_COLS, TILE_ROWS

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
# Paper mode: 1-D H0 on uint8 levels, in ripser's order, and exact persistence images
# ---------------------------------------------------------------------------------------------

_NONE = 1 << 30  # "no value" for the stack minima (above every level)


@njit(cache=True, nogil=True)
def h0_path_bars(levels, n, min_death, stack_val, stack_min, stack_pos, births, deaths, edges):
    """Finite H0 bars of the sublevel filtration of ``levels[:n]`` on the path graph, in O(n),
    those with death ≥ ``min_death[birth]`` (the threshold as a first kept death level per
    birth level: persistence grows with the death level); returns their count.

    Vertex i enters at levels[i], edge (i-1, i) at max(levels[i-1], levels[i]). ripser
    processes the edges by increasing value, ties by decreasing index; on a path every edge
    joins two components. Edge (v-1, v) of value D = levels[v] > levels[v-1] joins the run of
    vertices below D that ends at v-1 (the edges inside it came earlier: smaller values) with
    the run of vertices at most D that starts at v (equal-valued edges to its right came
    earlier: larger indices); the younger component, whose minimum is the larger of the two
    run minima, dies at D (elder rule). Other edges give no bar (or a zero-length one).

    One monotonic stack: vertex i pops the vertices of lower value; ``stack_min`` holds, per
    vertex, the minimum of the run below it on its left, and what a vertex pops is the run at
    or below it on its right, complete when a higher vertex pops it. Bars are written as
    (birth, death) levels with their edge index in ``edges``, in no particular order (see
    :func:`ripser_order`). The ``stack_*`` arrays are scratch of at least n entries.
    """
    top = -1
    count = 0
    for i in range(n + 1):
        v = levels[i] if i < n else _NONE
        m = _NONE  # minimum of what i pops: values < v between the vertex below and i
        while top >= 0 and stack_val[top] < v:
            d = stack_val[top]
            b = max(stack_min[top], m)  # _NONE when either run is empty
            if b < d and d >= min_death[b]:
                births[count] = b
                deaths[count] = d
                edges[count] = stack_pos[top] - 1
                count += 1
            m = min(m, stack_min[top], d)
            top -= 1
        if i < n:
            top += 1
            stack_val[top] = v
            stack_min[top] = m
            stack_pos[top] = i
    return count


@njit(cache=True, nogil=True)
def ripser_order(births, deaths, edges, count, bucket, out_b, out_d, out_e):
    """Sort bars as ripser emits them: by death level (a counting sort), ties by decreasing
    edge index (insertion sort within each death level: few bars share one). ``bucket``: 257
    entries of scratch."""
    bucket[:] = 0
    for j in range(count):
        bucket[deaths[j] + 1] += 1
    for level in range(256):
        bucket[level + 1] += bucket[level]
    for j in range(count):
        pos = bucket[deaths[j]]
        bucket[deaths[j]] += 1
        out_b[pos] = births[j]
        out_d[pos] = deaths[j]
        out_e[pos] = edges[j]
    for j in range(1, count):
        b, d, e = out_b[j], out_d[j], out_e[j]
        i = j - 1
        while i >= 0 and out_d[i] == d and out_e[i] < e:
            out_b[i + 1], out_d[i + 1], out_e[i + 1] = out_b[i], out_d[i], out_e[i]
            i -= 1
        out_b[i + 1], out_d[i + 1], out_e[i + 1] = b, d, e


@njit(cache=True, nogil=True)
def bar_scratch(n):
    """Scratch of :func:`_kept_bars_in_order` for signals of up to n values: (7 × n stack and
    bar rows, 257 death buckets, n births, n deaths), int32 (levels, indices and counts)."""
    return (np.empty((7, n), np.int32), np.empty(257, np.int32), np.empty(n, np.int32),
            np.empty(n, np.int32))


@njit(cache=True, nogil=True)
def _load_scan(image, scan, levels):
    """Signal ``scan`` of an H×W×3 uint8 image into ``levels``: scans 0-2 are the row-major
    flattens of channels R, G, B, scans 3-5 the flattens of their transposes (column scans)."""
    h, w = image.shape[0], image.shape[1]
    ch = scan % 3
    k = 0
    if scan < 3:
        for y in range(h):
            for x in range(w):
                levels[k] = image[y, x, ch]
                k += 1
    else:
        for x in range(w):
            for y in range(h):
                levels[k] = image[y, x, ch]
                k += 1


@njit(cache=True, nogil=True)
def _kept_bars_in_order(levels, n, min_death, scratch, bucket, kb, kd):
    """The bars of ``levels[:n]`` that ``min_death`` keeps, in ripser's order, into kb/kd;
    returns how many. Scratch from :func:`bar_scratch`."""
    k = h0_path_bars(levels, n, min_death, scratch[0], scratch[1], scratch[2], scratch[3],
                     scratch[4], scratch[5])
    ripser_order(scratch[3], scratch[4], scratch[5], k, bucket, kb, kd, scratch[6])
    return k


#: Scale of a tile's lower bound to a threshold below half an ulp of every pixel sum in it.
_HALF_ULP_SCALE = 2.0 ** -54


_VEC4 = ir.VectorType(ir.DoubleType(), 4)


def _splat(builder, value):
    """LLVM IR: a 4-wide vector of ``value``."""
    i32 = ir.IntType(32)
    one = builder.insert_element(ir.Constant(_VEC4, ir.Undefined), value, i32(0))
    return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(i32, 4), [0] * 4))


def _element_ptr(context, builder, signature, args, array, offset):
    """LLVM IR: the address of element ``args[offset]`` of the array ``args[array]``."""
    arr = context.make_array(signature.args[array])(context, builder, args[array])
    return builder.gep(arr.data, [args[offset]])


def _vector_ptr(builder, pointer, index=0):
    """LLVM IR: ``pointer + index`` (float64 elements) as a pointer to a 4-wide vector."""
    return builder.bitcast(builder.gep(pointer, [ir.IntType(64)(index)]), _VEC4.as_pointer())


@intrinsic
def _tile_add_terms(typingctx, pi, offset, stride, tx, x_off, ty, y_off, w):
    """pi[offset + r·stride + c] += (tx[x_off + c] · ty[y_off + r]) · w for every r <
    TILE_ROWS, c < TILE_COLS: persim's term of one point on one tile, as explicit 4-wide
    float64 vectors (IEEE multiplies and adds, no contraction: the same bits as the scalar
    expression). 1-D C-contiguous float64 arrays; the caller keeps the offsets in bounds."""
    sig = types.void(pi, offset, stride, tx, x_off, ty, y_off, w)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        tile_p, x_p, y_p = (_element_ptr(context, builder, signature, args, array, offset)
                            for array, offset in ((0, 1), (3, 4), (5, 6)))
        wv = _splat(builder, args[7])
        xs = [builder.load(_vector_ptr(builder, x_p, 4 * j), align=8)
              for j in range(TILE_COLS // 4)]
        for r in range(TILE_ROWS):
            yv = _splat(builder, builder.load(builder.gep(y_p, [i64(r)])))
            row_p = builder.gep(tile_p, [builder.mul(args[2], i64(r))])
            for j, xv in enumerate(xs):
                ptr = _vector_ptr(builder, row_p, 4 * j)
                term = builder.fmul(builder.fmul(xv, yv), wv)
                builder.store(builder.fadd(builder.load(ptr, align=8), term), ptr, align=8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _fma4(typingctx, dst, d_off, src, s_off, scale):
    """dst[d_off + i] = fma(src[s_off + i], scale, dst[d_off + i]) for i < 4, one 4-wide fused
    multiply-add (float64; 1-D C-contiguous arrays, offsets in bounds)."""
    sig = types.void(dst, d_off, src, s_off, scale)

    def codegen(context, builder, signature, args):
        dst_p, src_p = (_vector_ptr(builder, _element_ptr(context, builder, signature, args,
                                                          array, offset))
                        for array, offset in ((0, 1), (2, 3)))
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC4, [_VEC4] * 3),
                                             "llvm.fma.v4f64")
        total = builder.call(fma, [builder.load(src_p, align=8), _splat(builder, args[4]),
                                   builder.load(dst_p, align=8)])
        builder.store(total, dst_p, align=8)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def _accumulate_pi(kb, kd, k, pers, yid, tiles, acc, lower):
    """``acc`` (overwritten; the PI padded with zeros to whole tiles, flat, row-major) = the PI
    of the k points, summed exactly as persim sums it.

    Point p at (birth b, death d) adds (tx[b, c] · ty[yid[b, d], r]) · w_p to pixel (r, c),
    with w_p = (1 / max persistence) · persistence_p: persim's ``np.outer(x_smooth,
    y_smooth) * weighting(point)`` summed point after point, the same operations in the same
    order per pixel, hence the same bits. A point visits only the tiles where both factors can
    be nonzero (outside, its terms are exactly +0.0), and skips a tile whose largest term
    T = (max tx · max ty) · w_p (rounding is monotonic, so every term is ≤ T) is below half an
    ulp of every pixel sum s in the tile: then fl(s + t) = s. The sums only grow (all terms
    are ≥ 0), and ``lower[t]``, the sum of each visiting point's smallest term on the tile
    (rounded the same way), bounds them from below; if 2^e ≤ lower < 2^(e+1), every s has half
    an ulp ≥ 2^(e-53) > fl(lower · 2^-54) (zero for subnormal bounds: no skip). On CIFAR-10
    ~7,300 tiles of 5×8 terms are computed per image (~290k terms; 14,100 tiles of 4×8 while
    the edge tiles' bounds counted the zero padding) against persim's 876k nonzero terms.
    ``tiles``: :class:`~tgd_core.topology.paper.PaperTiles`.
    """
    txp, typ, xmax, xmin, ymax, ymin, ctiles, rtiles = tiles
    n_ct = xmax.shape[1]
    pc, pr = xmax.shape[1] * TILE_COLS, ymax.shape[1] * TILE_ROWS
    maxp = 0.0
    for j in range(k):
        maxp = max(maxp, pers[kb[j], kd[j]])
    inv = 1.0 / maxp
    acc[:] = 0.0
    lower[:] = 0.0
    for j in range(k):
        b = kb[j]
        w = inv * pers[b, kd[j]]
        yi = yid[b, kd[j]]
        for rt in range(rtiles[yi, 0], rtiles[yi, 1]):
            y_big, y_small = ymax[yi, rt], ymin[yi, rt]
            for ct in range(ctiles[b, 0], ctiles[b, 1]):
                t = rt * n_ct + ct
                if (xmax[b, ct] * y_big) * w < lower[t] * _HALF_ULP_SCALE:
                    continue
                _tile_add_terms(acc, rt * TILE_ROWS * pc + ct * TILE_COLS, pc, txp,
                                b * pc + ct * TILE_COLS, typ, yi * pr + rt * TILE_ROWS, w)
                lower[t] += (xmin[b, ct] * y_small) * w


@njit(cache=True, nogil=True, fastmath={"contract"})
def _accumulate_grouped(births, deaths, k, pers, cols, yid, ty, rows, txp, acc, lo, hi, used,
                        pi):
    """``pi`` (overwritten; the PI padded to whole tiles, flat, row-major, as
    :func:`_accumulate_pi`'s) = the PI of the k points, grouped by birth level:
    PI = sum over birth levels b of tx[b] ⊗ (sum over points p born at b of w_p · ty[p]).

    The same terms as persim's, with x_b factored out of each birth's points
    (``(y · w) · x`` instead of ``(x · y) · w``): equal up to rounding (all terms are
    non-negative, so no cancellation), in float64 with fused multiply-adds. Work: points ×
    rows + births × rows × cols instead of points × rows × cols (117 points but 68 birth
    levels per CIFAR-10 scan). Each birth's outer product is added row by row in 4-wide
    fused multiply-adds over its columns rounded out to multiples of 4 (``txp``, the padded
    birth factors, is zero outside a birth's columns: fma(0, g, s) = s). Per-thread scratch:
    ``acc`` (256 × rows, all zero on entry and on return), ``lo``/``hi`` (256 each, lo = rows
    and hi = 0 on entry and on return: the row span of birth b's sum), ``used`` (256: the
    birth levels met).
    """
    n_rows = acc.shape[1]
    padded_cols = txp.shape[0] // 256
    maxp = 0.0
    for j in range(k):
        maxp = max(maxp, pers[births[j], deaths[j]])
    inv = 1.0 / maxp
    n_used = 0
    for j in range(k):
        b = births[j]
        yi = yid[b, deaths[j]]
        r0, r1 = rows[yi, 0], rows[yi, 1]
        if cols[b, 1] <= cols[b, 0] or r1 <= r0:
            continue  # a factor is zero everywhere: the point adds nothing
        if hi[b] == 0:
            used[n_used] = b
            n_used += 1
        lo[b] = min(lo[b], r0)
        hi[b] = max(hi[b], r1)
        wgt = inv * pers[b, deaths[j]]
        yrow = ty[yi, r0:r1]
        group = acc[b, r0:r1]
        for r in range(yrow.shape[0]):
            group[r] += yrow[r] * wgt
    pi[:] = 0.0
    for u in range(n_used):
        b = used[u]
        c0 = cols[b, 0] // 4 * 4
        n_vec = (cols[b, 1] - c0 + 3) // 4
        for r in range(lo[b], hi[b]):
            g = acc[b, r]
            for q in range(n_vec):
                _fma4(pi, r * padded_cols + c0 + 4 * q, txp, b * padded_cols + c0 + 4 * q, g)
        acc[b, lo[b]:hi[b]] = 0.0
        lo[b] = n_rows
        hi[b] = 0


#: Images per task of the parallel loop (each task allocates its scratch once).
PAPER_CHUNK = 16


@njit(cache=True, parallel=True, nogil=True)
def paper_pis_kernel(images, tables, tiles, grouped, write_raw, raw, out_u8):
    """Persistence images of the six H0 diagrams (see :func:`_load_scan`) of each N×H×W×3
    uint8 image: ``raw`` (N×6×R×C float64, when ``write_raw``) and ``out_u8`` (N×6×R×C,
    :func:`_uint8_image`).

    Per image and scan: the bars the threshold keeps (:func:`h0_path_bars`), their PI in a
    per-task padded scratch PI, then its uint8 image and (``write_raw``) its float64 values
    (:func:`_untile`). The PI is persim's sum (:func:`_accumulate_pi` in tiles, the bars first
    put in ripser's order by :func:`ripser_order`: bit for bit) or, with ``grouped``, the same
    sum grouped by birth (:func:`_accumulate_grouped`: equal up to rounding, in any bar
    order). ``tables``:
    :class:`~tgd_core.topology.paper.PaperTables`; ``tiles``: the same factors per tile
    (:class:`~tgd_core.topology.paper.PaperTiles`). Call it under ``numba.parallel_chunksize(1)``
    for an even load: a thread takes the next task of PAPER_CHUNK images when done.
    """
    n_img = images.shape[0]
    n_chunks = (n_img + PAPER_CHUNK - 1) // PAPER_CHUNK
    for chunk in prange(n_chunks):
        start, stop = chunk * PAPER_CHUNK, min(n_img, (chunk + 1) * PAPER_CHUNK)
        if grouped:
            _grouped_task(images, tables, tiles, write_raw, raw, out_u8, start, stop)
        else:
            _persim_task(images, tables, tiles, write_raw, raw, out_u8, start, stop)


@njit(cache=True, nogil=True)
def _persim_task(images, tables, tiles, write_raw, raw, out_u8, start, stop):
    """:func:`paper_pis_kernel` on images [start, stop) in persim's order."""
    length = images.shape[1] * images.shape[2]
    n_rows, n_cols = out_u8.shape[2], out_u8.shape[3]
    padded_cols = tiles.xmax.shape[1] * TILE_COLS
    levels = np.empty(length, np.int32)
    scratch, bucket, kb, kd = bar_scratch(length)
    acc = np.empty(tiles.ymax.shape[1] * TILE_ROWS * padded_cols, np.float64)
    lower = np.empty(tiles.xmax.shape[1] * tiles.ymax.shape[1], np.float64)
    img = np.empty(n_rows * n_cols if write_raw else 0, np.float64)
    for n in range(start, stop):
        for s in range(6):
            if write_raw:
                img = raw[n, s].reshape(n_rows * n_cols)
            _load_scan(images[n], s, levels)
            k = _kept_bars_in_order(levels, length, tables.min_death, scratch, bucket, kb, kd)
            if k > 0:
                _accumulate_pi(kb, kd, k, tables.pers, tables.yid, tiles, acc, lower)
            else:
                acc[:] = 0.0
            _untile(acc, padded_cols, write_raw, img, out_u8[n, s])


@njit(cache=True, nogil=True)
def _grouped_task(images, tables, tiles, write_raw, raw, out_u8, start, stop):
    """:func:`paper_pis_kernel` on images [start, stop), summed by birth level."""
    length = images.shape[1] * images.shape[2]
    n_rows, n_cols = out_u8.shape[2], out_u8.shape[3]
    padded_cols = tiles.xmax.shape[1] * TILE_COLS
    levels = np.empty(length, np.int32)
    scratch, _, kb, kd = bar_scratch(length)
    pi = np.empty(tiles.ymax.shape[1] * TILE_ROWS * padded_cols, np.float64)
    img = np.empty(n_rows * n_cols if write_raw else 0, np.float64)
    acc = np.zeros((256, n_rows), np.float64)
    lo = np.full(256, n_rows, np.int64)
    hi = np.zeros(256, np.int64)
    used = np.empty(256, np.int64)
    for n in range(start, stop):
        for s in range(6):
            if write_raw:
                img = raw[n, s].reshape(n_rows * n_cols)
            _load_scan(images[n], s, levels)
            k = h0_path_bars(levels, length, tables.min_death, scratch[0], scratch[1],
                             scratch[2], kb, kd, scratch[3])
            if k > 0:
                _accumulate_grouped(kb, kd, k, tables.pers, tables.cols, tables.yid, tables.ty,
                                    tables.rows, tiles.txp, acc, lo, hi, used, pi)
            else:
                pi[:] = 0.0
            _untile(pi, padded_cols, write_raw, img, out_u8[n, s])


@njit(cache=True, nogil=True, fastmath={"nnan", "nsz", "reassoc"})
def _max(values):
    """The largest of ``values`` (finite, not NaN: reassociating a maximum is exact)."""
    m = 0.0
    for v in values:
        m = v if v > m else m
    return m


@njit(cache=True, nogil=True)
def _untile(acc, padded_cols, write_raw, img, out):
    """A padded PI (:func:`_accumulate_pi`, rows of ``padded_cols``) into ``img`` (flat R×C,
    when ``write_raw``) and its uint8 image ``out`` (R×C), as :func:`_uint8_image` computes
    it (the padding is zero: it changes no maximum)."""
    n_rows, n_cols = out.shape
    m = _max(acc)
    for r in range(n_rows):
        row = acc[r * padded_cols:r * padded_cols + n_cols]
        if write_raw:
            img[r * n_cols:(r + 1) * n_cols] = row
        pixels = out[r]
        for c in range(n_cols):
            pixels[c] = np.uint8((row[c] / m) * 255.0) if m > 0.0 else 0


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
