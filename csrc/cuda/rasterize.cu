// Rasterization: triangle setup, depth test and resolve (forward), and the gradient of
// (b0, b1, z) with respect to the clip-space vertices (backward).
//
// The per-pixel math is the shared code of raster_math.h, so the result matches the CPU
// kernels bit for bit; only the work distribution is CUDA specific.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "flamekit/cuda_kernels.h"
#include "flamekit/raster_math.h"

namespace flamekit {
namespace cuda {
namespace {

constexpr int kThreads = 256;
// Grid-stride pixel kernels never need more blocks than this to fill a GPU.
constexpr int64_t kMaxPixelBlocks = int64_t(1) << 20;
// A triangle whose bounding box has at most this many pixels is rasterized by one thread.
// FLAME triangles at 224..512 px have boxes of 9..49 pixels (the setup adds one pixel of
// margin on each side), so they all stay on this path.
constexpr int64_t kSmallTriangleArea = 64;
// The depth test aims for at least this many blocks so that a few large triangles still
// spread over the whole GPU (see depth_test_kernel).
constexpr int64_t kTargetDepthTestBlocks = 1024;
constexpr int64_t kMaxGridY = 65535;

unsigned int pixel_blocks(int64_t n) {
  return unsigned(std::min((n + kThreads - 1) / kThreads, kMaxPixelBlocks));
}

// Pixel (b, i, j) of a flattened pixel index p over B*H*W.
struct PixelCoord {
  int64_t b;
  int i, j;
};

__device__ __forceinline__ PixelCoord pixel_coord(int64_t p, int H, int W) {
  const int64_t hw = int64_t(H) * W;
  const int64_t r = p % hw;
  return {p / hw, int(r / W), int(r % W)};
}

template <typename T>
__device__ __forceinline__ bool setup_is_empty(const TriangleSetup<T>& s) {
  return s.x0 > s.x1 || s.y0 > s.y1;
}

template <typename T>
__device__ __forceinline__ int64_t bbox_area(const TriangleSetup<T>& s) {
  return int64_t(s.x1 - s.x0 + 1) * int64_t(s.y1 - s.y0 + 1);
}

// Depth-tests pixel (i, j) against one triangle and keeps the nearest fragment.
template <typename T>
__device__ __forceinline__ void depth_test_pixel(const TriangleSetup<T>& s, uint32_t f,
                                                 int i, int j, T py, int W,
                                                 unsigned long long* frag_image) {
  T z;
  if (shade_fragment(s, pixel_center<T>(j, W), py, &z)) {
    atomicMin(&frag_image[int64_t(i) * W + j], (unsigned long long)pack_fragment(float(z), f));
  }
}

template <typename T>
__global__ void setup_kernel(const T* __restrict__ pos, const int32_t* __restrict__ tri, int B,
                             int V, int F, int H, int W, TriangleSetup<T>* __restrict__ setups) {
  const int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item >= int64_t(B) * F) return;
  const int64_t b = item / F;
  const int32_t* t = tri + (item % F) * 3;
  const T* batch_pos = pos + b * V * 4;
  setups[item] = setup_triangle(batch_pos + int64_t(t[0]) * 4, batch_pos + int64_t(t[1]) * 4,
                                batch_pos + int64_t(t[2]) * 4, H, W);
}

// One thread per (batch, triangle). Triangles with small bounding boxes are tested by their
// own thread (only in the blockIdx.y == 0 slice). Larger ones are queued in shared memory
// and tested cooperatively: the pixels of each queued box are spread over the threads of
// all gridDim.y blocks that share this blockIdx.x, so a triangle covering the whole image
// is split over kThreads * gridDim.y threads instead of serializing on one.
template <typename T>
__global__ void depth_test_kernel(const TriangleSetup<T>* __restrict__ setups, int B, int F,
                                  int H, int W, unsigned long long* __restrict__ frags) {
  __shared__ int64_t queue[kThreads];
  __shared__ int queue_size;
  if (threadIdx.x == 0) queue_size = 0;
  __syncthreads();

  const int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item < int64_t(B) * F) {
    const TriangleSetup<T> s = setups[item];
    if (!setup_is_empty(s)) {
      if (bbox_area(s) > kSmallTriangleArea) {
        queue[atomicAdd(&queue_size, 1)] = item;
      } else if (blockIdx.y == 0) {
        const uint32_t f = uint32_t(item % F);
        unsigned long long* frag_image = frags + (item / F) * H * W;
        for (int i = s.y0; i <= s.y1; ++i) {
          const T py = pixel_center<T>(i, H);
          for (int j = s.x0; j <= s.x1; ++j) depth_test_pixel(s, f, i, j, py, W, frag_image);
        }
      }
    }
  }
  __syncthreads();

  // Walk each queued box in row-major order with a stride of `stride` pixels, advancing
  // (row, col) incrementally to avoid a division per pixel.
  const int start = blockIdx.y * blockDim.x + threadIdx.x;
  const int stride = gridDim.y * blockDim.x;
  for (int q = 0; q < queue_size; ++q) {
    const int64_t large = queue[q];
    const TriangleSetup<T> s = setups[large];
    const uint32_t f = uint32_t(large % F);
    unsigned long long* frag_image = frags + (large / F) * H * W;
    const int box_w = s.x1 - s.x0 + 1;
    const int step_rows = stride / box_w, step_cols = stride % box_w;
    int i = s.y0 + start / box_w, j = s.x0 + start % box_w;
    while (i <= s.y1) {
      depth_test_pixel(s, f, i, j, pixel_center<T>(i, H), W, frag_image);
      i += step_rows;
      j += step_cols;
      if (j > s.x1) {
        j -= box_w;
        ++i;
      }
    }
  }
}

template <typename T>
__global__ void resolve_kernel(const TriangleSetup<T>* __restrict__ setups,
                               const unsigned long long* __restrict__ frags, int B, int F,
                               int H, int W, T* __restrict__ rast) {
  const int64_t n = int64_t(B) * H * W;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < n;
       p += int64_t(blockDim.x) * gridDim.x) {
    T* out = rast + p * 4;
    const unsigned long long packed = frags[p];
    if (packed == kEmptyFragment) {
      out[0] = out[1] = out[2] = out[3] = T(0);
      continue;
    }
    const PixelCoord pc = pixel_coord(p, H, W);
    const uint32_t f = fragment_triangle(packed);
    const TriangleSetup<T> s = setups[pc.b * F + f];
    // Barycentrics and depth in double (see resolve_fragment); the packed key only holds
    // a float depth.
    resolve_fragment(s, int(pc.i), int(pc.j), H, W, &out[0], &out[1], &out[2]);
    out[3] = T(f + 1);
  }
}

template <typename T>
__global__ void backward_kernel(const T* __restrict__ pos, const int32_t* __restrict__ tri,
                                int F, const T* __restrict__ rast,
                                const T* __restrict__ grad_rast, int B, int V, int H, int W,
                                T* __restrict__ grad_pos) {
  const int64_t n = int64_t(B) * H * W;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < n;
       p += int64_t(blockDim.x) * gridDim.x) {
    const int t = rast_triangle(rast[p * 4 + 3], F);  // invalid ids: background
    if (t == 0) continue;
    const T* g_rast = grad_rast + p * 4;
    // Like the CPU kernel: no upstream gradient, no contribution (and no 0 * inf = NaN from
    // a degenerate fragment).
    if (g_rast[0] == T(0) && g_rast[1] == T(0) && g_rast[2] == T(0)) continue;
    const PixelCoord pc = pixel_coord(p, H, W);
    const int32_t* vi = tri + int64_t(t - 1) * 3;
    const int64_t row0 = pc.b * V;
    const T* v0 = pos + (row0 + vi[0]) * 4;
    const T* v1 = pos + (row0 + vi[1]) * 4;
    const T* v2 = pos + (row0 + vi[2]) * 4;
    T g[3][4];
    fragment_backward(v0, v1, v2, int(pc.i), int(pc.j), H, W, g_rast[0], g_rast[1], g_rast[2],
                      g);
    for (int m = 0; m < 3; ++m) {
      T* gp = grad_pos + (row0 + vi[m]) * 4;
      for (int k = 0; k < 4; ++k) atomicAdd(gp + k, g[m][k]);
    }
  }
}

}  // namespace

template <typename T>
cudaError_t rasterize_forward(const T* pos, const int32_t* tri, int B, int V, int F, int H,
                              int W, TriangleSetup<T>* setups, uint64_t* frags, T* rast,
                              cudaStream_t stream) {
  const int64_t pixels = int64_t(B) * H * W;
  if (pixels == 0) return cudaSuccess;
  auto* frag_words = reinterpret_cast<unsigned long long*>(frags);
  // All-ones bytes are kEmptyFragment.
  cudaError_t err = cudaMemsetAsync(frags, 0xFF, size_t(pixels) * sizeof(uint64_t), stream);
  if (err != cudaSuccess) return err;

  // With no triangles every pixel stays empty and the resolve writes zeros.
  const int64_t items = int64_t(B) * F;
  if (items > 0) {
    const unsigned int item_blocks = unsigned((items + kThreads - 1) / kThreads);
    setup_kernel<T><<<item_blocks, kThreads, 0, stream>>>(pos, tri, B, V, F, H, W, setups);
    // Slices for large triangles: enough blocks in total to fill the GPU, but never more
    // slices than a full-image box can give one pixel per thread.
    const int64_t max_slices = (int64_t(H) * W + kThreads - 1) / kThreads;
    const int64_t wanted = (kTargetDepthTestBlocks + item_blocks - 1) / item_blocks;
    const dim3 grid(item_blocks, unsigned(std::min({wanted, max_slices, kMaxGridY})));
    depth_test_kernel<T><<<grid, kThreads, 0, stream>>>(setups, B, F, H, W, frag_words);
  }
  resolve_kernel<T><<<pixel_blocks(pixels), kThreads, 0, stream>>>(setups, frag_words, B, F, H,
                                                                     W, rast);
  return cudaGetLastError();
}

template <typename T>
cudaError_t rasterize_backward(const T* pos, const int32_t* tri, int F, const T* rast,
                               const T* grad_rast, int B, int V, int H, int W, T* grad_pos,
                               cudaStream_t stream) {
  const int64_t pixels = int64_t(B) * H * W;
  if (pixels == 0) return cudaSuccess;
  backward_kernel<T><<<pixel_blocks(pixels), kThreads, 0, stream>>>(pos, tri, F, rast,
                                                                      grad_rast, B, V, H, W,
                                                                      grad_pos);
  return cudaGetLastError();
}

#define FLAMEKIT_INSTANTIATE_RASTERIZE(T)                                                    \
  template cudaError_t rasterize_forward<T>(const T*, const int32_t*, int, int, int, int, int, \
                                            TriangleSetup<T>*, uint64_t*, T*, cudaStream_t);   \
  template cudaError_t rasterize_backward<T>(const T*, const int32_t*, int, const T*, const T*, \
                                             int, int, int, int, T*, cudaStream_t);

FLAMEKIT_INSTANTIATE_RASTERIZE(float)
FLAMEKIT_INSTANTIATE_RASTERIZE(double)

#undef FLAMEKIT_INSTANTIATE_RASTERIZE

}  // namespace cuda
}  // namespace flamekit
