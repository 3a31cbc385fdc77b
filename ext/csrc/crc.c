/* Generic reflected CRC engine; see crc.h.
 *
 * Notation: a CRC register of width n is kept bit-reflected, bit k standing for the
 * coefficient of x^(n-1-k).  Sixteen input bytes loaded little-endian into a 128-bit
 * lane put the coefficient of x^(127-k) at bit k, so the low qword holds the
 * high-degree half H and the high qword the low-degree half L of R = H*x^64 + L.
 * Folding R forward over N more bits is R*x^N = H*x^(N+64) + L*x^N (mod P); a
 * carry-less multiply of two reflected 64-bit operands yields the product times x,
 * hence the constants x^(N+63) mod P and x^(N-1) mod P.  After the last fold the
 * 128-bit remainder R is turned into the register R*x^n mod P by running the table
 * kernel over its 16 bytes from a zero register, which needs no Barrett constants
 * and works for every width.
 */
#include "crc.h"

#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define SLIP_X86 1
#include <immintrin.h>
#else
#define SLIP_X86 0
#endif

/* ---- polynomial arithmetic in the reflected register form ---------------------- */

static uint64_t mulx(const slip_crc_model *m, uint64_t v) {
    return (v >> 1) ^ ((v & 1) ? m->poly : 0);
}

/* a * b mod P, both in reflected register form. */
static uint64_t mulmod(const slip_crc_model *m, uint64_t a, uint64_t b) {
    uint64_t r = 0;
    for (int k = 0; k < m->width; k++) {
        r = mulx(m, r);
        if ((a >> k) & 1) {
            r ^= b;
        }
    }
    return r;
}

/* x^e mod P for any 64-bit e. */
static uint64_t xpow(const slip_crc_model *m, uint64_t e) {
    uint64_t r = (uint64_t)1 << (m->width - 1); /* the polynomial 1 */
    for (int i = 0; e != 0; i++, e >>= 1) {
        if (e & 1) {
            r = mulmod(m, r, m->xpow2[i]);
        }
    }
    return r;
}

/* x^e mod P as a 64-bit carry-less multiplicand (bit j stands for x^(63-j)). */
static uint64_t fold_operand(const slip_crc_model *m, uint64_t e) {
    return xpow(m, e) << (64 - m->width);
}

static void fold_constants(const slip_crc_model *m, uint64_t bits, uint64_t out[2]) {
    out[0] = fold_operand(m, bits + 63); /* multiplies H (low qword) */
    out[1] = fold_operand(m, bits - 1);  /* multiplies L (high qword) */
}

int slip_crc_model_init(slip_crc_model *m, int width, uint64_t poly, uint64_t init,
                        uint64_t xorout) {
    if (width < 8 || width > 64) {
        return -1;
    }
    memset(m, 0, sizeof(*m));
    m->width = width;
    m->mask = width == 64 ? ~(uint64_t)0 : (((uint64_t)1 << width) - 1);
    m->poly = poly & m->mask;
    m->init = init & m->mask;
    m->xorout = xorout & m->mask;

    for (int b = 0; b < 256; b++) {
        uint64_t r = (uint64_t)b;
        for (int i = 0; i < 8; i++) {
            r = mulx(m, r);
        }
        m->table[0][b] = r;
    }
    for (int k = 1; k < 8; k++) {
        for (int b = 0; b < 256; b++) {
            uint64_t prev = m->table[k - 1][b];
            m->table[k][b] = (prev >> 8) ^ m->table[0][prev & 0xff];
        }
    }

    m->xpow2[0] = mulx(m, (uint64_t)1 << (width - 1)); /* x^1 */
    for (int i = 1; i < 67; i++) {
        m->xpow2[i] = mulmod(m, m->xpow2[i - 1], m->xpow2[i - 1]);
    }
    fold_constants(m, 128, m->fold_128);
    fold_constants(m, 256, m->fold_256);
    fold_constants(m, 512, m->fold_512);
    fold_constants(m, 1024, m->fold_1024);
    fold_constants(m, 2048, m->fold_2048);
    return 0;
}

/* ---- portable slicing-by-8 ------------------------------------------------------ */

static inline uint64_t load64le(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static uint64_t crc_table(const slip_crc_model *m, uint64_t reg, const unsigned char *p,
                          size_t len) {
    const uint64_t(*t)[256] = m->table;
    while (len && ((uintptr_t)p & 7)) {
        reg = t[0][(reg ^ *p++) & 0xff] ^ (reg >> 8);
        len--;
    }
    while (len >= 8) {
        uint64_t x = reg ^ load64le(p);
        reg = t[7][x & 0xff] ^ t[6][(x >> 8) & 0xff] ^ t[5][(x >> 16) & 0xff] ^
              t[4][(x >> 24) & 0xff] ^ t[3][(x >> 32) & 0xff] ^ t[2][(x >> 40) & 0xff] ^
              t[1][(x >> 48) & 0xff] ^ t[0][x >> 56];
        p += 8;
        len -= 8;
    }
    while (len--) {
        reg = t[0][(reg ^ *p++) & 0xff] ^ (reg >> 8);
    }
    return reg;
}

/* ---- x86 carry-less multiply folding -------------------------------------------- */

#if SLIP_X86

#define SLIP_TARGET_PCLMUL __attribute__((target("pclmul,sse4.1")))
#define SLIP_TARGET_VPCLMUL256 __attribute__((target("avx2,vpclmulqdq,pclmul,sse4.1")))
#define SLIP_TARGET_VPCLMUL512 __attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.1")))

/* Below this many bytes the fold set-up costs more than it saves. */
#define SLIP_PCLMUL_MIN 256
#define SLIP_VPCLMUL256_MIN 512
#define SLIP_VPCLMUL512_MIN 1024

SLIP_TARGET_PCLMUL static inline __m128i fold128(__m128i x, __m128i k) {
    return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

SLIP_TARGET_PCLMUL static inline __m128i constants128(const uint64_t k[2]) {
    return _mm_set_epi64x((long long)k[1], (long long)k[0]);
}

/* Fold the 16-byte remainder into a register and finish the tail with the table. */
SLIP_TARGET_PCLMUL static uint64_t finish128(const slip_crc_model *m, __m128i x,
                                             const unsigned char *p, size_t len) {
    const __m128i k128 = constants128(m->fold_128);
    while (len >= 16) {
        x = _mm_xor_si128(fold128(x, k128), _mm_loadu_si128((const __m128i *)p));
        p += 16;
        len -= 16;
    }
    unsigned char rem[16];
    _mm_storeu_si128((__m128i *)rem, x);
    uint64_t reg = crc_table(m, 0, rem, sizeof(rem));
    return crc_table(m, reg, p, len);
}

SLIP_TARGET_PCLMUL static uint64_t crc_pclmul(const slip_crc_model *m, uint64_t reg,
                                              const unsigned char *p, size_t len) {
    if (len < SLIP_PCLMUL_MIN) {
        return crc_table(m, reg, p, len);
    }
    const __m128i k1024 = constants128(m->fold_1024);
    const __m128i k128 = constants128(m->fold_128);
    __m128i x0 = _mm_loadu_si128((const __m128i *)(p + 0));
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    __m128i x4 = _mm_loadu_si128((const __m128i *)(p + 64));
    __m128i x5 = _mm_loadu_si128((const __m128i *)(p + 80));
    __m128i x6 = _mm_loadu_si128((const __m128i *)(p + 96));
    __m128i x7 = _mm_loadu_si128((const __m128i *)(p + 112));
    x0 = _mm_xor_si128(x0, _mm_set_epi64x(0, (long long)reg));
    p += 128;
    len -= 128;
    while (len >= 128) {
        x0 = _mm_xor_si128(fold128(x0, k1024), _mm_loadu_si128((const __m128i *)(p + 0)));
        x1 = _mm_xor_si128(fold128(x1, k1024), _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = _mm_xor_si128(fold128(x2, k1024), _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = _mm_xor_si128(fold128(x3, k1024), _mm_loadu_si128((const __m128i *)(p + 48)));
        x4 = _mm_xor_si128(fold128(x4, k1024), _mm_loadu_si128((const __m128i *)(p + 64)));
        x5 = _mm_xor_si128(fold128(x5, k1024), _mm_loadu_si128((const __m128i *)(p + 80)));
        x6 = _mm_xor_si128(fold128(x6, k1024), _mm_loadu_si128((const __m128i *)(p + 96)));
        x7 = _mm_xor_si128(fold128(x7, k1024), _mm_loadu_si128((const __m128i *)(p + 112)));
        p += 128;
        len -= 128;
    }
    __m128i x = x0;
    x = _mm_xor_si128(fold128(x, k128), x1);
    x = _mm_xor_si128(fold128(x, k128), x2);
    x = _mm_xor_si128(fold128(x, k128), x3);
    x = _mm_xor_si128(fold128(x, k128), x4);
    x = _mm_xor_si128(fold128(x, k128), x5);
    x = _mm_xor_si128(fold128(x, k128), x6);
    x = _mm_xor_si128(fold128(x, k128), x7);
    return finish128(m, x, p, len);
}

SLIP_TARGET_VPCLMUL256 static inline __m256i fold256(__m256i x, __m256i k, __m256i data) {
    return _mm256_xor_si256(
        _mm256_xor_si256(_mm256_clmulepi64_epi128(x, k, 0x00), _mm256_clmulepi64_epi128(x, k, 0x11)),
        data);
}

SLIP_TARGET_VPCLMUL256 static uint64_t crc_vpclmul256(const slip_crc_model *m, uint64_t reg,
                                                      const unsigned char *p, size_t len) {
    if (len < SLIP_VPCLMUL256_MIN) {
        return crc_pclmul(m, reg, p, len);
    }
    const __m256i k1024 = _mm256_broadcastsi128_si256(constants128(m->fold_1024));
    const __m256i k256 = _mm256_broadcastsi128_si256(constants128(m->fold_256));
    const __m128i k128 = constants128(m->fold_128);
    __m256i y0 = _mm256_loadu_si256((const __m256i *)(p + 0));
    __m256i y1 = _mm256_loadu_si256((const __m256i *)(p + 32));
    __m256i y2 = _mm256_loadu_si256((const __m256i *)(p + 64));
    __m256i y3 = _mm256_loadu_si256((const __m256i *)(p + 96));
    y0 = _mm256_xor_si256(y0, _mm256_set_epi64x(0, 0, 0, (long long)reg));
    p += 128;
    len -= 128;
    while (len >= 128) {
        y0 = fold256(y0, k1024, _mm256_loadu_si256((const __m256i *)(p + 0)));
        y1 = fold256(y1, k1024, _mm256_loadu_si256((const __m256i *)(p + 32)));
        y2 = fold256(y2, k1024, _mm256_loadu_si256((const __m256i *)(p + 64)));
        y3 = fold256(y3, k1024, _mm256_loadu_si256((const __m256i *)(p + 96)));
        p += 128;
        len -= 128;
    }
    __m256i y = fold256(y0, k256, y1);
    y = fold256(y, k256, y2);
    y = fold256(y, k256, y3);
    __m128i x = _mm256_castsi256_si128(y);
    x = _mm_xor_si128(fold128(x, k128), _mm256_extracti128_si256(y, 1));
    return finish128(m, x, p, len);
}

SLIP_TARGET_VPCLMUL512 static inline __m512i fold512(__m512i x, __m512i k, __m512i data) {
    /* 0x96 = a ^ b ^ c */
    return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
                                     _mm512_clmulepi64_epi128(x, k, 0x11), data, 0x96);
}

SLIP_TARGET_VPCLMUL512 static uint64_t crc_vpclmul512(const slip_crc_model *m, uint64_t reg,
                                                      const unsigned char *p, size_t len) {
    if (len < SLIP_VPCLMUL512_MIN) {
        return crc_pclmul(m, reg, p, len);
    }
    const __m512i k2048 = _mm512_broadcast_i32x4(constants128(m->fold_2048));
    const __m512i k512 = _mm512_broadcast_i32x4(constants128(m->fold_512));
    const __m128i k128 = constants128(m->fold_128);
    __m512i z0 = _mm512_loadu_si512((const void *)(p + 0));
    __m512i z1 = _mm512_loadu_si512((const void *)(p + 64));
    __m512i z2 = _mm512_loadu_si512((const void *)(p + 128));
    __m512i z3 = _mm512_loadu_si512((const void *)(p + 192));
    z0 = _mm512_xor_si512(z0, _mm512_zextsi128_si512(_mm_set_epi64x(0, (long long)reg)));
    p += 256;
    len -= 256;
    while (len >= 256) {
        z0 = fold512(z0, k2048, _mm512_loadu_si512((const void *)(p + 0)));
        z1 = fold512(z1, k2048, _mm512_loadu_si512((const void *)(p + 64)));
        z2 = fold512(z2, k2048, _mm512_loadu_si512((const void *)(p + 128)));
        z3 = fold512(z3, k2048, _mm512_loadu_si512((const void *)(p + 192)));
        p += 256;
        len -= 256;
    }
    __m512i z = fold512(z0, k512, z1);
    z = fold512(z, k512, z2);
    z = fold512(z, k512, z3);
    while (len >= 64) {
        z = fold512(z, k512, _mm512_loadu_si512((const void *)p));
        p += 64;
        len -= 64;
    }
    __m128i x = _mm512_extracti32x4_epi32(z, 0);
    x = _mm_xor_si128(fold128(x, k128), _mm512_extracti32x4_epi32(z, 1));
    x = _mm_xor_si128(fold128(x, k128), _mm512_extracti32x4_epi32(z, 2));
    x = _mm_xor_si128(fold128(x, k128), _mm512_extracti32x4_epi32(z, 3));
    return finish128(m, x, p, len);
}

#endif /* SLIP_X86 */

/* ---- dispatch ------------------------------------------------------------------- */

int slip_crc_impl_available(int impl) {
    switch (impl) {
    case SLIP_CRC_TABLE:
        return 1;
#if SLIP_X86
    case SLIP_CRC_PCLMUL:
        __builtin_cpu_init();
        return __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    case SLIP_CRC_VPCLMUL256:
        __builtin_cpu_init();
        return __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("vpclmulqdq");
    case SLIP_CRC_VPCLMUL512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1") &&
               __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq");
#endif
    default:
        return 0;
    }
}

static int best_impl = -1;

int slip_crc_best_impl(void) {
    if (best_impl < 0) {
        int best = SLIP_CRC_TABLE;
        if (slip_crc_impl_available(SLIP_CRC_VPCLMUL512)) {
            best = SLIP_CRC_VPCLMUL512;
        } else if (slip_crc_impl_available(SLIP_CRC_VPCLMUL256)) {
            best = SLIP_CRC_VPCLMUL256;
        } else if (slip_crc_impl_available(SLIP_CRC_PCLMUL)) {
            best = SLIP_CRC_PCLMUL;
        }
        best_impl = best;
    }
    return best_impl;
}

uint64_t slip_crc_update_with(const slip_crc_model *m, int impl, uint64_t reg,
                              const unsigned char *buf, size_t len) {
    if (!slip_crc_impl_available(impl)) {
        impl = SLIP_CRC_TABLE;
    }
    switch (impl) {
#if SLIP_X86
    case SLIP_CRC_VPCLMUL512:
        return crc_vpclmul512(m, reg, buf, len);
    case SLIP_CRC_VPCLMUL256:
        return crc_vpclmul256(m, reg, buf, len);
    case SLIP_CRC_PCLMUL:
        return crc_pclmul(m, reg, buf, len);
#endif
    default:
        return crc_table(m, reg, buf, len);
    }
}

uint64_t slip_crc_update(const slip_crc_model *m, uint64_t reg, const unsigned char *buf,
                         size_t len) {
    switch (slip_crc_best_impl()) {
#if SLIP_X86
    case SLIP_CRC_VPCLMUL512:
        return crc_vpclmul512(m, reg, buf, len);
    case SLIP_CRC_VPCLMUL256:
        return crc_vpclmul256(m, reg, buf, len);
    case SLIP_CRC_PCLMUL:
        return crc_pclmul(m, reg, buf, len);
#endif
    default:
        return crc_table(m, reg, buf, len);
    }
}

/* Register of A+B = (reg(A) ^ init) * x^(8 len_b) + reg(B); in final values
 * crc(A+B) = ((crc_a ^ xorout ^ init) * x^(8 len_b) mod P) ^ crc_b. */
uint64_t slip_crc_combine(const slip_crc_model *m, uint64_t crc_a, uint64_t crc_b,
                          uint64_t len_b) {
    uint64_t a = (crc_a ^ m->xorout ^ m->init) & m->mask;
    /* multiply by x^(8 len_b) = prod over set bits i of len_b of x^(2^(i+3)) */
    for (int i = 0; len_b != 0; i++, len_b >>= 1) {
        if (len_b & 1) {
            a = mulmod(m, a, m->xpow2[i + 3]);
        }
    }
    return (a ^ crc_b) & m->mask;
}
