/* Paper-mode persistence images in C: the algorithm of tgd_core/topology/_kernels.py
 * (persim summation), with the PI sums reordered tile by tile so each 5x8 tile's sums stay in
 * registers while the points visit it (5 rows: a 50-row PI is 10 row tiles, no padding, and
 * the skip tests of its 10 row tiles fill three vectors of four).
 *
 * Per image and scan (see _kernels._load_scan): the H0 bars of the 1-D signal that the
 * threshold keeps (one monotonic stack, _kernels.h0_path_bars), in ripser's order (counting sort
 * by death, ties by decreasing edge index: _kernels.ripser_order), then the persistence image
 * summed as persim sums it: pixel (r, c) += (tx[b, c] * ty[yid[b, d], r]) * w_p, point after
 * point, in IEEE double with no contraction (compile with -ffp-contract=off), so every pixel
 * sees the same operations in the same order as persim's np.outer(...) * weight sum: the same
 * bits. The tile-major loop changes only the order in which different pixels are summed. A
 * point skips a tile where its largest term is below half an ulp of every sum there (the tile's
 * running lower bound times 2^-54; see _kernels._accumulate_pi): fl(s + t) = s, exactly.
 *
 * Threads: every caller thread runs paper_pis() with the same shared counter and takes the next
 * PAPER_CHUNK images until none are left (dynamic scheduling without a runtime library).
 */
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TILE_ROWS 5
#define TILE_COLS 8
#define PAPER_CHUNK 16
#define NONE_LEVEL (1 << 30)
#define HALF_ULP_SCALE 5.551115123125783e-17 /* 2^-54 */

#define ROW_GROUP 12 /* row tiles whose skip tests run together (a multiple of 4) */
#ifndef STAGES
#define STAGES 4 /* builds with -DSTAGES=1..3 stop after that stage (for profiling only):
                    1 bars, 2 in ripser's order, 3 PI sums, 4 uint8 and float64 PIs */
#endif

typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4di __attribute__((vector_size(32)));

/* The factors of PaperTables/PaperTiles (tgd_core/topology/paper.py), read-only. */
typedef struct {
    const int32_t *min_death; /* [256] */
    const double *pers;       /* [256][256] */
    const int32_t *yid;       /* [256][256] */
    const double *txp;        /* [256][n_ct * TILE_COLS] */
    const double *typ;        /* [n_y][n_rt * TILE_ROWS] */
    const double *xmax, *xmin; /* [256][n_ct] */
    const double *ymax, *ymin; /* [n_y][n_rt_padded], zero beyond n_rt */
    const int64_t *ctiles;    /* [256][2] */
    const int64_t *rtiles;    /* [n_y][2] */
    int64_t n_ct, n_rt, n_rt_padded; /* n_rt_padded: n_rt rounded up to whole ROW_GROUPs */
} tables_t;

/* A point as the tile loops read it (weigh_points): weight, factors, their per-tile bounds. */
typedef struct {
    double w;
    const double *x, *xmax, *xmin; /* birth factor (padded columns), per column tile */
    const double *y, *ymax, *ymin; /* persistence factor (padded rows), per row tile */
} point_t;

/* Per-thread scratch: signal, stack, bars and the padded PI. */
typedef struct {
    int32_t *levels, *run_val, *run_pos, *turn_val, *turn_pos; /* a scan, its turning points */
    int32_t *stack_val, *stack_min, *stack_pos;                 /* h0_path_bars */
    int32_t *births, *deaths, *edges, *kb, *kd, *ke;            /* bars; in ripser's order */
    int32_t *c0, *c1; /* per point: [c0, c1), the column tiles where its x is not all zero */
    int32_t bucket[257];
    point_t *points;
    int32_t *ids;   /* per column tile (stride ids_stride): its points, in order */
    int64_t *n_ids; /* per column tile: how many */
    uint64_t *kept; /* per column tile (stride kept_stride), per row tile: which it adds */
    double *upper;  /* per column tile, per row tile: an upper bound of its pixel sums */
    int64_t ids_stride, kept_stride;
    double *acc;
} scratch_t;

static void load_scan(const uint8_t *image, int64_t h, int64_t w, int scan, int32_t *levels)
{
    const int ch = scan % 3;
    int64_t k = 0;
    if (scan < 3) {
        for (int64_t i = 0; i < h * w; i++) levels[k++] = image[i * 3 + ch];
    } else {
        for (int64_t x = 0; x < w; x++)
            for (int64_t y = 0; y < h; y++) levels[k++] = image[(y * w + x) * 3 + ch];
    }
}

/* The two filters of turning_points run 8 vertices at a time with AVX2 where the CPU has it
 * (flags by vector compares, then a left-pack of the kept lanes through a permutation table),
 * one at a time (branch-free) elsewhere and for the last few. */
#ifdef __AVX2__
#include <immintrin.h>

static int32_t pack_table[256][8]; /* [mask]: the lanes whose mask bits are set, in order */

__attribute__((constructor)) static void fill_pack_table(void)
{
    for (int mask = 0; mask < 256; mask++) {
        int k = 0;
        for (int lane = 0; lane < 8; lane++)
            if (mask >> lane & 1) pack_table[mask][k++] = lane;
        while (k < 8) pack_table[mask][k++] = 0;
    }
}

/* Lanes i..i+7 that start a run (differ from the lane before), as an 8-bit mask (i >= 1). */
static inline int run_starts8(const int32_t *v, int64_t i)
{
    const __m256i here = _mm256_loadu_si256((const __m256i *)(v + i));
    const __m256i prev = _mm256_loadu_si256((const __m256i *)(v + i - 1));
    return ~_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(here, prev))) & 0xff;
}

/* Lanes i..i+7 (1 <= i, i + 8 < n) that are not inside a strict rise or fall. */
static inline int turns8(const int32_t *v, int64_t i)
{
    const __m256i here = _mm256_loadu_si256((const __m256i *)(v + i));
    const __m256i left = _mm256_loadu_si256((const __m256i *)(v + i - 1));
    const __m256i right = _mm256_loadu_si256((const __m256i *)(v + i + 1));
    const __m256i rise = _mm256_and_si256(_mm256_cmpgt_epi32(here, left),
                                          _mm256_cmpgt_epi32(right, here));
    const __m256i fall = _mm256_and_si256(_mm256_cmpgt_epi32(left, here),
                                          _mm256_cmpgt_epi32(here, right));
    return ~_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_or_si256(rise, fall))) & 0xff;
}

/* Stores the lanes of (val, pos) set in mask at out + count (8 lanes written: the arrays
 * have room); returns the new count. */
static inline int64_t pack8(__m256i val, __m256i pos, int mask, int32_t *out_val,
                            int32_t *out_pos, int64_t count)
{
    const __m256i perm = _mm256_loadu_si256((const __m256i *)pack_table[mask]);
    _mm256_storeu_si256((__m256i *)(out_val + count), _mm256_permutevar8x32_epi32(val, perm));
    _mm256_storeu_si256((__m256i *)(out_pos + count), _mm256_permutevar8x32_epi32(pos, perm));
    return count + __builtin_popcount(mask);
}
#endif

/* The first vertex of each run of equal values of levels[:n]: values and positions. */
static int64_t run_starts(const int32_t *restrict levels, int64_t n, int32_t *restrict val,
                          int32_t *restrict pos)
{
    int64_t i = 1, count = 0;
    if (n == 0) return 0;
    val[0] = levels[0];
    pos[0] = 0;
    count = 1;
#ifdef __AVX2__
    const __m256i step = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (; i + 8 <= n; i += 8)
        count = pack8(_mm256_loadu_si256((const __m256i *)(levels + i)),
                      _mm256_add_epi32(_mm256_set1_epi32((int32_t)i), step),
                      run_starts8(levels, i), val, pos, count);
#endif
    for (; i < n; i++) {
        val[count] = levels[i];
        pos[count] = (int32_t)i;
        count += levels[i] != levels[i - 1];
    }
    return count;
}

/* The vertices of (val, pos)[:n] (no two neighbours equal) not inside a strict rise or fall
 * (local minima and maxima), and the two ends. */
static int64_t extrema(const int32_t *restrict val, const int32_t *restrict pos, int64_t n,
                       int32_t *restrict out_val, int32_t *restrict out_pos)
{
    if (n <= 2) {
        memcpy(out_val, val, n * sizeof(int32_t));
        memcpy(out_pos, pos, n * sizeof(int32_t));
        return n;
    }
    out_val[0] = val[0];
    out_pos[0] = pos[0];
    int64_t i = 1, count = 1;
#ifdef __AVX2__
    for (; i + 9 <= n; i += 8)
        count = pack8(_mm256_loadu_si256((const __m256i *)(val + i)),
                      _mm256_loadu_si256((const __m256i *)(pos + i)), turns8(val, i), out_val,
                      out_pos, count);
#endif
    for (; i < n - 1; i++) {
        const int32_t left = val[i - 1], v = val[i], right = val[i + 1];
        out_val[count] = v;
        out_pos[count] = pos[i];
        count += !(((left < v) & (v < right)) | ((left > v) & (v > right))); /* no branch */
    }
    out_val[count] = val[n - 1];
    out_pos[count] = pos[n - 1];
    return count + 1;
}

/* The values and positions of the vertices of levels[:n] that can change the bars, in order:
 * the first vertex of each run of equal values, then of those the local minima and maxima
 * and the two ends. Dropping a vertex leaves every bar and its edge index unchanged in the
 * stack of h0_path_bars when (one at a time, so runs too)
 * - it equals its left neighbour: it pops nothing (that neighbour is the top and is not
 *   lower), and when popped it brings no bar (its run is empty) and leaves the running
 *   minimum as popping the neighbour next would;
 * - it lies inside a strict rise (left < v < right): it pops exactly what its right neighbour
 *   would pop, in the same order, and that neighbour pops it first with an empty run on its
 *   right (no bar) and the running minimum it would have reached anyway;
 * - it lies inside a strict fall (left > v > right): it pops nothing, and popped later it
 *   brings no bar and no smaller minimum.
 * About 37 % of a natural image's scan is kept. Returns how many. */
static int64_t turning_points(const int32_t *levels, int64_t n, scratch_t *s)
{
    const int64_t runs = run_starts(levels, n, s->run_val, s->run_pos);
    return extrema(s->run_val, s->run_pos, runs, s->turn_val, s->turn_pos);
}

/* _kernels.h0_path_bars on the n turning points (vals, pos) of a signal: its kept finite H0
 * bars, any order. */
static int64_t h0_path_bars(const int32_t *vals, const int32_t *pos, int64_t n,
                            const int32_t *min_death, scratch_t *s)
{
    int64_t top = -1, count = 0;
    for (int64_t i = 0; i <= n; i++) {
        const int32_t v = i < n ? vals[i] : NONE_LEVEL;
        int32_t m = NONE_LEVEL;
        while (top >= 0 && s->stack_val[top] < v) {
            const int32_t d = s->stack_val[top];
            const int32_t lo = s->stack_min[top];
            const int32_t b = lo > m ? lo : m;
            s->births[count] = b; /* written always, kept if it is a bar the threshold keeps */
            s->deaths[count] = d;
            s->edges[count] = s->stack_pos[top] - 1;
            /* b is NONE_LEVEL when a run is empty: no bar (b < d fails; the index stays in
             * the table) */
            count += b < d && d >= min_death[b < 256 ? b : 0];
            if (lo < m) m = lo;
            if (d < m) m = d;
            top--;
        }
        if (i < n) {
            top++;
            s->stack_val[top] = v;
            s->stack_min[top] = m;
            s->stack_pos[top] = pos[i];
        }
    }
    return count;
}

/* _kernels.ripser_order: by death level, ties by decreasing edge index, into kb/kd/ke. */
static void ripser_order(scratch_t *s, int64_t count)
{
    int32_t *bucket = s->bucket;
    memset(bucket, 0, sizeof s->bucket);
    for (int64_t j = 0; j < count; j++) bucket[s->deaths[j] + 1]++;
    for (int level = 0; level < 256; level++) bucket[level + 1] += bucket[level];
    for (int64_t j = 0; j < count; j++) {
        const int32_t pos = bucket[s->deaths[j]]++;
        s->kb[pos] = s->births[j];
        s->kd[pos] = s->deaths[j];
        s->ke[pos] = s->edges[j];
    }
    for (int64_t j = 1; j < count; j++) {
        const int32_t b = s->kb[j], d = s->kd[j], e = s->ke[j];
        int64_t i = j - 1;
        while (i >= 0 && s->kd[i] == d && s->ke[i] < e) {
            s->kb[i + 1] = s->kb[i];
            s->kd[i + 1] = s->kd[i];
            s->ke[i + 1] = s->ke[i];
            i--;
        }
        s->kb[i + 1] = b;
        s->kd[i + 1] = d;
        s->ke[i + 1] = e;
    }
}

static inline v4d load4(const double *p)
{
    v4d v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store4(double *p, v4d v) { memcpy(p, &v, sizeof v); }

/* Lane-wise maximum (no NaNs here). */
static inline v4d max4(v4d a, v4d b)
{
#ifdef __AVX2__
    return (v4d)_mm256_max_pd((__m256d)a, (__m256d)b);
#else
    const v4di greater = a > b;
    return (v4d)(((v4di)a & greater) | ((v4di)b & ~greater));
#endif
}

/* The sums of one tile (row tile rt, column tile ct), in order, over the m points of the column
 * tile (ids) whose bits are set in kept (see keep_bits: word q / 64, the highest bits the
 * earliest points). */
static void sum_tile(const scratch_t *s, const int32_t *ids, const uint64_t *kept, int64_t m,
                     int64_t n_words, int64_t rt, int64_t ct, double *acc, int64_t pc)
{
    v4d a[TILE_ROWS][2] = {{{0}}};
    for (int64_t word = 0; word < n_words; word++) {
        const int64_t last = (m < (word + 1) * 64 ? m : (word + 1) * 64) - 1;
        for (uint64_t bits = kept[word]; bits;) { /* highest bit first: the earliest point */
            const int pos = 63 - __builtin_clzll(bits);
            bits ^= (uint64_t)1 << pos;
            const point_t *p = s->points + ids[last - pos];
            const double *x = p->x + ct * TILE_COLS, *y = p->y + rt * TILE_ROWS;
            const v4d x0 = load4(x), x1 = load4(x + 4);
            const v4d wv = {p->w, p->w, p->w, p->w};
            for (int r = 0; r < TILE_ROWS; r++) {
                const v4d yv = {y[r], y[r], y[r], y[r]};
                a[r][0] += (x0 * yv) * wv;
                a[r][1] += (x1 * yv) * wv;
            }
        }
    }
    for (int r = 0; r < TILE_ROWS; r++) {
        double *row = acc + (rt * TILE_ROWS + r) * pc + ct * TILE_COLS;
        store4(row, a[r][0]);
        store4(row + 4, a[r][1]);
    }
}

/* Per point j of the k ordered bars, what the tile loops read of it (point_t): its weight
 * w_j = (1 / max persistence) * persistence_j and where its factors and their per-tile bounds
 * are in the tables. */
static void weigh_points(const tables_t *t, scratch_t *s, int64_t k)
{
    const int64_t pc = t->n_ct * TILE_COLS, pr = t->n_rt * TILE_ROWS;
    double maxp = 0.0;
    for (int64_t j = 0; j < k; j++) {
        const double p = t->pers[s->kb[j] * 256 + s->kd[j]];
        maxp = p > maxp ? p : maxp;
    }
    const double inv = 1.0 / maxp;
    for (int64_t j = 0; j < k; j++) {
        const int32_t b = s->kb[j], d = s->kd[j], yi = t->yid[b * 256 + d];
        point_t *p = s->points + j;
        p->w = inv * t->pers[b * 256 + d];
        p->x = t->txp + b * pc;
        p->xmax = t->xmax + b * t->n_ct;
        p->xmin = t->xmin + b * t->n_ct;
        p->y = t->typ + yi * pr;
        p->ymax = t->ymax + yi * t->n_rt_padded;
        p->ymin = t->ymin + yi * t->n_rt_padded;
        s->c0[j] = (int32_t)t->ctiles[2 * b];
        s->c1[j] = (int32_t)t->ctiles[2 * b + 1];
    }
}

/* The points that reach column tile ct (c0 <= ct < c1), in order, into ids; returns how many.
 * Eight at a time with AVX2 (compares, then a left-pack), branch-free. */
static int64_t column_points(const scratch_t *s, int64_t k, int64_t ct, int32_t *ids)
{
    int64_t m = 0, j = 0;
#ifdef __AVX2__
    const __m256i step = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i tile = _mm256_set1_epi32((int32_t)ct);
    for (; j + 8 <= k; j += 8) {
        const __m256i c0 = _mm256_loadu_si256((const __m256i *)(s->c0 + j));
        const __m256i c1 = _mm256_loadu_si256((const __m256i *)(s->c1 + j));
        const __m256i in = _mm256_andnot_si256(_mm256_cmpgt_epi32(c0, tile),
                                               _mm256_cmpgt_epi32(c1, tile));
        const int mask = _mm256_movemask_ps(_mm256_castsi256_ps(in));
        const __m256i perm = _mm256_loadu_si256((const __m256i *)pack_table[mask]);
        const __m256i index = _mm256_add_epi32(_mm256_set1_epi32((int32_t)j), step);
        _mm256_storeu_si256((__m256i *)(ids + m), _mm256_permutevar8x32_epi32(index, perm));
        m += __builtin_popcount(mask);
    }
#endif
    for (; j < k; j++) {
        ids[m] = (int32_t)j;
        m += s->c0[j] <= ct && ct < s->c1[j];
    }
    return m;
}

/* Which of the m points of column tile ct (ids) each row tile adds, as bits (kept[rt][word]:
 * point ids[q] is in word q / 64, shifted in from the right, so the word's last point is bit 0
 * and its first the highest): those whose largest term on the tile,
 * T = (max x * max y) * w, is nonzero (where a factor is zero on the tile its maximum is 0 and
 * so is every term) and not below half an ulp of every sum in the tile (T < lower * 2^-54: see
 * _kernels._accumulate_pi; the running bound lower is the sum of the kept points' smallest
 * terms (min x * min y) * w). ROW_GROUP row tiles at a time in vector lanes, bounds and bits
 * in registers: no branch per point and tile. Also per row tile: upper[rt], the running sum of
 * every point's T, which bounds the tile's pixel sums from above (each sum adds terms <= T in
 * the same order, and rounding is monotonic), and *lower_max, the largest final lower. */
static void keep_bits(const tables_t *t, const scratch_t *s, const int32_t *ids, int64_t m,
                      int64_t ct, uint64_t *kept, int64_t n_words, double *upper_out,
                      double *lower_max)
{
    const int64_t n_rtp = t->n_rt_padded;
    const v4d scale = {HALF_ULP_SCALE, HALF_ULP_SCALE, HALF_ULP_SCALE, HALF_ULP_SCALE};
    const v4d tiny = {DBL_TRUE_MIN, DBL_TRUE_MIN, DBL_TRUE_MIN, DBL_TRUE_MIN};
    for (int64_t g = 0; g < n_rtp; g += ROW_GROUP) {
        v4d lower[ROW_GROUP / 4] = {{0}}, upper[ROW_GROUP / 4] = {{0}};
        for (int64_t word = 0; word < n_words; word++) {
            v4di bits[ROW_GROUP / 4] = {{0}};
            const int64_t stop = m < (word + 1) * 64 ? m : (word + 1) * 64;
            for (int64_t q = word * 64; q < stop; q++) {
                const point_t *p = s->points + ids[q];
                const double w = p->w, xmax = p->xmax[ct], xmin = p->xmin[ct];
                const v4d wv = {w, w, w, w}, xmaxv = {xmax, xmax, xmax, xmax};
                const v4d xminv = {xmin, xmin, xmin, xmin};
                for (int v = 0; v < ROW_GROUP / 4; v++) {
                    const v4d top = (xmaxv * load4(p->ymax + g + 4 * v)) * wv;
                    const v4d low = (xminv * load4(p->ymin + g + 4 * v)) * wv;
                    const v4d bound = lower[v] * scale; /* top >= max(bound, tiny): */
                    const v4di keep = top >= max4(bound, tiny);
                    lower[v] += (v4d)((v4di)low & keep);
                    upper[v] += top;
                    bits[v] = (bits[v] + bits[v]) - keep; /* shift in keep's bit */
                }
            }
            for (int v = 0; v < ROW_GROUP / 4; v++)
                for (int lane = 0; lane < 4; lane++)
                    kept[(g + 4 * v + lane) * n_words + word] = (uint64_t)bits[v][lane];
        }
        for (int v = 0; v < ROW_GROUP / 4; v++) {
            store4(upper_out + g + 4 * v, upper[v]);
            for (int lane = 0; lane < 4; lane++) /* padded row tiles: 0 */
                *lower_max = lower[v][lane] > *lower_max ? lower[v][lane] : *lower_max;
        }
    }
}

/* The padded PI (rows of pc = n_ct * TILE_COLS) of the k ordered bars, as persim sums it,
 * tile by tile: every pixel gets persim's terms in persim's order. First every column tile's
 * points and skip bits, then the sums. With uint8_only, a tile whose upper bound is below
 * lower_max / 255 (less a 2^-40 margin for the rounding of the bound and of (s / max) * 255)
 * is left zero instead: every pixel s there has s / max * 255 < 1 since max >= lower_max (max
 * is a pixel sum, and a tile's sums are >= its lower), so its uint8 value is 0 whatever s is,
 * and the max itself lies in a tile that is summed. */
static void accumulate_pi(const tables_t *t, scratch_t *s, int64_t k, double *acc,
                          int uint8_only)
{
    const int64_t pc = t->n_ct * TILE_COLS, n_rtp = t->n_rt_padded;
    double lower_max = 0.0;
    weigh_points(t, s, k);
    for (int64_t ct = 0; ct < t->n_ct; ct++) {
        int32_t *ids = s->ids + ct * s->ids_stride;
        const int64_t m = s->n_ids[ct] = column_points(s, k, ct, ids);
        keep_bits(t, s, ids, m, ct, s->kept + ct * s->kept_stride, (m + 63) / 64,
                  s->upper + ct * n_rtp, &lower_max);
    }
    const double zero_below = uint8_only ? lower_max / 255.0 * (1.0 - 0x1p-40) : 0.0;
    for (int64_t ct = 0; ct < t->n_ct; ct++) {
        const int64_t m = s->n_ids[ct], n_words = (m + 63) / 64;
        for (int64_t rt = 0; rt < t->n_rt; rt++) {
            if (s->upper[ct * n_rtp + rt] < zero_below) {
                for (int r = 0; r < TILE_ROWS; r++)
                    memset(acc + (rt * TILE_ROWS + r) * pc + ct * TILE_COLS, 0,
                           TILE_COLS * sizeof(double));
            } else {
                sum_tile(s, s->ids + ct * s->ids_stride, s->kept + ct * s->kept_stride
                         + rt * n_words, m, n_words, rt, ct, acc, pc);
            }
        }
    }
}

/* _kernels._untile: the padded PI into raw (R x C, when given) and its uint8 image. */
static void untile(const double *acc, int64_t pc, int64_t n_rows, int64_t n_cols, double *raw,
                   uint8_t *out)
{
    /* the maximum in 4 x 4 lanes (n_rows * pc is a multiple of 8; the padding is zero, the
     * sums are not NaN: order does not change a maximum) */
    v4d lanes[4] = {{0}};
    int64_t i = 0;
    for (; i + 16 <= n_rows * pc; i += 16)
        for (int v = 0; v < 4; v++) {
            lanes[v] = max4(load4(acc + i + 4 * v), lanes[v]);
        }
    double m = 0.0;
    for (; i < n_rows * pc; i++) m = acc[i] > m ? acc[i] : m;
    for (int v = 0; v < 4; v++)
        for (int lane = 0; lane < 4; lane++) m = lanes[v][lane] > m ? lanes[v][lane] : m;
    for (int64_t r = 0; r < n_rows; r++) {
        const double *row = acc + r * pc;
        if (raw) memcpy(raw + r * n_cols, row, n_cols * sizeof(double));
        uint8_t *pixels = out + r * n_cols;
        if (m > 0.0) {
            for (int64_t c = 0; c < n_cols; c++) pixels[c] = (uint8_t)((row[c] / m) * 255.0);
        } else {
            memset(pixels, 0, n_cols);
        }
    }
}

static int alloc_scratch(scratch_t *s, int64_t length, const tables_t *t, int64_t padded_pixels)
{
    int32_t **ints[] = {&s->levels, &s->run_val, &s->run_pos, &s->turn_val, &s->turn_pos,
                        &s->stack_val, &s->stack_min, &s->stack_pos, &s->births, &s->deaths,
                        &s->edges, &s->kb, &s->kd, &s->ke, &s->c0, &s->c1};
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (!(*ints[i] = malloc((length + 16) * sizeof(int32_t)))) return -1; /* +8: pack8 */
    s->ids_stride = length + 16;
    s->kept_stride = t->n_rt_padded * ((length + 64) / 64);
    s->ids = malloc(t->n_ct * s->ids_stride * sizeof(int32_t));
    s->n_ids = malloc(t->n_ct * sizeof(int64_t));
    s->kept = malloc(t->n_ct * s->kept_stride * sizeof(uint64_t));
    s->upper = malloc(t->n_ct * t->n_rt_padded * sizeof(double));
    s->acc = malloc(padded_pixels * sizeof(double));
    s->points = malloc((length + 1) * sizeof(point_t));
    return s->points && s->ids && s->n_ids && s->kept && s->upper && s->acc ? 0 : -1;
}

static void free_scratch(scratch_t *s)
{
    int32_t *ints[] = {s->levels, s->run_val, s->run_pos, s->turn_val, s->turn_pos,
                       s->stack_val, s->stack_min, s->stack_pos, s->births, s->deaths,
                       s->edges, s->kb, s->kd, s->ke, s->ids, s->c0, s->c1};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) free(ints[i]);
    free(s->kept);
    free(s->n_ids);
    free(s->upper);
    free(s->points);
    free(s->acc);
}

/* PIs of the six scans of each of the n_img H x W x 3 uint8 images: raw (N x 6 x R x C float64,
 * or NULL) and out_u8 (N x 6 x R x C). Images are taken PAPER_CHUNK at a time from *next
 * (shared by every thread running this call). Returns 0, or -1 if scratch memory ran out. */
int paper_pis(const uint8_t *images, int64_t n_img, int64_t h, int64_t w, const tables_t *t,
              int64_t n_rows, int64_t n_cols, double *raw, uint8_t *out_u8, int64_t *next)
{
    const int64_t length = h * w, pc = t->n_ct * TILE_COLS, plane = n_rows * n_cols;
    scratch_t s;
    if (alloc_scratch(&s, length, t, t->n_rt * TILE_ROWS * pc) != 0) {
        free_scratch(&s);
        return -1;
    }
    for (;;) {
        const int64_t start = __atomic_fetch_add(next, PAPER_CHUNK, __ATOMIC_RELAXED);
        if (start >= n_img) break;
        const int64_t stop = start + PAPER_CHUNK < n_img ? start + PAPER_CHUNK : n_img;
        for (int64_t n = start; n < stop; n++) {
            for (int scan = 0; scan < 6; scan++) {
                const int64_t plane_index = n * 6 + scan;
                load_scan(images + n * length * 3, h, w, scan, s.levels);
                const int64_t n_turns = turning_points(s.levels, length, &s);
                const int64_t k = h0_path_bars(s.turn_val, s.turn_pos, n_turns, t->min_death, &s);
                if (STAGES < 2) continue;
                ripser_order(&s, k);
                if (STAGES < 3) continue;
                if (k > 0) {
                    accumulate_pi(t, &s, k, s.acc, raw == NULL);
                } else {
                    memset(s.acc, 0, t->n_rt * TILE_ROWS * pc * sizeof(double));
                }
                if (STAGES < 4) continue;
                untile(s.acc, pc, n_rows, n_cols, raw ? raw + plane_index * plane : NULL,
                       out_u8 + plane_index * plane);
            }
        }
    }
    free_scratch(&s);
    return 0;
}
