// Launch the fused TokenSelect kernel (see token_select_kernel.cuh for the contract).
#pragma once

#include <cstdint>
#include <cuda_runtime_api.h>

namespace earlytom
{

// features (T, P, C) of rowBytes = C·element size per row; scores (T, P) fp32; frameKind (T,);
// budget (2,) = (k_d, k_s), all on the device. Writes tokens (N, C) and index (N, 2).
cudaError_t launchTokenSelect(void const* features, float const* scores, int64_t const* frameKind,
    int64_t const* budget, int64_t numFrames, int64_t tokensPerFrame, int64_t rowBytes, int64_t numSelected,
    void* tokens, int64_t* index, cudaStream_t stream);

} // namespace earlytom
