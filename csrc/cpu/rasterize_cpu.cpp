// CPU rasterizer: triangle setup, a row-partitioned depth test (no atomics: each image row
// belongs to exactly one caller), resolve of the winning fragment, and the backward pass.
// raster_band fuses the depth test and the resolve of a band of rows, so the fragments stay
// in a small per-thread buffer instead of a full-image one.
#include <algorithm>
#include <vector>

#include "flamekit/cpu_kernels.h"

namespace flamekit {
namespace cpu {

template <typename T>
void raster_vertex_ndc(const T* pos, VertexNdc<T>* ndc, int64_t begin, int64_t end) {
  for (int64_t v = begin; v < end; ++v) ndc[v] = vertex_ndc(pos + v * 4);
}

template <typename T>
void raster_setup(const T* pos, const VertexNdc<T>* ndc, const int32_t* tri, int V, int F,
                  int H, int W, TriangleSetup<T>* setups, int64_t begin, int64_t end) {
  for (int64_t idx = begin; idx < end;) {
    // Batch segment by batch segment: no integer division per triangle.
    const int64_t b = idx / F, stop = std::min<int64_t>(end, (b + 1) * F);
    const T* base = pos + b * int64_t(V) * 4;
    const VertexNdc<T>* nbase = ndc + b * int64_t(V);
    for (; idx < stop; ++idx) {
      const int32_t* t = tri + (idx - b * F) * 3;
      setups[idx] = setup_triangle(base + int64_t(t[0]) * 4, base + int64_t(t[1]) * 4,
                                   base + int64_t(t[2]) * 4, nbase[t[0]], nbase[t[1]],
                                   nbase[t[2]], H, W);
    }
  }
}

namespace {

// Fragment buffers pad each row by 3 entries, so the float32 depth test can update four
// columns from any start column without a per-lane bound.
constexpr int kRowPad = 3;

// Depth-tests rows [y0, y1] of one triangle's bounding box, one pixel at a time. px and py
// hold pixel_center(j, W) and pixel_center(i, H) (px padded by 3 entries); row i of the image
// is frags[(i - row_base) * stride], with stride >= W + kRowPad.
template <typename T>
void depth_test_triangle(const TriangleSetup<T>& s, uint32_t f, int y0, int y1, const T* px,
                         const T* py, int64_t stride, uint64_t* frags, int64_t row_base) {
  for (int i = y0; i <= y1; ++i) {
    T bt[3];
    row_terms(s, py[i], bt);
    uint64_t* frag_row = frags + (int64_t(i) - row_base) * stride;
    for (int j = s.x0; j <= s.x1; ++j) {
      T at[3], z;
      column_terms(s, px[j], at);
      if (!shade_fragment_ab(s, at, bt, &z)) continue;
      const uint64_t packed = pack_fragment(float(z), f);
      if (packed < frag_row[j]) frag_row[j] = packed;
    }
  }
}

#if defined(__GNUC__)
// float32: four columns at a time with GCC vector extensions (SSE2 on x86-64, NEON on Arm).
// Element-wise vector multiply and subtract round exactly like the scalar operations (no
// contraction), so the edge functions, coverage and depth are bit-identical to
// shade_fragment_ab (checked by the C++ test against the scalar path).
typedef float float4 __attribute__((vector_size(16)));
typedef int32_t int4 __attribute__((vector_size(16)));
typedef uint32_t uint4 __attribute__((vector_size(16)));

template <>
void depth_test_triangle<float>(const TriangleSetup<float>& s, uint32_t f, int y0, int y1,
                                const float* px_table, const float* py, int64_t stride,
                                uint64_t* frags, int64_t row_base) {
  float4 xv[3], wv[3];
  int4 owns[3];
  for (int m = 0; m < 3; ++m) {
    xv[m] = float4{} + s.x[m];
    wv[m] = float4{} + s.w[m];
    owns[m] = int4{} - int(s.owns[m]);
  }
  const float4 orientation = float4{} + s.orientation;
  const float4 zv_w[3] = {float4{} + s.w[0], float4{} + s.w[1], float4{} + s.w[2]};
  const float4 zv_z[3] = {float4{} + s.z[0], float4{} + s.z[1], float4{} + s.z[2]};
  for (int i = y0; i <= y1; ++i) {
    float bt[3];
    row_terms(s, py[i], bt);
    const float4 bv[3] = {float4{} + bt[0], float4{} + bt[1], float4{} + bt[2]};
    uint64_t* frag_row = frags + (int64_t(i) - row_base) * stride;
    for (int j0 = s.x0; j0 <= s.x1; j0 += 4) {
      float4 px;
      __builtin_memcpy(&px, px_table + j0, sizeof(px));
      float4 av[3];
      for (int m = 0; m < 3; ++m) av[m] = xv[m] - wv[m] * px;
      int4 inside = int4{} - 1;
      float4 uv[3];
      for (int e = 0; e < 3; ++e) {
        const int j = (e + 1) % 3, k = (e + 2) % 3;
        uv[e] = av[j] * bv[k] - bv[j] * av[k];
        const float4 ue = orientation * uv[e];
        inside &= (ue > 0.0f) | ((ue == 0.0f) & owns[e]);
      }
      bool any = false;
      for (int l = 0; l < 4; ++l) any |= inside[l] != 0;
      if (!any) continue;
      // Depth for all four lanes at once: the same operations in the same order as the
      // scalar path, each rounded once, so the values are bit-identical to it.
      const float4 nw = (uv[0] * zv_w[0] + uv[1] * zv_w[1]) + uv[2] * zv_w[2];
      const float4 nz = (uv[0] * zv_z[0] + uv[1] * zv_z[1]) + uv[2] * zv_z[2];
      const float4 z = nz / nw;
      // Lanes that pass (the same tests as shade_fragment_ab) get their depth key by
      // float_order_key's bit mapping, four at once; the update of the fragment buffer is
      // then branch-free per lane (data-dependent branches here mispredict often).
      // Columns past x1 are outside the triangle by the box's margin; the lane mask makes
      // that independent of rounding, so exactly the scalar path's pixels are tested.
      const int4 in_box = (int4{0, 1, 2, 3} + j0) <= s.x1;
      const int4 valid = inside & in_box & (nw != 0.0f) & (z >= -1.0f) & (z <= 1.0f);
      uint4 bits;
      __builtin_memcpy(&bits, &z, sizeof(bits));
      const uint4 negative = uint4{} - (bits >> 31);  // all ones where the sign bit is set
      const uint4 key = (~bits & negative) | ((bits | 0x80000000u) & ~negative);
      // All four lanes, also those past x1: they are invalid (so they leave their slot
      // unchanged) and stay inside this row thanks to its padding.
      for (int l = 0; l < 4; ++l) {
        const uint64_t invalid = uint64_t(int64_t(~valid[l]));  // all ones or zero
        const uint64_t packed = ((uint64_t(key[l]) << 32) | uint64_t(f)) | invalid;
        uint64_t& slot = frag_row[j0 + l];
        slot = packed < slot ? packed : slot;
      }
    }
  }
}
#endif

}  // namespace

namespace {

// Depth test of the flattened image rows [begin, end) of the B*H rows into frags, where
// frags[(row - first_row) * (W + kRowPad) + j] holds the fragment of (row, j).
template <typename T>
void depth_test_rows(const TriangleSetup<T>* setups, int F, int H, int W, uint64_t* frags,
                     int64_t first_row, int64_t begin, int64_t end) {
  // Pixel centres, computed once (padded: the vector path reads 4 columns at a time).
  std::vector<T> px(W + 3), py(H);
  for (int j = 0; j < W + 3; ++j) px[j] = pixel_center<T>(j, W);
  for (int i = 0; i < H; ++i) py[i] = pixel_center<T>(i, H);
  // The range may span several images of the batch.
  for (int64_t row = begin; row < end;) {
    const int64_t b = row / H;
    const int row0 = int(row % H);
    const int row1 = int(std::min<int64_t>(end - b * H, H));  // exclusive
    const TriangleSetup<T>* s_batch = setups + b * F;
    for (int f = 0; f < F; ++f) {
      const TriangleSetup<T>& s = s_batch[f];
      const int y0 = std::max(s.y0, row0), y1 = std::min(s.y1, row1 - 1);
      if (s.x0 > s.x1 || y0 > y1) continue;
      // Row i of image b sits at frags[(b * H + i - first_row) * stride].
      depth_test_triangle(s, uint32_t(f), y0, y1, px.data(), py.data(), W + kRowPad, frags,
                          first_row - b * H);
    }
    row = b * H + row1;
  }
}

// Resolves the flattened rows [begin, end) from frags (indexed as in depth_test_rows).
template <typename T>
void resolve_rows(const TriangleSetup<T>* setups, const uint64_t* frags, int F, int H, int W,
                  T* rast, int64_t first_row, int64_t begin, int64_t end) {
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / H;
    const int i = int(row % H);
    const TriangleSetup<T>* s_batch = setups + b * F;
    const uint64_t* frag_row = frags + (row - first_row) * (W + kRowPad);
    T* out = rast + row * W * 4;
    for (int j = 0; j < W; ++j, out += 4) {
      const uint64_t packed = frag_row[j];
      if (packed == kEmptyFragment) {
        out[0] = out[1] = out[2] = out[3] = T(0);
        continue;
      }
      const uint32_t f = fragment_triangle(packed);
      resolve_fragment(s_batch[f], i, j, H, W, &out[0], &out[1], &out[2]);
      out[3] = T(f + 1);
    }
  }
}

// Pixels of depth-test scratch per pass of raster_band: 512 KiB of fragments, small enough
// to stay in cache and to keep per thread, large enough that a 224x224 image needs a single
// pass over the triangles per thread.
constexpr int64_t kBandPixels = 65536;

}  // namespace

template <typename T>
void raster_rows(const TriangleSetup<T>* setups, int F, int H, int W, uint64_t* frags,
                 int64_t begin, int64_t end) {
  // Through a padded copy of the rows (the layout depth_test_rows needs).
  const int64_t stride = W + kRowPad;
  std::vector<uint64_t> padded(size_t((end - begin) * stride), kEmptyFragment);
  for (int64_t row = begin; row < end; ++row)
    std::copy(frags + row * W, frags + (row + 1) * W, padded.begin() + (row - begin) * stride);
  depth_test_rows(setups, F, H, W, padded.data(), begin, begin, end);
  for (int64_t row = begin; row < end; ++row)
    std::copy(padded.begin() + (row - begin) * stride,
              padded.begin() + (row - begin) * stride + W, frags + row * W);
}

template <typename T>
void raster_band(const TriangleSetup<T>* setups, int F, int H, int W, T* rast, int64_t begin,
                 int64_t end) {
  // Scratch reused across calls by the same thread (no page faults on every forward).
  thread_local std::vector<uint64_t> frags;
  const int64_t rows_per_pass = std::max<int64_t>(1, kBandPixels / W);
  for (int64_t row0 = begin; row0 < end; row0 += rows_per_pass) {
    const int64_t row1 = std::min(end, row0 + rows_per_pass);
    frags.assign(size_t((row1 - row0) * (W + kRowPad)), kEmptyFragment);
    depth_test_rows(setups, F, H, W, frags.data(), row0, row0, row1);
    resolve_rows(setups, frags.data(), F, H, W, rast, row0, row0, row1);
  }
}

template <typename T>
int64_t raster_backward(const T* pos, const int32_t* tri, int F, const T* rast,
                        const T* grad_rast, int V, int H, int W, T* grad_pos, int64_t begin,
                        int64_t end) {
  // Pixel (b, i, j) of the range, tracked incrementally (no divisions per pixel).
  const int64_t HW = int64_t(H) * W;
  int64_t b = begin / HW;
  int i = int((begin % HW) / W), j = int(begin % W);
  int64_t invalid = 0;
  for (int64_t p = begin; p < end; ++p) {
    const int t = rast_triangle(rast[p * 4 + 3], F);
    invalid += rast_id_invalid(rast[p * 4 + 3], t);
    const T* g = grad_rast + p * 4;
    if (t != 0 && !(g[0] == T(0) && g[1] == T(0) && g[2] == T(0))) {
      const int32_t* vi = tri + int64_t(t - 1) * 3;
      const T* base = pos + b * int64_t(V) * 4;
      T grad[3][4];
      fragment_backward(base + int64_t(vi[0]) * 4, base + int64_t(vi[1]) * 4,
                        base + int64_t(vi[2]) * 4, i, j, H, W, g[0], g[1], g[2], grad);
      T* gbase = grad_pos + b * int64_t(V) * 4;
      for (int m = 0; m < 3; ++m)
        for (int k = 0; k < 4; ++k) gbase[int64_t(vi[m]) * 4 + k] += grad[m][k];
    }
    if (++j == W) {
      j = 0;
      if (++i == H) {
        i = 0;
        ++b;
      }
    }
  }
  return invalid;
}

#define FLAMEKIT_INSTANTIATE(T)                                                              \
  template void raster_vertex_ndc<T>(const T*, VertexNdc<T>*, int64_t, int64_t);             \
  template void raster_setup<T>(const T*, const VertexNdc<T>*, const int32_t*, int, int, int, \
                                int, TriangleSetup<T>*, int64_t, int64_t);                   \
  template void raster_rows<T>(const TriangleSetup<T>*, int, int, int, uint64_t*, int64_t,   \
                               int64_t);                                                     \
  template void raster_band<T>(const TriangleSetup<T>*, int, int, int, T*, int64_t, int64_t); \
  template int64_t raster_backward<T>(const T*, const int32_t*, int, const T*, const T*, int, \
                                      int, int, T*, int64_t, int64_t);
FLAMEKIT_INSTANTIATE(float)
FLAMEKIT_INSTANTIATE(double)
#undef FLAMEKIT_INSTANTIATE

}  // namespace cpu
}  // namespace flamekit
