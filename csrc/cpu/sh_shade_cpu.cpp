// CPU spherical-harmonics shading, fused: basis, lighting and albedo in one pass.
//
// Pixels are processed batch segment by batch segment so that the 9 x 3 lighting
// coefficients live in local arrays (and the lighting gradient accumulates in registers),
// with the colour-channel layout (per colour or shared) fixed at compile time.
#include <algorithm>

#include "flamekit/cpu_kernels.h"

namespace flamekit {
namespace cpu {

namespace {

// Lighting coefficients of one batch element expanded to [9][3].
template <typename T, int SC>
void load_lighting(const T* sh_b, T coef[9][3]) {
  for (int k = 0; k < 9; ++k)
    for (int c = 0; c < 3; ++c) coef[k][c] = sh_b[k * SC + (SC == 3 ? c : 0)];
}

// Shading of one pixel from its normal n: s[c] = sum_k coef[k][c] Y_k(n).
template <typename T>
inline void shade_pixel(const T* n, const T coef[9][3], T Y[9], T s[3]) {
  sh_basis(n[0], n[1], n[2], Y);
  for (int c = 0; c < 3; ++c) {
    T acc = T(0);
    for (int k = 0; k < 9; ++k) acc += coef[k][c] * Y[k];
    s[c] = acc;
  }
}

// Background pixels of a render carry a zero normal (interpolate writes zeros there), about
// two thirds of a face render: in the backward (which does not vectorize, unlike the
// forward) their shading is the same constant, computed once per batch element by the same
// arithmetic (so bit-identical), which skips the basis for them.
template <typename T>
inline bool is_zero_normal(const T* n) {
  return n[0] == T(0) && n[1] == T(0) && n[2] == T(0);
}

template <typename T, int SC>
void forward_range(const T* albedo, const T* normals, const T* sh, int64_t HW, T* image,
                   T* shading, int64_t begin, int64_t end) {
  for (int64_t p = begin; p < end;) {
    const int64_t b = p / HW, stop = std::min(end, (b + 1) * HW);
    T coef[9][3];
    load_lighting<T, SC>(sh + b * 9 * SC, coef);
    for (; p < stop; ++p) {
      const T* n = normals + p * 3;
      T Y[9], s[3];
      shade_pixel(n, coef, Y, s);
      for (int c = 0; c < 3; ++c) {
        shading[p * 3 + c] = s[c];
        image[p * 3 + c] = albedo[p * 3 + c] * s[c];
      }
    }
  }
}

template <typename T, int SC>
void backward_range(const T* albedo, const T* normals, const T* sh, int64_t HW,
                    const T* grad_image, const T* grad_shading, T* grad_albedo,
                    T* grad_normals, T* grad_sh, int64_t begin, int64_t end) {
  for (int64_t p = begin; p < end;) {
    const int64_t b = p / HW, stop = std::min(end, (b + 1) * HW);
    T coef[9][3];
    load_lighting<T, SC>(sh + b * 9 * SC, coef);
    T gsh[9][3] = {};
    const T zero_normal[3] = {T(0), T(0), T(0)};
    T Y0[9], s0[3];
    shade_pixel(zero_normal, coef, Y0, s0);
    for (; p < stop; ++p) {
      const T* n = normals + p * 3;
      const bool zero = is_zero_normal(n);
      T Y[9], s[3];
      if (zero) {
        s[0] = s0[0], s[1] = s0[1], s[2] = s0[2];
      } else {
        shade_pixel(n, coef, Y, s);
      }
      T gs[3];
      for (int c = 0; c < 3; ++c) {
        const T gi = grad_image[p * 3 + c];
        grad_albedo[p * 3 + c] = gi * s[c];
        gs[c] = gi * albedo[p * 3 + c];
        if (grad_shading) gs[c] += grad_shading[p * 3 + c];
      }
      if (gs[0] == T(0) && gs[1] == T(0) && gs[2] == T(0)) {
        // No gradient reaches the shading (zero albedo: background, or a zero upstream
        // gradient): nothing flows to the normals or the lighting. Common: about two thirds
        // of a face render is background.
        T* gn = grad_normals + p * 3;
        gn[0] = gn[1] = gn[2] = T(0);
        continue;
      }
      if (zero)
        for (int k = 0; k < 9; ++k) Y[k] = Y0[k];
      T dn[9];
      for (int k = 0; k < 9; ++k) {
        dn[k] = (gs[0] * coef[k][0] + gs[1] * coef[k][1]) + gs[2] * coef[k][2];
        for (int c = 0; c < 3; ++c) gsh[k][c] += gs[c] * Y[k];
      }
      sh_basis_backward(n[0], n[1], n[2], dn, grad_normals + p * 3);
    }
    T* out = grad_sh + b * 9 * SC;
    for (int k = 0; k < 9; ++k) {
      if (SC == 3) {
        for (int c = 0; c < 3; ++c) out[k * 3 + c] += gsh[k][c];
      } else {
        out[k] += (gsh[k][0] + gsh[k][1]) + gsh[k][2];
      }
    }
  }
}

}  // namespace

template <typename T>
void sh_shade_forward(const T* albedo, const T* normals, const T* sh, int sh_channels, int HW,
                      T* image, T* shading, int64_t begin, int64_t end) {
  if (sh_channels == 3)
    forward_range<T, 3>(albedo, normals, sh, HW, image, shading, begin, end);
  else
    forward_range<T, 1>(albedo, normals, sh, HW, image, shading, begin, end);
}

template <typename T>
void sh_shade_backward(const T* albedo, const T* normals, const T* sh, int sh_channels, int HW,
                       const T* grad_image, const T* grad_shading, T* grad_albedo,
                       T* grad_normals, T* grad_sh, int64_t begin, int64_t end) {
  if (sh_channels == 3)
    backward_range<T, 3>(albedo, normals, sh, HW, grad_image, grad_shading, grad_albedo,
                         grad_normals, grad_sh, begin, end);
  else
    backward_range<T, 1>(albedo, normals, sh, HW, grad_image, grad_shading, grad_albedo,
                         grad_normals, grad_sh, begin, end);
}

#define FLAMEKIT_INSTANTIATE(T)                                                                \
  template void sh_shade_forward<T>(const T*, const T*, const T*, int, int, T*, T*, int64_t,   \
                                    int64_t);                                                  \
  template void sh_shade_backward<T>(const T*, const T*, const T*, int, int, const T*,         \
                                     const T*, T*, T*, T*, int64_t, int64_t);
FLAMEKIT_INSTANTIATE(float)
FLAMEKIT_INSTANTIATE(double)
#undef FLAMEKIT_INSTANTIATE

}  // namespace cpu
}  // namespace flamekit
