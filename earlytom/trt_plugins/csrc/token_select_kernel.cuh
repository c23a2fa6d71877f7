// TokenSelect (DESIGN §3 Stage II) as one fused CUDA kernel, plus a serial host twin for tests.
//
// Per frame t (one thread block): dynamic frames keep the k_d tokens with the highest pooled
// score, static frames keep the first arg-max of each of k_s contiguous raster windows; the kept
// rows of features (T, P, C) are gathered into tokens (N, C) with their (frame, position) pairs in
// index (N, 2), in row-major (frame, raster) order. Ties: the lower position wins, as in the
// torch reference (stable sort, first arg-max). Scores must be finite (they are softmax averages).
//
// The file is self-contained (no TensorRT, no cuda_fp16 types: rows are copied as bytes) so that
// the plugin, a CuPy/NVRTC test on a GPU, and a plain C++ host build for CPU tests share it.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define ET_HOST_DEVICE __host__ __device__
#else
#define ET_HOST_DEVICE
#endif

#ifndef __CUDACC_RTC__
#include <cstdint>
#endif

namespace earlytom
{

// 64-bit integers under both compilers (NVRTC has no <cstdint>); same layout as int64_t.
#ifdef __CUDACC_RTC__
using index_t = long long;
using address_t = unsigned long long;
#else
using index_t = int64_t;
using address_t = uintptr_t;
#endif

constexpr index_t kDynamicFrame = 0;
constexpr index_t kStaticFrame = 1;
constexpr int kTokenSelectThreads = 256;
constexpr index_t kTokenSelectMaxTokensPerFrame = 4096; // shared memory: 12 bytes per token

// Token q beats token p: a higher score, or the same score at a lower position.
ET_HOST_DEVICE inline bool outranks(float score_q, index_t q, float score_p, index_t p)
{
    return score_q > score_p || (score_q == score_p && q < p);
}

// k contiguous windows tile 0..P-1; the first P mod k windows are one token longer.
ET_HOST_DEVICE inline void windowOf(index_t p, index_t P, index_t k, index_t& start, index_t& stop)
{
    index_t const base = P / k;
    index_t const extra = P % k;
    index_t const longSpan = extra * (base + 1);
    index_t const w = p < longSpan ? p / (base + 1) : extra + (p - longSpan) / base;
    start = w < extra ? w * (base + 1) : longSpan + (w - extra) * base;
    stop = start + (w < extra ? base + 1 : base);
}

// Whether token p of one frame's P scores is kept, for the frame kind and the budget.
ET_HOST_DEVICE inline bool keepsToken(
    float const* scores, index_t P, index_t p, index_t kind, index_t kDynamic, index_t kStatic)
{
    float const score = scores[p];
    if (kind == kStaticFrame)
    {
        index_t start = 0;
        index_t stop = 0;
        windowOf(p, P, kStatic, start, stop);
        for (index_t q = start; q < stop; ++q)
        {
            if (outranks(scores[q], q, score, p))
            {
                return false;
            }
        }
        return true;
    }
    index_t beaten = 0;
    for (index_t q = 0; q < P && beaten < kDynamic; ++q)
    {
        beaten += outranks(scores[q], q, score, p) ? 1 : 0;
    }
    return beaten < kDynamic;
}

// k_d in [0, P] and k_s in [1, P]: the planner's budget, clamped so a bad one cannot index out of range.
ET_HOST_DEVICE inline void clampBudget(index_t P, index_t& kDynamic, index_t& kStatic)
{
    kDynamic = kDynamic < 0 ? 0 : (kDynamic > P ? P : kDynamic);
    kStatic = kStatic < 1 ? 1 : (kStatic > P ? P : kStatic);
}

// Output rows before frame t: every dynamic frame keeps k_d tokens, every static frame k_s.
ET_HOST_DEVICE inline index_t keptPerFrame(index_t kind, index_t kDynamic, index_t kStatic)
{
    return kind == kStaticFrame ? kStatic : kDynamic;
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)

// grid = T blocks, block = kTokenSelectThreads; dynamic shared memory = 12·P bytes.
// rowBytes = C · element size; vectorised 16-byte copies when rows and pointers allow.
extern "C" __global__ void tokenSelectKernel(unsigned char const* features, float const* scores,
    index_t const* frameKind, index_t const* budget, index_t numFrames, index_t P, index_t rowBytes,
    index_t numSelected, unsigned char* tokens, index_t* index)
{
    extern __shared__ float shared[];
    float* frameScores = shared;                                        // (P,)
    int* keep = reinterpret_cast<int*>(frameScores + P);                // (P,) 0/1
    int* keptPositions = keep + P;                                      // (P,) kept raster positions, in order
    __shared__ long long frameOffset;

    index_t const t = blockIdx.x;
    index_t kDynamic = budget[0];
    index_t kStatic = budget[1];
    clampBudget(P, kDynamic, kStatic);
    index_t const kind = frameKind[t];

    if (threadIdx.x == 0)
    {
        frameOffset = 0;
    }
    for (index_t p = threadIdx.x; p < P; p += blockDim.x)
    {
        frameScores[p] = scores[t * P + p];
    }
    __syncthreads();
    long long partial = 0;
    for (index_t f = threadIdx.x; f < t; f += blockDim.x)
    {
        partial += keptPerFrame(frameKind[f], kDynamic, kStatic);
    }
    if (partial != 0)
    {
        atomicAdd(reinterpret_cast<unsigned long long*>(&frameOffset), static_cast<unsigned long long>(partial));
    }
    for (index_t p = threadIdx.x; p < P; p += blockDim.x)
    {
        keep[p] = keepsToken(frameScores, P, p, kind, kDynamic, kStatic) ? 1 : 0;
    }
    __syncthreads();
    // Rank of each kept token among the kept tokens of this frame: raster order.
    for (index_t p = threadIdx.x; p < P; p += blockDim.x)
    {
        if (keep[p])
        {
            int rank = 0;
            for (index_t q = 0; q < p; ++q)
            {
                rank += keep[q];
            }
            keptPositions[rank] = static_cast<int>(p);
        }
    }
    __syncthreads();
    index_t const kept = keptPerFrame(kind, kDynamic, kStatic);
    index_t const offset = frameOffset;
    // Rows past numSelected would mean the planner's N disagrees with the budget: never write them.
    index_t const rows = offset >= numSelected ? 0 : (offset + kept > numSelected ? numSelected - offset : kept);

    for (index_t r = threadIdx.x; r < rows; r += blockDim.x)
    {
        index[2 * (offset + r)] = t;
        index[2 * (offset + r) + 1] = keptPositions[r];
    }
    bool const vectorised = rowBytes % 16 == 0 && reinterpret_cast<address_t>(features) % 16 == 0
        && reinterpret_cast<address_t>(tokens) % 16 == 0;
    if (vectorised)
    {
        index_t const perRow = rowBytes / 16;
        for (index_t i = threadIdx.x; i < rows * perRow; i += blockDim.x)
        {
            index_t const r = i / perRow;
            index_t const column = i % perRow;
            uint4 const* source = reinterpret_cast<uint4 const*>(features + (t * P + keptPositions[r]) * rowBytes);
            reinterpret_cast<uint4*>(tokens + (offset + r) * rowBytes)[column] = source[column];
        }
    }
    else
    {
        for (index_t i = threadIdx.x; i < rows * rowBytes; i += blockDim.x)
        {
            index_t const r = i / rowBytes;
            index_t const byte = i % rowBytes;
            tokens[(offset + r) * rowBytes + byte] = features[(t * P + keptPositions[r]) * rowBytes + byte];
        }
    }
}

#endif // __CUDACC__ || __CUDACC_RTC__

#ifndef __CUDACC_RTC__

// The kernel's work, block by block, on the host: the same decisions, ranks, offsets and guards.
// Tests drive it on the CPU against the torch reference; it is not a production path.
inline void tokenSelectHost(unsigned char const* features, float const* scores, index_t const* frameKind,
    index_t const* budget, index_t numFrames, index_t P, index_t rowBytes, index_t numSelected,
    unsigned char* tokens, index_t* index)
{
    index_t kDynamic = budget[0];
    index_t kStatic = budget[1];
    clampBudget(P, kDynamic, kStatic);
    index_t offset = 0;
    for (index_t t = 0; t < numFrames; ++t)
    {
        float const* frameScores = scores + t * P;
        index_t const kind = frameKind[t];
        index_t rank = 0;
        for (index_t p = 0; p < P; ++p)
        {
            if (!keepsToken(frameScores, P, p, kind, kDynamic, kStatic))
            {
                continue;
            }
            index_t const row = offset + rank++;
            if (row >= numSelected || rank > keptPerFrame(kind, kDynamic, kStatic))
            {
                continue;
            }
            index[2 * row] = t;
            index[2 * row + 1] = p;
            for (index_t byte = 0; byte < rowBytes; ++byte)
            {
                tokens[row * rowBytes + byte] = features[(t * P + p) * rowBytes + byte];
            }
        }
        offset += keptPerFrame(kind, kDynamic, kStatic);
    }
}

#endif // __CUDACC_RTC__

} // namespace earlytom
