// CPU attribute interpolation with the barycentrics of a rasterized image.
#include <algorithm>

#include "flamekit/cpu_kernels.h"

namespace flamekit {
namespace cpu {

namespace {

// One pixel of the forward: zeros on background. Returns false for an invalid triangle id. kC > 0 fixes the channel count at compile
// time (3: normals, colours, positions, the common case); kC == 0 reads it from `channels`.
template <typename T, int kC>
inline bool interpolate_pixel(const T* attr, const T* r, const int32_t* tri, int F,
                              int channels, T* o) {
  const int C = kC > 0 ? kC : channels;
  const int t = rast_triangle(r[3], F);
  if (t == 0) {
    for (int c = 0; c < C; ++c) o[c] = T(0);
    return !rast_id_invalid(r[3], t);
  }
  const T b0 = r[0], b1 = r[1], b2 = T(1) - b0 - b1;
  const int32_t* vi = tri + int64_t(t - 1) * 3;
  const T* a0 = attr + int64_t(vi[0]) * C;
  const T* a1 = attr + int64_t(vi[1]) * C;
  const T* a2 = attr + int64_t(vi[2]) * C;
  for (int c = 0; c < C; ++c) o[c] = barycentric_mix(b0, b1, b2, a0[c], a1[c], a2[c]);
  return true;
}

// One pixel of the backward: accumulates into grad_attr, writes gr[0..3]. Returns false
// for an invalid triangle id.
template <typename T, int kC>
inline bool interpolate_pixel_backward(const T* attr, const T* r, const int32_t* tri, int F,
                                       const T* g, int channels, T* grad_attr, T* gr) {
  const int C = kC > 0 ? kC : channels;
  gr[0] = gr[1] = gr[2] = gr[3] = T(0);
  const int t = rast_triangle(r[3], F);
  if (t == 0) return !rast_id_invalid(r[3], t);
  const T b0 = r[0], b1 = r[1], b2 = T(1) - b0 - b1;
  const int32_t* vi = tri + int64_t(t - 1) * 3;
  const T* a0 = attr + int64_t(vi[0]) * C;
  const T* a1 = attr + int64_t(vi[1]) * C;
  const T* a2 = attr + int64_t(vi[2]) * C;
  T* g0 = grad_attr + int64_t(vi[0]) * C;
  T* g1 = grad_attr + int64_t(vi[1]) * C;
  T* g2 = grad_attr + int64_t(vi[2]) * C;
  T gb0 = T(0), gb1 = T(0);
  for (int c = 0; c < C; ++c) {
    g0[c] += b0 * g[c];
    g1[c] += b1 * g[c];
    g2[c] += b2 * g[c];
    gb0 += g[c] * (a0[c] - a2[c]);
    gb1 += g[c] * (a1[c] - a2[c]);
  }
  gr[0] = gb0;
  gr[1] = gb1;
  return true;
}

template <typename T, int kC>
int64_t forward_range(const T* attr, bool attr_batched, const T* rast, const int32_t* tri,
                      int F, int V, int C, int HW, T* out, int64_t begin, int64_t end) {
  int64_t invalid = 0;
  // Batch segment by batch segment: no integer division per pixel.
  for (int64_t p = begin; p < end;) {
    const int64_t b = p / HW, stop = std::min<int64_t>(end, (b + 1) * HW);
    const T* a = attr + (attr_batched ? b * int64_t(V) * C : 0);
    for (; p < stop; ++p)
      invalid += !interpolate_pixel<T, kC>(a, rast + p * 4, tri, F, C, out + p * C);
  }
  return invalid;
}

template <typename T, int kC>
int64_t backward_range(const T* attr, bool attr_batched, const T* rast, const int32_t* tri,
                       int F, const T* grad_out, int V, int C, int HW, T* grad_attr,
                       T* grad_rast, int64_t begin, int64_t end) {
  int64_t invalid = 0;
  for (int64_t p = begin; p < end;) {
    const int64_t b = p / HW, stop = std::min<int64_t>(end, (b + 1) * HW);
    const int64_t offset = attr_batched ? b * int64_t(V) * C : 0;
    for (; p < stop; ++p)
      invalid += !interpolate_pixel_backward<T, kC>(attr + offset, rast + p * 4, tri, F,
                                                    grad_out + p * C, C, grad_attr + offset,
                                                    grad_rast + p * 4);
  }
  return invalid;
}

}  // namespace

template <typename T>
int64_t interpolate_forward(const T* attr, bool attr_batched, const T* rast,
                            const int32_t* tri, int F, int V, int C, int HW, T* out,
                            int64_t begin, int64_t end) {
  if (C == 3)
    return forward_range<T, 3>(attr, attr_batched, rast, tri, F, V, C, HW, out, begin, end);
  return forward_range<T, 0>(attr, attr_batched, rast, tri, F, V, C, HW, out, begin, end);
}

template <typename T>
int64_t interpolate_backward(const T* attr, bool attr_batched, const T* rast,
                             const int32_t* tri, int F, const T* grad_out, int V, int C, int HW,
                             T* grad_attr, T* grad_rast, int64_t begin, int64_t end) {
  if (C == 3)
    return backward_range<T, 3>(attr, attr_batched, rast, tri, F, grad_out, V, C, HW, grad_attr,
                                grad_rast, begin, end);
  return backward_range<T, 0>(attr, attr_batched, rast, tri, F, grad_out, V, C, HW, grad_attr,
                              grad_rast, begin, end);
}

#define FLAMEKIT_INSTANTIATE(T)                                                              \
  template int64_t interpolate_forward<T>(const T*, bool, const T*, const int32_t*, int, int, \
                                          int, int, T*, int64_t, int64_t);                   \
  template int64_t interpolate_backward<T>(const T*, bool, const T*, const int32_t*, int,     \
                                           const T*, int, int, int, T*, T*, int64_t, int64_t);
FLAMEKIT_INSTANTIATE(float)
FLAMEKIT_INSTANTIATE(double)
#undef FLAMEKIT_INSTANTIATE

}  // namespace cpu
}  // namespace flamekit
