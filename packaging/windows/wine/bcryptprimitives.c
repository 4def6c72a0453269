/* ProcessPrng for Wine 8, which lacks it: Rust's std (1.78+) imports it from
 * bcryptprimitives.dll, and without it every Rust exe exits with code 53 under Wine 8.
 * Only for running the tests under Wine; never shipped. Filled from RtlGenRandom
 * (advapi32's SystemFunction036), which Wine has. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
