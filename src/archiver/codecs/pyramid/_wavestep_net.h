/* The context network of _wavestep.c on CHUNK positions, included once per vector width:
 * NET_LANES doubles a vector (GCC/Clang vector extensions), the function NET_NAME, compiled with
 * the attribute NET_TARGET. Names made here carry NET_LANES so that the two copies do not clash.
 *
 * In doubles, as net.py computes it: every product and partial sum is an integer multiple of 2**-8
 * below 2**43, exact in any order of summation (with or without fused multiply-adds), so the floors
 * below equal the integer formulas of _wavestep.c's header. */
#define NET_CAT2(a, b) a##b
#define NET_CAT(a, b) NET_CAT2(a, b)
#define VD NET_CAT(vd, NET_LANES)
#define VI NET_CAT(vi, NET_LANES)
#define SPLAT NET_CAT(splat, NET_LANES)
#define VFLOOR NET_CAT(vfloor, NET_LANES)
#define VCLIP NET_CAT(vclip, NET_LANES)
#define LAYER NET_CAT(layer, NET_LANES)

typedef double VD __attribute__((vector_size(NET_LANES * sizeof(double))));
typedef int64_t VI __attribute__((vector_size(NET_LANES * sizeof(double))));

static inline __attribute__((always_inline)) NET_TARGET VD SPLAT(double v) {
    VD out;
    for (int l = 0; l < NET_LANES; l++) out[l] = v;
    return out;
}

/* floor(a), exact for |a| < 2**51: a rounded to the nearest integer (adding and taking away
 * 1.5 * 2**52, in the default rounding mode), minus 1 where that is above a (a true comparison is
 * all ones). */
static inline __attribute__((always_inline)) NET_TARGET VD VFLOOR(VD a) {
    const VD r = (a + SPLAT(6755399441055744.0)) - SPLAT(6755399441055744.0);
    return r - (VD)((VI)SPLAT(1.0) & (r > a));
}

/* min(max(a, 0), hi) */
static inline __attribute__((always_inline)) NET_TARGET VD VCLIP(VD a, VD hi) {
    a = (VD)((VI)a & (a > SPLAT(0.0)));
    const VI below = a < hi;
    return (VD)(((VI)a & below) | ((VI)hi & ~below));
}

/* One layer on 2 * NET_LANES positions: out[u] = b[u] + sum_v w[u * n_in + v] * in[v] for n_out
 * outputs (a multiple of 4), two vectors per input. Four outputs at a time, eight independent
 * sums: one sum alone is a chain of multiply-adds each waiting for the last (4 cycles), which left
 * the network at 48 ns a position against 15–26 with eight (AVX2, measured). */
static inline __attribute__((always_inline)) NET_TARGET void LAYER(const double *w, const double *b, int64_t n_out,
                                                                   int64_t n_in, VD (*in)[2], VD (*out)[2]) {
    for (int64_t u = 0; u < n_out; u += 4) {
        VD a0 = SPLAT(b[u]), a1 = SPLAT(b[u + 1]), a2 = SPLAT(b[u + 2]), a3 = SPLAT(b[u + 3]);
        VD c0 = a0, c1 = a1, c2 = a2, c3 = a3;
        const double *w0 = w + u * n_in, *w1 = w0 + n_in, *w2 = w1 + n_in, *w3 = w2 + n_in;
        for (int64_t v = 0; v < n_in; v++) {
            const VD h = in[v][0], g = in[v][1];
            const VD k0 = SPLAT(w0[v]), k1 = SPLAT(w1[v]), k2 = SPLAT(w2[v]), k3 = SPLAT(w3[v]);
            a0 += k0 * h, a1 += k1 * h, a2 += k2 * h, a3 += k3 * h;
            c0 += k0 * g, c1 += k1 * g, c2 += k2 * g, c3 += k3 * g;
        }
        out[u][0] = a0, out[u + 1][0] = a1, out[u + 2][0] = a2, out[u + 3][0] = a3;
        out[u][1] = c0, out[u + 1][1] = c1, out[u + 2][1] = c2, out[u + 3][1] = c3;
    }
}

/* The network on CHUNK positions whose features are x[f * CHUNK + q] (lanes past the step's last
 * position hold anything): out_mean[q], out_bucket[q]. ``hidden`` is a multiple of 4 (the caller
 * pads the network with units of zero weights, whose outputs are 0 and change nothing); net: W1's
 * 9 feature columns, B1 (the level's one-hot folded in), W2 / 2**8, B2, W3 / 2**8 (4 rows), B3 (4). */
static NET_TARGET void NET_NAME(const double *x, const double *net, int64_t hidden, int64_t *out_mean,
                                int64_t *out_bucket) {
    const double *w1 = net, *b1 = w1 + hidden * FEATURES, *w2 = b1 + hidden, *b2 = w2 + hidden * hidden;
    const double *w3 = b2 + hidden, *b3 = w3 + 4 * hidden;
    const VD act_max = SPLAT((double)ACT_MAX);
    VD xs[FEATURES][2], h1[MAX_HIDDEN][2], h2[MAX_HIDDEN][2], o[4][2];
    for (int q = 0; q < CHUNK; q += 2 * NET_LANES) {
        for (int f = 0; f < FEATURES; f++) {
            __builtin_memcpy(&xs[f][0], x + f * CHUNK + q, sizeof(VD));
            __builtin_memcpy(&xs[f][1], x + f * CHUNK + q + NET_LANES, sizeof(VD));
        }
        LAYER(w1, b1, hidden, FEATURES, xs, h1);
        for (int64_t u = 0; u < hidden; u++) h1[u][0] = VCLIP(h1[u][0], act_max), h1[u][1] = VCLIP(h1[u][1], act_max);
        LAYER(w2, b2, hidden, hidden, h1, h2);
        for (int64_t u = 0; u < hidden; u++)
            h2[u][0] = VCLIP(VFLOOR(h2[u][0]), act_max), h2[u][1] = VCLIP(VFLOOR(h2[u][1]), act_max);
        LAYER(w3, b3, 4, hidden, h2, o);
        for (int g = 0; g < 2; g++) {
            /* floor((floor(o) + c) / 2**k) = floor((o + c) / 2**k) for an integer c: o's own floor
             * is left out, as in net.py; the scalings by powers of two are exact. */
            const VD mean = VFLOOR((o[0][g] + SPLAT(128.0)) * SPLAT(1.0 / 256.0));
            const VD bucket = VFLOOR((o[1][g] - SPLAT((double)SCALE_LOW)) * SPLAT(1.0 / SCALE_STEP));
            for (int l = 0; l < NET_LANES; l++) {
                out_mean[q + g * NET_LANES + l] = clip64((int64_t)mean[l], -SYMBOL_CLIP, SYMBOL_CLIP);
                out_bucket[q + g * NET_LANES + l] = clip64((int64_t)bucket[l], 0, BUCKETS - 1);
            }
        }
    }
}

#undef VD
#undef VI
#undef SPLAT
#undef VFLOOR
#undef VCLIP
#undef LAYER
