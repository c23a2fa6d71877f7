// Host-side launcher of the TokenSelect kernel, shared by the TensorRT plugin.
#include "token_select_launch.h"

#include "token_select_kernel.cuh"

namespace earlytom
{

cudaError_t launchTokenSelect(void const* features, float const* scores, int64_t const* frameKind,
    int64_t const* budget, int64_t numFrames, int64_t tokensPerFrame, int64_t rowBytes, int64_t numSelected,
    void* tokens, int64_t* index, cudaStream_t stream)
{
    if (numFrames == 0 || numSelected == 0)
    {
        return cudaSuccess;
    }
    if (tokensPerFrame <= 0 || tokensPerFrame > kTokenSelectMaxTokensPerFrame)
    {
        return cudaErrorInvalidValue;
    }
    size_t const sharedBytes = static_cast<size_t>(tokensPerFrame) * 12;
    tokenSelectKernel<<<static_cast<unsigned int>(numFrames), kTokenSelectThreads, sharedBytes, stream>>>(
        static_cast<unsigned char const*>(features), scores, frameKind, budget, numFrames, tokensPerFrame, rowBytes,
        numSelected, static_cast<unsigned char*>(tokens), index);
    return cudaGetLastError();
}

} // namespace earlytom
