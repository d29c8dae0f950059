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
 * With only uint8 PIs asked for (raw == NULL: the cache, training, `tgd pi --raw none`) and a
 * PI of at least U8_MIN_TILES tiles, the sums are float32 ones with a proven error bound,
 * persim's float64 sum being computed only for the pixels the bound cannot decide
 * (certified_u8): the same uint8 PIs, 1.2x faster on CIFAR-10.
 *
 * Threads: every caller thread runs paper_pis() with the same shared counter and takes the next
 * PAPER_CHUNK images until none are left (dynamic scheduling without a runtime library).
 */
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__) || defined(__FMA__)
#include <immintrin.h>
#endif

#define TILE_ROWS 5
#define TILE_COLS 8
#define PAPER_CHUNK 16
#define NONE_LEVEL (1 << 30)
#define HALF_ULP_SCALE 5.551115123125783e-17 /* 2^-54 */

#define ROW_GROUP 12 /* row tiles whose skip tests run together (a multiple of 4) */
#ifndef STAGES
#define STAGES 4 /* builds with -DSTAGES=1..3 stop after that stage (for profiling only):
                    1 bars, 2 in ripser's order, 3 PI sums (float32 ones for uint8 PIs
                    only), 4 uint8 and float64 PIs */
#endif

typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4di __attribute__((vector_size(32)));

/* The factors of PaperTables/PaperTiles (tgd_core/topology/paper.py), read-only. */
typedef struct {
    const int32_t *min_death; /* [256] */
    const double *levels;     /* [256]: each level's value; persistence = levels[d] - levels[b]
                                 (exact: PaperTables.pers, without its 512 KB in the cache) */
    const uint16_t *yid;      /* [256][256] */
    const double *txp;        /* [256][n_ct * TILE_COLS] */
    const double *typ;        /* [n_y][n_rt * TILE_ROWS] */
    const double *xmax, *xmin; /* [256][n_ct] */
    const double *ymax, *ymin; /* [n_y][n_rt_padded], zero beyond n_rt */
    const int64_t *ctiles;    /* [256][2] */
    const int64_t *rtiles;    /* [n_y][2] */
    /* for certified_u8: */
    const float *txp32;       /* [256][n_ct * TILE_COLS]: txp[b] * 2^xexp[b] (peak in [1, 2)) */
    const int32_t *xexp;      /* [256] */
    const double *xpeak;      /* [256]: the largest of txp[b] */
    const double *xmax4;      /* [256][n_ct4]: xmax zero-padded to n_ct4 (a multiple of 4) */
    const float *typ32;       /* [n_y][n_rt * TILE_ROWS]: typ[yid] * 2^yexp[yid] */
    const int32_t *yexp;      /* [n_y] */
    const double *ypeak;      /* [n_y]: the largest of typ[yid] */
    int64_t n_ct, n_rt, n_rt_padded; /* n_rt_padded: n_rt rounded up to whole ROW_GROUPs */
    int64_t n_ct4;
} tables_t;

/* A point as the tile loops read it (weigh_points): weight, factors, their per-tile bounds. */
typedef struct {
    double w;
    const double *x, *xmax, *xmin; /* birth factor (padded columns), per column tile */
    const double *y, *ymax, *ymin; /* persistence factor (padded rows), per row tile */
} point_t;

/* A point as the float32 sums read it: scaled factors x (birth) and y (persistence), and ws,
 * its weight times 2^(e - xexp - yexp). */
typedef struct {
    const float *x, *y;
    float ws;
} point32_t;

/* A point as sum_tile reads it on one column tile (accumulate_pi): its birth factor there, its
 * persistence factor, its weight; next to each other, in the column tile's point order. */
typedef struct {
    const double *x, *y;
    double w;
} column_point_t;

/* Per-thread scratch: signal, stack, bars and the padded PI. */
typedef struct {
    int32_t *levels, *run_val, *run_pos, *turn_val, *turn_pos; /* a scan, its turning points */
    int32_t *stack_val, *stack_min, *stack_pos;                 /* h0_path_bars */
    int32_t *births, *deaths, *edges, *kb, *kd, *ke;            /* bars; in ripser's order */
    int32_t *c0, *c1; /* per point: [c0, c1), the column tiles where its x is not all zero */
    int32_t bucket[257];
    point_t *points;
    column_point_t *column_points; /* one column tile's points (accumulate_pi) */
    int32_t *ids;   /* per column tile (stride ids_stride): its points, in order */
    int64_t *n_ids; /* per column tile: how many */
    uint64_t *kept; /* per column tile (stride kept_stride), per row tile: which it adds */
    int64_t ids_stride, kept_stride;
    double *acc;
    /* certified_u8 (uint8 PIs only) */
    double *xw, *yw_peak;   /* per point: (largest birth factor) * w, (largest y) * w */
    int32_t *r0, *r1;       /* per point: [r0, r1) x [c0, c1), the tiles of its terms >= tau */
    point32_t *points32;
    int32_t *lists;         /* the tiles' points (u8_lists), list_cap of them */
    int64_t list_cap;
    int64_t *list_diff, *list_start, *list_fill; /* per tile */
    float *acc32;           /* the padded PI's float32 sums (scaled) */
    double *tile_rel;       /* per tile: rel of its sums */
    float *tile_max;        /* per tile: its largest float32 sum */
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

/* Pops the stack's vertices below v, writing the bars they close (see _kernels.h0_path_bars;
 * *m: the minimum of what has been popped so far for this vertex). */
static inline void pop_below(int32_t v, int32_t *m, int64_t *top, int64_t *count,
                             const int32_t *min_death, scratch_t *s)
{
    while (*top >= 0 && s->stack_val[*top] < v) {
        const int32_t d = s->stack_val[*top];
        const int32_t lo = s->stack_min[*top];
        const int32_t b = lo > *m ? lo : *m;
        s->births[*count] = b; /* written always, kept if it is a bar the threshold keeps */
        s->deaths[*count] = d;
        s->edges[*count] = s->stack_pos[*top] - 1;
        /* b is NONE_LEVEL when a run is empty: no bar (b < d fails; the index stays in
         * the table) */
        *count += b < d && d >= min_death[b < 256 ? b : 0];
        if (lo < *m) *m = lo;
        if (d < *m) *m = d;
        (*top)--;
    }
}

/* _kernels.h0_path_bars on the n turning points (vals, pos) of a signal: its kept finite H0
 * bars, any order. Turning points alternate: every one but the ends is a strict local minimum
 * or maximum. A minimum (any vertex below the one before it) pops nothing, and the vertex after
 * it, higher, pops it first, without a bar (the run on its left is empty), the running minimum
 * becoming its value: so minima are never pushed, only carried into the next vertex as that
 * minimum, and the stack loop runs once per maximum. */
static int64_t h0_path_bars(const int32_t *vals, const int32_t *pos, int64_t n,
                            const int32_t *min_death, scratch_t *s)
{
    int64_t top = -1, count = 0, i = 0;
    if (n == 0) return 0;
    if (n == 1 || vals[0] > vals[1]) { /* a first vertex above the next is pushed as is */
        top = 0;
        s->stack_val[0] = vals[0];
        s->stack_min[0] = NONE_LEVEL;
        s->stack_pos[0] = pos[0];
        i = 1;
    }
    for (; i + 1 < n; i += 2) { /* vals[i] a minimum, vals[i + 1] the maximum after it */
        int32_t m = vals[i];
        pop_below(vals[i + 1], &m, &top, &count, min_death, s);
        top++;
        s->stack_val[top] = vals[i + 1];
        s->stack_min[top] = m;
        s->stack_pos[top] = pos[i + 1];
    }
    int32_t m = i < n ? vals[i] : NONE_LEVEL; /* a last vertex below the one before it */
    pop_below(NONE_LEVEL, &m, &top, &count, min_death, s);
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

/* The sums of one tile (row tile rt of a column tile), in order, over the m points of the column
 * tile (cps) whose bits are set in kept (see keep_bits: word q / 64, the highest bits the
 * earliest points), into acc (the tile's first pixel; rows pc apart). */
static void sum_tile(const column_point_t *cps, const uint64_t *kept, int64_t m,
                     int64_t n_words, int64_t rt, double *acc, int64_t pc)
{
    v4d a[TILE_ROWS][2] = {{{0}}};
    for (int64_t word = 0; word < n_words; word++) {
        const column_point_t *word_last = cps + (m < (word + 1) * 64 ? m : (word + 1) * 64) - 1;
        for (uint64_t bits = kept[word]; bits;) { /* highest bit first: the earliest point */
            const int pos = 63 - __builtin_clzll(bits);
            bits ^= (uint64_t)1 << pos;
            const column_point_t *p = word_last - pos;
            const double *x = p->x, *y = p->y + rt * TILE_ROWS;
            __asm__("" : "+r"(y)); /* y in a register: its rows at fixed offsets, not per-row
                                      offsets kept on the stack (GCC's choice otherwise) */
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
        store4(acc, a[r][0]);
        store4(acc + 4, a[r][1]);
        acc += pc;
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
        const double p = t->levels[s->kd[j]] - t->levels[s->kb[j]];
        maxp = p > maxp ? p : maxp;
    }
    const double inv = 1.0 / maxp;
    for (int64_t j = 0; j < k; j++) {
        const int32_t b = s->kb[j], d = s->kd[j], yi = t->yid[b * 256 + d];
        point_t *p = s->points + j;
        p->w = inv * (t->levels[d] - t->levels[b]);
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
 * in registers: no branch per point and tile. */
static void keep_bits(const tables_t *t, const scratch_t *s, const int32_t *ids, int64_t m,
                      int64_t ct, uint64_t *kept, int64_t n_words)
{
    const int64_t n_rtp = t->n_rt_padded;
    const v4d scale = {HALF_ULP_SCALE, HALF_ULP_SCALE, HALF_ULP_SCALE, HALF_ULP_SCALE};
    const v4d tiny = {DBL_TRUE_MIN, DBL_TRUE_MIN, DBL_TRUE_MIN, DBL_TRUE_MIN};
    for (int64_t g = 0; g < n_rtp; g += ROW_GROUP) {
        v4d lower[ROW_GROUP / 4] = {{0}};
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
                    bits[v] = (bits[v] + bits[v]) - keep; /* shift in keep's bit */
                }
            }
            for (int v = 0; v < ROW_GROUP / 4; v++)
                for (int lane = 0; lane < 4; lane++)
                    kept[(g + 4 * v + lane) * n_words + word] = (uint64_t)bits[v][lane];
        }
    }
}

/* The padded PI (rows of pc = n_ct * TILE_COLS) of the k ordered bars, as persim sums it,
 * tile by tile: every pixel gets persim's terms in persim's order. First every column tile's
 * points and skip bits, then the sums, a column tile's points gathered for them first. */
static void accumulate_pi(const tables_t *t, scratch_t *s, int64_t k, double *acc)
{
    const int64_t pc = t->n_ct * TILE_COLS;
    weigh_points(t, s, k);
    for (int64_t ct = 0; ct < t->n_ct; ct++) {
        int32_t *ids = s->ids + ct * s->ids_stride;
        const int64_t m = s->n_ids[ct] = column_points(s, k, ct, ids);
        keep_bits(t, s, ids, m, ct, s->kept + ct * s->kept_stride, (m + 63) / 64);
    }
    column_point_t *cps = s->column_points;
    for (int64_t ct = 0; ct < t->n_ct; ct++) {
        const int64_t m = s->n_ids[ct], n_words = (m + 63) / 64;
        const int32_t *ids = s->ids + ct * s->ids_stride;
        for (int64_t q = 0; q < m; q++) {
            const point_t *p = s->points + ids[q];
            cps[q].x = p->x + ct * TILE_COLS;
            cps[q].y = p->y;
            cps[q].w = p->w;
        }
        for (int64_t rt = 0; rt < t->n_rt; rt++)
            sum_tile(cps, s->kept + ct * s->kept_stride + rt * n_words, m, n_words, rt,
                     acc + rt * TILE_ROWS * pc + ct * TILE_COLS, pc);
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

/* ---- uint8 PIs only: certified float32 sums ----------------------------------------------
 * The uint8 PI needs of each pixel's persim sum s only trunc((s / m) * 255), m the largest
 * sum. certified_u8 sums in float32 instead ((x * ws) * y with fused multiply-adds, eight
 * pixels a lane, in any order), with a bound that holds whatever the rounding:
 *     |s - s32| <= rel * S + D,
 * S the exact real sum. rel = 2 (gamma_{n+8} in float32 + gamma_{k+4} in float64) for a tile
 * of n terms (Higham, Accuracy and Stability of Numerical Algorithms, 2002, §3.1 and §4.2:
 * recursive summation of n >= 0 terms in any order is within gamma_{n-1} of the exact sum;
 * each term has four roundings before it is added: x, y and ws to float32, x * ws; the two
 * partial sums one more; persim's own float64 sum is within gamma_{k+2}; the factor 2 covers
 * the double arithmetic of the bounds). D = k * tau (the terms below tau left out: at most
 * one per point per pixel) plus (k + 16) * 2^-122 (float32 underflow: a term lost to it is
 * < 2^-125, every scaled factor being < 2). Every term is scaled by 2^e (exact) so the largest
 * lies in [1, 2): far-tail PIs (largest pixels of 1e-49 occur on CIFAR-10) do not underflow.
 * A pixel takes the value trunc has at both ends of its interval when they agree (all but a
 * few per PI); persim's float64 sum, summed in persim's order (exact_pixel), decides the rest
 * and the maximum m (every pixel whose interval reaches the largest lower bound). The uint8
 * PIs are the float64 path's, bit for bit. */
#define U8_DROP 0x1p-30   /* tau = (largest term) * 2^-30 / k */
#define U8_MARGIN 0x1p-20 /* relative slack for the float32 arithmetic of the uint8 bounds */
#define U8_MIN_SCALE 0x1p-900 /* below this largest term the float64 path runs instead */
#define U8_MAX_POINTS (1 << 20) /* more points per scan take the float64 path */
#define U8_MIN_TILES 32 /* smaller PIs take the float64 path: per point, certified_u8 costs
                           more than it saves where a point spans few tiles (13 x 7 pixels:
                           16,600 uint8 PIs/s against 18,700/s; 50 x 50: 1.2x faster) */

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8si __attribute__((vector_size(32)));

/* An upper bound of gamma_n = n u / (1 - n u) (n u <= 1/4): n u (1 + 2 n u), with slack. */
static inline double gamma_bound(int64_t n, double unit)
{
    const double nu = (double)n * unit;
    return nu * (1.0 + 2.0 * nu) * (1.0 + 0x1p-30);
}

/* 2^n for -1022 <= n <= 1023, exactly. */
static inline double pow2(int n)
{
    const uint64_t bits = (uint64_t)(n + 1023) << 52;
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* -floor(log2 v) for a normal v > 0: v * 2^result lies in [1, 2). */
static inline int scale_exponent(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return 1023 - (int)(bits >> 52 & 0x7ff);
}

/* [*first, *stop) of the entries of v[:n] (n a multiple of 4) times f that are >= tau (0, 0
 * where none): 64 entries at a time as bits. */
static inline void span_at_least(const double *v, int64_t n, double f, double tau,
                                 int32_t *first, int32_t *stop)
{
    const v4d fv = {f, f, f, f}, tv = {tau, tau, tau, tau};
    *first = *stop = 0;
    int found = 0;
    for (int64_t base = 0; base < n; base += 64) {
        uint64_t mask = 0;
        for (int64_t i = base; i < n && i < base + 64; i += 4) {
            const v4di ge = load4(v + i) * fv >= tv;
#ifdef __AVX2__
            mask |= (uint64_t)_mm256_movemask_pd((__m256d)ge) << (i - base);
#else
            mask |= (uint64_t)((ge[0] & 1) | (ge[1] & 2) | (ge[2] & 4) | (ge[3] & 8)) << (i - base);
#endif
        }
        if (mask) {
            if (!found) *first = (int32_t)base + __builtin_ctzll(mask);
            *stop = (int32_t)base + 64 - __builtin_clzll(mask);
            found = 1;
        }
    }
}

/* Per point: weight and factors (weigh_points); the rectangle of tiles [c0, c1) x [r0, r1)
 * where its largest term reaches tau; its scaled float32 persistence factor yw (stride pr:
 * y * w * 2^(e - xexp[b]), the birth factor being txp32 = x * 2^xexp[b]). Returns e (the
 * largest term m0 has m0 * 2^e in [1, 2)) and D in *d_abs, or INT32_MIN where m0 is too small
 * to scale (then the float64 path runs). */
static int u8_points(const tables_t *t, scratch_t *s, int64_t k, double *d_abs)
{
    const int64_t pc = t->n_ct * TILE_COLS, pr = t->n_rt * TILE_ROWS, n_rt = t->n_rt;
    weigh_points(t, s, k);
    double m0 = 0.0;
    for (int64_t j = 0; j < k; j++) {
        const double w = s->points[j].w, yp = t->ypeak[t->yid[s->kb[j] * 256 + s->kd[j]]];
        const double xw = t->xpeak[s->kb[j]] * w, top = xw * yp;
        s->xw[j] = xw;
        s->yw_peak[j] = yp * w;
        m0 = top > m0 ? top : m0;
    }
    if (!(m0 >= U8_MIN_SCALE)) return INT32_MIN;
    const int e = scale_exponent(m0);
    const double tau = m0 * U8_DROP / (double)k;
    memset(s->list_diff, 0, (t->n_ct + 1) * (n_rt + 1) * sizeof(int64_t));
    for (int64_t j = 0; j < k; j++) {
        const point_t *p = s->points + j;
        const int32_t b = s->kb[j];
        span_at_least(t->xmax4 + b * t->n_ct4, t->n_ct4, s->yw_peak[j], tau, s->c0 + j,
                      s->c1 + j);
        span_at_least(p->ymax, t->n_rt_padded, s->xw[j], tau, s->r0 + j, s->r1 + j);
        if (s->c0[j] == s->c1[j] || s->r0[j] == s->r1[j])
            s->c0[j] = s->c1[j] = s->r0[j] = s->r1[j] = 0;
        int64_t *corner = s->list_diff; /* the rectangle's count, as 2-D differences */
        corner[s->c0[j] * (n_rt + 1) + s->r0[j]]++;
        corner[s->c0[j] * (n_rt + 1) + s->r1[j]]--;
        corner[s->c1[j] * (n_rt + 1) + s->r0[j]]--;
        corner[s->c1[j] * (n_rt + 1) + s->r1[j]]++;
        const int32_t yi = t->yid[b * 256 + s->kd[j]];
        point32_t *q = s->points32 + j;
        q->x = t->txp32 + b * pc;
        q->y = t->typ32 + yi * pr;
        /* (its rectangle is empty unless top_j >= tau, and then 2^-32 / k < ws < 2) */
        q->ws = s->c1[j] ? (float)(p->w * pow2(e - t->xexp[b] - t->yexp[yi])) : 0.0f;
    }
    *d_abs = (m0 * pow2(e)) * U8_DROP * (1.0 + 0x1p-20) + (double)(k + 16) * 0x1p-122;
    return e;
}

/* The tiles' point lists, in point order, in one array: tile = ct * n_rt + rt holds
 * lists[list_start[tile] .. list_start[tile + 1]) (the counts from u8_points' differences).
 * Returns -1 where memory ran out. */
static int u8_lists(const tables_t *t, scratch_t *s, int64_t k)
{
    const int64_t n_rt = t->n_rt, n_tiles = t->n_ct * n_rt;
    int64_t *diff = s->list_diff, *start = s->list_start, *fill = s->list_fill, offset = 0;
    for (int64_t ct = 0; ct <= t->n_ct; ct++) /* 2-D prefix sums: the counts */
        for (int64_t rt = 0; rt <= n_rt; rt++) {
            const int64_t i = ct * (n_rt + 1) + rt;
            diff[i] += (ct ? diff[i - n_rt - 1] : 0) + (rt ? diff[i - 1] : 0)
                       - (ct && rt ? diff[i - n_rt - 2] : 0);
        }
    for (int64_t tile = 0; tile < n_tiles; tile++) {
        start[tile] = fill[tile] = offset;
        offset += diff[tile / n_rt * (n_rt + 1) + tile % n_rt];
    }
    start[n_tiles] = offset;
    if (offset > s->list_cap) {
        int32_t *grown = realloc(s->lists, offset * sizeof(int32_t));
        if (!grown) return -1;
        s->lists = grown;
        s->list_cap = offset;
    }
    for (int64_t j = 0; j < k; j++)
        for (int64_t ct = s->c0[j]; ct < s->c1[j]; ct++)
            for (int64_t rt = s->r0[j]; rt < s->r1[j]; rt++)
                s->lists[fill[ct * n_rt + rt]++] = (int32_t)j;
    return 0;
}

static inline v8f fma8(v8f a, v8f b, v8f c)
{
#ifdef __FMA__
    return (v8f)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
    return a * b + c;
#endif
}

/* Adds point j's terms on tile (rt, ct) to the float32 sums a. */
static inline void add_point32(const scratch_t *s, int32_t j, int64_t rt, int64_t ct, v8f *a)
{
    const point32_t *p = s->points32 + j;
    v8f x;
    memcpy(&x, p->x + ct * TILE_COLS, sizeof x);
    const v8f ws = {p->ws, p->ws, p->ws, p->ws, p->ws, p->ws, p->ws, p->ws};
    x *= ws;
    const float *y = p->y + rt * TILE_ROWS;
    for (int r = 0; r < TILE_ROWS; r++) {
        const v8f yv = {y[r], y[r], y[r], y[r], y[r], y[r], y[r], y[r]};
        a[r] = fma8(x, yv, a[r]);
    }
}

/* The float32 sums of tile (rt, ct) over its n points (list) into acc32, as two interleaved
 * partial sums (the latency of a fused multiply-add); returns their largest. */
static float sum_tile32(const tables_t *t, const scratch_t *s, const int32_t *list, int64_t n,
                        int64_t rt, int64_t ct, float *acc32)
{
    const int64_t pc = t->n_ct * TILE_COLS;
    v8f even[TILE_ROWS] = {{0}}, odd[TILE_ROWS] = {{0}};
    int64_t i = 0;
    for (; i + 2 <= n; i += 2) {
        add_point32(s, list[i], rt, ct, even);
        add_point32(s, list[i + 1], rt, ct, odd);
    }
    if (i < n) add_point32(s, list[i], rt, ct, even);
    v8f top = {0};
    for (int r = 0; r < TILE_ROWS; r++) {
        const v8f sum = even[r] + odd[r];
        memcpy(acc32 + (rt * TILE_ROWS + r) * pc + ct * TILE_COLS, &sum, sizeof sum);
        const v8si greater = sum > top;
        top = (v8f)(((v8si)sum & greater) | ((v8si)top & ~greater));
    }
    float m = 0.0f;
    for (int l = 0; l < 8; l++) m = top[l] > m ? top[l] : m;
    return m;
}

/* persim's float64 sum at pixel (r, c): every point's term, in persim's order. */
static double exact_pixel(const scratch_t *s, int64_t k, int64_t r, int64_t c)
{
    double sum = 0.0;
    for (int64_t j = 0; j < k; j++) {
        const point_t *p = s->points + j;
        sum += (p->x[c] * p->y[r]) * p->w;
    }
    return sum;
}

/* The largest pixel sum m (unscaled), from the tiles' float32 sums: persim's sum at every
 * pixel whose upper bound reaches the largest lower bound. */
static double certified_max(const tables_t *t, scratch_t *s, int64_t k, int64_t n_rows,
                            int64_t n_cols, double d_abs)
{
    const int64_t pc = t->n_ct * TILE_COLS, n_rt = t->n_rt, n_tiles = t->n_ct * n_rt;
    double lower = 0.0;
    for (int64_t tile = 0; tile < n_tiles; tile++) {
        const double lo = ((double)s->tile_max[tile] - d_abs) * (1.0 - s->tile_rel[tile]);
        lower = lo > lower ? lo : lower;
    }
    double m = 0.0;
    for (int64_t tile = 0; tile < n_tiles; tile++) {
        const double rel = s->tile_rel[tile];
        if (((double)s->tile_max[tile] + d_abs) * (1.0 + rel) < lower) continue;
        const int64_t ct = tile / n_rt, rt = tile % n_rt;
        for (int64_t r = rt * TILE_ROWS; r < (rt + 1) * TILE_ROWS && r < n_rows; r++)
            for (int64_t c = ct * TILE_COLS; c < (ct + 1) * TILE_COLS && c < n_cols; c++) {
                if (((double)s->acc32[r * pc + c] + d_abs) * (1.0 + rel) < lower) continue;
                const double exact = exact_pixel(s, k, r, c);
                m = exact > m ? exact : m;
            }
    }
    return m;
}

/* One row of a tile into uint8: trunc((s / m) * 255) at both ends of each pixel's interval
 * ([v * lo_f - dc, v * hi_f + dc] in units of the uint8 scale); persim's sum where they
 * differ. */
static void u8_tile_row(const scratch_t *s, int64_t k, const float *v32, v8f lo_v, v8f hi_v,
                        v8f dc_v, double m, int64_t r, int64_t c_base, int64_t width,
                        uint8_t *row)
{
    v8f v;
    memcpy(&v, v32, sizeof v);
    const v8si a = __builtin_convertvector(v * lo_v - dc_v, v8si);
    const v8si b = __builtin_convertvector(v * hi_v + dc_v, v8si);
    uint8_t bytes[TILE_COLS];
    unsigned unsure;
#ifdef __AVX2__
    unsure = ~(unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(
                 _mm256_cmpeq_epi32((__m256i)a, (__m256i)b))) & 0xff;
    const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128((__m256i)a),
                                          _mm256_extracti128_si256((__m256i)a, 1));
    _mm_storel_epi64((__m128i *)bytes, _mm_packus_epi16(words, words));
#else
    unsure = 0;
    for (int l = 0; l < TILE_COLS; l++) {
        bytes[l] = (uint8_t)a[l];
        unsure |= (unsigned)(a[l] != b[l]) << l;
    }
#endif
    memcpy(row, bytes, width);
    for (; unsure; unsure &= unsure - 1) {
        const int c = __builtin_ctz(unsure);
        if (c < width) row[c] = (uint8_t)((exact_pixel(s, k, r, c_base + c) / m) * 255.0);
    }
}

/* The uint8 PI (n_rows x n_cols) of the k ordered bars, equal to untile() of accumulate_pi's
 * sums (see above). Returns 0, 1 where the float64 path must run instead (a largest term
 * below U8_MIN_SCALE), or -1 where memory ran out. */
static int certified_u8(const tables_t *t, scratch_t *s, int64_t k, int64_t n_rows,
                        int64_t n_cols, uint8_t *out)
{
    const int64_t pc = t->n_ct * TILE_COLS, n_rt = t->n_rt, n_tiles = t->n_ct * n_rt;
    if (k > U8_MAX_POINTS) return 1; /* gamma_bound needs n u <= 1/4 */
    double d_abs;
    const int e = u8_points(t, s, k, &d_abs);
    if (e == INT32_MIN) return 1;
    if (u8_lists(t, s, k) != 0) return -1;
    const double rel64 = gamma_bound(k + 4, 0x1p-53);
    for (int64_t tile = 0; tile < n_tiles; tile++) {
        const int64_t first = s->list_start[tile], n = s->list_start[tile + 1] - first;
        s->tile_max[tile] = sum_tile32(t, s, s->lists + first, n, tile % n_rt, tile / n_rt,
                                       s->acc32);
        s->tile_rel[tile] = 2.0 * (gamma_bound(n + 8, 0x1p-24) + rel64);
    }
    if (STAGES < 4) return 0;
    const double m = certified_max(t, s, k, n_rows, n_cols, d_abs);
    if (!(m > 0.0)) {
        memset(out, 0, n_rows * n_cols);
        return 0;
    }
    /* in float32, with U8_MARGIN for its roundings (three per bound, each <= 2^-24) */
    const double c255 = 255.0 / (m * pow2(e));
    const float dc = (float)(d_abs * c255 * (1.0 + U8_MARGIN));
    const v8f dc_v = {dc, dc, dc, dc, dc, dc, dc, dc};
    for (int64_t tile = 0; tile < n_tiles; tile++) {
        const int64_t ct = tile / n_rt, rt = tile % n_rt, c_base = ct * TILE_COLS;
        const int64_t width = n_cols - c_base < TILE_COLS ? n_cols - c_base : TILE_COLS;
        const double rel = s->tile_rel[tile];
        const float lo = (float)((1.0 - rel) * c255 * (1.0 - U8_MARGIN));
        const float hi = (float)((1.0 + rel) * c255 * (1.0 + U8_MARGIN));
        const v8f lo_v = {lo, lo, lo, lo, lo, lo, lo, lo}, hi_v = {hi, hi, hi, hi, hi, hi, hi, hi};
        for (int64_t r = rt * TILE_ROWS; r < (rt + 1) * TILE_ROWS && r < n_rows; r++)
            u8_tile_row(s, k, s->acc32 + r * pc + c_base, lo_v, hi_v, dc_v, m, r, c_base, width,
                        out + r * n_cols + c_base);
    }
    return 0;
}

static int alloc_scratch(scratch_t *s, int64_t length, const tables_t *t, int64_t padded_pixels)
{
    int32_t **ints[] = {&s->levels, &s->run_val, &s->run_pos, &s->turn_val, &s->turn_pos,
                        &s->stack_val, &s->stack_min, &s->stack_pos, &s->births, &s->deaths,
                        &s->edges, &s->kb, &s->kd, &s->ke, &s->c0, &s->c1, &s->r0, &s->r1};
    const int64_t n_tiles = t->n_ct * t->n_rt;
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (!(*ints[i] = malloc((length + 16) * sizeof(int32_t)))) return -1; /* +8: pack8 */
    s->ids_stride = length + 16;
    s->kept_stride = t->n_rt_padded * ((length + 64) / 64);
    s->ids = malloc(t->n_ct * s->ids_stride * sizeof(int32_t));
    s->n_ids = malloc(t->n_ct * sizeof(int64_t));
    s->kept = malloc(t->n_ct * s->kept_stride * sizeof(uint64_t));
    s->acc = malloc(padded_pixels * sizeof(double));
    s->points = malloc((length + 1) * sizeof(point_t));
    s->column_points = malloc((length + 1) * sizeof(column_point_t));
    s->xw = malloc((length + 1) * sizeof(double));
    s->yw_peak = malloc((length + 1) * sizeof(double));
    s->points32 = malloc((length + 1) * sizeof(point32_t));
    s->list_diff = malloc((t->n_ct + 1) * (t->n_rt + 1) * sizeof(int64_t));
    s->list_start = malloc((n_tiles + 1) * sizeof(int64_t));
    s->list_fill = malloc(n_tiles * sizeof(int64_t));
    s->acc32 = malloc(padded_pixels * sizeof(float));
    s->tile_rel = malloc(n_tiles * sizeof(double));
    s->tile_max = malloc(n_tiles * sizeof(float));
    return s->points && s->column_points && s->ids && s->n_ids && s->kept && s->acc && s->xw
           && s->yw_peak && s->points32
           && s->list_diff && s->list_start && s->list_fill && s->acc32 && s->tile_rel
           && s->tile_max ? 0 : -1;
}

static void free_scratch(scratch_t *s)
{
    void *all[] = {s->levels, s->run_val, s->run_pos, s->turn_val, s->turn_pos, s->stack_val,
                   s->stack_min, s->stack_pos, s->births, s->deaths, s->edges, s->kb, s->kd,
                   s->ke, s->ids, s->column_points, s->c0, s->c1, s->r0, s->r1, s->kept,
                   s->n_ids, s->points, s->acc, s->xw, s->yw_peak, s->points32, s->lists,
                   s->list_diff, s->list_start, s->list_fill, s->acc32, s->tile_rel,
                   s->tile_max};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

/* PIs of the six scans of each of the n_img H x W x 3 uint8 images: raw (N x 6 x R x C float64,
 * or NULL) and out_u8 (N x 6 x R x C). Images are taken PAPER_CHUNK at a time from *next
 * (shared by every thread running this call). Returns 0, or -1 if scratch memory ran out. */
int paper_pis(const uint8_t *images, int64_t n_img, int64_t h, int64_t w, const tables_t *t,
              int64_t n_rows, int64_t n_cols, double *raw, uint8_t *out_u8, int64_t *next)
{
    const int64_t length = h * w, pc = t->n_ct * TILE_COLS, plane = n_rows * n_cols;
    const int certify = raw == NULL && t->n_ct * t->n_rt >= U8_MIN_TILES;
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
                if (k > 0 && certify) {
                    const int status = certified_u8(t, &s, k, n_rows, n_cols,
                                                    out_u8 + plane_index * plane);
                    if (status < 0) {
                        free_scratch(&s);
                        return -1;
                    }
                    if (status == 0) continue;
                }
                if (k > 0) {
                    accumulate_pi(t, &s, k, s.acc);
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
