// Device templates of split-KV decode attention (flash-decoding) for ragged KV, paged KV and the
// wave index's estimation over clusters (DESIGN.md section 4). One kernel body; an addressing
// policy says where token t of a list lives. Needs nvcc; include only from cuda/*.cu.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "retrokv/cuda/attention.h"
#include "retrokv/cuda/attention_math.h"
#include "retrokv/cuda/decode_addressing.h"
#include "retrokv/cuda/decode_plan.h"

namespace retrokv::cuda::detail {

inline constexpr int kDecodeWarps = 4;
inline constexpr int kDecodeThreads = kDecodeWarps * 32;
inline constexpr int kVec = 8;  // elements per lane per row: one 16-byte load of 16-bit KV

template <typename T>
__device__ __forceinline__ void load_vec8(const T* p, float* out);

template <>
__device__ __forceinline__ void load_vec8<__half>(const __half* p, float* out) {
  const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
  const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

template <>
__device__ __forceinline__ void load_vec8<__nv_bfloat16>(const __nv_bfloat16* p, float* out) {
  const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

template <>
__device__ __forceinline__ void load_vec8<float>(const float* p, float* out) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(p));
  const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
  out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w;
  out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
}

/// Launch-wide arguments of split_attention_kernel.
struct SplitArgs {
  int n_q_heads;
  int n_kv_heads;
  int n_group_chunks;
  int n_splits;
  int64_t units_per_split;
  float scale_log2;  // scale * log2(e): logits are base 2 inside the kernel
  float* part_o;     // (batch * n_q_heads, n_splits, D) when n_splits > 1
  float* part_lse;   // (batch * n_q_heads, n_splits)
  float* o;          // (batch * n_q_heads, D)
  float* lse;        // (batch * n_q_heads)
};

/// grid (n_splits, n_kv_heads * n_group_chunks, batch), block kDecodeThreads. Each block reads
/// its split of one KV head's tokens ONCE for up to kG (4 or 8) query heads. Lanes are
/// grouped kLanes per token (16-byte loads); every group of lanes keeps its own online softmax
/// ("stream"), merged across the warp by shuffles and across warps in shared memory.
template <int D, int kG, typename T, typename Addr>
__global__ void __launch_bounds__(kDecodeThreads)
    split_attention_kernel(const float* __restrict__ q, Addr addr, SplitArgs args) {
  constexpr int kLanes = D / kVec;
  constexpr int kTokensPerWarp = 32 / kLanes;
  constexpr int kStreams = kDecodeWarps * kTokensPerWarp;
  static_assert(D % (kVec * 8) == 0 && kLanes <= 32, "head_dim must be 64 or 128");

  __shared__ float s_o[kDecodeWarps][kG][D];
  __shared__ float s_m[kDecodeWarps][kG];
  __shared__ float s_l[kDecodeWarps][kG];

  const int split = blockIdx.x;
  const int h = blockIdx.y / args.n_group_chunks;
  const int chunk = blockIdx.y % args.n_group_chunks;
  const int b = blockIdx.z;
  const int group = args.n_q_heads / args.n_kv_heads;
  const int g0 = chunk * kG;
  const int ng = min(kG, group - g0);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int sub = lane / kLanes;
  const int dim0 = (lane % kLanes) * kVec;
  const int64_t head0 = static_cast<int64_t>(b) * args.n_q_heads + h * group + g0;

  float qr[kG][kVec];
  OnlineSoftmax<kVec> st[kG];
#pragma unroll
  for (int g = 0; g < kG; ++g) {
    st[g].init();
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      qr[g][i] = g < ng ? q[(head0 + g) * D + dim0 + i] * args.scale_log2 : 0.f;
    }
  }

  int64_t t0, t1;
  split_token_range(addr, b, h, args.n_kv_heads, split, args.units_per_split, &t0, &t1);
  // The loop bound depends on the warp only, so the shuffles below always have all 32 lanes.
  for (int64_t base = t0 + warp * kTokensPerWarp; base < t1; base += kStreams) {
    const int64_t t = base + sub;
    TokenRow<T> r;
    const bool valid = t < t1 && addr.row(b, h, args.n_kv_heads, t, &r);
    float kf[kVec];
    if (valid) {
      load_vec8<T>(r.k + dim0, kf);
    } else {
#pragma unroll
      for (int i = 0; i < kVec; ++i) kf[i] = 0.f;
    }
    float s[kG];
#pragma unroll
    for (int g = 0; g < kG; ++g) {
      float acc = 0.f;
#pragma unroll
      for (int i = 0; i < kVec; ++i) acc = fmaf(qr[g][i], kf[i], acc);
      s[g] = acc;
    }
#pragma unroll
    for (int off = kLanes / 2; off > 0; off /= 2) {
#pragma unroll
      for (int g = 0; g < kG; ++g) s[g] += __shfl_xor_sync(0xffffffffu, s[g], off);
    }
    if (valid) {
      float vf[kVec];
      load_vec8<T>(r.v + dim0, vf);
#pragma unroll
      for (int g = 0; g < kG; ++g) {
        if (g < ng) st[g].push(s[g] + r.bias2, vf, r.vscale);
      }
    }
  }

  // Merge the streams of a warp (lanes with the same dims, different `sub`).
#pragma unroll
  for (int off = kLanes; off < 32; off *= 2) {
#pragma unroll
    for (int g = 0; g < kG; ++g) {
      const float m2 = __shfl_xor_sync(0xffffffffu, st[g].m, off);
      const float l2 = __shfl_xor_sync(0xffffffffu, st[g].l, off);
      float o2[kVec];
#pragma unroll
      for (int i = 0; i < kVec; ++i) o2[i] = __shfl_xor_sync(0xffffffffu, st[g].o[i], off);
      st[g].merge(m2, l2, o2);
    }
  }
  if (sub == 0) {
#pragma unroll
    for (int g = 0; g < kG; ++g) {
#pragma unroll
      for (int i = 0; i < kVec; ++i) s_o[warp][g][dim0 + i] = st[g].o[i];
      if (dim0 == 0) {
        s_m[warp][g] = st[g].m;
        s_l[warp][g] = st[g].l;
      }
    }
  }
  __syncthreads();

  // Merge the warps and write one state per query head of the chunk.
  for (int idx = threadIdx.x; idx < ng * D; idx += kDecodeThreads) {
    const int g = idx / D;
    const int j = idx % D;
    OnlineSoftmax<1> acc;
    acc.init();
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) acc.merge(s_m[w][g], s_l[w][g], &s_o[w][g][j]);
    float out;
    acc.normalized(&out);
    const int64_t row = head0 + g;
    if (args.n_splits == 1) {
      args.o[row * D + j] = out;
      if (j == 0) args.lse[row] = acc.lse();
    } else {
      const int64_t prow = row * args.n_splits + split;
      args.part_o[prow * D + j] = out;
      if (j == 0) args.part_lse[prow] = acc.lse();
    }
  }
}

/// Host checks shared by the attention launchers (bad caller input -> retrokv::Error).
inline void check_split_inputs(const DecodePlan& plan, const float* q, const float* o,
                               const float* lse) {
  RETROKV_CHECK(plan.batch >= 1 && plan.n_kv_heads >= 1 && plan.n_splits >= 1,
                "plan: expected a plan from plan_*(), got batch ", plan.batch, ", n_kv_heads ",
                plan.n_kv_heads, ", n_splits ", plan.n_splits);
  RETROKV_CHECK(q != nullptr, "q: null device pointer");
  RETROKV_CHECK(o != nullptr, "o: null device pointer");
  RETROKV_CHECK(lse != nullptr, "lse: null device pointer");
}

/// 16-byte alignment of a KV pointer (the kernels read rows with 16-byte loads).
inline void check_aligned16(const void* p, const char* name) {
  RETROKV_CHECK(p != nullptr, name, ": null device pointer");
  RETROKV_CHECK(reinterpret_cast<uintptr_t>(p) % 16 == 0, name,
                ": expected a 16-byte aligned device pointer, got ", p);
}

/// Launches split_attention_kernel for `plan`, then (n_splits > 1) merges the per-split states
/// from the workspace into (o, lse) with the N-way merge launcher.
template <int D, typename T, typename Addr>
CudaStatus launch_split_attention(const float* q, const Addr& addr, const DecodePlan& plan,
                                  float scale, void* workspace, float* o, float* lse,
                                  Stream stream) {
  RETROKV_CHECK(plan.n_splits == 1 || workspace != nullptr, "workspace: expected ",
                plan.workspace_bytes, " bytes of device memory, got nullptr");
  const int64_t rows = static_cast<int64_t>(plan.batch) * plan.n_q_heads;
  SplitArgs args;
  args.n_q_heads = plan.n_q_heads;
  args.n_kv_heads = plan.n_kv_heads;
  args.n_group_chunks = plan.n_group_chunks;
  args.n_splits = plan.n_splits;
  args.units_per_split = plan.units_per_split;
  args.scale_log2 = scale * kLog2e;
  args.part_o = static_cast<float*>(workspace);
  args.part_lse = args.part_o == nullptr ? nullptr : args.part_o + rows * plan.n_splits * D;
  args.o = o;
  args.lse = lse;
  const dim3 grid(plan.n_splits, plan.n_kv_heads * plan.n_group_chunks, plan.batch);
  if (plan.group_per_block == kSmallGroupPerBlock) {
    split_attention_kernel<D, kSmallGroupPerBlock, T, Addr>
        <<<grid, kDecodeThreads, 0, stream>>>(q, addr, args);
  } else {
    RETROKV_CHECK(plan.group_per_block == kMaxGroupPerBlock, "plan.group_per_block: expected ",
                  kSmallGroupPerBlock, " or ", kMaxGroupPerBlock, ", got ", plan.group_per_block);
    split_attention_kernel<D, kMaxGroupPerBlock, T, Addr>
        <<<grid, kDecodeThreads, 0, stream>>>(q, addr, args);
  }
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || plan.n_splits == 1) return err;
  return merge_states(args.part_o, args.part_lse, plan.n_splits, rows, D, D,
                      static_cast<int64_t>(plan.n_splits) * D, 1, plan.n_splits, o, lse, stream);
}

}  // namespace retrokv::cuda::detail
