// Attribute interpolation with the rasterizer's barycentrics, forward and backward.
// One thread per pixel; the expression order matches the CPU kernels.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "flamekit/cuda_kernels.h"

namespace flamekit {
namespace cuda {
namespace {

constexpr int kThreads = 256;
// Grid-stride kernels never need more blocks than this to fill a GPU.
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

unsigned int pixel_blocks(int64_t n) {
  return unsigned(std::min((n + kThreads - 1) / kThreads, kMaxBlocks));
}

// The covered triangle's attribute rows and barycentrics at one pixel.
template <typename T>
struct PixelVertices {
  const T* a[3];  // attr rows of the three vertices
  T b[3];         // barycentrics, b2 = 1 - b0 - b1
};

template <typename T>
__device__ __forceinline__ PixelVertices<T> pixel_vertices(const T* attr, bool attr_batched,
                                                           const T* r, const int32_t* tri,
                                                           int t, int64_t p, int V, int C,
                                                           int HW) {
  const T* rows = attr_batched ? attr + (p / HW) * V * C : attr;
  const int32_t* vi = tri + int64_t(t - 1) * 3;
  PixelVertices<T> pv;
  for (int m = 0; m < 3; ++m) pv.a[m] = rows + int64_t(vi[m]) * C;
  pv.b[0] = r[0];
  pv.b[1] = r[1];
  pv.b[2] = T(1) - pv.b[0] - pv.b[1];
  return pv;
}

template <typename T>
__global__ void forward_kernel(const T* __restrict__ attr, bool attr_batched,
                               const T* __restrict__ rast, const int32_t* __restrict__ tri,
                               int F, int64_t pixels, int V, int C, int HW,
                               T* __restrict__ out) {
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < pixels;
       p += int64_t(blockDim.x) * gridDim.x) {
    T* o = out + p * C;
    const T* r = rast + p * 4;
    const int t = rast_triangle(r[3], F);  // invalid ids: background (no device-side error)
    if (t == 0) {
      for (int c = 0; c < C; ++c) o[c] = T(0);
      continue;
    }
    const PixelVertices<T> pv = pixel_vertices(attr, attr_batched, r, tri, t, p, V, C, HW);
    for (int c = 0; c < C; ++c)
      o[c] = barycentric_mix(pv.b[0], pv.b[1], pv.b[2], pv.a[0][c], pv.a[1][c], pv.a[2][c]);
  }
}

template <typename T>
__global__ void backward_kernel(const T* __restrict__ attr, bool attr_batched,
                                const T* __restrict__ rast, const int32_t* __restrict__ tri,
                                int F, const T* __restrict__ grad_out, int64_t pixels, int V,
                                int C, int HW, T* __restrict__ grad_attr,
                                T* __restrict__ grad_rast) {
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < pixels;
       p += int64_t(blockDim.x) * gridDim.x) {
    const T* r = rast + p * 4;
    T* gr = grad_rast + p * 4;
    gr[2] = gr[3] = T(0);
    const int t = rast_triangle(r[3], F);
    if (t == 0) {
      gr[0] = gr[1] = T(0);
      continue;
    }
    const PixelVertices<T> pv = pixel_vertices(attr, attr_batched, r, tri, t, p, V, C, HW);
    // grad_attr rows live at the same offsets as the attr rows.
    T* ga[3];
    for (int m = 0; m < 3; ++m) ga[m] = grad_attr + (pv.a[m] - attr);
    const T* g = grad_out + p * C;
    T g_b0 = T(0), g_b1 = T(0);
    for (int c = 0; c < C; ++c) {
      const T gc = g[c];
      for (int m = 0; m < 3; ++m) atomicAdd(ga[m] + c, pv.b[m] * gc);
      g_b0 += gc * (pv.a[0][c] - pv.a[2][c]);
      g_b1 += gc * (pv.a[1][c] - pv.a[2][c]);
    }
    gr[0] = g_b0;
    gr[1] = g_b1;
  }
}

}  // namespace

template <typename T>
cudaError_t interpolate_forward(const T* attr, bool attr_batched, const T* rast,
                                const int32_t* tri, int F, int B, int V, int C, int H, int W,
                                T* out, cudaStream_t stream) {
  const int64_t pixels = int64_t(B) * H * W;
  if (pixels == 0 || C == 0) return cudaSuccess;
  forward_kernel<T><<<pixel_blocks(pixels), kThreads, 0, stream>>>(
      attr, attr_batched, rast, tri, F, pixels, V, C, H * W, out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t interpolate_backward(const T* attr, bool attr_batched, const T* rast,
                                 const int32_t* tri, int F, const T* grad_out, int B, int V,
                                 int C, int H, int W, T* grad_attr, T* grad_rast,
                                 cudaStream_t stream) {
  // With C == 0 the kernel still runs: grad_rast must be written (as zeros).
  const int64_t pixels = int64_t(B) * H * W;
  if (pixels == 0) return cudaSuccess;
  backward_kernel<T><<<pixel_blocks(pixels), kThreads, 0, stream>>>(
      attr, attr_batched, rast, tri, F, grad_out, pixels, V, C, H * W, grad_attr, grad_rast);
  return cudaGetLastError();
}

#define FLAMEKIT_INSTANTIATE_INTERPOLATE(T)                                                   \
  template cudaError_t interpolate_forward<T>(const T*, bool, const T*, const int32_t*, int,   \
                                              int, int, int, int, int, T*, cudaStream_t);      \
  template cudaError_t interpolate_backward<T>(const T*, bool, const T*, const int32_t*, int,  \
                                               const T*, int, int, int, int, int, T*, T*,      \
                                               cudaStream_t);

FLAMEKIT_INSTANTIATE_INTERPOLATE(float)
FLAMEKIT_INSTANTIATE_INTERPOLATE(double)

#undef FLAMEKIT_INSTANTIATE_INTERPOLATE

}  // namespace cuda
}  // namespace flamekit
