/* Generic reflected CRC engine (widths 8..64) for slipstream.ext._digest_c.
 *
 * One model describes one CRC (reflected polynomial, init, xorout, width).  From it
 * slip_crc_model_init() derives the slicing-by-8 tables, the carry-less folding
 * constants (x^k mod P, bit-reflected) and the x^(2^i) mod P powers used by combine.
 * The update functions work on the *internal* register (before xorout); callers
 * apply init/xorout.  All functions are pure and thread-safe once the model is
 * initialised, so they run without the GIL.
 */
#ifndef SLIP_CRC_H
#define SLIP_CRC_H

#include <stddef.h>
#include <stdint.h>

/* Implementations of the bulk update, best first. */
enum slip_crc_impl {
    SLIP_CRC_TABLE = 0,      /* portable slicing-by-8 */
    SLIP_CRC_PCLMUL = 1,     /* 128-bit PCLMULQDQ folding, 8 lanes */
    SLIP_CRC_VPCLMUL256 = 2, /* AVX2 VPCLMULQDQ folding, 4 x 256-bit lanes */
    SLIP_CRC_VPCLMUL512 = 3, /* AVX-512 VPCLMULQDQ folding, 4 x 512-bit lanes */
};

typedef struct {
    int width;          /* 8..64 */
    uint64_t poly;      /* bit-reflected polynomial, without the x^width term */
    uint64_t init;      /* initial register (reflected form, as the CRC catalogues give it) */
    uint64_t xorout;    /* final xor */
    uint64_t mask;      /* (1 << width) - 1 */
    uint64_t table[8][256];
    /* Folding constants as 64-bit carry-less multiplicands:
     * fold_N[0] multiplies the high-degree qword, fold_N[1] the low-degree one,
     * folding a 128-bit lane forward by N bits. */
    uint64_t fold_128[2];
    uint64_t fold_256[2];
    uint64_t fold_512[2];
    uint64_t fold_1024[2];
    uint64_t fold_2048[2];
    /* x^(2^i) mod P (reflected register form), i = 0..66, for combine. */
    uint64_t xpow2[67];
} slip_crc_model;

/* Fill in a model; returns 0 on success, -1 for an unsupported width. */
int slip_crc_model_init(slip_crc_model *m, int width, uint64_t poly, uint64_t init,
                        uint64_t xorout);

/* Best implementation this CPU supports (cached after the first call). */
int slip_crc_best_impl(void);

/* 1 if `impl` can run on this CPU. */
int slip_crc_impl_available(int impl);

/* Advance the internal register `reg` over `len` bytes with the best implementation. */
uint64_t slip_crc_update(const slip_crc_model *m, uint64_t reg, const unsigned char *buf,
                         size_t len);

/* Same, with an explicit implementation (falls back to the table path if unavailable). */
uint64_t slip_crc_update_with(const slip_crc_model *m, int impl, uint64_t reg,
                              const unsigned char *buf, size_t len);

/* CRC of A+B from crc_a = CRC(A), crc_b = CRC(B) (final values) and len(B) in bytes. */
uint64_t slip_crc_combine(const slip_crc_model *m, uint64_t crc_a, uint64_t crc_b,
                          uint64_t len_b);

#endif
