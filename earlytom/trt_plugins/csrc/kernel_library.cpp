// A C entry point to the kernel alone, for GPU tests and benchmarks (ctypes on torch tensors).
#include "token_select_launch.h"

extern "C" __attribute__((visibility("default"))) int earlytomTokenSelect(void const* features, float const* scores,
    int64_t const* frameKind, int64_t const* budget, int64_t numFrames, int64_t tokensPerFrame, int64_t rowBytes,
    int64_t numSelected, void* tokens, int64_t* index, void* stream)
{
    return static_cast<int>(earlytom::launchTokenSelect(features, scores, frameKind, budget, numFrames, tokensPerFrame,
        rowBytes, numSelected, tokens, index, static_cast<cudaStream_t>(stream)));
}
