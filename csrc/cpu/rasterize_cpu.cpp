// CPU rasterizer: triangle setup, a row-partitioned depth test (no atomics: each image row
// belongs to exactly one caller), resolve of the winning fragment, and the backward pass.
#include <algorithm>

#include "flamekit/cpu_kernels.h"

namespace flamekit {
namespace cpu {

template <typename T>
void raster_setup(const T* pos, const int32_t* tri, int V, int F, int H, int W,
                  TriangleSetup<T>* setups, int64_t begin, int64_t end) {
  for (int64_t idx = begin; idx < end; ++idx) {
    const int64_t b = idx / F;
    const int32_t* t = tri + (idx % F) * 3;
    const T* base = pos + b * int64_t(V) * 4;
    setups[idx] = setup_triangle(base + int64_t(t[0]) * 4, base + int64_t(t[1]) * 4,
                                 base + int64_t(t[2]) * 4, H, W);
  }
}

template <typename T>
void raster_rows(const TriangleSetup<T>* setups, int F, int H, int W, uint64_t* frags,
                 int64_t begin, int64_t end) {
  // The range may span several images of the batch.
  for (int64_t row = begin; row < end;) {
    const int64_t b = row / H;
    const int row0 = int(row % H);
    const int row1 = int(std::min<int64_t>(end - b * H, H));  // exclusive
    const TriangleSetup<T>* s_batch = setups + b * F;
    uint64_t* frag_batch = frags + b * int64_t(H) * W;
    for (int f = 0; f < F; ++f) {
      const TriangleSetup<T>& s = s_batch[f];
      const int y0 = std::max(s.y0, row0), y1 = std::min(s.y1, row1 - 1);
      if (s.x0 > s.x1 || y0 > y1) continue;
      for (int i = y0; i <= y1; ++i) {
        const T py = pixel_center<T>(i, H);
        uint64_t* frag_row = frag_batch + int64_t(i) * W;
        for (int j = s.x0; j <= s.x1; ++j) {
          T z;
          if (!shade_fragment(s, pixel_center<T>(j, W), py, &z)) continue;
          const uint64_t packed = pack_fragment(float(z), uint32_t(f));
          if (packed < frag_row[j]) frag_row[j] = packed;
        }
      }
    }
    row = b * H + row1;
  }
}

template <typename T>
void raster_resolve(const TriangleSetup<T>* setups, const uint64_t* frags, int F, int H, int W,
                    T* rast, int64_t begin, int64_t end) {
  const int64_t HW = int64_t(H) * W;
  for (int64_t p = begin; p < end; ++p) {
    T* out = rast + p * 4;
    const uint64_t packed = frags[p];
    if (packed == kEmptyFragment) {
      out[0] = out[1] = out[2] = out[3] = T(0);
      continue;
    }
    const uint32_t f = fragment_triangle(packed);
    const TriangleSetup<T>& s = setups[(p / HW) * F + f];
    const int i = int((p % HW) / W), j = int(p % W);
    resolve_fragment(s, i, j, H, W, &out[0], &out[1], &out[2]);
    out[3] = T(f + 1);
  }
}

template <typename T>
void raster_backward(const T* pos, const int32_t* tri, const T* rast, const T* grad_rast,
                     int V, int H, int W, T* grad_pos, int64_t begin, int64_t end) {
  const int64_t HW = int64_t(H) * W;
  for (int64_t p = begin; p < end; ++p) {
    const int t = int(rast[p * 4 + 3]);
    if (t == 0) continue;
    const T* g = grad_rast + p * 4;
    if (g[0] == T(0) && g[1] == T(0) && g[2] == T(0)) continue;
    const int64_t b = p / HW;
    const int i = int((p % HW) / W), j = int(p % W);
    const int32_t* vi = tri + int64_t(t - 1) * 3;
    const T* base = pos + b * int64_t(V) * 4;
    T grad[3][4];
    fragment_backward(base + int64_t(vi[0]) * 4, base + int64_t(vi[1]) * 4,
                      base + int64_t(vi[2]) * 4, i, j, H, W, g[0], g[1], g[2], grad);
    T* gbase = grad_pos + b * int64_t(V) * 4;
    for (int m = 0; m < 3; ++m)
      for (int k = 0; k < 4; ++k) gbase[int64_t(vi[m]) * 4 + k] += grad[m][k];
  }
}

#define FLAMEKIT_INSTANTIATE(T)                                                              \
  template void raster_setup<T>(const T*, const int32_t*, int, int, int, int,                \
                                TriangleSetup<T>*, int64_t, int64_t);                        \
  template void raster_rows<T>(const TriangleSetup<T>*, int, int, int, uint64_t*, int64_t,   \
                               int64_t);                                                     \
  template void raster_resolve<T>(const TriangleSetup<T>*, const uint64_t*, int, int, int,   \
                                  T*, int64_t, int64_t);                                     \
  template void raster_backward<T>(const T*, const int32_t*, const T*, const T*, int, int,   \
                                   int, T*, int64_t, int64_t);
FLAMEKIT_INSTANTIATE(float)
FLAMEKIT_INSTANTIATE(double)
#undef FLAMEKIT_INSTANTIATE

}  // namespace cpu
}  // namespace flamekit
