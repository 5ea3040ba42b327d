/* fuzz.h - what every libFuzzer target here shares: the entry point's prototype, and CHECK,
 * which turns a broken invariant into a crash the fuzzer reports. */
#ifndef IMS_FUZZ_H
#define IMS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

#endif
