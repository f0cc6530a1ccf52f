// Second-order spherical-harmonics shading, forward and backward.
//
// The backward reduces grad_sh deterministically: the pixels of each batch are assigned to
// a fixed number of blocks (which depends only on HW), every block writes its partial sums
// to `partial`, and a second kernel adds the partials of each batch in block order.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "flamekit/cuda_kernels.h"
#include "flamekit/raster_math.h"

namespace flamekit {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kBasis = 9;
// Grid-stride kernels never need more blocks than this to fill a GPU.
constexpr int64_t kMaxBlocks = int64_t(1) << 20;
// Backward: each thread handles about this many pixels before the block reduction, which
// keeps `partial` small; the cap bounds the serial sum of the second pass.
constexpr int64_t kPixelsPerThread = 4;
constexpr int64_t kMaxBlocksPerBatch = 1024;

unsigned int pixel_blocks(int64_t n) {
  return unsigned(std::min((n + kThreads - 1) / kThreads, kMaxBlocks));
}

int64_t blocks_per_batch(int HW) {
  const int64_t per_block = kThreads * kPixelsPerThread;
  return std::min((int64_t(HW) + per_block - 1) / per_block, kMaxBlocksPerBatch);
}

// Column of sh [B,9,SC] that colour c reads: its own with SC == 3, the shared one with 1.
template <int SC>
__device__ __forceinline__ int sh_column(int c) {
  return SC == 3 ? c : 0;
}

// shading_c = sum_k sh[k, c'] * Y[k], accumulated in k order from zero.
template <typename T, int SC>
__device__ __forceinline__ T shade_colour(const T* sh_b, const T* Y, int c) {
  T s = T(0);
  for (int k = 0; k < kBasis; ++k) s += sh_b[k * SC + sh_column<SC>(c)] * Y[k];
  return s;
}

template <typename T, int SC>
__global__ void forward_kernel(const T* __restrict__ albedo, const T* __restrict__ normals,
                               const T* __restrict__ sh, int64_t pixels, int HW,
                               T* __restrict__ image, T* __restrict__ shading) {
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < pixels;
       p += int64_t(blockDim.x) * gridDim.x) {
    const T* sh_b = sh + (p / HW) * kBasis * SC;
    const T* n = normals + p * 3;
    T Y[kBasis];
    sh_basis(n[0], n[1], n[2], Y);
    for (int c = 0; c < 3; ++c) {
      const T s = shade_colour<T, SC>(sh_b, Y, c);
      shading[p * 3 + c] = s;
      image[p * 3 + c] = albedo[p * 3 + c] * s;
    }
  }
}

// Per-pixel gradients, plus this block's share of grad_sh written to
// partial[blockIdx.x * 9 * SC + e]. Block x covers batch x / blocks_per_batch; its threads
// take the batch's pixels in a fixed grid-stride order.
template <typename T, int SC>
__global__ void backward_pixels_kernel(const T* __restrict__ albedo,
                                       const T* __restrict__ normals, const T* __restrict__ sh,
                                       int HW, int64_t blocks_per_batch,
                                       const T* __restrict__ grad_image,
                                       const T* __restrict__ grad_shading,
                                       T* __restrict__ grad_albedo, T* __restrict__ grad_normals,
                                       T* __restrict__ partial) {
  constexpr int kCoefs = kBasis * SC;
  const int64_t b = blockIdx.x / blocks_per_batch;
  const int64_t block_in_batch = blockIdx.x % blocks_per_batch;
  const T* sh_b = sh + b * kCoefs;

  T acc[kCoefs];
  for (int e = 0; e < kCoefs; ++e) acc[e] = T(0);

  for (int64_t q = block_in_batch * blockDim.x + threadIdx.x; q < HW;
       q += blocks_per_batch * blockDim.x) {
    const int64_t p = b * HW + q;
    const T* n = normals + p * 3;
    T Y[kBasis];
    sh_basis(n[0], n[1], n[2], Y);
    T gs[3];  // dL/dshading
    for (int c = 0; c < 3; ++c) {
      const T gi = grad_image[p * 3 + c];
      grad_albedo[p * 3 + c] = gi * shade_colour<T, SC>(sh_b, Y, c);
      gs[c] = gi * albedo[p * 3 + c];
      if (grad_shading) gs[c] += grad_shading[p * 3 + c];
    }
    // As on the CPU: no gradient reaches the shading (background, or a zero upstream
    // gradient), so nothing flows to the normal or the lighting, even from a normal that is
    // not finite. (Inside the pixel loop, before the reduction: every thread still reaches it.)
    if (gs[0] == T(0) && gs[1] == T(0) && gs[2] == T(0)) {
      for (int d = 0; d < 3; ++d) grad_normals[p * 3 + d] = T(0);
      continue;
    }
    // coef[k] = d(sum_c gs_c * shading_c) / dY[k], the upstream weight of each basis value,
    // in the CPU's order of operations.
    T coef[kBasis];
    for (int k = 0; k < kBasis; ++k) {
      coef[k] = (gs[0] * sh_b[k * SC + sh_column<SC>(0)] +
                 gs[1] * sh_b[k * SC + sh_column<SC>(1)]) +
                gs[2] * sh_b[k * SC + sh_column<SC>(2)];
      for (int c = 0; c < 3; ++c) acc[k * SC + sh_column<SC>(c)] += gs[c] * Y[k];
    }
    T gn[3];
    sh_basis_backward(n[0], n[1], n[2], coef, gn);
    for (int d = 0; d < 3; ++d) grad_normals[p * 3 + d] = gn[d];
  }

  // Fixed-shape reduction (warp shuffles, then warps in order) so results are reproducible.
  __shared__ T warp_sums[kWarps][kCoefs];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int e = 0; e < kCoefs; ++e) {
    T v = acc[e];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xFFFFFFFFu, v, offset);
    if (lane == 0) warp_sums[warp][e] = v;
  }
  __syncthreads();
  if (threadIdx.x < kCoefs) {
    T total = T(0);
    for (int w = 0; w < kWarps; ++w) total += warp_sums[w][threadIdx.x];
    partial[int64_t(blockIdx.x) * kCoefs + threadIdx.x] = total;
  }
}

// grad_sh[b, e] = sum of the partials of batch b, in block order.
template <typename T, int SC>
__global__ void backward_sh_kernel(const T* __restrict__ partial, int B,
                                   int64_t blocks_per_batch, T* __restrict__ grad_sh) {
  constexpr int kCoefs = kBasis * SC;
  const int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item >= int64_t(B) * kCoefs) return;
  const int64_t b = item / kCoefs, e = item % kCoefs;
  const T* src = partial + b * blocks_per_batch * kCoefs + e;
  T total = T(0);
  for (int64_t k = 0; k < blocks_per_batch; ++k) total += src[k * kCoefs];
  grad_sh[item] = total;
}

template <typename T, int SC>
cudaError_t launch_backward(const T* albedo, const T* normals, const T* sh, int B, int HW,
                            const T* grad_image, const T* grad_shading, T* grad_albedo,
                            T* grad_normals, T* grad_sh, T* partial, cudaStream_t stream) {
  const int64_t per_batch = blocks_per_batch(HW);
  backward_pixels_kernel<T, SC><<<unsigned(B * per_batch), kThreads, 0, stream>>>(
      albedo, normals, sh, HW, per_batch, grad_image, grad_shading, grad_albedo, grad_normals,
      partial);
  const int64_t coefs = int64_t(B) * kBasis * SC;
  backward_sh_kernel<T, SC><<<unsigned((coefs + kThreads - 1) / kThreads), kThreads, 0,
                              stream>>>(partial, B, per_batch, grad_sh);
  return cudaGetLastError();
}

}  // namespace

int64_t sh_shade_partial_size(int B, int HW, int sh_channels) {
  return int64_t(B) * blocks_per_batch(HW) * kBasis * sh_channels;
}

template <typename T>
cudaError_t sh_shade_forward(const T* albedo, const T* normals, const T* sh, int sh_channels,
                             int B, int HW, T* image, T* shading, cudaStream_t stream) {
  if (sh_channels != 3 && sh_channels != 1) return cudaErrorInvalidValue;
  const int64_t pixels = int64_t(B) * HW;
  if (pixels == 0) return cudaSuccess;
  if (sh_channels == 3) {
    forward_kernel<T, 3><<<pixel_blocks(pixels), kThreads, 0, stream>>>(albedo, normals, sh,
                                                                        pixels, HW, image, shading);
  } else {
    forward_kernel<T, 1><<<pixel_blocks(pixels), kThreads, 0, stream>>>(albedo, normals, sh,
                                                                        pixels, HW, image, shading);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t sh_shade_backward(const T* albedo, const T* normals, const T* sh, int sh_channels,
                              int B, int HW, const T* grad_image, const T* grad_shading,
                              T* grad_albedo, T* grad_normals, T* grad_sh, T* partial,
                              cudaStream_t stream) {
  if (sh_channels != 3 && sh_channels != 1) return cudaErrorInvalidValue;
  if (B == 0) return cudaSuccess;
  if (HW == 0) {
    // No pixels: grad_sh is still fully written, as zeros (all-zero bytes are 0.0).
    return cudaMemsetAsync(grad_sh, 0, size_t(B) * kBasis * sh_channels * sizeof(T), stream);
  }
  if (sh_channels == 3) {
    return launch_backward<T, 3>(albedo, normals, sh, B, HW, grad_image, grad_shading,
                                 grad_albedo, grad_normals, grad_sh, partial, stream);
  }
  return launch_backward<T, 1>(albedo, normals, sh, B, HW, grad_image, grad_shading,
                               grad_albedo, grad_normals, grad_sh, partial, stream);
}

#define FLAMEKIT_INSTANTIATE_SH_SHADE(T)                                                      \
  template cudaError_t sh_shade_forward<T>(const T*, const T*, const T*, int, int, int, T*,    \
                                           T*, cudaStream_t);                                  \
  template cudaError_t sh_shade_backward<T>(const T*, const T*, const T*, int, int, int,       \
                                            const T*, const T*, T*, T*, T*, T*, cudaStream_t);

FLAMEKIT_INSTANTIATE_SH_SHADE(float)
FLAMEKIT_INSTANTIATE_SH_SHADE(double)

#undef FLAMEKIT_INSTANTIATE_SH_SHADE

}  // namespace cuda
}  // namespace flamekit
