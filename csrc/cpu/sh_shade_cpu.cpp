// CPU spherical-harmonics shading, fused: basis, lighting and albedo in one pass.
#include "flamekit/cpu_kernels.h"

namespace flamekit {
namespace cpu {

namespace {

// Lighting coefficient of basis k for colour c (shared across colours when sc == 1).
template <typename T>
inline T sh_coef(const T* sh_b, int sc, int k, int c) {
  return sh_b[k * sc + (sc == 3 ? c : 0)];
}

}  // namespace

template <typename T>
void sh_shade_forward(const T* albedo, const T* normals, const T* sh, int sh_channels, int HW,
                      T* image, T* shading, int64_t begin, int64_t end) {
  for (int64_t p = begin; p < end; ++p) {
    const T* sh_b = sh + (p / HW) * 9 * sh_channels;
    const T* n = normals + p * 3;
    T Y[9];
    sh_basis(n[0], n[1], n[2], Y);
    for (int c = 0; c < 3; ++c) {
      T s = T(0);
      for (int k = 0; k < 9; ++k) s += sh_coef(sh_b, sh_channels, k, c) * Y[k];
      shading[p * 3 + c] = s;
      image[p * 3 + c] = albedo[p * 3 + c] * s;
    }
  }
}

template <typename T>
void sh_shade_backward(const T* albedo, const T* normals, const T* sh, int sh_channels, int HW,
                       const T* grad_image, const T* grad_shading, T* grad_albedo,
                       T* grad_normals, T* grad_sh, int64_t begin, int64_t end) {
  for (int64_t p = begin; p < end; ++p) {
    const int64_t b = p / HW;
    const T* sh_b = sh + b * 9 * sh_channels;
    T* gsh_b = grad_sh + b * 9 * sh_channels;
    const T* n = normals + p * 3;
    T Y[9];
    sh_basis(n[0], n[1], n[2], Y);
    T coef[9] = {T(0), T(0), T(0), T(0), T(0), T(0), T(0), T(0), T(0)};
    for (int c = 0; c < 3; ++c) {
      T s = T(0);
      for (int k = 0; k < 9; ++k) s += sh_coef(sh_b, sh_channels, k, c) * Y[k];
      const T gi = grad_image[p * 3 + c];
      grad_albedo[p * 3 + c] = gi * s;
      T gs = gi * albedo[p * 3 + c];
      if (grad_shading) gs += grad_shading[p * 3 + c];
      for (int k = 0; k < 9; ++k) {
        coef[k] += gs * sh_coef(sh_b, sh_channels, k, c);
        gsh_b[k * sh_channels + (sh_channels == 3 ? c : 0)] += gs * Y[k];
      }
    }
    sh_basis_backward(n[0], n[1], n[2], coef, grad_normals + p * 3);
  }
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
