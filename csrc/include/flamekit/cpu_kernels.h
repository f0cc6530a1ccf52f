// flamekit/cpu_kernels.h — torch-free CPU kernels.
//
// Each kernel processes an index range [begin, end) so that the binding can spread the
// work with at::parallel_for while the kernels themselves stay free of torch (and are
// compiled into the C++ unit test). Layouts are contiguous, batch first:
//   pos [B,V,4], tri [F,3], rast [B,H,W,4], attr [B,V,C] or [V,C], images [B,H,W,3].
#pragma once

#include <cstdint>

#include "flamekit/raster_math.h"

namespace flamekit {
namespace cpu {

// vertex_ndc for the flattened range [begin, end) of the B*V vertices of pos.
template <typename T>
void raster_vertex_ndc(const T* pos, VertexNdc<T>* ndc, int64_t begin, int64_t end);

// Triangle setups for the flattened range of (batch, triangle) pairs, from pos and its
// raster_vertex_ndc (the divisions and validity checks are per vertex, not per corner).
template <typename T>
void raster_setup(const T* pos, const VertexNdc<T>* ndc, const int32_t* tri, int V, int F,
                  int H, int W, TriangleSetup<T>* setups, int64_t begin, int64_t end);

// Depth test alone for the flattened image rows [begin, end) of the B*H rows, into a
// full-size frags [B,H,W] that must start as kEmptyFragment. Each row belongs to one caller,
// so no atomics are needed. (raster_band is the production path; this one lets tests
// inspect the fragments.)
template <typename T>
void raster_rows(const TriangleSetup<T>* setups, int F, int H, int W, uint64_t* frags,
                 int64_t begin, int64_t end);

// Depth test and resolve of the flattened image rows [begin, end) of the B*H rows: writes
// rast = (b0, b1, z, tri + 1) for them, using a per-thread fragment buffer of at most
// 64K pixels at a time. The forward pass after raster_setup.
template <typename T>
void raster_band(const TriangleSetup<T>* setups, int F, int H, int W, T* rast, int64_t begin,
                 int64_t end);

// Accumulates dL/dpos for pixels [begin, end) into grad_pos [B,V,4] (a per-caller buffer).
// Like the interpolation kernels, it treats a rast value that is neither background nor one
// of the F triangle ids as background and returns how many such pixels it met.
template <typename T>
int64_t raster_backward(const T* pos, const int32_t* tri, int F, const T* rast,
                        const T* grad_rast, int V, int H, int W, T* grad_pos, int64_t begin,
                        int64_t end);

// out [B,H,W,C] for pixels [begin, end). attr is [B,V,C] when attr_batched, else [V,C].
// tri has F triangles; returns the number of pixels whose rast value is neither background
// nor one of their ids (written as background).
template <typename T>
int64_t interpolate_forward(const T* attr, bool attr_batched, const T* rast,
                            const int32_t* tri, int F, int V, int C, int HW, T* out,
                            int64_t begin, int64_t end);

// grad_attr (per-caller buffer shaped like attr) and grad_rast [B,H,W,4] (channels 0 and 1;
// each pixel written by exactly one caller) for pixels [begin, end).
template <typename T>
int64_t interpolate_backward(const T* attr, bool attr_batched, const T* rast,
                             const int32_t* tri, int F, const T* grad_out, int V, int C, int HW,
                             T* grad_attr, T* grad_rast, int64_t begin, int64_t end);

// image = albedo * shading and shading [B,H,W,3] for pixels [begin, end) of B*H*W.
// sh is [B,9,sh_channels] with sh_channels 3 (per colour) or 1 (shared).
template <typename T>
void sh_shade_forward(const T* albedo, const T* normals, const T* sh, int sh_channels, int HW,
                      T* image, T* shading, int64_t begin, int64_t end);

// Gradients for pixels [begin, end). grad_shading may be null. grad_sh is a per-caller
// buffer [B,9,sh_channels]; grad_albedo and grad_normals are written per pixel.
template <typename T>
void sh_shade_backward(const T* albedo, const T* normals, const T* sh, int sh_channels, int HW,
                       const T* grad_image, const T* grad_shading, T* grad_albedo,
                       T* grad_normals, T* grad_sh, int64_t begin, int64_t end);

}  // namespace cpu
}  // namespace flamekit
