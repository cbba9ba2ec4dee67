/* The per-step arithmetic of the pyramid coder's wavefront decoder (archiver.codecs.pyramid.wave),
 * compiled: the neighbour gathers, the fixed-point context network, the stable sort into runs and
 * the scatter of the decoded values. The range decoding itself stays in constriction (Python).
 *
 * Every function computes exactly what the numpy path of wave.py / net.py computes (same integers;
 * tests/codecs/pyramid/test_native.py compares them); the numpy path is the reference and is used
 * wherever this library was not built. Loaded with ctypes (archiver.codecs.pyramid.native): plain C
 * functions on raw pointers, every array contiguous, no Python object touched, so the callers keep
 * the arrays alive and check their shapes.
 *
 * The context network in integers, as net.py's module docstring defines it (units of 2**-8):
 *     h1 = clip(W1 . x + B1, 0, ACT_MAX)
 *     h2 = clip(floor((W2 . h1 + B2 * 2**8) / 2**8), 0, ACT_MAX)
 *     o  = floor((W3 . h2 + B3 * 2**8) / 2**8)
 *     mean = clip(floor((o0 + 128) / 256), -SYMBOL_CLIP, SYMBOL_CLIP)
 *     bucket = clip(floor((o1 - SCALE_LOW) / SCALE_STEP), 0, BUCKETS - 1)
 * with |x| <= 1023, |W|, |B| < 2**20 and at most MAX_HIDDEN hidden units every sum stays below 2**50.
 */
#include <stdint.h>

#define MAX_HIDDEN 64
#define FEATURES 9 /* the parent and its 4 neighbours, then 4 causal neighbours */
#define PARENT_FEATURES 5
#define ACT_MAX ((int64_t)(1 << 24) - 1)
#define SYMBOL_CLIP 4095
#define FEATURE_CLIP 1023
#define BUCKETS 32
#define SCALE_LOW (-3 * 256)
#define SCALE_STEP 64

static inline int64_t clip64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Python's module init, so that the library builds and imports as an extension module everywhere;
 * it is used through ctypes only. Declared without Python.h: returning NULL without an exception
 * set is never reached, because nothing imports it as a module. */
void *PyInit__wavestep(void) { return 0; }

/* Positions the network runs on at once: the features of CHUNK positions (9 rows of CHUNK
 * doubles, 4.6 KB) stay in the first-level cache. */
#define CHUNK 64
/* The network, twice on x86-64 with GCC or Clang (_wavestep_net.h): run_net_avx2 for CPUs with
 * AVX2 and FMA (4 doubles a vector instruction), run_net_base for the others (2 doubles, SSE2 or
 * NEON); the same values (see _wavestep_net.h). Elsewhere only the second. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define NET_LANES 4
#define NET_NAME run_net_avx2
#define NET_TARGET __attribute__((target("avx2,fma")))
#include "_wavestep_net.h"
#undef NET_LANES
#undef NET_NAME
#undef NET_TARGET
#define HAVE_AVX2_NET 1
#endif
#define NET_LANES 2
#define NET_NAME run_net_base
#define NET_TARGET
#include "_wavestep_net.h"

typedef void (*net_fn)(const double *, const double *, int64_t, int64_t *, int64_t *);

static net_fn choose_net(void) {
#ifdef HAVE_AVX2_NET
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return run_net_avx2;
#endif
    return run_net_base;
}

/* The network alone on CHUNK positions (features x[f * CHUNK + q], as wave_features_net gathers
 * them): ``base`` 0 runs what this CPU is given, 1 the 2-wide code every CPU runs. For the tests,
 * which so check both on any machine; returns CHUNK. */
int64_t wave_run_net(int64_t base, const double *x, const double *net, int64_t hidden, int64_t *mean, int64_t *bucket) {
    if (hidden > MAX_HIDDEN || hidden % 4) return 0;
    (base ? run_net_base : choose_net())(x, net, hidden, mean, bucket);
    return CHUNK;
}

/* One image-size block of a wavefront step: features, network, sort keys.
 *
 * The step's positions of image i (0 <= i < count) are plan positions j (0 <= j < k); position
 * p = i * k + j. Its own index in the block's padded grids is own_pos[j] + i * own_size, its
 * parent's parent_pos[j] + i * parent_size. Features: parent[parent_at + parent_off[0..4]] (0 when
 * parent is NULL: the coarsest level), then own[own_at + own_off[c]] where inside[c * inside_stride
 * + j] (else 0). net (doubles, exact): W1's 9 feature columns (hidden x 9), B1 plus W1's column of
 * the level's one-hot (hidden), W2 / 2**8 (hidden x hidden), B2, W3 / 2**8 (4 x hidden: its 2 rows, then
 * zeros), B3 (4), with ``hidden`` a multiple of 4 (native._level_net pads the network).
 * Writes mean[p], bucket[p] and key[p] = key_base[i] + bucket[p]. */
void wave_features_net(int64_t count, int64_t k, const int64_t *own_pos, const int64_t *parent_pos,
                       int64_t own_size, int64_t parent_size, const uint8_t *inside, int64_t inside_stride,
                       const int16_t *own, const int16_t *parent, const int64_t *own_off,
                       const int64_t *parent_off, const double *net, int64_t hidden,
                       const int64_t *key_base, int32_t *mean, int32_t *bucket, uint16_t *key) {
    double x[FEATURES * CHUNK];
    int64_t m[CHUNK], b[CHUNK];
    if (hidden > MAX_HIDDEN || hidden % 4) return; /* the caller checks; never reached */
    const net_fn run_net = choose_net(); /* a few instructions; no state shared between threads */
    /* The chunks run over all the block's positions, image after image: a step of a few
     * positions an image (a tile's first and last steps) still fills them. */
    for (int64_t p0 = 0; p0 < count * k; p0 += CHUNK) {
        const int64_t n = count * k - p0 < CHUNK ? count * k - p0 : CHUNK;
        int64_t i = p0 / k, j = p0 - i * k; /* position p0 + q's image and plan index */
        int64_t ib[CHUNK];
        for (int64_t q = 0; q < n; q++) {
            const int64_t at = own_pos[j] + i * own_size;
            if (parent) {
                const int64_t pat = parent_pos[j] + i * parent_size;
                for (int f = 0; f < PARENT_FEATURES; f++) x[f * CHUNK + q] = parent[pat + parent_off[f]];
            } else {
                for (int f = 0; f < PARENT_FEATURES; f++) x[f * CHUNK + q] = 0.0;
            }
            for (int c = 0; c < FEATURES - PARENT_FEATURES; c++)
                x[(PARENT_FEATURES + c) * CHUNK + q] = inside[c * inside_stride + j] ? own[at + own_off[c]] : 0;
            ib[q] = i;
            if (++j == k) j = 0, i++;
        }
        for (int64_t q = n; q < CHUNK; q++)
            for (int f = 0; f < FEATURES; f++) x[f * CHUNK + q] = 0.0;
        run_net(x, net, hidden, m, b);
        for (int64_t q = 0; q < n; q++) {
            mean[p0 + q] = (int32_t)m[q];
            bucket[p0 + q] = (int32_t)b[q];
            key[p0 + q] = (uint16_t)(key_base[ib[q]] + b[q]);
        }
    }
}

/* Stable counting sort of n keys below nkeys (at most 2**16): order[] lists the positions by key,
 * each key's in ascending position; the used keys' runs in it are (run_key, run_start, run_stop),
 * ascending. counts: nkeys int64 of scratch. Returns the number of runs. */
int64_t wave_sort(int64_t n, const uint16_t *key, int64_t nkeys, int64_t *counts, int64_t *order,
                  int64_t *run_key, int64_t *run_start, int64_t *run_stop) {
    int64_t runs = 0, first = 0;
    for (int64_t q = 0; q < nkeys; q++) counts[q] = 0;
    for (int64_t p = 0; p < n; p++) counts[key[p]]++;
    for (int64_t q = 0; q < nkeys; q++) {
        const int64_t c = counts[q];
        if (c) {
            run_key[runs] = q;
            run_start[runs] = first;
            run_stop[runs] = first + c;
            runs++;
        }
        counts[q] = first; /* from here on: the next free slot of key q */
        first += c;
    }
    for (int64_t p = 0; p < n; p++) order[counts[key[p]]++] = p;
    return runs;
}

/* The step's values: values[order[s]] = symbols[s] + lows[bucket[order[s]]] + mean[order[s]]
 * (symbols in coding order, as decoded run by run). */
void wave_values(int64_t n, const int64_t *order, const int32_t *symbols, const int32_t *mean,
                 const int32_t *bucket, const int64_t *lows, int64_t *values) {
    for (int64_t s = 0; s < n; s++) {
        const int64_t p = order[s];
        values[p] = (int64_t)symbols[s] + lows[bucket[p]] + mean[p];
    }
}

/* One block's values into its grids: coded[i * coded_stride + start + j] = values[i * k + j] and
 * own[own_pos[j] + i * own_size] = the value clipped to +-FEATURE_CLIP. */
void wave_store(int64_t count, int64_t k, const int64_t *values, const int64_t *own_pos, int64_t own_size,
                int16_t *own, int64_t *coded, int64_t coded_stride, int64_t start) {
    for (int64_t i = 0; i < count; i++) {
        for (int64_t j = 0; j < k; j++) {
            const int64_t v = values[i * k + j];
            coded[i * coded_stride + start + j] = v;
            own[own_pos[j] + i * own_size] = (int16_t)clip64(v, -FEATURE_CLIP, FEATURE_CLIP);
        }
    }
}
