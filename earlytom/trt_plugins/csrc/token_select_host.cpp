// The kernel's serial host twin as a C function, for CPU tests (ctypes): not part of the plugin.
#include "token_select_kernel.cuh"

extern "C" void earlytomTokenSelectHost(unsigned char const* features, float const* scores,
    int64_t const* frameKind, int64_t const* budget, int64_t numFrames, int64_t tokensPerFrame, int64_t rowBytes,
    int64_t numSelected, unsigned char* tokens, int64_t* index)
{
    earlytom::tokenSelectHost(
        features, scores, frameKind, budget, numFrames, tokensPerFrame, rowBytes, numSelected, tokens, index);
}
