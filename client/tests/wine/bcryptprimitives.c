/*
 * A test fixture, never shipped: Wine 8 lacks bcryptprimitives.dll, whose
 * ProcessPrng Rust's standard library imports on Windows for random bytes.
 * This stand-in forwards to advapi32's RtlGenRandom (SystemFunction036),
 * which Wine has. Built by the Windows tests with MinGW (windows.rs).
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG n = length > 0x7fffffff ? 0x7fffffff : (ULONG)length;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        length -= n;
    }
    return TRUE;
}
