# The C CRC kernels (csrc/crc.h), declared once for every compiled module that uses them.

from libc.stdint cimport uint64_t


cdef extern from "crc.h" nogil:
    ctypedef struct slip_crc_model:
        int width
        uint64_t poly
        uint64_t init
        uint64_t xorout
        uint64_t mask

    int SLIP_CRC_TABLE
    int SLIP_CRC_PCLMUL
    int SLIP_CRC_VPCLMUL256
    int SLIP_CRC_VPCLMUL512

    int slip_crc_model_init(slip_crc_model *m, int width, uint64_t poly, uint64_t init,
                            uint64_t xorout)
    int slip_crc_best_impl()
    int slip_crc_impl_available(int impl)
    uint64_t slip_crc_update(const slip_crc_model *m, uint64_t reg, const unsigned char *buf,
                             size_t len)
    uint64_t slip_crc_update_with(const slip_crc_model *m, int impl, uint64_t reg,
                                  const unsigned char *buf, size_t len)
    uint64_t slip_crc_combine(const slip_crc_model *m, uint64_t crc_a, uint64_t crc_b,
                              uint64_t len_b)
